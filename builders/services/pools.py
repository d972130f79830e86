"""Failure containment per pool: backoff after failed creates, a pause after a permanent error.

Nodepool and resalloc both learned that a provider which always fails must not be asked again at
once: every failed create of a pool doubles its backoff (30 s up to 30 min by default), an error
the provider calls permanent pauses the pool until an operator resumes it, and while a pool is
failing it probes with one machine at a time. Each provisioning attempt checks the gate first,
so a pool never starts more creates in one backoff window than it had builders in flight.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from builders.models import AuditEvent, Builder, Pool
from builders.services.common import (
    ASSIGN_LEASES,
    ERROR_CHARS,
    TASK,
    Via,
    audit,
    fail_provisioning,
    queue_task,
)
from coprssh.exceptions import NotFoundError

log = logging.getLogger(__name__)

REASON_ERROR_CHARS = 300


@dataclass(frozen=True)
class PoolHealth:
    """How a pool is doing, for the admin, the waiting leases and the operators' front page."""

    state: str  # "healthy", "failing" (backing off or probing) or "paused"
    text: str  # one line, e.g. "failing since 18:25 UTC: …; next attempt 18:31 UTC"

    @property
    def ok(self) -> bool:
        return self.state == "healthy"


def backoff_for(failures: int) -> timedelta:
    """The wait after `failures` consecutive failed creates: doubling from the first step to the cap."""
    first = timedelta(seconds=settings.COPRSSH_POOL_BACKOFF_FIRST)
    cap = timedelta(seconds=settings.COPRSSH_POOL_BACKOFF_MAX)
    if failures <= 0:
        return timedelta(0)
    # Past 2**20 the product only overflows; the cap has long been reached by then.
    wait: timedelta = min(first * (2 ** min(failures - 1, 20)), cap)
    return wait


def can_create(pool: Pool, *, now: datetime | None = None) -> bool:
    """Whether the pool may start a create now (not paused, not backing off)."""
    now = now or timezone.now()
    if pool.paused_at is not None:
        return False
    return pool.backoff_until is None or pool.backoff_until <= now


def health_of(pool: Pool, *, now: datetime | None = None) -> PoolHealth:
    """The pool's state in one line, with times in the service's time zone."""
    now = now or timezone.now()
    error = _one_line(pool.last_error, REASON_ERROR_CHARS)
    if pool.paused_at is not None:
        return PoolHealth(
            "paused", f"paused since {_time(pool.paused_at)}: {error}; an operator must resume it"
        )
    if pool.consecutive_failures:
        since = _time(pool.failing_since or pool.last_error_at or now)
        if pool.backoff_until is not None and pool.backoff_until > now:
            after = f"next attempt {_time(pool.backoff_until)}"
        else:
            after = "trying again now"
        failures = pool.consecutive_failures
        return PoolHealth(
            "failing",
            f"failing since {since} ({failures} failed create{'s' if failures != 1 else ''}): {error}; {after}",
        )
    return PoolHealth("healthy", "healthy")


def waiting_reason(pools: list[Pool], *, now: datetime | None = None) -> str:
    """Why a lease that these pools could serve still waits, when every one of them is in trouble."""
    now = now or timezone.now()
    health = [(pool, health_of(pool, now=now)) for pool in pools]
    if not health or any(h.ok for _, h in health):
        return ""
    return " ".join(f"Pool {pool.name} is {h.text}." for pool, h in health)


def record_failure(*, pool_id: int, message: str, permanent: bool, now: datetime | None = None) -> Pool:
    """Count a failed create (or boot): back the pool off, and pause it on a permanent error."""
    now = now or timezone.now()
    with transaction.atomic():
        # The pool row is the lock: concurrent failures of one pool count one after the other.
        pool = Pool.objects.select_for_update().get(pk=pool_id)
        pool.consecutive_failures += 1
        pool.failing_since = pool.failing_since or now
        pool.backoff_until = now + backoff_for(pool.consecutive_failures)
        pool.last_error = message[:ERROR_CHARS]
        pool.last_error_at = now
        fields = ["consecutive_failures", "failing_since", "backoff_until", "last_error", "last_error_at"]
        if permanent and pool.paused_at is None:
            pool.paused_at = now
            fields.append("paused_at")
            audit(AuditEvent.Action.POOL_PAUSED, via=TASK, detail=f"{pool.name}: {message}"[:ERROR_CHARS])
            # Attempts waiting for the backoff would only hit the same error: give them up.
            _fail_waiting_attempts(pool, now)
        elif pool.consecutive_failures == 1:
            audit(
                AuditEvent.Action.POOL_FAILING,
                via=TASK,
                detail=f"{pool.name}: {message}; next attempt {_time(pool.backoff_until)}"[:ERROR_CHARS],
            )
        pool.save(update_fields=fields)
        # Waiting leases learn why they wait.
        queue_task(ASSIGN_LEASES)
    log.warning(
        "pool %s: %s failure %d, %s",
        pool.name,
        "permanent" if permanent else "transient",
        pool.consecutive_failures,
        "paused" if pool.paused_at else f"backing off until {pool.backoff_until:%H:%M:%S}",
    )
    return pool


def record_success(*, pool_id: int) -> bool:
    """A builder of the pool came up: its failure count starts again from zero."""
    with transaction.atomic():
        pool = Pool.objects.select_for_update().get(pk=pool_id)
        if not pool.consecutive_failures and pool.backoff_until is None:
            return False
        failures = pool.consecutive_failures
        pool.consecutive_failures = 0
        pool.failing_since = None
        pool.backoff_until = None
        pool.save(update_fields=["consecutive_failures", "failing_since", "backoff_until"])
        audit(
            AuditEvent.Action.POOL_RECOVERED,
            via=TASK,
            detail=f"{pool.name}: a builder came up after {failures} failed create(s)",
        )
    return True


def resume_pool(*, pool_id: int, via: Via) -> Pool:
    """An operator's "Resume now": forget the failures and the pause, and start builders again."""
    with transaction.atomic():
        pool = Pool.objects.select_for_update().filter(pk=pool_id).first()
        if pool is None:
            raise NotFoundError("No such pool.")
        was = health_of(pool)
        pool.consecutive_failures = 0
        pool.failing_since = None
        pool.backoff_until = None
        pool.paused_at = None
        pool.save(update_fields=["consecutive_failures", "failing_since", "backoff_until", "paused_at"])
        # Attempts waiting for the old backoff may go now.
        Builder.objects.filter(pool=pool, state=Builder.State.PROVISIONING, retry_at__isnull=False).update(
            retry_at=timezone.now()
        )
        audit(AuditEvent.Action.POOL_RESUMED, via=via, detail=f"{pool.name}: was {was.text}"[:ERROR_CHARS])
        queue_task(ASSIGN_LEASES)
    return pool


def _fail_waiting_attempts(pool: Pool, now: datetime) -> None:
    waiting = Builder.objects.filter(pool=pool, state=Builder.State.PROVISIONING, retry_at__isnull=False)
    for builder_id in list(waiting.values_list("pk", flat=True)):
        fail_provisioning(Builder(pk=builder_id), "not retried: the pool is paused", now=now)


def _time(moment: datetime) -> str:
    return f"{timezone.localtime(moment):%H:%M %Z}"


def _one_line(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
