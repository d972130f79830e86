"""How a user reaches a builder through the gateway: the `ssh -J` command, known_hosts lines, ~/.ssh/config.

OpenSSH's spelling rules, in one place: an IPv6 address stays bare after `user@` (ssh takes what
follows the last '@' as the host, and "[::1]" would be looked up as a name), is bracketed in
`-J user@[addr]:port`, `permitopen` and known_hosts (`[addr]:port`), and a port of 22 is left out.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from builders.keylines import canonical_address


@dataclass(frozen=True)
class Endpoint:
    """An SSH server a user logs in to: the gateway, or a builder."""

    user: str
    host: str  # an IP address or a host name
    port: int
    host_key: str  # "ssh-ed25519 AAAA…"


def _host(host: str) -> str:
    try:
        return canonical_address(host)
    except ValueError:
        return host  # a host name


def _bracketed(host: str) -> str:
    host = _host(host)
    return f"[{host}]" if ":" in host else host


def proxy_jump(gateway: Endpoint) -> str:
    """The argument of `ssh -J` (and ProxyJump): `user@host`, `user@host:port`, `user@[v6]:port`."""
    target = f"{gateway.user}@{_bracketed(gateway.host)}"
    return target if gateway.port == 22 else f"{target}:{int(gateway.port)}"


def jump_command(gateway: Endpoint, builder: Endpoint) -> str:
    """`ssh -J GW -p PORT USER@BUILDER`: the builder reached through the gateway."""
    words = ["ssh", "-J", proxy_jump(gateway)]
    if builder.port != 22:
        words += ["-p", str(int(builder.port))]
    words.append(f"{builder.user}@{_host(builder.host)}")
    return shlex.join(words)


def known_hosts_line(endpoint: Endpoint) -> str:
    """The known_hosts line that pins `endpoint`'s host key (`[host]:port` unless the port is 22)."""
    key_type, blob = endpoint.host_key.split()[:2]
    host = _host(endpoint.host)
    name = host if endpoint.port == 22 else f"[{host}]:{int(endpoint.port)}"
    return f"{name} {key_type} {blob}"


def ssh_config(alias: str, builder: Endpoint, gateway: Endpoint | None, gateway_alias: str) -> str:
    """A ~/.ssh/config snippet: `ssh ALIAS` then reaches the builder (through the gateway when given)."""
    lines = []
    if gateway is not None:
        lines += [
            f"Host {gateway_alias}",
            f"    HostName {_host(gateway.host)}",
            f"    Port {int(gateway.port)}",
            f"    User {gateway.user}",
        ]
    lines += [
        f"Host {alias}",
        f"    HostName {_host(builder.host)}",
        f"    Port {int(builder.port)}",
        f"    User {builder.user}",
    ]
    if gateway is not None:
        lines.append(f"    ProxyJump {gateway_alias}")
    return "\n".join(lines) + "\n"
