"""`manage.py stop_builders`: what bin/run does after Ctrl-C, so that no sshd outlives the demo. Ref: #8"""

from __future__ import annotations

import io
import shutil
import signal
import subprocess

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from builders import services
from builders.models import AuditEvent, Builder, Lease, Pool
from builders.providers.base import generate_host_key
from builders.providers.local import LocalProvider
from builders.services import machines
from tests.builders.factories import make_builder, make_pool, make_ssh_lease
from tests.builders.fakes import FakeProvider
from tests.leaks import Accounts, builder_accounts, processes_of

pytestmark = pytest.mark.django_db


def _stop(*args: str) -> str:
    out = io.StringIO()
    call_command("stop_builders", *args, stdout=out)
    return out.getvalue()


@pytest.mark.slow
def test_stop_builders_leaves_no_sshd_of_the_local_pool_behind(queued, builders_root, user):
    pool = make_pool(
        name="local", warm_builders=2, max_builders=3, provider_settings={"root_dir": str(builders_root)}
    )
    ids = queued.call(services.ensure_capacity)
    queued.take()
    for builder_id in ids:
        assert queued.call(services.provision_builder, builder_id=builder_id).state == Builder.State.READY
    queued.take()
    leased = Builder.objects.get(pk=ids[0])
    Builder.objects.filter(pk=leased.pk).update(state=Builder.State.LEASED, sandbox="s-1")
    lease = make_ssh_lease(owner=user, builder=leased, ssh=False, sandbox="s-1")
    # A sandbox whose builder row is gone (the database was reset, say) still runs an sshd.
    stray = LocalProvider(builders_root).create(
        name="coprssh-stray",
        metadata={},
        host_key=generate_host_key(),
        admin_public_key=generate_host_key().public_line,
    )
    accounts = builder_accounts(builders_root)
    assert len(processes_of(builders_root, accounts=accounts)) >= 3

    out = _stop()

    assert processes_of(builders_root, accounts=accounts) == []
    assert builder_accounts(builders_root) == Accounts(frozenset(), frozenset())
    assert LocalProvider(builders_root).list_owned() == []
    lease.refresh_from_db()
    assert (lease.state, lease.end_reason) == (Lease.State.ENDED, Lease.EndReason.TERMINATED)
    assert set(Builder.objects.filter(pool=pool).values_list("state", flat=True)) == {
        Builder.State.TERMINATED
    }
    shutdown = AuditEvent.objects.filter(action=AuditEvent.Action.TERMINATED, source="shutdown")
    assert sorted(shutdown.values_list("builder_id", flat=True)) == sorted(ids)
    assert f"builder {leased.name}: lease {lease.pk} ended, machine deleted" in out
    assert f"{stray.name} deleted, no live builder claimed it" in out
    # Nothing alive is left in the pool, so the next start fills it with fresh builders.
    assert len(queued.call(services.ensure_capacity)) == 2


@pytest.fixture
def clouds(monkeypatch):
    """A fake provider per kind of pool, so that a local pool never lists the cloud's machines."""
    fakes = {Pool.Provider.LOCAL: FakeProvider(), Pool.Provider.OPENSTACK: FakeProvider()}
    monkeypatch.setattr(machines, "provider_for", lambda pool: fakes[pool.provider])
    return fakes


def _pools_with_a_builder_each(clouds):
    local = make_pool(name="local")
    cloud = make_pool(name="cloud", provider=Pool.Provider.OPENSTACK)
    made = {}
    for pool in (local, cloud):
        machine = clouds[pool.provider].add_machine(f"m-{pool.name}", {"coprssh-builder": "0"})
        made[pool.provider] = make_builder(pool, provider_id=machine.provider_id)
    return made


def test_stop_builders_leaves_openstack_builders_to_be_reattached(queued, clouds):
    made = _pools_with_a_builder_each(clouds)

    _stop()

    assert Builder.objects.get(pk=made[Pool.Provider.LOCAL].pk).state == Builder.State.TERMINATED
    assert clouds[Pool.Provider.LOCAL].machines == {}
    assert Builder.objects.get(pk=made[Pool.Provider.OPENSTACK].pk).state == Builder.State.READY
    assert clouds[Pool.Provider.OPENSTACK].calls == []


def test_stop_builders_all_deletes_the_cloud_machines_too(queued, clouds):
    made = _pools_with_a_builder_each(clouds)

    _stop("--all")

    assert {b.state for b in Builder.objects.filter(pk__in=[b.pk for b in made.values()])} == {
        Builder.State.TERMINATED
    }
    assert clouds[Pool.Provider.OPENSTACK].machines == {}


def test_stop_builders_skips_failed_builders_and_says_when_there_is_nothing(queued, clouds):
    make_builder(make_pool(name="local"), state=Builder.State.FAILED)

    assert _stop() == "no builders to stop\n"


def test_stop_builders_fails_when_a_machine_cannot_be_deleted(queued, clouds):
    builder = _pools_with_a_builder_each(clouds)[Pool.Provider.LOCAL]
    clouds[Pool.Provider.LOCAL].fail_next_deletes(2)  # the builder's delete, then the sweep's

    with pytest.raises(CommandError, match="could not be stopped"):
        _stop()

    # Still terminating: the next run of the command (or the tick) deletes it.
    assert Builder.objects.get(pk=builder.pk).state == Builder.State.TERMINATING


@pytest.mark.slow
def test_stop_builders_stops_builders_whose_sandbox_folder_was_deleted(builders_root):
    make_pool(name="local", warm_builders=0, provider_settings={"root_dir": str(builders_root)})
    provider = LocalProvider(builders_root)
    gone = provider.create(
        name="coprssh-gone",
        metadata={},
        host_key=generate_host_key(),
        admin_public_key=generate_host_key().public_line,
    )
    # What a build left running on it: detached from the sshd, named by its state dir.
    state_dir = provider.state_dir(gone)
    session = subprocess.Popen(["sleep", "300"], env={"COPRSSH_STATE_DIR": state_dir}, start_new_session=True)
    accounts = builder_accounts(builders_root)
    assert len(processes_of(builders_root, accounts=accounts)) >= 2
    # The data folder is deleted while the builder runs.
    shutil.rmtree(builders_root)

    try:
        out = _stop()

        assert session.wait(timeout=10) == -signal.SIGTERM
    finally:
        session.kill()  # whatever happened
        session.wait()
    assert processes_of(builders_root, accounts=accounts) == []
    assert builder_accounts(builders_root) == Accounts(frozenset(), frozenset())
    assert "pool local: coprssh-gone stopped, its sandbox folder was deleted" in out
    assert _stop() == "no builders to stop\n"
