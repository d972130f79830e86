"""Tasks of the builders app, run by django-q2 workers.

Each task takes ids, calls one service and logs the outcome. All are idempotent: the ORM
broker may deliver a task twice, and the tick repeats any step a lost task left undone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from django.utils import timezone

from builders import services

log = logging.getLogger(__name__)

TICK_SCHEDULE_NAME = "coprssh-tick"
TICK_FUNC = "builders.tasks.tick"


def assign_leases() -> list[int]:
    """Match waiting leases with ready builders, then start builders for what is still waiting."""
    assigned = services.assign_waiting_leases()
    services.ensure_capacity()
    return assigned


def provision_builder(builder_id: int) -> str | None:
    builder = services.provision_builder(builder_id=builder_id)
    state = builder.state if builder else None
    log.info("provision_builder %s: %s", builder_id, state)
    return state


def delete_builder(builder_id: int) -> str | None:
    builder = services.delete_builder(builder_id=builder_id)
    return builder.state if builder else None


def delete_terminating() -> int:
    return services.delete_terminating()


def health_check(builder_id: int) -> bool:
    return services.health_check(builder_id=builder_id)


def refresh_lease_file(lease_id: int) -> bool:
    return services.refresh_lease_file(lease_id=lease_id)


def start_lease(lease_id: int) -> str:
    """Start a lease that has no `on_assigned` task of its own."""
    return services.start_lease(lease_id=lease_id).state


def tick() -> dict[str, object]:
    """The one-minute safety net; each step is safe to run twice or concurrently."""
    summary: dict[str, object] = {"ran_at": timezone.now().isoformat()}
    started = time.monotonic()
    steps: list[tuple[str, Callable[[], object]]] = [
        ("expired", services.expire_leases),
        ("warned", services.warn_expiring),
        ("promoted", services.promote_all_queued),
        ("assigned", services.assign_waiting_leases),
        ("retried", services.retry_due_provisions),
        ("started", services.ensure_capacity),
        ("recovered", services.recover_stuck),
        ("abandoned", services.recover_abandoned_builders),
        ("health_checks", services.check_idle_builders),
        ("leases_recovered", services.recover_stuck_leases),
        ("orphans_deleted", services.delete_orphans),
        ("deleted", services.delete_terminating),
        # Where the SSH gateway runs: its keys from the leases as they are now, and its new logins.
        ("gateway_keys", services.write_gateway_keys),
        ("gateway_logins", services.record_gateway_logins),
    ]
    for name, step in steps:
        # One failing step (a provider that is down) must not stop the others.
        try:
            summary[name] = step()
        except Exception:
            log.exception("tick step %s failed", name)
            summary[name] = "error"
    summary["seconds"] = round(time.monotonic() - started, 3)
    log.info("tick: %s", summary)
    return summary
