"""The SSH quota under races: many requests and releases of one user at once.

The quota lock (`builders.services.quota.lock_quota`) is taken on the user's row, never on the
leases being counted (DESIGN.md, "The quota lock"). Counting is slowed down here so that without
the lock the requests would overlap for sure: the guarded tests show the lock holds, the control
test shows the race it prevents.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from builders import services
from builders.models import AuditEvent, Builder, Lease, QuotaOverride, QuotaPolicy
from builders.services import quota as quotas
from tests.builders.factories import make_builder, make_lease, make_pool
from tests.concurrency import errors, run_at_once

pytestmark = pytest.mark.django_db(transaction=True)

REQUESTS = 50
QUOTA = 2  # the policy default


@pytest.fixture(autouse=True)
def policy() -> QuotaPolicy:
    # Transactional tests flush the tables, so the migration's row may be gone.
    policy = QuotaPolicy.get()
    assert policy.max_ssh_builders == QUOTA
    return policy


@pytest.fixture
def pool():
    return make_pool(architectures=["x86_64"])


@pytest.fixture
def slow_count(monkeypatch):
    """Hold every quota decision open 50 ms after counting, so concurrent requests overlap."""
    count = quotas.slot_holders

    def slowly(user):
        holders = count(user)
        time.sleep(0.05)
        return holders

    monkeypatch.setattr(quotas, "slot_holders", slowly)


def ssh_requests(user, n: int, *, label: str = "build") -> list[Callable[[], Lease]]:
    def request(i: int) -> Callable[[], Lease]:
        return lambda: services.request_lease(owner=user, arch="x86_64", ssh=True, purpose=f"{label} #{i}")

    return [request(i) for i in range(n)]


def holders_of(user) -> list[Lease]:
    return list(Lease.objects.holding_ssh_slot().filter(owner=user).order_by("created_at", "id"))


def expected_reason(holders: list[Lease], quota: int) -> str:
    held = ", ".join(f"{lease.purpose} (SSH builder #{lease.pk})" for lease in holders)
    return f"{len(holders)} of {quota} SSH builders in use: {held}."


# --- many requests at once ---------------------------------------------------------------


@pytest.mark.usefixtures("pool", "slow_count")
def test_fifty_concurrent_ssh_requests_never_exceed_the_quota(user):
    outcomes = run_at_once(ssh_requests(user, REQUESTS))

    assert errors(outcomes) == []
    leases = Lease.objects.filter(owner=user)
    assert leases.count() == REQUESTS
    holders = holders_of(user)
    assert len(holders) == QUOTA
    assert all(lease.state == Lease.State.WAITING for lease in holders)
    queued = list(leases.filter(state=Lease.State.QUEUED))
    assert len(queued) == REQUESTS - QUOTA
    # Every queued request says why, naming the leases that hold the slots.
    reason = expected_reason(holders, QUOTA)
    assert reason.startswith(
        f"2 of 2 SSH builders in use: {holders[0].purpose} (SSH builder #{holders[0].pk})"
    )
    assert all(lease.queue_reason.startswith(reason) for lease in queued), [
        lease.queue_reason for lease in queued if not lease.queue_reason.startswith(reason)
    ]
    assert AuditEvent.objects.filter(action=AuditEvent.Action.LEASE_QUEUED).count() == REQUESTS - QUOTA
    assert AuditEvent.objects.filter(action=AuditEvent.Action.LEASE_REQUESTED).count() == QUOTA


@pytest.mark.usefixtures("pool", "slow_count")
def test_without_the_quota_lock_concurrent_requests_exceed_the_quota(user, monkeypatch):
    # Control: the same race with lock_quota disabled lets more than the quota through.
    if connection.vendor == "sqlite":
        pytest.skip("SQLite's IMMEDIATE transactions serialize writers, so no race can show")
    monkeypatch.setattr(quotas, "lock_quota", lambda user: None)

    outcomes = run_at_once(ssh_requests(user, REQUESTS))

    assert errors(outcomes) == []
    assert len(holders_of(user)) > QUOTA


@pytest.mark.usefixtures("pool", "slow_count")
def test_concurrent_ssh_requests_respect_a_per_user_override(user):
    QuotaOverride.objects.create(user=user, max_ssh_builders=5, note="workshop")

    outcomes = run_at_once(ssh_requests(user, REQUESTS))

    assert errors(outcomes) == []
    holders = holders_of(user)
    assert len(holders) == 5
    queued = Lease.objects.filter(owner=user, state=Lease.State.QUEUED)
    assert queued.count() == REQUESTS - 5
    reason = expected_reason(holders, 5)
    assert all(lease.queue_reason.startswith(reason) for lease in queued)


@pytest.mark.usefixtures("pool", "slow_count")
def test_another_users_requests_are_not_limited_by_the_first_users_quota(user, other_user):
    calls = [
        c for pair in zip(ssh_requests(user, 20), ssh_requests(other_user, 20), strict=True) for c in pair
    ]

    outcomes = run_at_once(calls)

    assert errors(outcomes) == []
    for owner in (user, other_user):
        holders = holders_of(owner)
        assert len(holders) == QUOTA, owner
        queued = Lease.objects.filter(owner=owner, state=Lease.State.QUEUED)
        assert queued.count() == 20 - QUOTA
        # Each user's queue names only that user's own leases.
        reason = expected_reason(holders, QUOTA)
        assert all(lease.queue_reason.startswith(reason) for lease in queued)


@pytest.mark.usefixtures("pool")
def test_a_full_quota_does_not_queue_another_users_request(user, other_user):
    for _ in range(3):
        services.request_lease(owner=user, arch="x86_64", ssh=True, purpose="alice")

    lease = services.request_lease(owner=other_user, arch="x86_64", ssh=True, purpose="bob")

    assert lease.state == Lease.State.WAITING
    assert lease.queue_reason == ""
    assert len(holders_of(user)) == QUOTA


# --- releases promote the queue ----------------------------------------------------------


@pytest.fixture
def full_quota(user, pool):
    """Two active SSH leases on builders, and three queued requests behind them, oldest first."""
    start = timezone.now() - timedelta(minutes=30)
    holders = [
        make_lease(
            owner=user,
            ssh=True,
            state=Lease.State.ACTIVE,
            builder=make_builder(pool=pool, state=Builder.State.LEASED, sandbox=f"ssh-held-{i}"),
            sandbox=f"ssh-held-{i}",
            created_at=start + timedelta(seconds=i),
            purpose=f"held #{i}",
        )
        for i in range(QUOTA)
    ]
    queued = [
        make_lease(
            owner=user,
            ssh=True,
            state=Lease.State.QUEUED,
            created_at=start + timedelta(minutes=1, seconds=i),
            purpose=f"queued #{i}",
            queue_reason=expected_reason(holders, QUOTA),
        )
        for i in range(3)
    ]
    return holders, queued


def test_releasing_a_slot_promotes_exactly_the_oldest_queued_lease(user, full_quota):
    (first, second), queued = full_quota

    services.release_lease(lease_id=first.pk, via=services.Via(user=user, source="web"))

    states = {lease.pk: Lease.objects.get(pk=lease.pk).state for lease in queued}
    assert states == {
        queued[0].pk: Lease.State.WAITING,
        queued[1].pk: Lease.State.QUEUED,
        queued[2].pk: Lease.State.QUEUED,
    }
    promoted = Lease.objects.get(pk=queued[0].pk)
    assert promoted.queue_reason == ""
    assert [lease.pk for lease in holders_of(user)] == [second.pk, queued[0].pk]
    # Those still queued now name the leases that hold the slots after the release.
    reason = expected_reason(holders_of(user), QUOTA)
    for lease in queued[1:]:
        assert Lease.objects.get(pk=lease.pk).queue_reason.startswith(reason)
    assert Builder.objects.get(pk=first.builder_id).state == Builder.State.TERMINATING


@pytest.mark.usefixtures("slow_count")
def test_two_concurrent_releases_promote_exactly_two_queued_leases(user, full_quota):
    holders, queued = full_quota
    via = services.Via(user=user, source="api")

    outcomes = run_at_once(
        [lambda pk=lease.pk: services.release_lease(lease_id=pk, via=via) for lease in holders]
    )

    assert errors(outcomes) == []
    assert [Lease.objects.get(pk=lease.pk).state for lease in queued] == [
        Lease.State.WAITING,
        Lease.State.WAITING,
        Lease.State.QUEUED,
    ]
    now_holding = holders_of(user)
    assert [lease.pk for lease in now_holding] == [queued[0].pk, queued[1].pk]
    last = Lease.objects.get(pk=queued[2].pk)
    assert last.queue_reason.startswith(expected_reason(now_holding, QUOTA))


@pytest.mark.usefixtures("slow_count")
def test_a_release_racing_new_requests_leaves_no_slot_unused(user, full_quota):
    # Each request either sees the slot free or is queued before the release promotes the queue.
    (first, second), queued = full_quota
    via = services.Via(user=user, source="web")
    release = lambda: services.release_lease(lease_id=first.pk, via=via)  # noqa: E731

    outcomes = run_at_once([release, *ssh_requests(user, 9, label="late")])

    assert errors(outcomes) == []
    assert len(holders_of(user)) == QUOTA
    assert second in holders_of(user)
    assert Lease.objects.filter(owner=user, state=Lease.State.QUEUED).count() == len(queued) + 9 - 1
