"""A pool whose provider fails is contained: backoff, a pause on permanent errors, a bounded create rate.

Ref: #8 — a demo pool whose sshd was missing created 496 builders in 3 minutes.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from builders import services, tasks
from builders.models import AuditEvent, Builder, Lease, Pool
from builders.providers import ProviderError
from builders.services import Via, pools
from builders.services.machines import provider_for
from tests.builders.factories import make_builder, make_pool

pytestmark = pytest.mark.django_db

ADMIN = Via(source="admin")


@pytest.fixture
def clock():
    with time_machine.travel(timezone.now(), tick=False) as traveller:
        yield traveller


def _demand(queued, user, count: int) -> list[Lease]:
    return [
        queued.call(services.request_lease, owner=user, arch="x86_64", sandbox=f"u/p{i}--u")
        for i in range(count)
    ]


def _work(queued) -> None:
    """Play the workers: run every queued task, and what those queue, until none is left."""
    queued.run(limit=500)


def _tick(queued) -> None:
    queued.call(tasks.tick)
    _work(queued)


def test_backoff_doubles_from_the_first_step_to_the_cap(settings):
    settings.COPRSSH_POOL_BACKOFF_FIRST = 30
    settings.COPRSSH_POOL_BACKOFF_MAX = 1800
    waits = [pools.backoff_for(n).total_seconds() for n in range(0, 9)]
    assert waits == [0, 30, 60, 120, 240, 480, 960, 1800, 1800]
    assert pools.backoff_for(10_000) == timedelta(seconds=1800)


def test_permanently_failing_pool_creates_at_most_max_builders_then_none_until_resumed(
    queued, fake, user, clock
):
    pool = make_pool(name="cloud", max_builders=3, warm_builders=1)
    fake.outage = "permanent"
    leases = _demand(queued, user, 10)
    _work(queued)
    # An hour of ticks with ten leases waiting.
    for _ in range(60):
        clock.shift(timedelta(minutes=1))
        _tick(queued)

    assert 1 <= len(fake.created()) <= pool.max_builders
    assert Builder.objects.filter(pool=pool).count() <= pool.max_builders
    assert not Builder.objects.filter(pool=pool).alive().exists()
    pool.refresh_from_db()
    assert pool.paused_at is not None
    assert "quota exceeded (permanent)" in pool.last_error
    assert len(AuditEvent.objects.filter(action=AuditEvent.Action.POOL_PAUSED)) == 1
    for lease in leases:
        lease.refresh_from_db()
        assert lease.state == Lease.State.WAITING
        assert lease.queue_reason.startswith("Pool cloud is paused since ")
        assert "an operator must resume it" in lease.queue_reason
    assert pools.health_of(pool).state == "paused"

    # The operator fixes the cloud and resumes the pool: builders come, leases are served.
    fake.outage = None
    created_before = len(fake.created())
    queued.call(services.resume_pool, pool_id=pool.pk, via=ADMIN)
    _work(queued)
    for _ in range(10):
        clock.shift(timedelta(minutes=1))
        _tick(queued)
    pool.refresh_from_db()
    assert pool.paused_at is None
    assert pools.health_of(pool).ok
    assert len(fake.created()) > created_before
    assert Lease.objects.filter(state=Lease.State.ACTIVE).count() == pool.max_builders
    assert [e.source for e in AuditEvent.objects.filter(action=AuditEvent.Action.POOL_RESUMED)] == ["admin"]


def test_transiently_failing_pool_backs_off_and_recovers(queued, fake, user, clock, settings):
    settings.COPRSSH_POOL_BACKOFF_FIRST = 30
    pool = make_pool(name="cloud", max_builders=2, warm_builders=0)
    fake.outage = "transient"
    [lease] = _demand(queued, user, 1)
    _work(queued)
    assert len(fake.created()) == 1
    pool.refresh_from_db()
    assert pool.consecutive_failures == 1
    lease.refresh_from_db()
    assert lease.queue_reason.startswith("Pool cloud is failing since ")
    assert f"next attempt {timezone.localtime(pool.backoff_until):%H:%M}" in lease.queue_reason

    # Within the backoff nothing is created, however often the tick and the demand ask.
    for _ in range(5):
        clock.shift(timedelta(seconds=5))
        _tick(queued)
        _demand(queued, user, 1)
        _work(queued)
    assert len(fake.created()) == 1

    # Each failure doubles the wait: 30 s, 60 s, 120 s.
    waits = []
    for _ in range(3):
        pool.refresh_from_db()
        waits.append(round((pool.backoff_until - timezone.now()).total_seconds()))
        clock.move_to(pool.backoff_until + timedelta(seconds=1))
        _tick(queued)
    assert waits[0] <= 30 - 25  # 25 s of the first 30 went by above
    assert waits[1:] == [60, 120]

    # The cloud comes back: the next attempt after the backoff succeeds, and the lease starts.
    fake.outage = None
    pool.refresh_from_db()
    clock.move_to(pool.backoff_until + timedelta(seconds=1))
    _tick(queued)
    pool.refresh_from_db()
    lease.refresh_from_db()
    assert lease.state == Lease.State.ACTIVE
    assert lease.queue_reason == ""
    assert (pool.consecutive_failures, pool.backoff_until, pool.paused_at) == (0, None, None)
    assert pools.health_of(pool).ok
    assert AuditEvent.objects.filter(action=AuditEvent.Action.POOL_RECOVERED).count() == 1


def test_failing_pool_never_creates_more_than_max_builders_in_one_backoff_window(queued, fake, user, clock):
    pool = make_pool(name="cloud", max_builders=4, warm_builders=2)
    fake.outage = "transient"
    _demand(queued, user, 20)
    _work(queued)
    windows = []
    for _ in range(8):
        before = len(fake.created())
        pool.refresh_from_db()
        until = pool.backoff_until
        # Ticks and new demand all through the window.
        while timezone.now() < until:
            clock.shift(timedelta(seconds=20))
            _tick(queued)
        windows.append(len(fake.created()) - before)
        clock.move_to(until + timedelta(seconds=1))
        _tick(queued)
    assert all(count <= pool.max_builders for count in windows), windows
    assert Builder.objects.filter(pool=pool).alive().count() <= pool.max_builders


def test_paused_pool_gives_up_attempts_waiting_for_their_retry(queued, fake, user, clock):
    pool = make_pool(name="cloud", max_builders=2, warm_builders=0)
    fake.fail_next_create()
    _demand(queued, user, 1)
    _work(queued)
    [builder] = Builder.objects.all()
    assert builder.state == Builder.State.PROVISIONING
    assert builder.retry_at is not None

    queued.call(pools.record_failure, pool_id=pool.pk, message="image gone", permanent=True)
    builder.refresh_from_db()
    assert builder.state == Builder.State.FAILED
    assert "paused" in builder.last_error
    clock.shift(timedelta(hours=1))
    _tick(queued)
    assert len(fake.created()) == 1


def test_warm_refill_respects_the_backoff(queued, fake, clock):
    pool = make_pool(name="cloud", max_builders=4, warm_builders=2)
    fake.outage = "transient"
    queued.call(services.ensure_capacity)
    _work(queued)
    created = len(fake.created())
    assert 1 <= created <= 2
    clock.shift(timedelta(seconds=10))
    _tick(queued)
    assert len(fake.created()) == created
    pool.refresh_from_db()
    assert pools.health_of(pool).state == "failing"


def test_resume_of_an_unknown_pool_is_not_found(db):
    from coprssh.exceptions import NotFoundError

    with pytest.raises(NotFoundError):
        services.resume_pool(pool_id=12345, via=ADMIN)


def test_health_text_names_the_error_and_the_next_attempt(db):
    now = timezone.now()
    pool = make_pool(
        name="cloud",
        consecutive_failures=2,
        failing_since=now - timedelta(minutes=3),
        backoff_until=now + timedelta(minutes=1),
        last_error="cannot create: flavor\nm1.huge\tis gone " + "x" * 1000,
    )
    health = pools.health_of(Pool.objects.get(pk=pool.pk), now=now)
    assert health.state == "failing"
    assert "\n" not in health.text
    assert "\t" not in health.text
    assert "cannot create: flavor m1.huge is gone" in health.text
    assert f"next attempt {timezone.localtime(pool.backoff_until):%H:%M %Z}" in health.text
    assert len(health.text) < 500


def test_a_local_pool_without_sshd_pauses_after_one_create_and_says_what_to_install(
    queued, user, clock, tmp_path
):
    """The demo's runaway (Ref: #8): sshd missing, warm 1 / max 4, 496 builders in 3 minutes."""
    pool = make_pool(
        name="local",
        max_builders=4,
        warm_builders=1,
        provider_settings={"root_dir": str(tmp_path / "local"), "sshd_path": str(tmp_path / "no-sshd")},
    )
    _demand(queued, user, 3)
    _work(queued)
    for _ in range(180):  # three minutes of ticks, one a second
        clock.shift(timedelta(seconds=1))
        queued.call(services.retry_due_provisions)
        queued.call(services.ensure_capacity)
        _work(queued)

    assert Builder.objects.filter(pool=pool).count() <= pool.max_builders
    assert sum(Builder.objects.filter(pool=pool).values_list("attempts", flat=True)) == 1
    pool.refresh_from_db()
    assert pool.paused_at is not None
    assert "apt-get install openssh-server" in pool.last_error


@pytest.mark.parametrize(
    ("provider_settings", "message"),
    [
        ({"sshd_path": "sshd"}, "sshd_path must be an absolute path"),
        ({"root_dir": "/srv/my builders"}, "root_dir must not contain whitespace"),
        ({"homes_dir": "/home/%u"}, "homes_dir must not contain whitespace"),
        ({"ipv6": "no"}, "ipv6 must be true or false"),
        ({"boot_timeout": "soon"}, "boot_timeout must be a number of seconds"),
    ],
)
def test_a_pool_whose_settings_no_provider_can_be_made_from_pauses_instead_of_crashing(
    queued, user, clock, provider_settings, message
):
    # Written past the admin (by hand, or before a rule existed): provisioning meets it.
    pool = make_pool(name="local", max_builders=4, warm_builders=1, provider_settings=provider_settings)
    _demand(queued, user, 2)
    _work(queued)
    for _ in range(10):
        clock.shift(timedelta(minutes=1))
        _tick(queued)

    pool.refresh_from_db()
    assert pool.paused_at is not None
    assert "provider settings not usable" in pool.last_error
    assert message in pool.last_error
    builders = Builder.objects.filter(pool=pool)
    assert sum(builders.values_list("attempts", flat=True)) == 1
    # The one attempt failed; those started with it were given up without one.
    assert set(builders.values_list("state", flat=True)) == {Builder.State.FAILED}
    assert builders.count() <= pool.max_builders
    assert AuditEvent.objects.filter(action=AuditEvent.Action.POOL_PAUSED).count() == 1


def test_provider_for_says_a_bad_setting_is_permanent(db):
    pool = make_pool(provider_settings={"sshd_path": "sshd"})

    with pytest.raises(ProviderError) as raised:
        provider_for(pool)

    assert raised.value.permanent
    assert f"pool {pool.name}: provider settings not usable: sshd_path must be an absolute path" in str(
        raised.value
    )


def test_a_builder_of_a_pool_with_bad_settings_stays_terminating_for_the_tick(db):
    pool = make_pool(provider_settings={"root_dir": "relative"})
    builder = make_builder(pool, state=Builder.State.TERMINATING, provider_id="coprssh-x")

    services.delete_builder(builder_id=builder.pk)

    builder.refresh_from_db()
    assert builder.state == Builder.State.TERMINATING
    assert "root_dir must be an absolute path" in builder.last_error
