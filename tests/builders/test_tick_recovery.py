"""The tick's passes over idle and abandoned builders: dead idle builders are replaced, and a
builder whose lease ended or vanished is terminated (Ref: #8)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from builders import services, tasks
from builders.models import AuditEvent, Builder, Lease
from tests.builders.factories import make_builder, make_pool, make_ssh_lease

pytestmark = pytest.mark.django_db

TICK_EVERY = timedelta(seconds=61)


@pytest.fixture
def clock():
    with time_machine.travel(timezone.now(), tick=False) as traveller:
        yield traveller


def _tick(queued) -> dict:
    summary = queued.call(tasks.tick)
    queued.run(limit=200)
    return summary


def _warm_builder(queued, fake, pool) -> Builder:
    queued.call(services.ensure_capacity)
    queued.run()
    [builder] = Builder.objects.filter(pool=pool, state=Builder.State.READY)
    return builder


def test_idle_builder_whose_ssh_died_is_replaced_within_two_ticks(queued, fake, clock, settings):
    settings.COPRSSH_HEALTH_CHECK_SECONDS = 60
    pool = make_pool(name="cloud", warm_builders=1)
    first = _warm_builder(queued, fake, pool)
    fake.kill(first.provider_id)

    for _ in range(2):
        clock.shift(TICK_EVERY + timedelta(seconds=1))
        _tick(queued)

    first.refresh_from_db()
    assert first.state == Builder.State.TERMINATED
    assert first.last_error.startswith("health check:")
    [replacement] = Builder.objects.filter(pool=pool, state=Builder.State.READY)
    assert replacement.pk != first.pk
    assert first.provider_id not in fake.machines


def test_healthy_idle_builders_are_checked_once_per_interval_and_kept(queued, fake, clock, settings):
    settings.COPRSSH_HEALTH_CHECK_SECONDS = 60
    pool = make_pool(name="cloud", warm_builders=1)
    builder = _warm_builder(queued, fake, pool)
    # Not yet idle long enough.
    assert queued.call(services.check_idle_builders) == []

    clock.shift(timedelta(seconds=61))
    assert queued.call(services.check_idle_builders) == [builder.pk]
    assert queued.take() == [("builders.tasks.health_check", (builder.pk,))]
    # A second tick at once does not check it again.
    assert queued.call(services.check_idle_builders) == []
    clock.shift(timedelta(seconds=61))
    assert queued.call(services.check_idle_builders) == [builder.pk]
    queued.run()
    builder.refresh_from_db()
    assert builder.state == Builder.State.READY


def test_health_checks_per_tick_are_bounded(queued, fake, clock, settings):
    settings.COPRSSH_HEALTH_CHECK_SECONDS = 60
    pool = make_pool(name="cloud", max_builders=30)
    for _ in range(25):
        make_builder(pool, state_changed_at=timezone.now() - timedelta(hours=1))
    assert len(queued.call(services.check_idle_builders, limit=10)) == 10
    assert len(queued.call(services.check_idle_builders, limit=10)) == 10
    assert len(queued.call(services.check_idle_builders, limit=10)) == 5


def test_health_checks_can_be_turned_off(queued, fake, settings):
    settings.COPRSSH_HEALTH_CHECK_SECONDS = 0
    pool = make_pool(name="cloud")
    make_builder(pool, state_changed_at=timezone.now() - timedelta(hours=1))
    assert queued.call(services.check_idle_builders) == []


def test_builder_of_a_deleted_active_ssh_lease_is_terminated_at_the_next_tick(queued, fake, user, clock):
    pool = make_pool(name="cloud")
    machine = fake.add_machine("cloud-x", {})
    builder = make_builder(
        pool, state=Builder.State.LEASED, provider_id=machine.provider_id, single_use=True, sandbox="ssh-1"
    )
    lease = make_ssh_lease(owner=user, builder=builder, sandbox="ssh-1")
    Lease.objects.filter(pk=lease.pk).delete()  # as the admin's delete did, bypassing the services

    clock.shift(TICK_EVERY)
    summary = _tick(queued)

    assert summary["abandoned"] == [builder.pk]
    builder.refresh_from_db()
    assert builder.state == Builder.State.TERMINATED
    assert machine.provider_id not in fake.machines
    [event] = AuditEvent.objects.filter(action=AuditEvent.Action.BUILDER_RECOVERED)
    assert event.builder_id == builder.pk


def test_builder_left_leased_by_an_ended_lease_is_terminated(queued, fake, user, clock):
    pool = make_pool(name="cloud")
    machine = fake.add_machine("cloud-y", {})
    builder = make_builder(pool, state=Builder.State.LEASED, provider_id=machine.provider_id, sandbox="s")
    make_ssh_lease(
        owner=user, builder=builder, sandbox="s", ssh=False, state=Lease.State.ENDED, ended_at=timezone.now()
    )

    clock.shift(TICK_EVERY)
    _tick(queued)

    builder.refresh_from_db()
    assert builder.state == Builder.State.TERMINATED
    assert fake.machines == {}


def test_builder_with_an_open_lease_is_left_alone(queued, fake, user, clock):
    pool = make_pool(name="cloud")
    machine = fake.add_machine("cloud-z", {})
    builder = make_builder(pool, state=Builder.State.LEASED, provider_id=machine.provider_id, sandbox="ssh-2")
    make_ssh_lease(owner=user, builder=builder, sandbox="ssh-2")

    clock.shift(timedelta(hours=2))
    assert queued.call(services.recover_abandoned_builders) == []
    builder.refresh_from_db()
    assert builder.state == Builder.State.LEASED
