"""keep_for_ssh: a build lease whose work failed becomes its owner's SSH lease, within the quota (issue 13)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connection
from django.utils import timezone

from builders import services
from builders.models import AuditEvent, Builder, Lease, QuotaOverride, QuotaPolicy
from builders.services import LeaseNotActive, OverQuota
from builders.services import quota as quotas
from coprssh.exceptions import NotFoundError
from tests.builders.factories import make_builder, make_lease, make_pool, make_ssh_lease
from tests.concurrency import run_at_once

pytestmark = pytest.mark.django_db

T0 = datetime(2030, 3, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


@pytest.fixture
def clock():
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


def build_lease(owner, *, started: datetime | None = None) -> Lease:
    """An active lease of a normal build (started two hours ago), on a builder of its sandbox."""
    started = started or timezone.now() - 2 * HOUR
    builder = make_builder(make_pool(), state=Builder.State.LEASED, sandbox="alice/hello--alice")
    return make_lease(
        owner=owner,
        state=Lease.State.ACTIVE,
        builder=builder,
        sandbox="alice/hello--alice",
        purpose="build #7 fedora-rawhide-x86_64",
        started_at=started,
        expires_at=started + 48 * HOUR,
        max_expires_at=started + 48 * HOUR,
    )


def test_a_kept_lease_is_an_ssh_lease_of_its_own_sandbox_expiring_an_hour_from_now(clock, user):
    lease = build_lease(user)

    kept = services.keep_for_ssh(lease_id=lease.pk, via=services.TASK)

    kept.refresh_from_db()
    assert kept.ssh
    assert kept.sandbox.startswith("ssh-")
    assert kept.state == Lease.State.ACTIVE
    # An hour from the failure, and the cap counted from it too, as for any SSH builder.
    assert (kept.expires_at, kept.max_expires_at) == (T0 + HOUR, T0 + 48 * HOUR)
    builder = Builder.objects.get(pk=lease.builder_id)
    assert builder.single_use
    assert builder.sandbox == kept.sandbox
    assert builder.state == Builder.State.LEASED
    event = AuditEvent.objects.get(lease=lease, action=AuditEvent.Action.KEPT_FOR_SSH)
    assert event.source == "task"
    assert "expires 2030-03-01 13:00:00" in event.detail
    assert services.slot_holders(user) == [kept]


def test_the_policy_lifetimes_apply(clock, user):
    QuotaPolicy.get()
    QuotaPolicy.objects.filter(pk=1).update(default_lifetime=3 * HOUR, max_lifetime=5 * HOUR)
    lease = build_lease(user)

    kept = services.keep_for_ssh(lease_id=lease.pk, via=services.TASK)

    assert (kept.expires_at, kept.max_expires_at) == (T0 + 3 * HOUR, T0 + 5 * HOUR)


def test_a_kept_builder_is_terminated_when_its_lease_is_released_never_reused(clock, user, queued):
    lease = build_lease(user)
    services.keep_for_ssh(lease_id=lease.pk, via=services.TASK)

    queued.call(services.release_lease, lease_id=lease.pk, via=services.TASK)

    assert Builder.objects.get(pk=lease.builder_id).state == Builder.State.TERMINATING
    assert "builders.tasks.delete_builder" in queued.names()


def test_control_a_build_lease_released_normally_goes_back_to_its_sandbox(clock, user, queued):
    lease = build_lease(user)

    queued.call(
        services.release_lease, lease_id=lease.pk, via=services.TASK, reason=Lease.EndReason.BUILD_FINISHED
    )

    builder = Builder.objects.get(pk=lease.builder_id)
    assert (builder.state, builder.sandbox) == (Builder.State.READY, "alice/hello--alice")


def test_at_quota_nothing_changes_and_the_reason_names_the_slot_holders(clock, user):
    QuotaOverride.objects.create(user=user, max_ssh_builders=1)
    holder = make_ssh_lease(owner=user, purpose="build #3 fedora-43-x86_64")
    lease = build_lease(user)
    before = Lease.objects.filter(pk=lease.pk).values().get()

    with pytest.raises(OverQuota) as refused:
        services.keep_for_ssh(lease_id=lease.pk, via=services.TASK)

    assert (
        refused.value.message
        == f"1 of 1 SSH builders in use: build #3 fedora-43-x86_64 (SSH builder #{holder.pk})"
    )
    assert Lease.objects.filter(pk=lease.pk).values().get() == before
    assert not Builder.objects.get(pk=lease.builder_id).single_use
    event = AuditEvent.objects.get(lease=lease, action=AuditEvent.Action.KEEP_REFUSED)
    assert event.detail == refused.value.message


def test_a_queued_ssh_lease_does_not_hold_a_slot(clock, user):
    QuotaOverride.objects.create(user=user, max_ssh_builders=1)
    make_lease(owner=user, ssh=True, state=Lease.State.QUEUED)
    lease = build_lease(user)

    assert services.keep_for_ssh(lease_id=lease.pk, via=services.TASK).ssh


def test_keeping_twice_changes_nothing_the_second_time(clock, user):
    lease = build_lease(user)
    first = services.keep_for_ssh(lease_id=lease.pk, via=services.TASK)
    clock.move_to(T0 + 10 * timedelta(minutes=1))

    second = services.keep_for_ssh(lease_id=lease.pk, via=services.TASK)

    assert (second.sandbox, second.expires_at) == (first.sandbox, first.expires_at)
    assert AuditEvent.objects.filter(lease=lease, action=AuditEvent.Action.KEPT_FOR_SSH).count() == 1


@pytest.mark.parametrize("state", [Lease.State.ENDED, Lease.State.WAITING, Lease.State.ASSIGNED])
def test_only_an_active_lease_can_be_kept(clock, user, state):
    builder = make_builder(state=Builder.State.LEASED) if state != Lease.State.WAITING else None
    lease = make_lease(owner=user, state=state, builder=builder)

    with pytest.raises(LeaseNotActive):
        services.keep_for_ssh(lease_id=lease.pk, via=services.TASK)

    assert not Lease.objects.get(pk=lease.pk).ssh


def test_an_unknown_lease_is_not_found(db):
    with pytest.raises(NotFoundError):
        services.keep_for_ssh(lease_id=999999, via=services.TASK)


# --- races: keeping builders and requesting SSH leases at once ------------------------------


@pytest.fixture
def slow_count(monkeypatch):
    """Hold every quota decision open 50 ms after counting, so concurrent ones overlap."""
    count = quotas.slot_holders

    def slowly(user):
        holders = count(user)
        time.sleep(0.05)
        return holders

    monkeypatch.setattr(quotas, "slot_holders", slowly)


def keep_and_request_at_once(user) -> list[object]:
    leases = [build_lease(user, started=timezone.now()) for _ in range(6)]
    calls = [
        lambda lease=lease: services.keep_for_ssh(lease_id=lease.pk, via=services.TASK) for lease in leases
    ]
    calls += [
        lambda: services.request_lease(owner=user, arch="x86_64", ssh=True, purpose="resubmit")
        for _ in range(4)
    ]
    return run_at_once(calls)


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("slow_count")
def test_concurrent_keeps_and_ssh_requests_never_exceed_the_quota(user):
    QuotaPolicy.get()  # the row, flushed by transactional tests
    outcomes = keep_and_request_at_once(user)

    assert [o for o in outcomes if isinstance(o, BaseException) and not isinstance(o, OverQuota)] == []
    assert len(services.slot_holders(user)) == 2
    refused = [o for o in outcomes if isinstance(o, OverQuota)]
    kept = Lease.objects.filter(owner=user, ssh=True, purpose__startswith="build #7").count()
    assert kept + len(refused) == 6


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("slow_count")
def test_control_without_the_quota_lock_concurrent_keeps_exceed_the_quota(user, monkeypatch):
    if connection.vendor == "sqlite":
        pytest.skip("SQLite's IMMEDIATE transactions serialize writers, so no race can show")
    QuotaPolicy.get()
    monkeypatch.setattr(quotas, "lock_quota", lambda user: None)

    keep_and_request_at_once(user)

    assert len(services.slot_holders(user)) > 2
