"""Builders and leases under races: assignment, release and prolong called from many threads at once.

Assignment claims a builder with a compare-and-swap UPDATE on its state; the database itself
refuses a second open lease on one builder (`builders_lease_one_open_per_builder`).
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from builders import services
from builders.models import AuditEvent, Builder, Lease, QuotaPolicy
from builders.services import leases as lease_services
from tests.builders.factories import make_builder, make_lease, make_pool
from tests.concurrency import errors, run_at_once

THREADS = 10

# The controls below take a guard away and show the race it stops. SQLite in IMMEDIATE mode
# runs write transactions one at a time, so there the race cannot show at all.
needs_concurrent_writers = pytest.mark.skipif(
    connection.vendor == "sqlite", reason="SQLite serializes writers (IMMEDIATE): there is no race to show"
)


@pytest.fixture(autouse=True)
def policy() -> QuotaPolicy:
    # Transactional tests flush the tables, so the migration's row may be gone.
    return QuotaPolicy.get()


@pytest.fixture
def slow_audit(monkeypatch):
    """Audit events take a moment, so racers overlap between their read and their commit."""
    audit = lease_services.audit

    def slowly(*args, **kwargs):
        time.sleep(0.05)
        return audit(*args, **kwargs)

    monkeypatch.setattr(lease_services, "audit", slowly)


@pytest.fixture
def no_row_locks(monkeypatch):
    """Take the guard of release and prolong away: `select_for_update()` locks nothing."""
    monkeypatch.setattr(QuerySet, "select_for_update", lambda self, *args, **kwargs: self)


@pytest.fixture
def pool():
    return make_pool(architectures=["x86_64"], max_builders=10)


def waiting_leases(owner, n: int) -> list[Lease]:
    """`n` build leases (no SSH), each in a sandbox of its own, oldest first."""
    start = timezone.now() - timedelta(minutes=5)
    return [
        make_lease(owner=owner, sandbox=f"owner/project-{i}--alice", created_at=start + timedelta(seconds=i))
        for i in range(n)
    ]


# --- assignment --------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_assigners_give_one_fresh_builder_to_exactly_one_lease(user, pool):
    builder = make_builder(pool=pool, state=Builder.State.READY, sandbox=None)
    leases = waiting_leases(user, 20)

    outcomes = run_at_once([services.assign_waiting_leases] * 20)

    assert errors(outcomes) == []  # no IntegrityError (or anything else) reaches the caller
    assigned = [lease_id for ids in outcomes for lease_id in ids]
    assert assigned == [leases[0].pk]  # the oldest waiting lease, once
    builder.refresh_from_db()
    assert builder.state == Builder.State.LEASED
    assert builder.sandbox == leases[0].sandbox
    assert Lease.objects.open().filter(builder=builder).count() == 1
    assert Lease.objects.filter(state=Lease.State.ASSIGNED).get().pk == leases[0].pk
    assert Lease.objects.filter(state=Lease.State.WAITING).count() == 19
    assert AuditEvent.objects.filter(action=AuditEvent.Action.LEASE_ASSIGNED).count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_assigners_never_give_a_builder_twice(user, pool):
    builders = [make_builder(pool=pool, state=Builder.State.READY, sandbox=None) for _ in range(5)]
    leases = waiting_leases(user, 20)

    outcomes = run_at_once([services.assign_waiting_leases] * 8)

    assert errors(outcomes) == []
    assigned = [lease_id for ids in outcomes for lease_id in ids]
    assert sorted(assigned) == sorted(lease.pk for lease in leases[:5])  # each once, oldest first
    taken = Lease.objects.filter(state=Lease.State.ASSIGNED)
    assert taken.count() == 5
    assert set(taken.values_list("builder_id", flat=True)) == {b.pk for b in builders}
    for builder in builders:
        builder.refresh_from_db()
        assert builder.state == Builder.State.LEASED
        assert Lease.objects.open().filter(builder=builder).count() == 1
        assert builder.sandbox == Lease.objects.get(builder=builder).sandbox
    assert Lease.objects.filter(state=Lease.State.WAITING).count() == 15


@pytest.mark.django_db
def test_database_refuses_a_second_open_lease_on_one_builder(user, pool):
    builder = make_builder(pool=pool, state=Builder.State.LEASED, sandbox="owner/project--alice")
    make_lease(owner=user, builder=builder, sandbox="owner/project--alice", state=Lease.State.ENDED)
    make_lease(owner=user, builder=builder, sandbox="owner/project--alice", state=Lease.State.ACTIVE)

    # Straight through the ORM, past every service: the constraint alone says no.
    with pytest.raises(IntegrityError), transaction.atomic():
        Lease.objects.create(
            owner=user,
            builder=builder,
            sandbox="owner/project--alice",
            arch="x86_64",
            state=Lease.State.ASSIGNED,
        )

    assert Lease.objects.filter(builder=builder).count() == 2  # ended leases are history, not a conflict


# --- release and prolong -----------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("ssh", [True, False], ids=["ssh", "build"])
def test_concurrent_releases_of_one_lease_end_it_once(user, pool, ssh):
    sandbox = "ssh-raced" if ssh else "owner/project--alice"
    builder = make_builder(pool=pool, state=Builder.State.LEASED, sandbox=sandbox, single_use=ssh)
    lease = make_lease(owner=user, ssh=ssh, builder=builder, sandbox=sandbox, state=Lease.State.ACTIVE)
    via = services.Via(user=user, source="api")

    outcomes = run_at_once([lambda: services.release_lease(lease_id=lease.pk, via=via)] * THREADS)

    assert errors(outcomes) == []
    assert all(o.state == Lease.State.ENDED for o in outcomes)
    ends = AuditEvent.objects.filter(
        lease=lease, action__in=[AuditEvent.Action.RELEASED, AuditEvent.Action.EXPIRED]
    )
    assert ends.count() == 1
    lease.refresh_from_db()
    assert lease.state == Lease.State.ENDED
    assert lease.end_reason == Lease.EndReason.RELEASED
    builder.refresh_from_db()
    if ssh:
        assert builder.state == Builder.State.TERMINATING  # an SSH builder is never reused
    else:
        assert builder.state == Builder.State.READY
        assert builder.reuse_count == 1  # given back once, not once per caller


@pytest.mark.django_db(transaction=True)
def test_concurrent_prolongs_all_count(user, pool):
    lease = make_lease(
        owner=user,
        ssh=True,
        builder=make_builder(pool=pool, state=Builder.State.LEASED, sandbox="ssh-prolonged"),
        sandbox="ssh-prolonged",
        state=Lease.State.ACTIVE,
    )
    before = lease.expires_at
    via = services.Via(user=user, source="builder")

    outcomes = run_at_once([lambda: services.prolong_lease(lease_id=lease.pk, hours=1, via=via)] * THREADS)

    assert errors(outcomes) == []
    lease.refresh_from_db()
    assert lease.expires_at == before + timedelta(hours=THREADS)  # no update lost
    assert AuditEvent.objects.filter(lease=lease, action=AuditEvent.Action.PROLONGED).count() == THREADS


@pytest.mark.django_db(transaction=True)
def test_concurrent_prolongs_stop_cleanly_at_the_cap(user, pool):
    started = timezone.now() - timedelta(hours=44)
    lease = make_lease(
        owner=user,
        ssh=True,
        builder=make_builder(pool=pool, state=Builder.State.LEASED, sandbox="ssh-capped"),
        sandbox="ssh-capped",
        state=Lease.State.ACTIVE,
        started_at=started,
        expires_at=started + timedelta(hours=44, minutes=30),
        max_expires_at=started + timedelta(hours=48),
    )
    before = lease.expires_at
    via = services.Via(user=user, source="builder")

    outcomes = run_at_once([lambda: services.prolong_lease(lease_id=lease.pk, hours=1, via=via)] * THREADS)

    prolonged = [o for o in outcomes if isinstance(o, Lease)]
    refused = [o for o in outcomes if isinstance(o, services.ProlongRefused)]
    assert len(prolonged) == 3, outcomes
    assert len(refused) == THREADS - 3, outcomes
    assert all("at the latest" in exc.message for exc in refused)
    lease.refresh_from_db()
    assert lease.expires_at == before + timedelta(hours=3)
    assert lease.expires_at <= lease.max_expires_at
    events = AuditEvent.objects.filter(lease=lease)
    assert events.filter(action=AuditEvent.Action.PROLONGED).count() == 3
    assert events.filter(action=AuditEvent.Action.PROLONG_REFUSED).count() == THREADS - 3


@pytest.mark.django_db(transaction=True)
def test_a_release_racing_the_expiry_pass_ends_the_lease_once(user, pool):
    builder = make_builder(pool=pool, state=Builder.State.LEASED, sandbox="ssh-due", single_use=True)
    started = timezone.now() - timedelta(hours=2)
    lease = make_lease(
        owner=user,
        ssh=True,
        builder=builder,
        sandbox="ssh-due",
        state=Lease.State.ACTIVE,
        started_at=started,
        expires_at=started + timedelta(hours=1),
    )
    via = services.Via(user=user, source="web")
    release = lambda: services.release_lease(lease_id=lease.pk, via=via)  # noqa: E731

    outcomes = run_at_once([release, services.expire_leases] * (THREADS // 2))

    assert errors(outcomes) == []
    assert sum(o for o in outcomes if isinstance(o, int)) <= 1  # expire_leases counts what it ended
    ends = AuditEvent.objects.filter(
        lease=lease, action__in=[AuditEvent.Action.RELEASED, AuditEvent.Action.EXPIRED]
    )
    assert ends.count() == 1
    lease.refresh_from_db()
    assert lease.state == Lease.State.ENDED
    assert lease.end_reason in {Lease.EndReason.RELEASED, Lease.EndReason.EXPIRED}
    assert Builder.objects.get(pk=builder.pk).state == Builder.State.TERMINATING


# --- controls: the same races without their guards -------------------------------------


@needs_concurrent_writers
@pytest.mark.django_db(transaction=True)
def test_without_the_compare_and_swap_every_assigner_claims_the_one_builder(pool):
    # The shape of the claim in _assign_one, with and without `state=READY` in its UPDATE.
    builder = make_builder(pool=pool, state=Builder.State.READY, sandbox=None)

    def claim(*, guarded: bool) -> int:
        with transaction.atomic():
            seen = list(Builder.objects.ready().filter(pk=builder.pk).values_list("pk", flat=True))
            time.sleep(0.05)  # every racer has seen it READY before the first one commits
            claimed = Builder.objects.filter(pk__in=seen)
            if guarded:
                claimed = claimed.filter(state=Builder.State.READY)
            return claimed.update(state=Builder.State.LEASED)

    unguarded = run_at_once([lambda: claim(guarded=False)] * THREADS)
    assert errors(unguarded) == []
    assert sum(unguarded) > 1  # one builder, claimed by several assigners

    Builder.objects.filter(pk=builder.pk).update(state=Builder.State.READY)
    guarded = run_at_once([lambda: claim(guarded=True)] * THREADS)
    assert errors(guarded) == []
    assert sum(guarded) == 1


@needs_concurrent_writers
@pytest.mark.usefixtures("no_row_locks", "slow_audit")
@pytest.mark.django_db(transaction=True)
def test_without_the_row_lock_concurrent_releases_end_one_lease_several_times(user, pool):
    builder = make_builder(pool=pool, state=Builder.State.LEASED, sandbox="ssh-raced", single_use=True)
    lease = make_lease(owner=user, ssh=True, builder=builder, sandbox="ssh-raced", state=Lease.State.ACTIVE)
    via = services.Via(user=user, source="api")

    outcomes = run_at_once([lambda: services.release_lease(lease_id=lease.pk, via=via)] * THREADS)

    assert errors(outcomes) == []
    assert AuditEvent.objects.filter(lease=lease, action=AuditEvent.Action.RELEASED).count() > 1


@needs_concurrent_writers
@pytest.mark.usefixtures("no_row_locks", "slow_audit")
@pytest.mark.django_db(transaction=True)
def test_without_the_row_lock_concurrent_prolongs_lose_updates(user, pool):
    lease = make_lease(
        owner=user,
        ssh=True,
        builder=make_builder(pool=pool, state=Builder.State.LEASED, sandbox="ssh-prolonged"),
        sandbox="ssh-prolonged",
        state=Lease.State.ACTIVE,
    )
    before = lease.expires_at
    via = services.Via(user=user, source="builder")

    outcomes = run_at_once([lambda: services.prolong_lease(lease_id=lease.pk, hours=1, via=via)] * THREADS)

    assert errors(outcomes) == []
    lease.refresh_from_db()
    assert lease.expires_at < before + timedelta(hours=THREADS)  # some prolongs were overwritten
