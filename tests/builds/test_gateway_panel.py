"""The gateway route as users get it: the API (with a real gateway, a builder on ::1 only and an IPv4-only
OpenSSH client), the SSH panel and state.json, and the last login through the gateway; all for the
owner (and staff) only.
"""

# The page fixtures of tests/builds/test_pages_ssh.py are imported by name; tests take them as arguments.
# ruff: noqa: F811

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from builders.gateway import sshd
from builders.models import AuditEvent, Builder, Lease, SshRoute
from builders.providers import generate_host_key
from builders.selectors import host_key_fingerprint
from builders.services import record_gateway_logins
from tests.builders.conftest import builder_settings, builders_root  # noqa: F401 - fixtures
from tests.builders.factories import make_builder, make_lease, make_pool
from tests.builders.gateway_fixtures import *  # noqa: F403 - the fixtures
from tests.builders.gateway_fixtures import new_key
from tests.builds.test_pages_ssh import (  # noqa: F401 - fixtures
    build_url,
    failed_build,
    key,
    keys_dir,
    logged_in_client,
    other_client,
    project,
    ssh_build,
    storage_dir,
    submit,
)

pytestmark = pytest.mark.django_db


def api_as(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


# --- the API, for real -------------------------------------------------------------------------


@pytest.mark.slow
def test_the_api_gives_a_working_gateway_route_to_an_ipv6_only_builder(
    gateway, route_pool, lend, user, other_user, ssh_client, tmp_path, settings
):
    alice_key = new_key(tmp_path / "keys", "alice")
    lease = lend(pool=route_pool(SshRoute.GATEWAY), owner=user, keys=[alice_key])
    builder = lease.builder
    gw_host_key = sshd.files_in(settings.COPRSSH_GATEWAY_DIR).host_key_pub.read_text().strip()

    answer = api_as(user).get(f"/api/v1/ssh-builders/{lease.pk}/")

    assert answer.status_code == 200
    data = answer.json()
    proxy_jump = f"{settings.COPRSSH_GATEWAY_USER}@127.0.0.1:{settings.COPRSSH_GATEWAY_PORT}"
    assert data["route"] == "gateway"
    assert data["ssh_command"] == f"ssh -J {proxy_jump} -p {builder.port} {builder.login_user}@::1"
    assert data["direct_ssh_command"] is None  # the pool is reached through the gateway only
    assert data["gateway"] == {
        "host": "127.0.0.1",
        "port": settings.COPRSSH_GATEWAY_PORT,
        "user": settings.COPRSSH_GATEWAY_USER,
        "host_key_fingerprint": host_key_fingerprint(gw_host_key),
        "proxy_jump": proxy_jump,
        "ssh_command": data["ssh_command"],
    }
    assert data["known_hosts"] == [
        f"[::1]:{builder.port} {' '.join(builder.host_key.split()[:2])}",
        f"[127.0.0.1]:{settings.COPRSSH_GATEWAY_PORT} {' '.join(gw_host_key.split()[:2])}",
    ]
    assert f"Host coprssh-{lease.pk}\n    HostName ::1\n" in data["ssh_config"]
    assert "    ProxyJump coprssh-gateway\n" in data["ssh_config"]
    assert data["last_gateway_login"] is None

    # The OpenSSH client on IPv4, trusting only the host keys the API gave.
    config = ssh_client.config(alice_key, data["known_hosts"], data["ssh_config"])
    direct = ssh_client.run(config, f"ssh -p {builder.port} {builder.login_user}@::1", "true")
    through = ssh_client.run(config, data["ssh_command"], "echo in")
    assert direct.returncode == 255
    assert through.returncode == 0, through.stderr
    assert through.stdout.strip() == "in"

    assert record_gateway_logins() == 1
    login = api_as(user).get(f"/api/v1/ssh-builders/{lease.pk}/").json()["last_gateway_login"]
    assert login["address"] == "127.0.0.1"
    assert timezone.now() - timedelta(minutes=1) < datetime.fromisoformat(login["at"]) <= timezone.now()
    event = AuditEvent.objects.get(action=AuditEvent.Action.GATEWAY_LOGIN)
    assert alice_key.fingerprint in event.detail

    # Someone else's SSH builder does not exist for them.
    assert api_as(other_user).get(f"/api/v1/ssh-builders/{lease.pk}/").status_code == 404


# --- the panel ---------------------------------------------------------------------------------


@pytest.fixture
def gateway_key(settings, tmp_path) -> str:
    """A configured gateway whose host key exists (as `manage.py gateway` leaves it); no sshd runs."""
    settings.COPRSSH_GATEWAY_HOST = "gw.example.org"
    settings.COPRSSH_GATEWAY_PORT = 2022
    settings.COPRSSH_GATEWAY_USER = "coprssh-gw"
    settings.COPRSSH_GATEWAY_DIR = tmp_path / "gateway"
    files = sshd.files_in(settings.COPRSSH_GATEWAY_DIR)
    sshd.make_dir(files)
    return sshd.host_key(files)


def ready_behind_gateway(build, owner, route: str = SshRoute.BOTH) -> Lease:
    """The SSH build's chroot phase on an active lease of an IPv6-only builder of a `route` pool."""
    builder = make_builder(
        make_pool(ssh_route=route),
        state=Builder.State.LEASED,
        ipv4=None,
        ipv6="2001:db8::10",
        port=2200,
        host_key=generate_host_key().public_line,
        single_use=True,
    )
    lease = make_lease(owner=owner, ssh=True, state=Lease.State.ACTIVE, builder=builder)
    phase = build.build_chroots.get()
    Lease.objects.filter(pk=phase.lease_id).update(state=Lease.State.ENDED, ended_at=timezone.now())
    phase.__class__.objects.filter(pk=phase.pk).update(lease=lease)
    return lease


GATEWAY_COMMAND = "ssh -J coprssh-gw@gw.example.org:2022 -p 2200 root@2001:db8::10"
DIRECT_COMMAND = "ssh -p 2200 root@2001:db8::10"


def test_the_panel_shows_the_gateway_route_first_for_an_ipv6_only_builder(
    logged_in_client, ssh_build, user, gateway_key
):
    lease = ready_behind_gateway(ssh_build, user)

    content = logged_in_client.get(build_url(ssh_build.pk)).content.decode()

    assert f'<code data-ssh-field="ssh_command">{GATEWAY_COMMAND}</code>' in content
    assert "Through the coprssh SSH gateway" in content
    assert (
        f'Or directly, if you can reach its address: <code data-ssh-field="other_command">{DIRECT_COMMAND}</code>'
        in content
    )
    assert host_key_fingerprint(gateway_key) in content
    assert f"Host coprssh-{lease.pk}" in content
    assert f"[gw.example.org]:2022 {' '.join(gateway_key.split()[:2])}" in content
    assert "Last login through the gateway" in content  # the line is there, hidden until a login
    assert re.search(r'data-ssh-field="last_gateway_login_line" hidden', content)


def test_the_panel_says_the_last_login_through_the_gateway(logged_in_client, ssh_build, user, gateway_key):
    lease = ready_behind_gateway(ssh_build, user)
    at = timezone.now().replace(microsecond=0) - timedelta(minutes=3)
    for moment, address in ((at - timedelta(minutes=5), "198.51.100.1"), (at, "203.0.113.9")):
        AuditEvent.objects.create(
            action=AuditEvent.Action.GATEWAY_LOGIN,
            created_at=moment,
            source="gateway",
            remote_addr=address,
            lease=lease,
            builder=lease.builder,
            detail="key ED25519 SHA256:x",
        )

    content = logged_in_client.get(build_url(ssh_build.pk)).content.decode()
    data = logged_in_client.get(build_url(ssh_build.pk, "state.json")).json()["phases"][1]["ssh"]

    shown = f"{at.astimezone(UTC):%H:%M} UTC from 203.0.113.9"
    assert (
        f'Last login through the gateway: <span data-ssh-field="last_gateway_login">{shown}</span>' in content
    )
    assert data["last_gateway_login"] == shown
    assert data["route"] == "gateway"
    assert data["ssh_command"] == GATEWAY_COMMAND
    assert data["other_command"] == DIRECT_COMMAND


def test_others_see_neither_the_route_nor_the_logins(other_client, ssh_build, user, gateway_key):
    lease = ready_behind_gateway(ssh_build, user)
    AuditEvent.objects.create(
        action=AuditEvent.Action.GATEWAY_LOGIN, source="gateway", remote_addr="203.0.113.9", lease=lease
    )

    for someone in (other_client, Client()):
        content = someone.get(build_url(ssh_build.pk)).content.decode()
        data = someone.get(build_url(ssh_build.pk, "state.json")).json()["phases"][1]["ssh"]
        for secret in ("gw.example.org", "203.0.113.9", "2001:db8::10", host_key_fingerprint(gateway_key)):
            assert secret not in content
            assert secret not in str(data)
        assert (data["route"], data["last_gateway_login"], data["ssh_config"]) == (None, "", None)


def test_a_pool_reached_directly_shows_no_gateway(logged_in_client, ssh_build, user, gateway_key):
    ready_behind_gateway(ssh_build, user, route=SshRoute.DIRECT)

    content = logged_in_client.get(build_url(ssh_build.pk)).content.decode()

    assert f'<code data-ssh-field="ssh_command">{DIRECT_COMMAND}</code>' in content
    assert "gw.example.org" not in content


def test_without_a_gateway_a_gateway_pool_falls_back_to_the_direct_command(
    logged_in_client, ssh_build, user, settings
):
    settings.COPRSSH_GATEWAY_HOST = ""
    ready_behind_gateway(ssh_build, user, route=SshRoute.GATEWAY)

    content = logged_in_client.get(build_url(ssh_build.pk)).content.decode()

    assert f'<code data-ssh-field="ssh_command">{DIRECT_COMMAND}</code>' in content
    assert "ssh -J" not in content


def test_a_public_ipv4_builder_of_a_both_pool_shows_the_direct_route_first(
    logged_in_client, ssh_build, user, gateway_key
):
    lease = ready_behind_gateway(ssh_build, user)
    Builder.objects.filter(pk=lease.builder_id).update(ipv4="8.8.4.4")

    data = logged_in_client.get(build_url(ssh_build.pk, "state.json")).json()["phases"][1]["ssh"]

    assert data["route"] == "direct"
    assert data["ssh_command"] == "ssh -p 2200 root@8.8.4.4"
    assert data["other_command"] == "ssh -J coprssh-gw@gw.example.org:2022 -p 2200 root@8.8.4.4"
