"""Read-only health figures for operators: is the task queue alive and keeping up?"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone
from django_q.models import Failure, OrmQ, Schedule, Success

from builders.tasks import TICK_FUNC, TICK_SCHEDULE_NAME

# The tick runs every minute; three missed runs means no cluster is working.
TICK_OVERDUE = timedelta(minutes=3)


@dataclass(frozen=True)
class QueueHealth:
    """What the operators' console shows about the task queue."""

    queued: int
    oldest_queued_at: datetime | None
    last_tick_at: datetime | None
    failures_24h: int
    # When the tick has never run: when its schedule says the first run is due (None: no schedule).
    first_tick_due_at: datetime | None = None

    @property
    def tick_overdue(self) -> bool:
        """No tick for three minutes; a service that just started (its first tick due) is not late."""
        since = self.last_tick_at or self.first_tick_due_at
        return since is None or timezone.now() - since > TICK_OVERDUE


def queue_health() -> QueueHealth:
    now = timezone.now()
    oldest = OrmQ.objects.order_by("lock").values_list("lock", flat=True).first()
    last_tick = (
        Success.objects.filter(func=TICK_FUNC).order_by("-stopped").values_list("stopped", flat=True).first()
    )
    first_due = None
    if last_tick is None:
        first_due = (
            Schedule.objects.filter(name=TICK_SCHEDULE_NAME).values_list("next_run", flat=True).first()
        )
    return QueueHealth(
        queued=OrmQ.objects.count(),
        oldest_queued_at=oldest,
        last_tick_at=last_tick,
        failures_24h=Failure.objects.filter(stopped__gte=now - timedelta(hours=24)).count(),
        first_tick_due_at=first_due,
    )
