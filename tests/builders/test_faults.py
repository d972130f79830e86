"""Machines that fail: creates that fail or time out, deletes that fail, dead workers, orphans.

A fake provider (tests/builders/fakes.py) injects the faults. Each test ends by checking every
builder row and every machine the fake still holds: nothing leaks, nothing is forgotten.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from builders import services, tasks
from builders.models import AuditEvent, Builder, Lease
from builders.services import Via, recovery
from builders.services.machines import BUILDER_ID_KEY, CREATED_KEY, MAX_ATTEMPTS
from tests.builders.factories import make_builder, make_pool

pytestmark = pytest.mark.django_db

PROVISION = "builders.tasks.provision_builder"
DELETE = "builders.tasks.delete_builder"
ASSIGN = "builders.tasks.assign_leases"


@pytest.fixture
def pool(db):
    return make_pool(name="cloud", max_builders=2, warm_builders=0)


def _states() -> dict[int, str]:
    return dict(Builder.objects.values_list("pk", "state"))


def _owners(fake) -> dict[str, str]:
    """The fake's machines, each with the builder id it is tagged with."""
    return {pid: m.metadata.get(BUILDER_ID_KEY, "") for pid, m in fake.machines.items()}


def _new_builder(queued, pool) -> Builder:
    """A builder the pool started for warmth, with its provision task taken off the queue."""
    idle = Builder.objects.filter(pool=pool, sandbox__isnull=True, state__in=["ready", "provisioning"])
    pool.warm_builders = idle.count() + 1
    pool.save()
    [builder_id] = queued.call(services.ensure_capacity)
    assert (PROVISION, (builder_id,)) in queued.take()
    pool.warm_builders = 0
    pool.save()
    return Builder.objects.get(pk=builder_id)


def _provision(queued, builder) -> Builder:
    queued.call(services.provision_builder, builder_id=builder.pk)
    builder.refresh_from_db()
    return builder


def _tag(builder_id: int | str, *, age: timedelta = timedelta(0)) -> dict[str, str]:
    return {BUILDER_ID_KEY: str(builder_id), CREATED_KEY: (timezone.now() - age).isoformat()}


def _events(action) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("id"))


@pytest.fixture
def clock():
    """The time, stopped; tests move it past a pool's backoff."""
    with time_machine.travel(timezone.now(), tick=False) as traveller:
        yield traveller


def _past_backoff(clock, pool) -> None:
    pool.refresh_from_db()
    assert pool.backoff_until is not None
    clock.move_to(pool.backoff_until + timedelta(seconds=1))


def _retry_after_backoff(queued, clock, builder) -> None:
    """Wait out the pool's backoff, as the tick does, and check that the retry is queued then."""
    assert queued.take() in ([], [(ASSIGN, ())])
    assert queued.call(services.retry_due_provisions) == []  # not before the backoff is over
    _past_backoff(clock, builder.pool)
    assert queued.call(services.retry_due_provisions) == [builder.pk]
    assert queued.take() == [(PROVISION, (builder.pk,))]


def _provision_until_final(queued, clock, builder) -> int:
    """Play worker and tick until the builder is ready or failed; return the attempts made."""
    runs = 0
    while True:
        builder = _provision(queued, builder)
        runs += 1
        if builder.state != Builder.State.PROVISIONING:
            return runs
        assert runs <= MAX_ATTEMPTS
        _retry_after_backoff(queued, clock, builder)


# --- provisioning -------------------------------------------------------------------------


def test_transient_create_failure_retries_the_builder_after_the_pools_backoff(queued, fake, pool, clock):
    builder = _new_builder(queued, pool)
    fake.fail_next_create()
    builder = _provision(queued, builder)
    assert builder.state == Builder.State.PROVISIONING
    assert builder.attempts == 1
    assert "quota exceeded" in builder.last_error
    assert builder.provider_id == ""
    pool.refresh_from_db()
    assert pool.consecutive_failures == 1
    assert pool.backoff_until == timezone.now() + timedelta(seconds=30)
    assert fake.machines == {}
    _retry_after_backoff(queued, clock, builder)
    # The retry goes through: same row, second attempt, a machine of its own.
    builder = _provision(queued, builder)
    assert (builder.state, builder.attempts, builder.last_error) == (Builder.State.READY, 2, "")
    assert _owners(fake) == {builder.provider_id: str(builder.pk)}
    assert _states() == {builder.pk: Builder.State.READY}
    pool.refresh_from_db()
    assert (pool.consecutive_failures, pool.backoff_until, pool.failing_since) == (0, None, None)
    assert [e.action for e in AuditEvent.objects.filter(action__startswith="pool-").order_by("id")] == [
        AuditEvent.Action.POOL_FAILING,
        AuditEvent.Action.POOL_RECOVERED,
    ]


def test_boot_timeout_deletes_the_machine_and_retries_on_a_new_one(queued, fake, pool, clock):
    builder = _new_builder(queued, pool)
    fake.fail_next_boots()
    builder = _provision(queued, builder)
    assert builder.state == Builder.State.PROVISIONING
    assert "SSH did not answer" in builder.last_error
    assert fake.machines == {}
    _retry_after_backoff(queued, clock, builder)
    builder = _provision(queued, builder)
    assert builder.state == Builder.State.READY
    assert len(fake.created()) == 2
    assert _owners(fake) == {builder.provider_id: str(builder.pk)}


@pytest.mark.parametrize(
    "faults",
    [
        ["transient", "transient", "transient"],
        # Each timed-out create leaves a machine; the next attempt deletes it before trying again.
        ["timeout", "timeout", "transient"],
    ],
)
def test_builder_fails_after_three_attempts_without_leaking_machines(queued, fake, pool, clock, faults):
    builder = _new_builder(queued, pool)
    fake.create_faults = list(faults)
    assert _provision_until_final(queued, clock, builder) == MAX_ATTEMPTS
    builder.refresh_from_db()
    assert builder.state == Builder.State.FAILED
    assert builder.attempts == MAX_ATTEMPTS
    assert builder.terminated_at is not None
    assert builder.last_error
    assert [e.builder_id for e in _events(AuditEvent.Action.BUILDER_FAILED)] == [builder.pk]
    assert queued.names() == [ASSIGN]  # someone else may now serve what waited for it
    assert fake.machines == {}
    assert _states() == {builder.pk: Builder.State.FAILED}
    # A late duplicate delivery of the task changes nothing.
    _provision(queued, builder)
    assert builder.state == Builder.State.FAILED
    assert len(fake.created()) == MAX_ATTEMPTS


def test_permanent_create_failure_fails_the_builder_at_once_and_pauses_the_pool(queued, fake, pool):
    builder = _new_builder(queued, pool)
    fake.fail_next_create(permanent=True)
    builder = _provision(queued, builder)
    assert (builder.state, builder.attempts) == (Builder.State.FAILED, 1)
    assert queued.names() == [ASSIGN]
    assert fake.machines == {}
    pool.refresh_from_db()
    assert pool.paused_at is not None
    assert "quota exceeded" in pool.last_error
    [paused] = _events(AuditEvent.Action.POOL_PAUSED)
    assert "quota exceeded" in paused.detail


def test_waiting_lease_is_served_by_another_builder_when_the_first_fails(queued, fake, pool, user, clock):
    lease = queued.call(
        services.request_lease, owner=user, arch="x86_64", sandbox="alice/proj--alice", purpose="build 1"
    )
    fake.fail_next_create(times=MAX_ATTEMPTS)
    # The worker and the tick: assign (nothing ready) -> start a builder -> three failed attempts,
    # each after the pool's backoff -> FAILED -> start another builder -> ready -> start the lease.
    for _ in range(MAX_ATTEMPTS + 2):
        queued.run()
        lease.refresh_from_db()
        if lease.state == Lease.State.ACTIVE:
            break
        assert "Pool cloud is failing since" in lease.queue_reason
        _past_backoff(clock, pool)
        queued.call(tasks.tick)
    failed, served = Builder.objects.order_by("pk")
    assert (failed.state, failed.attempts) == (Builder.State.FAILED, MAX_ATTEMPTS)
    assert served.state == Builder.State.LEASED
    assert lease.state == Lease.State.ACTIVE
    assert lease.builder_id == served.pk
    assert lease.queue_reason == ""
    assert served.sandbox == "alice/proj--alice"
    assert _owners(fake) == {served.provider_id: str(served.pk)}
    assert _states() == {failed.pk: Builder.State.FAILED, served.pk: Builder.State.LEASED}


def test_pool_at_its_limit_with_failed_builders_still_starts_new_ones(queued, fake, pool, user):
    # FAILED rows are history, not capacity: a pool of 2 with two failed builders starts a third.
    make_builder(pool, state=Builder.State.FAILED)
    make_builder(pool, state=Builder.State.FAILED)
    queued.call(services.request_lease, owner=user, arch="x86_64", sandbox="s/p--s")
    [created] = queued.call(services.ensure_capacity)
    assert Builder.objects.get(pk=created).state == Builder.State.PROVISIONING
    assert Builder.objects.filter(pool=pool).alive().count() == 1


def test_create_that_timed_out_but_made_a_machine_is_deleted_before_the_next_attempt(
    queued, fake, pool, clock
):
    builder = _new_builder(queued, pool)
    fake.time_out_next_create()
    builder = _provision(queued, builder)
    assert builder.state == Builder.State.PROVISIONING
    assert "timed out" in builder.last_error
    [leftover] = fake.machines
    assert fake.machines[leftover].metadata[BUILDER_ID_KEY] == str(builder.pk)
    assert builder.provider_id == ""  # the service never learnt its id: only the tag finds it
    _retry_after_backoff(queued, clock, builder)
    builder = _provision(queued, builder)
    assert builder.state == Builder.State.READY
    assert builder.provider_id != leftover
    assert fake.calls == [
        ("create", builder.name),
        ("list", ""),
        ("delete", leftover),
        ("create", builder.name),
    ]
    assert _owners(fake) == {builder.provider_id: str(builder.pk)}


def test_leftover_of_a_last_attempt_that_timed_out_is_deleted_by_the_orphan_sweep(queued, fake, pool, clock):
    builder = _new_builder(queued, pool)
    fake.create_faults = ["transient", "transient", "timeout"]
    _provision_until_final(queued, clock, builder)
    builder.refresh_from_db()
    assert builder.state == Builder.State.FAILED
    [leftover] = fake.machines
    assert queued.call(services.delete_orphans) == [leftover]
    assert fake.machines == {}
    assert _states() == {builder.pk: Builder.State.FAILED}


def test_builder_terminated_while_its_machine_is_made_does_not_leak_it(queued, fake, pool):
    builder = _new_builder(queued, pool)
    fake.during_create = lambda: services.terminate_builder(builder_id=builder.pk, via=Via(source="admin"))
    builder = _provision(queued, builder)
    assert builder.state == Builder.State.TERMINATING
    assert fake.machines == {}  # deleted by provision_builder once it saw the row had moved on
    queued.run(only=DELETE)
    builder.refresh_from_db()
    assert builder.state == Builder.State.TERMINATED
    assert fake.machines == {}


# --- health and deletion ------------------------------------------------------------------


def test_health_check_terminates_a_builder_that_stopped_answering(queued, fake, pool):
    healthy = _provision(queued, _new_builder(queued, pool))
    sick = _provision(queued, _new_builder(queued, pool))
    queued.take()
    fake.kill(sick.provider_id)
    assert queued.call(services.health_check, builder_id=healthy.pk) is True
    assert queued.call(services.health_check, builder_id=sick.pk) is False
    sick.refresh_from_db()
    assert sick.state == Builder.State.TERMINATING
    assert sick.last_error.startswith("health check:")
    assert queued.take() == [(DELETE, (sick.pk,))]
    assert [e.builder_id for e in _events(AuditEvent.Action.BUILDER_FAILED)] == [sick.pk]
    queued.call(services.delete_builder, builder_id=sick.pk)
    assert _states() == {healthy.pk: Builder.State.READY, sick.pk: Builder.State.TERMINATED}
    assert _owners(fake) == {healthy.provider_id: str(healthy.pk)}


def test_failed_delete_is_retried_by_recover_stuck_once_the_builder_is_stuck(queued, fake, pool):
    start = timezone.now()
    with time_machine.travel(start, tick=False) as clock:
        builder = _provision(queued, _new_builder(queued, pool))
        queued.take()
        queued.call(services.terminate_builder, builder_id=builder.pk, via=Via(source="admin"))
        assert queued.take() == [(DELETE, (builder.pk,))]
        fake.fail_next_deletes(1)
        queued.call(services.delete_builder, builder_id=builder.pk)
        builder.refresh_from_db()
        assert builder.state == Builder.State.TERMINATING
        assert "503" in builder.last_error
        assert builder.provider_id in fake.machines

        clock.shift(recovery.TERMINATE_STUCK_AFTER - timedelta(seconds=30))
        assert queued.call(services.recover_stuck) == {"provisioning": [], "terminating": []}
        assert queued.take() == []

        clock.shift(timedelta(minutes=1))
        assert queued.call(services.recover_stuck) == {"provisioning": [], "terminating": [builder.pk]}
        assert queued.names() == [DELETE]
        queued.run(only=DELETE)
    builder.refresh_from_db()
    assert builder.state == Builder.State.TERMINATED
    assert builder.terminated_at == start + recovery.TERMINATE_STUCK_AFTER + timedelta(seconds=30)
    assert fake.machines == {}
    assert fake.deleted() == [builder.provider_id, builder.provider_id]


def test_delete_of_a_machine_already_gone_still_terminates_the_builder(queued, fake, pool):
    builder = _provision(queued, _new_builder(queued, pool))
    fake.machines.clear()  # someone deleted it in the cloud's console
    queued.call(services.terminate_builder, builder_id=builder.pk, via=Via(source="admin"))
    queued.run(only=DELETE)
    builder.refresh_from_db()
    assert builder.state == Builder.State.TERMINATED


# --- workers that died ----------------------------------------------------------------------


def test_provisioning_abandoned_by_a_dead_worker_is_resumed_by_recover_stuck(queued, fake, pool):
    old = timezone.now() - recovery.PROVISION_STUCK_AFTER - timedelta(minutes=1)
    # The worker claimed attempt 1, its create succeeded, then it was killed before recording it.
    builder = make_builder(
        pool, state=Builder.State.PROVISIONING, attempts=1, state_changed_at=old, ipv4=None, host_key=""
    )
    leftover = fake.add_machine(builder.name, _tag(builder.pk, age=timedelta(minutes=18))).provider_id
    young = make_builder(pool, state=Builder.State.PROVISIONING, attempts=1, ipv4=None, host_key="")

    result = queued.call(services.recover_stuck)
    assert result == {"provisioning": [builder.pk], "terminating": []}
    assert queued.take() == [(PROVISION, (builder.pk,))]
    queued.call(services.provision_builder, builder_id=builder.pk)
    builder.refresh_from_db()
    assert builder.state == Builder.State.READY
    assert builder.attempts == 2
    assert leftover in fake.deleted()
    assert _owners(fake) == {builder.provider_id: str(builder.pk)}
    assert _states() == {builder.pk: Builder.State.READY, young.pk: Builder.State.PROVISIONING}


def test_lease_whose_start_task_was_lost_is_recovered_by_the_tick(queued, fake, pool, user):
    day_ago = timezone.now() - timedelta(days=1)
    builder = make_builder(pool, state=Builder.State.LEASED, sandbox="ssh-lost", single_use=True)
    lease = Lease.objects.create(
        owner=user,
        sandbox="ssh-lost",
        ssh=True,
        arch="x86_64",
        state=Lease.State.ASSIGNED,
        builder=builder,
        created_at=day_ago,
        assigned_at=day_ago,
    )
    queued.call(tasks.tick)
    lease.refresh_from_db()
    restarted = ("builders.tasks.start_lease", (lease.pk,)) in queued.tasks
    assert restarted or lease.state == Lease.State.ENDED


def test_provisioning_stuck_on_its_last_attempt_fails(queued, fake, pool):
    old = timezone.now() - recovery.PROVISION_STUCK_AFTER - timedelta(minutes=1)
    builder = make_builder(
        pool, state=Builder.State.PROVISIONING, attempts=MAX_ATTEMPTS, state_changed_at=old, ipv4=None
    )
    queued.call(services.recover_stuck)
    builder.refresh_from_db()
    assert builder.state == Builder.State.FAILED
    assert "did not finish in time" in builder.last_error
    assert PROVISION not in queued.names()


def test_duplicate_delivery_of_a_provision_task_makes_one_machine(queued, fake, pool):
    builder = _new_builder(queued, pool)
    _provision(queued, builder)
    _provision(queued, builder)
    builder.refresh_from_db()
    assert builder.state == Builder.State.READY
    assert len(fake.created()) == 1
    assert _owners(fake) == {builder.provider_id: str(builder.pk)}


# --- orphans --------------------------------------------------------------------------------


def test_delete_orphans_deletes_exactly_the_machines_no_live_builder_claims(queued, fake, pool):
    gone = make_builder(pool, state=Builder.State.TERMINATED)
    failed = make_builder(pool, state=Builder.State.FAILED)
    live = make_builder(pool, state=Builder.State.LEASED)
    starting = make_builder(pool, state=Builder.State.PROVISIONING, ipv4=None)
    live_machine = fake.add_machine(live.name, _tag(live.pk)).provider_id
    live.provider_id = live_machine
    live.save()
    orphans = {
        fake.add_machine(gone.name, _tag(gone.pk)).provider_id: "of a terminated builder",
        fake.add_machine(failed.name, _tag(failed.pk)).provider_id: "of a failed builder",
        # An earlier attempt's leftover of a builder that has since recorded another machine.
        fake.add_machine(live.name, _tag(live.pk)).provider_id: "superseded",
        fake.add_machine("cloud-9999", _tag(9999, age=timedelta(minutes=11))).provider_id: "unknown, old",
    }
    kept = {
        live_machine,
        # Its row may be in a transaction not yet committed: wait out the grace period.
        fake.add_machine("cloud-9998", _tag(9998, age=timedelta(minutes=5))).provider_id,
        # Being made right now: the row has not recorded the machine's id yet.
        fake.add_machine(starting.name, _tag(starting.pk)).provider_id,
    }
    rows_before = _states()

    deleted = queued.call(services.delete_orphans)

    assert sorted(deleted) == sorted(orphans)
    assert set(fake.machines) == kept
    assert _states() == rows_before
    events = _events(AuditEvent.Action.ORPHAN_DELETED)
    assert len(events) == len(orphans)
    assert {e.source for e in events} == {"tick"}
    assert all(any(pid in e.detail for e in events) for pid in orphans)
    # Run again: nothing more to do.
    assert queued.call(services.delete_orphans) == []
    assert set(fake.machines) == kept


def test_orphan_that_cannot_be_deleted_is_tried_again_next_time(queued, fake, pool):
    gone = make_builder(pool, state=Builder.State.TERMINATED)
    orphan = fake.add_machine(gone.name, _tag(gone.pk)).provider_id
    fake.fail_next_deletes(1)
    assert queued.call(services.delete_orphans) == []
    assert _events(AuditEvent.Action.ORPHAN_DELETED) == []
    assert queued.call(services.delete_orphans) == [orphan]
    assert fake.machines == {}


def test_delete_orphans_survives_a_provider_that_cannot_list(queued, fake, pool):
    fake.list_failures = 1
    assert queued.call(services.delete_orphans) == []


def test_machine_with_a_naive_created_timestamp_does_not_stop_the_orphan_sweep(queued, fake, pool):
    gone = make_builder(pool, state=Builder.State.TERMINATED)
    fake.add_machine("cloud-9997", {BUILDER_ID_KEY: "9997", CREATED_KEY: "2020-01-01T00:00:00"})
    orphan = fake.add_machine(gone.name, _tag(gone.pk)).provider_id
    deleted = queued.call(services.delete_orphans)
    assert orphan in deleted
