"""The SSH gateway for real: its sshd, local builders listening on ::1 only, and the OpenSSH client on IPv4.

A key gets through the gateway to its own lease's builder only, and only while the lease lives; it
never gets a session on the gateway; each login lands in the audit log with the key's fingerprint.
"""

from __future__ import annotations

import os
import pwd
import subprocess
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from builders import selectors, services
from builders.admin_key import admin_key
from builders.gateway.route import Endpoint, known_hosts_line
from builders.models import AuditEvent, Lease, SshRoute
from builders.selectors import login_route
from builders.services.gateway import gateway_files, record_gateway_logins, write_gateway_keys
from tests.builders.gateway_fixtures import *  # noqa: F403 - the fixtures
from tests.builders.gateway_fixtures import new_key

pytestmark = [pytest.mark.slow, pytest.mark.django_db]

DENIED = "administratively prohibited"


@pytest.fixture
def keys(tmp_path):
    directory = tmp_path / "keys"
    return {name: new_key(directory, name) for name in ("alice", "bob", "carol")}


@pytest.fixture
def two_leases(gateway, route_pool, lend, user, other_user, keys):
    """Alice's and Bob's SSH builders in one gateway-only pool whose builders listen on ::1 only."""
    pool = route_pool(SshRoute.GATEWAY)
    return (
        lend(pool=pool, owner=user, keys=[keys["alice"]]),
        lend(pool=pool, owner=other_user, keys=[keys["bob"]]),
    )


def route_of(lease: Lease):
    found = login_route(lease=Lease.objects.select_related("builder__pool").get(pk=lease.pk))
    assert found is not None
    return found


def test_an_ipv4_client_reaches_an_ipv6_only_builder_through_the_gateway_only(
    two_leases, keys, ssh_client, settings
):
    alice, _bob = two_leases
    route = route_of(alice)
    builder = alice.builder
    assert builder.ipv4 is None
    assert builder.ipv6 == "::1"
    config = ssh_client.config(keys["alice"], route.known_hosts, route.ssh_config)

    direct = ssh_client.run(config, f"ssh -p {builder.port} {builder.login_user}@::1", "echo direct")
    through = ssh_client.run(config, route.ssh_command, "echo through the gateway; id -un")
    by_alias = ssh_client.run(config, ["ssh", f"coprssh-{alice.pk}"], "echo by alias")
    helped = ssh_client.run(config, route.ssh_command, '"$COPRSSH_STATE_DIR"/copr-builder help')

    assert direct.returncode == 255
    assert "Address family for hostname not supported" in direct.stderr
    assert route.route == "gateway"
    assert route.ssh_command == (
        f"ssh -J {settings.COPRSSH_GATEWAY_USER}@127.0.0.1:{settings.COPRSSH_GATEWAY_PORT}"
        f" -p {builder.port} {builder.login_user}@::1"
    )
    assert through.returncode == 0, through.stderr
    assert through.stdout.split() == ["through", "the", "gateway", builder.login_user]
    assert by_alias.returncode == 0, by_alias.stderr
    assert by_alias.stdout.strip() == "by alias"
    # copr-builder on the builder tells its user the same way in.
    assert f"Log in again, from your own machine\n  {route.ssh_command}\n" in helped.stdout
    assert f"ssh coprssh-{alice.pk}" in helped.stdout


def at_gateway(route) -> list[str]:
    """`ssh -p PORT USER@GATEWAY`: a connection to the gateway itself."""
    return ["ssh", "-p", str(route.gateway.port), f"{route.gateway.user}@{route.gateway.host}"]


def test_a_key_cannot_forward_to_another_leases_builder(two_leases, keys, ssh_client):
    alice, bob = two_leases
    alice_route, bob_route = route_of(alice), route_of(bob)
    # Alice trusts both builders' host keys: only the gateway's rules can stop her.
    config = ssh_client.config(keys["alice"], [*alice_route.known_hosts, *bob_route.known_hosts])

    own = ssh_client.run(config, alice_route.ssh_command, "true")
    other = ssh_client.run(config, bob_route.gateway_command, "true")
    # A raw forward to Bob's builder, or to anything else on the host (the gateway's own sshd).
    raw = ssh_client.run(config, [*at_gateway(alice_route), "-W", f"[::1]:{bob.builder.port}"])
    local = ssh_client.run(config, [*at_gateway(alice_route), "-W", f"127.0.0.1:{alice_route.gateway.port}"])

    assert own.returncode == 0, own.stderr
    assert other.returncode == 255
    assert DENIED in other.stderr
    assert raw.returncode == 255
    assert DENIED in raw.stderr
    assert local.returncode == 255
    assert DENIED in local.stderr
    log = gateway_files().log.read_text()
    assert f"to connect to host ::1 port {bob.builder.port}, but the request was denied" in log


def test_the_gateway_gives_no_session_and_no_other_forwarding(two_leases, keys, ssh_client):
    alice, _bob = two_leases
    route = route_of(alice)
    config = ssh_client.config(keys["alice"], route.known_hosts)
    gateway = at_gateway(route)

    command = ssh_client.run(config, gateway, "id")
    shell = ssh_client.run(config, [*gateway, "-tt"])
    remote = ssh_client.run(
        config, [*gateway, "-N", "-o", "ExitOnForwardFailure=yes", "-R", "0:127.0.0.1:22"]
    )
    sftp = subprocess.run(
        ["sftp", "-F", str(config), "-b", "-", "-P", str(route.gateway.port), gateway[-1]],
        input="ls /\n",
        capture_output=True,
        text=True,
        timeout=40,
    )

    for result in (command, shell, remote, sftp):
        assert result.returncode != 0, result
        assert "uid=" not in result.stdout
    assert "remote port forwarding failed" in remote.stderr
    assert "bin" not in sftp.stdout


def test_a_released_or_expired_lease_is_refused_at_once(two_leases, keys, ssh_client, queued):
    alice, bob = two_leases
    alice_route, bob_route = route_of(alice), route_of(bob)
    alice_config = ssh_client.config(keys["alice"], alice_route.known_hosts)
    bob_config = ssh_client.config(keys["bob"], bob_route.known_hosts)
    assert ssh_client.run(alice_config, alice_route.ssh_command, "true").returncode == 0

    queued.call(services.release_lease, lease_id=alice.pk, via=services.TASK)
    released = ssh_client.run(alice_config, alice_route.ssh_command, "true")

    Lease.objects.filter(pk=bob.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    queued.call(services.expire_leases)
    expired = ssh_client.run(bob_config, bob_route.ssh_command, "true")

    assert released.returncode == 255
    assert "Permission denied (publickey)" in released.stderr
    assert expired.returncode == 255
    assert "Permission denied (publickey)" in expired.stderr
    assert gateway_files().authorized_keys.read_text() == ""


def test_the_key_expires_on_the_gateways_own_clock(gateway, route_pool, lend, user, keys, ssh_client):
    lease = lend(pool=route_pool(SshRoute.GATEWAY), owner=user, keys=[keys["alice"]])
    route = route_of(lease)
    config = ssh_client.config(keys["alice"], route.known_hosts)
    # Written while the lease still lives, as the last write before its expiry would be.
    Lease.objects.filter(pk=lease.pk).update(expires_at=timezone.now() + timedelta(seconds=2))
    assert write_gateway_keys() == 1
    time.sleep(3)

    late = ssh_client.run(config, route.ssh_command, "true")

    assert late.returncode == 255
    assert "Permission denied (publickey)" in late.stderr
    # Its line is still there: sshd refused it by its expiry-time, before any tick.
    assert keys["alice"].public.data in gateway_files().authorized_keys.read_text()


def test_a_pool_reached_directly_lets_no_key_through_the_gateway(
    gateway, route_pool, lend, user, keys, ssh_client
):
    lease = lend(pool=route_pool(SshRoute.DIRECT, ipv6=False), owner=user, keys=[keys["carol"]])
    route = route_of(lease)
    gw = selectors.gateway()
    assert gw is not None
    gw_line = known_hosts_line(Endpoint(user=gw.user, host=gw.host, port=gw.port, host_key=gw.host_key))
    config = ssh_client.config(keys["carol"], [*route.known_hosts, gw_line])
    builder = lease.builder

    direct = ssh_client.run(config, route.ssh_command, "echo direct")
    through = ssh_client.run(
        config,
        ["ssh", "-J", gw.proxy_jump, "-p", str(builder.port), f"{builder.login_user}@{builder.host}"],
        "true",
    )

    assert (route.route, route.gateway, route.gateway_command) == ("direct", None, None)
    assert direct.stdout.strip() == "direct", direct.stderr
    assert through.returncode == 255
    assert "Permission denied (publickey)" in through.stderr
    assert gateway_files().authorized_keys.read_text() == ""


def test_each_gateway_login_is_audited_with_its_key_and_address(two_leases, keys, ssh_client):
    alice, bob = two_leases
    route = route_of(alice)
    config = ssh_client.config(keys["alice"], route.known_hosts)
    assert ssh_client.run(config, route.ssh_command, "true").returncode == 0
    assert ssh_client.run(config, route.ssh_command, "true").returncode == 0

    recorded = record_gateway_logins()
    again = record_gateway_logins()

    events = list(AuditEvent.objects.filter(action=AuditEvent.Action.GATEWAY_LOGIN).order_by("id"))
    assert recorded == 2
    assert again == 0
    assert [event.lease_id for event in events] == [alice.pk, alice.pk]
    for event in events:
        assert event.source == "gateway"
        assert event.remote_addr == "127.0.0.1"
        assert keys["alice"].fingerprint in event.detail  # what ssh-keygen -lf says of the key
        assert event.builder_id == alice.builder_id
        assert timezone.now() - timedelta(minutes=1) < event.created_at <= timezone.now()
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.GATEWAY_LOGIN, lease=bob).exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="the gateway has an account of its own only when run as root")
def test_the_gateway_account_has_no_shell_and_reads_nothing_of_the_service(gateway, settings):
    account = pwd.getpwnam(settings.COPRSSH_GATEWAY_USER)
    files = gateway_files()
    secrets = [
        files.authorized_keys,
        files.host_key,
        files.log,
        files.config,
        settings.COPRSSH_ADMIN_KEY_FILE,
    ]
    admin_key()  # the service's own key exists

    reads = [
        subprocess.run(
            [
                "setpriv",
                f"--reuid={account.pw_uid}",
                f"--regid={account.pw_gid}",
                "--clear-groups",
                "cat",
                str(path),
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        for path in secrets
    ]

    assert account.pw_shell.endswith("/nologin")
    assert account.pw_dir == "/nonexistent"
    for path, read in zip(secrets, reads, strict=True):
        assert read.returncode != 0, path
        assert "Permission denied" in read.stderr
