"""Builder selection: a builder keeps the sandbox of its first lease, reuse wins, SSH builders die young.

Pure database: builders are rows made ready by hand, so no provider is involved.
"""

from __future__ import annotations

import pytest

from builders import services
from builders.models import Builder, Lease
from builders.services import Via
from tests.builders.factories import make_builder, make_pool, make_ssh_lease

SANDBOX = "alice/proj--alice"
OTHER = "bob/proj--bob"

pytestmark = pytest.mark.django_db


@pytest.fixture
def pool(db):
    return make_pool()


def _lease(owner, *, sandbox=SANDBOX, ssh=False):
    return services.request_lease(owner=owner, arch="x86_64", sandbox=sandbox, ssh=ssh, purpose="test")


def _assign(queued, lease):
    """Run the assignment pass; return the lease and its builder as they are afterwards."""
    queued.call(services.assign_waiting_leases)
    lease.refresh_from_db()
    builder = Builder.objects.get(pk=lease.builder_id) if lease.builder_id else None
    return lease, builder


def _release(queued, lease, user):
    return queued.call(services.release_lease, lease_id=lease.pk, via=Via(user=user, source="web"))


def test_first_lease_takes_a_fresh_builder_and_gives_it_its_sandbox(queued, pool, user):
    fresh = make_builder(pool)
    lease, builder = _assign(queued, _lease(user))
    assert lease.state == Lease.State.ASSIGNED
    assert builder == fresh
    assert builder.state == Builder.State.LEASED
    assert builder.sandbox == SANDBOX
    assert builder.single_use is False
    assert ("builders.tasks.start_lease", (lease.pk,)) in queued.take()


def test_released_builder_is_ready_again_for_its_sandbox(queued, pool, user):
    make_builder(pool)
    lease, builder = _assign(queued, _lease(user))
    services.start_lease(lease_id=lease.pk)
    _release(queued, lease, user)
    builder.refresh_from_db()
    lease.refresh_from_db()
    assert lease.state == Lease.State.ENDED
    assert lease.end_reason == Lease.EndReason.RELEASED
    assert builder.state == Builder.State.READY
    assert builder.sandbox == SANDBOX
    assert builder.reuse_count == 1
    assert "builders.tasks.delete_builder" not in queued.names()


def test_next_lease_of_the_same_sandbox_prefers_the_reused_builder_over_a_fresh_one(queued, pool, user):
    used = make_builder(pool)
    first, _ = _assign(queued, _lease(user))
    _release(queued, first, user)
    fresh = make_builder(pool)  # newer, and first in line among fresh builders
    second, builder = _assign(queued, _lease(user))
    assert builder == used
    assert builder.reuse_count == 1
    fresh.refresh_from_db()
    assert fresh.state == Builder.State.READY
    assert fresh.sandbox is None


def test_lease_of_another_sandbox_gets_a_fresh_builder_not_the_used_one(queued, pool, user, other_user):
    used = make_builder(pool)
    first, _ = _assign(queued, _lease(user))
    _release(queued, first, user)
    fresh = make_builder(pool)
    lease, builder = _assign(queued, _lease(other_user, sandbox=OTHER))
    assert builder == fresh
    assert builder.sandbox == OTHER
    used.refresh_from_db()
    assert (used.state, used.sandbox, used.reuse_count) == (Builder.State.READY, SANDBOX, 1)


def test_lease_of_another_sandbox_waits_rather_than_take_the_used_builder(queued, pool, user, other_user):
    used = make_builder(pool)
    first, _ = _assign(queued, _lease(user))
    _release(queued, first, user)
    lease, builder = _assign(queued, _lease(other_user, sandbox=OTHER))
    assert lease.state == Lease.State.WAITING
    assert builder is None
    used.refresh_from_db()
    assert (used.state, used.sandbox) == (Builder.State.READY, SANDBOX)
    # What it waits for: a new builder, started for it.
    created = queued.call(services.ensure_capacity)
    assert len(created) == 1
    assert Builder.objects.get(pk=created[0]).state == Builder.State.PROVISIONING


def test_ssh_lease_gets_a_unique_sandbox(pool, user):
    first = _lease(user, ssh=True, sandbox="")
    second = _lease(user, ssh=True, sandbox=SANDBOX)  # a sandbox asked for is ignored
    assert first.sandbox.startswith("ssh-")
    assert second.sandbox.startswith("ssh-")
    assert first.sandbox != second.sandbox
    assert SANDBOX not in second.sandbox


def test_ssh_lease_takes_only_a_fresh_builder(queued, pool, user):
    reused = make_builder(pool, sandbox=SANDBOX, reuse_count=1)
    reused_no_sandbox = make_builder(pool, reuse_count=2)
    fresh = make_builder(pool)
    lease, builder = _assign(queued, _lease(user, ssh=True))
    assert builder == fresh
    assert builder.sandbox == lease.sandbox
    assert builder.single_use is True
    for other in (reused, reused_no_sandbox):
        other.refresh_from_db()
        assert other.state == Builder.State.READY


def test_ssh_lease_waits_when_only_used_builders_are_ready(queued, pool, user):
    make_builder(pool, sandbox=SANDBOX, reuse_count=1)
    make_builder(pool, reuse_count=1)
    lease, builder = _assign(queued, _lease(user, ssh=True))
    assert lease.state == Lease.State.WAITING
    assert builder is None


def test_ssh_builder_is_terminated_after_its_lease_and_never_ready_again(queued, pool, user):
    make_builder(pool)
    lease, builder = _assign(queued, _lease(user, ssh=True))
    services.start_lease(lease_id=lease.pk)
    queued.take()
    _release(queued, lease, user)
    builder.refresh_from_db()
    assert builder.state == Builder.State.TERMINATING
    assert builder.reuse_count == 0
    assert ("builders.tasks.delete_builder", (builder.pk,)) in queued.take()
    # Releasing again changes nothing and queues no second delete.
    _release(queued, lease, user)
    builder.refresh_from_db()
    assert builder.state == Builder.State.TERMINATING
    assert "builders.tasks.delete_builder" not in queued.names()


def test_ssh_builder_released_before_its_lease_started_is_terminated_too(queued, pool, user):
    make_builder(pool)
    lease, builder = _assign(queued, _lease(user, ssh=True))
    assert lease.state == Lease.State.ASSIGNED
    _release(queued, lease, user)
    builder.refresh_from_db()
    assert builder.state == Builder.State.TERMINATING


def test_builder_whose_ssh_lease_ended_is_never_assigned_to_anyone(queued, pool, user, other_user):
    make_builder(pool)
    ssh_lease, ssh_builder = _assign(queued, _lease(user, ssh=True))
    services.start_lease(lease_id=ssh_lease.pk)
    _release(queued, ssh_lease, user)
    # Everyone asks: the same owner with SSH, the same sandbox name without SSH, other sandboxes.
    hopefuls = [
        _lease(user, ssh=True),
        _lease(user, sandbox=ssh_lease.sandbox),
        _lease(user),
        _lease(other_user, sandbox=OTHER),
    ]
    queued.call(services.assign_waiting_leases)
    for lease in hopefuls:
        lease.refresh_from_db()
        assert lease.state == Lease.State.WAITING
        assert lease.builder_id is None
    ssh_builder.refresh_from_db()
    assert ssh_builder.state == Builder.State.TERMINATING
    assert ssh_builder.leases.count() == 1


def test_single_use_builder_is_terminated_even_when_a_build_lease_ends_on_it(queued, pool, user):
    # A builder once lent with SSH must never come back, whoever's lease ends last on it.
    builder = make_builder(pool, state=Builder.State.LEASED, sandbox=SANDBOX, single_use=True)
    lease = make_ssh_lease(owner=user, ssh=False, sandbox=SANDBOX, builder=builder)
    _release(queued, lease, user)
    builder.refresh_from_db()
    assert builder.state == Builder.State.TERMINATING


def test_a_failed_build_lease_does_not_return_its_builder_for_reuse(queued, pool, user):
    make_builder(pool)
    lease, builder = _assign(queued, _lease(user))
    services.start_lease(lease_id=lease.pk)
    queued.call(services.release_lease, lease_id=lease.pk, via=services.TASK, reason=Lease.EndReason.FAILED)
    builder.refresh_from_db()
    assert builder.state == Builder.State.TERMINATING


def test_pool_full_of_idle_builders_of_other_sandboxes_retires_one_for_a_waiting_lease(
    queued, fake, user, other_user
):
    pool = make_pool(name="small", max_builders=1)
    kept = make_builder(pool, sandbox=SANDBOX, reuse_count=3)
    lease = queued.call(services.request_lease, owner=other_user, arch="x86_64", sandbox=OTHER)
    # The worker: nothing to assign -> retire the idle builder -> delete it -> start a new one ->
    # provision it -> assign it -> start the lease.
    queued.run()
    lease.refresh_from_db()
    kept.refresh_from_db()
    assert kept.state == Builder.State.TERMINATED
    assert lease.state == Lease.State.ACTIVE
    new = lease.builder
    assert (new.state, new.sandbox, new.reuse_count) == (Builder.State.LEASED, OTHER, 0)
    assert set(fake.machines) == {new.provider_id}
    assert Builder.objects.count() == 2
