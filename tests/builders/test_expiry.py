"""Expiry, prolong and keep-after-work of SSH leases, with the clock moved by time-machine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.utils import timezone

from builders import services, tasks
from builders.models import AuditEvent, Builder, Lease, QuotaOverride
from builders.services import LeaseNotActive, ProlongRefused, Via
from builders.services.machines import BUILDER_ID_KEY, CREATED_KEY
from tests.builders.factories import make_builder, make_pool

pytestmark = pytest.mark.django_db


T0 = datetime(2030, 3, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)


@pytest.fixture
def clock():
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


@pytest.fixture
def pool(db):
    return make_pool(name="cloud")


def _start_ssh_lease(queued, fake, pool, owner) -> Lease:
    """An SSH lease, active from now, on a builder whose machine the fake holds."""
    builder = make_builder(pool)
    machine = fake.add_machine(builder.name, {BUILDER_ID_KEY: str(builder.pk), CREATED_KEY: T0.isoformat()})
    Builder.objects.filter(pk=builder.pk).update(provider_id=machine.provider_id)
    lease = queued.call(services.request_lease, owner=owner, arch="x86_64", ssh=True, purpose="build 7")
    assert queued.call(services.assign_waiting_leases) == [lease.pk]
    lease = services.start_lease(lease_id=lease.pk)
    queued.take()
    return lease


def _via(user) -> Via:
    return Via(user=user, source="web", remote_addr="198.51.100.7")


# --- expiry --------------------------------------------------------------------------------


def test_ssh_lease_expires_one_hour_after_it_started(clock, queued, fake, pool, user):
    lease = _start_ssh_lease(queued, fake, pool, user)
    assert lease.expires_at == T0 + HOUR
    assert lease.max_expires_at == T0 + 48 * HOUR

    clock.move_to(T0 + 59 * MINUTE)
    assert queued.call(services.expire_leases) == 0
    lease.refresh_from_db()
    assert lease.state == Lease.State.ACTIVE
    assert lease.builder.state == Builder.State.LEASED
    assert queued.take() == []

    clock.move_to(T0 + 61 * MINUTE)
    assert queued.call(services.expire_leases) == 1
    lease.refresh_from_db()
    assert lease.state == Lease.State.ENDED
    assert lease.end_reason == Lease.EndReason.EXPIRED
    assert lease.ended_at == T0 + 61 * MINUTE
    assert lease.builder.state == Builder.State.TERMINATING
    assert queued.names() == ["builders.tasks.delete_terminating"]
    [event] = AuditEvent.objects.filter(action=AuditEvent.Action.EXPIRED)
    assert (event.lease_id, event.builder_id, event.source) == (lease.pk, lease.builder_id, "tick")

    queued.run()
    lease.builder.refresh_from_db()
    assert lease.builder.state == Builder.State.TERMINATED
    assert fake.machines == {}
    # A second pass finds nothing.
    assert queued.call(services.expire_leases) == 0


def test_expired_build_lease_does_not_return_its_builder_for_reuse(clock, queued, pool, user):
    builder = make_builder(pool)
    lease = queued.call(services.request_lease, owner=user, arch="x86_64", sandbox="alice/p--alice")
    queued.call(services.assign_waiting_leases)
    lease = services.start_lease(lease_id=lease.pk)
    assert lease.expires_at == lease.max_expires_at == T0 + 48 * HOUR  # a build lease lives to the cap
    clock.move_to(T0 + 48 * HOUR + MINUTE)
    assert queued.call(services.expire_leases) == 1
    lease.refresh_from_db()
    builder.refresh_from_db()
    assert lease.end_reason == Lease.EndReason.MAX_LIFETIME
    assert builder.state == Builder.State.TERMINATING


def test_expiry_frees_the_quota_slot_for_a_queued_ssh_lease(clock, queued, fake, pool, user):
    QuotaOverride.objects.create(user=user, max_ssh_builders=1)
    first = _start_ssh_lease(queued, fake, pool, user)
    second = queued.call(services.request_lease, owner=user, arch="x86_64", ssh=True, purpose="build 8")
    assert second.state == Lease.State.QUEUED
    assert f"#{first.pk}" in second.queue_reason
    clock.move_to(T0 + 61 * MINUTE)
    queued.call(services.expire_leases)
    second.refresh_from_db()
    assert second.state == Lease.State.WAITING
    assert second.queue_reason == ""


# --- keep after work -----------------------------------------------------------------------


def test_keep_after_work_counts_the_hour_from_the_end_of_the_work(clock, queued, fake, pool, user):
    lease = _start_ssh_lease(queued, fake, pool, user)
    clock.move_to(T0 + 2 * HOUR)  # a two-hour build, expired on paper, not yet swept
    lease = services.keep_after_work(lease_id=lease.pk, finished_at=T0 + 90 * MINUTE)
    assert lease.expires_at == T0 + 150 * MINUTE
    assert queued.call(services.expire_leases) == 0


def test_keep_after_work_never_shortens_the_expiry(clock, queued, fake, pool, user):
    lease = _start_ssh_lease(queued, fake, pool, user)
    lease = services.keep_after_work(lease_id=lease.pk, finished_at=T0 - 30 * MINUTE)
    assert lease.expires_at == T0 + HOUR


def test_keep_after_work_never_passes_the_cap(clock, queued, fake, pool, user):
    lease = _start_ssh_lease(queued, fake, pool, user)
    lease = services.keep_after_work(lease_id=lease.pk, finished_at=T0 + 47 * HOUR + 30 * MINUTE)
    assert lease.expires_at == lease.max_expires_at == T0 + 48 * HOUR


def test_keep_after_work_on_an_ended_lease_is_refused(clock, queued, fake, pool, user):
    lease = _start_ssh_lease(queued, fake, pool, user)
    queued.call(services.release_lease, lease_id=lease.pk, via=_via(user))
    with pytest.raises(LeaseNotActive):
        services.keep_after_work(lease_id=lease.pk)


# --- prolong -------------------------------------------------------------------------------


def test_prolong_adds_hours_to_the_current_expiry(clock, queued, fake, pool, user):
    lease = _start_ssh_lease(queued, fake, pool, user)
    lease = services.prolong_lease(lease_id=lease.pk, hours=3, via=_via(user))
    assert lease.expires_at == T0 + 4 * HOUR
    [event] = AuditEvent.objects.filter(action=AuditEvent.Action.PROLONGED)
    assert (event.actor, event.source, event.remote_addr) == (user, "web", "198.51.100.7")


def test_prolong_past_the_cap_is_refused_naming_the_latest_time(clock, queued, fake, pool, user):
    lease = _start_ssh_lease(queued, fake, pool, user)
    with pytest.raises(ProlongRefused) as refused:
        services.prolong_lease(lease_id=lease.pk, hours=48, via=_via(user))
    assert "2030-03-03 12:00:00 UTC" in refused.value.message
    assert "47 h 0 min" in refused.value.message
    lease.refresh_from_db()
    assert lease.expires_at == T0 + HOUR
    assert lease.state == Lease.State.ACTIVE
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.PROLONGED).exists()
    [event] = AuditEvent.objects.filter(action=AuditEvent.Action.PROLONG_REFUSED)
    assert event.detail == refused.value.message


def test_prolong_up_to_the_cap_is_allowed_and_nothing_beyond(clock, queued, fake, pool, user):
    lease = _start_ssh_lease(queued, fake, pool, user)
    lease = services.prolong_lease(lease_id=lease.pk, hours=47, via=_via(user))
    assert lease.expires_at == lease.max_expires_at
    with pytest.raises(ProlongRefused, match="at most 0 h 0 min more"):
        services.prolong_lease(lease_id=lease.pk, hours=1, via=_via(user))
    lease.refresh_from_db()
    assert lease.expires_at == T0 + 48 * HOUR


def test_prolong_of_an_ended_lease_is_refused(clock, queued, fake, pool, user):
    lease = _start_ssh_lease(queued, fake, pool, user)
    clock.move_to(T0 + 61 * MINUTE)
    queued.call(services.expire_leases)
    with pytest.raises(LeaseNotActive):
        services.prolong_lease(lease_id=lease.pk, hours=1, via=_via(user))
    lease.refresh_from_db()
    assert (lease.state, lease.expires_at) == (Lease.State.ENDED, T0 + HOUR)


def test_lease_expiring_at_its_cap_ends_with_max_lifetime(clock, queued, fake, pool, user):
    lease = _start_ssh_lease(queued, fake, pool, user)
    services.prolong_lease(lease_id=lease.pk, hours=47, via=_via(user))
    clock.move_to(T0 + 47 * HOUR + 59 * MINUTE)
    assert queued.call(services.expire_leases) == 0
    clock.move_to(T0 + 48 * HOUR + MINUTE)
    assert queued.call(services.expire_leases) == 1
    lease.refresh_from_db()
    assert lease.end_reason == Lease.EndReason.MAX_LIFETIME


# --- the tick ------------------------------------------------------------------------------


def test_tick_expires_due_leases_and_deletes_their_machines(clock, queued, fake, pool, user, other_user):
    due = _start_ssh_lease(queued, fake, pool, user)
    clock.move_to(T0 + 30 * MINUTE)
    fresh = _start_ssh_lease(queued, fake, pool, other_user)
    clock.move_to(T0 + 61 * MINUTE)

    summary = queued.call(tasks.tick)

    assert summary["expired"] == 1
    assert summary["deleted"] == 1
    assert "error" not in summary.values()
    due.refresh_from_db()
    fresh.refresh_from_db()
    assert (due.state, due.end_reason) == (Lease.State.ENDED, Lease.EndReason.EXPIRED)
    assert fresh.state == Lease.State.ACTIVE
    assert due.builder.state == Builder.State.TERMINATED
    assert fresh.builder.state == Builder.State.LEASED
    assert set(fake.machines) == {fresh.builder.provider_id}


# --- cost ----------------------------------------------------------------------------------


def _bulk_expired_leases(pool, owner, count: int, tag: str) -> None:
    now = timezone.now()
    builders = Builder.objects.bulk_create(
        Builder(
            pool=pool,
            state=Builder.State.LEASED,
            name=f"{tag}-{i}",
            sandbox=f"ssh-{tag}-{i}",
            single_use=True,
        )
        for i in range(count)
    )
    Lease.objects.bulk_create(
        Lease(
            owner=owner,
            sandbox=builder.sandbox,
            ssh=True,
            arch="x86_64",
            state=Lease.State.ACTIVE,
            builder_id=builder.pk,
            started_at=now - 2 * HOUR,
            expires_at=now - HOUR,
            max_expires_at=now + 46 * HOUR,
        )
        for builder in builders
    )


def test_expire_leases_runs_a_constant_number_of_queries(queued, pool, user, django_assert_max_num_queries):
    # Measured: savepoint, select due, update leases, update builders, insert events,
    # select owners with queued leases, release savepoint.
    _bulk_expired_leases(pool, user, 10, "small")
    with django_assert_max_num_queries(7) as small:
        assert queued.call(services.expire_leases) == 10
    _bulk_expired_leases(pool, user, 1000, "large")
    with django_assert_max_num_queries(7) as large:
        assert queued.call(services.expire_leases) == 1000
    assert len(large.captured_queries) == len(small.captured_queries)
    assert Lease.objects.filter(state=Lease.State.ENDED, end_reason=Lease.EndReason.EXPIRED).count() == 1010
    assert Builder.objects.filter(state=Builder.State.TERMINATING).count() == 1010
    assert AuditEvent.objects.filter(action=AuditEvent.Action.EXPIRED).count() == 1010
