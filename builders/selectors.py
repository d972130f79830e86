"""Reads of the builders app that other apps need, as small frozen dataclasses.

builds shows how to reach an SSH builder (directly, or through the SSH gateway) and the last
login through the gateway; it reads both here and knows nothing of pools, routes or the gateway.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db.models import Max

from builders import ssh
from builders.gateway import route, sshd
from builders.models import AuditEvent, Builder, Lease, SshRoute
from keys.parser import parse_key_line

GATEWAY_ALIAS = "coprssh-gateway"


@dataclass(frozen=True)
class Gateway:
    """The service's SSH gateway as users give it to `ssh -J`."""

    host: str
    port: int
    user: str
    host_key: str
    host_key_fingerprint: str
    proxy_jump: str  # the argument of -J / ProxyJump: coprssh-gw@gw.example.org:2222


@dataclass(frozen=True)
class LoginRoute:
    """How to log in to one SSH builder: the command to show first and everything needed to pin host keys."""

    route: str  # "direct" or "gateway": what `ssh_command` does
    ssh_command: str
    direct_command: str | None  # None when the pool is reached through the gateway only
    gateway_command: str | None  # None when the pool is reached directly only
    gateway: Gateway | None
    known_hosts: list[str] = field(default_factory=list)  # the builder's line, and the gateway's
    ssh_config: str = ""  # a ~/.ssh/config snippet for `ssh coprssh-<id>`


@dataclass(frozen=True)
class GatewayLogin:
    """The last login through the gateway with a key of a lease."""

    at: datetime
    address: str | None
    detail: str


def gateway() -> Gateway | None:
    """The configured gateway, once its host key exists; None when there is none."""
    host = settings.COPRSSH_GATEWAY_HOST
    if not host:
        return None
    try:
        line = settings.COPRSSH_GATEWAY_HOST_KEY or sshd.read_host_key(
            sshd.files_in(settings.COPRSSH_GATEWAY_DIR).host_key_pub
        )
    except sshd.GatewayError:  # a folder sshd could not use: there is no gateway to show
        return None
    if not line:
        return None  # `manage.py gateway` has not run yet: there is nothing to connect to
    endpoint = route.Endpoint(
        user=settings.COPRSSH_GATEWAY_USER, host=host, port=settings.COPRSSH_GATEWAY_PORT, host_key=line
    )
    return Gateway(
        host=host,
        port=endpoint.port,
        user=endpoint.user,
        host_key=" ".join(line.split()[:2]),
        host_key_fingerprint=host_key_fingerprint(line),
        proxy_jump=route.proxy_jump(endpoint),
    )


def host_key_fingerprint(line: str) -> str:
    """`SHA256:…` of a public host key line, or "" when it is none."""
    try:
        return parse_key_line(line).fingerprint
    except ValueError:
        return ""


def _has_public_ipv4(builder: Builder) -> bool:
    try:
        return builder.ipv4 is not None and ipaddress.ip_address(builder.ipv4).is_global
    except ValueError:
        return False


def login_route(*, lease: Lease, known_gateway: Gateway | None = None) -> LoginRoute | None:
    """How the owner of `lease` logs in to its builder; None while it has no address.

    Its builder's pool decides: directly, through the gateway, or both; with both, the gateway
    comes first for a builder without a public IPv4 address (only IPv6, or only a private one),
    which many users could not reach. `known_gateway` saves reading the gateway again in a loop.
    """
    builder = lease.builder
    if builder is None or not builder.host:
        return None
    target = route.Endpoint(
        user=builder.login_user, host=builder.host, port=builder.port, host_key=builder.host_key
    )
    direct = ssh.format_ssh_command(builder.login_user, builder.host, builder.port)
    wanted = builder.pool.ssh_route
    gw = (known_gateway or gateway()) if wanted != SshRoute.DIRECT else None
    known = [route.known_hosts_line(target)] if builder.host_key else []
    alias = f"coprssh-{lease.pk}"
    if gw is None:
        return LoginRoute(
            route="direct",
            ssh_command=direct,
            direct_command=direct,
            gateway_command=None,
            gateway=None,
            known_hosts=known,
            ssh_config=route.ssh_config(alias, target, None, GATEWAY_ALIAS),
        )
    jump = route.Endpoint(user=gw.user, host=gw.host, port=gw.port, host_key=gw.host_key)
    through = route.jump_command(jump, target)
    first = "direct" if wanted == SshRoute.BOTH and _has_public_ipv4(builder) else "gateway"
    return LoginRoute(
        route=first,
        ssh_command=direct if first == "direct" else through,
        direct_command=direct if wanted == SshRoute.BOTH else None,
        gateway_command=through,
        gateway=gw,
        known_hosts=[*known, route.known_hosts_line(jump)],
        ssh_config=route.ssh_config(alias, target, jump, GATEWAY_ALIAS),
    )


def last_gateway_logins(*, lease_ids: list[int]) -> dict[int, GatewayLogin]:
    """The last login through the gateway for each of these leases that had one, in two queries."""
    if not lease_ids:
        return {}
    logins = AuditEvent.objects.filter(action=AuditEvent.Action.GATEWAY_LOGIN, lease_id__in=lease_ids)
    latest = logins.values("lease_id").annotate(last=Max("id")).values_list("last", flat=True)
    found = {}
    for event in AuditEvent.objects.filter(pk__in=list(latest)):
        assert event.lease_id is not None
        found[event.lease_id] = GatewayLogin(
            at=event.created_at, address=event.remote_addr, detail=event.detail
        )
    return found
