"""Deploying SSH access to a real local builder, and the warning before expiry."""

from __future__ import annotations

import os
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from builders import services
from builders.models import AuditEvent, Builder, Lease
from builders.services.machines import machine_of, provider_for
from keys.parser import parse_keys
from tests.builders.factories import make_pool

pytestmark = [pytest.mark.slow, pytest.mark.django_db]

INFO = services.LeaseInfo(
    project="alice/hello", build_id=1, chroot="x", workdir="/srv/w", rerun="true", results="/srv/w/results"
)


@pytest.fixture
def pool(request, db, builders_root):
    """A local pool; parametrized indirectly, its `isolate` setting."""
    options = {"root_dir": str(builders_root)}
    isolate = getattr(request, "param", None)
    if isolate is not None:
        if isolate and os.geteuid() != 0:
            pytest.skip("local builders are isolated only when the service runs as root")
        options["isolate"] = isolate
    return make_pool(name="local", warm_builders=1, max_builders=2, provider_settings=options)


@pytest.fixture
def active_ssh_lease(queued, pool, user) -> Lease:
    [builder_id] = queued.call(services.ensure_capacity)
    builder = queued.call(services.provision_builder, builder_id=builder_id)
    assert builder.state == Builder.State.READY, builder.last_error
    queued.take()
    lease = queued.call(services.request_lease, owner=user, arch="x86_64", ssh=True, purpose="build #1 x")
    queued.call(services.assign_waiting_leases)
    return services.start_lease(lease_id=lease.pk)


@pytest.fixture
def user_key(tmp_path):
    path = tmp_path / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", 'evil" command=x', "-f", str(path)], check=True
    )
    return path


def test_deploy_writes_only_service_built_lines_and_the_key_logs_in(active_ssh_lease, user_key, tmp_path):
    keys = parse_keys(user_key.with_suffix(".pub").read_text()).keys
    access = services.deploy_ssh_access(
        lease_id=active_ssh_lease.pk,
        keys=keys,
        info=INFO,
        via=services.TASK,
    )
    builder = Builder.objects.get(pk=active_ssh_lease.builder_id)
    machine = machine_of(builder)
    provider = provider_for(builder.pool)
    lines = open(provider.authorized_keys_path(machine)).read().splitlines()
    assert len(lines) == 2  # the service's key, then the user's
    assert lines[1].startswith('no-agent-forwarding,expiry-time="')
    assert lines[1].endswith(f"{keys[0].key_type} {keys[0].data} lease-{active_ssh_lease.pk}")
    assert "evil" not in "\n".join(lines)
    assert access.key_fingerprints == [keys[0].fingerprint]
    assert access.ssh_command == f"ssh -p {builder.port} {builder.login_user}@127.0.0.1"
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{builder.port} {builder.host_key}\n")
    result = subprocess.run(
        ["ssh", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", f"UserKnownHostsFile={known}",
         "-o", "StrictHostKeyChecking=yes", "-i", str(user_key), "-p", str(builder.port), f"{builder.login_user}@127.0.0.1",
         "test -x \"$COPRSSH_STATE_DIR/copr-builder\" && stat -c %a \"$COPRSSH_STATE_DIR/lease.json\""],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "600"
    assert AuditEvent.objects.filter(action=AuditEvent.Action.KEYS_DEPLOYED, lease=active_ssh_lease).exists()


def _on_the_host(path: str) -> tuple[int, int, int] | None:
    """What identifies a host file's version (inode, size, change time), or None if it is absent."""
    try:
        found = os.stat(path)
    except FileNotFoundError:
        return None
    return found.st_ino, found.st_size, found.st_ctime_ns


def _ssh(builder: Builder, key: Path, known: Path, command: str) -> subprocess.CompletedProcess[str]:
    known.write_text(f"[127.0.0.1]:{builder.port} {builder.host_key}\n")
    return subprocess.run(
        ["ssh", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", f"UserKnownHostsFile={known}",
         "-o", "StrictHostKeyChecking=yes", "-i", str(key), "-p", str(builder.port),
         f"{builder.login_user}@127.0.0.1", command],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip


@pytest.mark.parametrize("pool", [True, False], ids=["isolated", "not-isolated"], indirect=True)
def test_deploy_on_a_local_builder_keeps_copr_builder_and_the_motd_in_its_state_dir(
    active_ssh_lease, user_key, tmp_path
):
    # The host is the service's: nothing of a builder goes to /usr/local/bin or /etc (as root and
    # not isolated, the builder's sessions are root on the host and could write there).
    host_files = ["/usr/local/bin/copr-builder", "/etc/motd"]
    before = [_on_the_host(path) for path in host_files]
    keys = parse_keys(user_key.with_suffix(".pub").read_text()).keys

    try:
        access = services.deploy_ssh_access(
            lease_id=active_ssh_lease.pk, keys=keys, info=INFO, via=services.TASK
        )
        assert [_on_the_host(path) for path in host_files] == before
    finally:
        if before[0] is None:  # a failed run leaves no copr-builder on the host either
            Path(host_files[0]).unlink(missing_ok=True)
    builder = Builder.objects.get(pk=active_ssh_lease.builder_id)
    state_dir = provider_for(builder.pool).state_dir(machine_of(builder))
    assert access.tool == f"{state_dir}/copr-builder"
    # A command finds it on PATH; so does a login shell, after /etc/profile set PATH again, and an
    # interactive one starts with the message of the day.
    command = _ssh(builder, user_key, tmp_path / "known_hosts", "command -v copr-builder")
    assert (command.returncode, command.stdout) == (0, f"{state_dir}/copr-builder\n"), command.stderr
    login = _ssh(builder, user_key, tmp_path / "known_hosts", "bash -l -i -c 'command -v copr-builder'")
    assert login.returncode == 0, login.stderr
    assert login.stdout.splitlines()[-1] == f"{state_dir}/copr-builder"
    assert "coprssh builder for alice/hello build #1 (x)" in login.stdout
    assert f"Run `{state_dir}/copr-builder help`" in login.stdout


def test_deploy_refuses_a_lease_that_is_not_active(user, user_key):
    keys = parse_keys(user_key.with_suffix(".pub").read_text()).keys
    lease = Lease.objects.create(
        owner=user, sandbox="ssh-q", ssh=True, arch="x86_64", state=Lease.State.QUEUED
    )
    with pytest.raises(services.LeaseNotActive):
        services.deploy_ssh_access(lease_id=lease.pk, keys=keys, info=INFO, via=services.TASK)


def test_expiring_lease_is_warned_once(active_ssh_lease):
    Lease.objects.filter(pk=active_ssh_lease.pk).update(expires_at=timezone.now() + timedelta(minutes=5))
    assert services.warn_expiring() == [active_ssh_lease.pk]
    assert services.warn_expiring() == []
    event = AuditEvent.objects.get(action=AuditEvent.Action.WARNED)
    assert "deleted in 4 min" in event.detail or "deleted in 5 min" in event.detail


def test_a_lease_far_from_expiry_is_not_warned(active_ssh_lease):
    assert services.warn_expiring() == []
    assert Lease.objects.get(pk=active_ssh_lease.pk).warned_at is None
