"""Tasks of the builders app, run by django-q2 workers.

Tasks take ids, are idempotent (the ORM broker may deliver a task twice) and log what
they did. The tick runs every minute from a Schedule row (see migration 0001).
"""

from __future__ import annotations

import logging
import time

from django.utils import timezone

log = logging.getLogger(__name__)

TICK_SCHEDULE_NAME = "coprssh-tick"
TICK_FUNC = "builders.tasks.tick"


def tick() -> dict[str, object]:
    """The one-minute safety net; each step is safe to run twice or concurrently."""
    started = time.monotonic()
    summary: dict[str, object] = {"ran_at": timezone.now().isoformat()}
    # Steps (assign waiting leases, refill pools, expire leases, retry stuck transitions,
    # delete orphans) join here as the builders app grows.
    summary["seconds"] = round(time.monotonic() - started, 3)
    log.info("tick: %s", summary)
    return summary
