"""A builder's life on the real local provider: warm pool, ready, leased with SSH, terminated.

Each builder here is a real sshd on loopback; `builders_root` (tests/builders/conftest.py) deletes
every sandbox under the root with the LocalProvider after each test and kills whatever survives.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
from pathlib import Path

import pytest

from builders import services
from builders.models import AuditEvent, Builder, Lease
from builders.providers.base import ProviderError, generate_host_key
from builders.services import Via
from builders.services.machines import check_ssh, machine_of
from tests.builders.factories import make_pool

pytestmark = [pytest.mark.slow, pytest.mark.django_db]


@pytest.fixture
def pool(db, builders_root):
    return make_pool(
        name="local", warm_builders=1, max_builders=2, provider_settings={"root_dir": str(builders_root)}
    )


@pytest.fixture
def ready_builder(queued, pool) -> Builder:
    """The pool's warm builder, provisioned for real."""
    [builder_id] = queued.call(services.ensure_capacity)
    assert queued.take() == [("builders.tasks.provision_builder", (builder_id,))]
    builder = queued.call(services.provision_builder, builder_id=builder_id)
    assert builder.state == Builder.State.READY, builder.last_error
    queued.take()
    return builder


def _sandbox(root: Path, builder: Builder) -> Path:
    return root / builder.provider_id


def _processes_mentioning(path: Path) -> list[int]:
    needle = str(path) + "/"
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().decode("utf-8", "replace")
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if needle in cmdline.replace("\0", " ") and state not in ("Z", "X"):
            found.append(int(entry))
    return found


def _port_open(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError:
        return False
    return True


def _assert_gone(root: Path, builder: Builder) -> None:
    """The machine is gone for good: no sshd, no port, no sandbox."""
    box = _sandbox(root, builder)
    assert _processes_mentioning(box) == []
    assert not _port_open(builder.ipv4, builder.port)
    assert not box.exists()


def test_warm_pool_starts_a_builder_that_the_service_can_log_in_to(queued, pool, builders_root):
    created = queued.call(services.ensure_capacity)
    assert len(created) == 1
    builder = Builder.objects.get(pk=created[0])
    assert builder.state == Builder.State.PROVISIONING
    assert queued.take() == [("builders.tasks.provision_builder", (builder.pk,))]
    assert queued.call(services.ensure_capacity) == []  # one provisioning builder keeps it warm

    builder = queued.call(services.provision_builder, builder_id=builder.pk)

    assert builder.state == Builder.State.READY, builder.last_error
    assert builder.ipv4 == "127.0.0.1"
    # Its users log in as the builder's own account (isolated when the service runs as root).
    assert builder.login_user.startswith("csb-") if os.geteuid() == 0 else builder.login_user
    assert builder.login_user != "root"
    assert builder.port not in (0, 22)
    assert builder.host_key.startswith("ssh-ed25519 ")
    assert builder.provider_id == f"coprssh-local-{builder.pk}"
    assert builder.ready_at is not None
    box = _sandbox(builders_root, builder)
    assert (box / "ssh_host_ed25519_key").exists()
    assert _processes_mentioning(box)
    check_ssh(machine_of(builder))  # the admin key logs in, and the pinned host key matches
    assert AuditEvent.objects.filter(action=AuditEvent.Action.BUILDER_READY, builder=builder).exists()
    assert queued.names() == ["builders.tasks.assign_leases"]


def test_service_refuses_the_builder_if_its_host_key_is_not_the_pinned_one(ready_builder):
    impostor = dataclasses.replace(machine_of(ready_builder), host_key=generate_host_key().public_line)
    with pytest.raises(ProviderError, match="BadHostKeyException"):
        check_ssh(impostor, timeout=5)


def test_ssh_lease_release_terminates_and_deletes_the_machine(queued, ready_builder, builders_root, user):
    lease = queued.call(services.request_lease, owner=user, arch="x86_64", ssh=True, purpose="build 3")
    assert queued.call(services.assign_waiting_leases) == [lease.pk]
    lease = services.start_lease(lease_id=lease.pk)
    assert lease.state == Lease.State.ACTIVE
    assert lease.builder_id == ready_builder.pk
    queued.take()

    queued.call(services.release_lease, lease_id=lease.pk, via=Via(user=user, source="web"))
    builder = Builder.objects.get(pk=ready_builder.pk)
    assert builder.state == Builder.State.TERMINATING
    assert ("builders.tasks.delete_builder", (builder.pk,)) in queued.take()
    check_ssh(machine_of(builder))  # still up until the delete task runs

    builder = queued.call(services.delete_builder, builder_id=builder.pk)
    assert builder.state == Builder.State.TERMINATED
    assert builder.terminated_at is not None
    _assert_gone(builders_root, builder)


def test_terminate_builder_deletes_a_ready_builder(queued, ready_builder, builders_root, django_user_model):
    operator = django_user_model.objects.create_superuser("ops", "ops@example.org", "x")
    builder = queued.call(
        services.terminate_builder, builder_id=ready_builder.pk, via=Via(user=operator, source="admin")
    )
    assert builder.state == Builder.State.TERMINATING
    assert queued.take() == [("builders.tasks.delete_builder", (builder.pk,))]
    builder = queued.call(services.delete_builder, builder_id=builder.pk)
    assert builder.state == Builder.State.TERMINATED
    _assert_gone(builders_root, builder)
    event = AuditEvent.objects.get(action=AuditEvent.Action.TERMINATED)
    assert (event.actor, event.source) == (operator, "admin")


def test_health_check_terminates_a_builder_whose_sshd_died(queued, ready_builder, builders_root):
    builder = ready_builder
    assert queued.call(services.health_check, builder_id=builder.pk) is True
    box = _sandbox(builders_root, builder)
    os.kill(int((box / "sshd.pid").read_text()), signal.SIGKILL)

    assert queued.call(services.health_check, builder_id=builder.pk) is False

    builder.refresh_from_db()
    assert builder.state == Builder.State.TERMINATING
    assert builder.last_error.startswith("health check:")
    assert queued.take() == [("builders.tasks.delete_builder", (builder.pk,))]
    builder = queued.call(services.delete_builder, builder_id=builder.pk)
    assert builder.state == Builder.State.TERMINATED
    _assert_gone(builders_root, builder)
