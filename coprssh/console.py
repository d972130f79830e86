"""Reads for the operators' console front page: pools, SSH builders in use and the latest audit events.

Each read takes a fixed number of queries, whatever the number of pools, leases or events.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, F
from django.utils import timezone

from builders.models import AuditEvent, Builder, Lease, Pool
from builders.services import pool_health
from builds.selectors import served_by

SSH_ROWS = 50
AUDIT_ROWS = 20


@dataclass(frozen=True)
class PoolRow:
    """A pool as the front page shows it."""

    pool: Pool
    # "warm" (its warm builders are ready), "warming" (fewer ready than it keeps warm),
    # "failing" (creates fail: backing off), "paused" (an operator must resume it) or "disabled".
    state: str
    health: str  # the pool's health in one line, as the pool list shows it
    ready: int  # builders ready for a new lease
    alive: int  # builders in any state but terminated or failed

    @property
    def ok(self) -> bool:
        return self.state in ("warm", "warming", "disabled")


@dataclass(frozen=True)
class SshBuilderRow:
    """An SSH builder that holds a slot of its owner's quota, and the build phase it serves."""

    lease: Lease  # with its owner and builder (None while it waits for one)
    build_id: int | None
    chroot: str | None  # a chroot name, or "srpm"


def pool_rows(*, now: datetime | None = None) -> list[PoolRow]:
    """Every pool with its state and builder counts, in two queries."""
    now = now or timezone.now()
    counts: dict[tuple[int, str], int] = {
        (pool_id, state): n
        for pool_id, state, n in Builder.objects.alive()
        .order_by()
        .values_list("pool_id", "state")
        .annotate(n=Count("id"))
    }
    rows = []
    for pool in Pool.objects.order_by("name"):
        health = pool_health(pool, now=now)
        ready = counts.get((pool.pk, Builder.State.READY), 0)
        if not health.ok:
            state = health.state
        elif not pool.enabled:
            state = "disabled"
        else:
            state = "warm" if ready >= pool.warm_builders else "warming"
        alive = sum(n for (pool_id, _), n in counts.items() if pool_id == pool.pk)
        rows.append(PoolRow(pool=pool, state=state, health=health.text, ready=ready, alive=alive))
    return rows


def ssh_builders_in_use(*, limit: int | None = None) -> tuple[list[SshBuilderRow], int]:
    """The first `limit` SSH leases holding a slot, by user and expiry, and how many there are."""
    limit = limit or SSH_ROWS
    in_use = Lease.objects.holding_ssh_slot()
    leases = list(
        in_use.select_related("owner", "builder").order_by(
            "owner__username", F("expires_at").asc(nulls_last=True), "pk"
        )[:limit]
    )
    total = in_use.count() if len(leases) == limit else len(leases)
    phases = served_by([lease.pk for lease in leases])
    rows = []
    for lease in leases:
        build_id, chroot = phases.get(lease.pk, (None, None))
        rows.append(SshBuilderRow(lease=lease, build_id=build_id, chroot=chroot))
    return rows, total


def latest_audit_events(*, limit: int | None = None) -> list[AuditEvent]:
    """The newest audit events, with their actor and builder, in one query."""
    newest = AuditEvent.objects.select_related("actor", "builder").order_by("-created_at", "-id")
    return list(newest[: limit or AUDIT_ROWS])
