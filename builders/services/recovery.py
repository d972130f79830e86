"""The tick's recovery passes over builders: work whose worker died, builders nobody frees, orphans.

Each pass finds rows by age or by what no longer exists, and puts them back on the normal path
with a compare-and-swap, so two ticks at once (two clusters) do each thing once.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from builders.models import AuditEvent, Builder, Lease, Pool
from builders.providers.base import Machine, ProviderError
from builders.services import machines
from builders.services.common import DELETE_BUILDER, PROVISION_BUILDER, TICK, audit, queue_task

log = logging.getLogger(__name__)

PROVISION_STUCK_AFTER = timedelta(seconds=600 + 300 + 120)  # launch + boot timeouts, and slack
TERMINATE_STUCK_AFTER = timedelta(minutes=5)
ORPHAN_GRACE = timedelta(minutes=10)


def recover_stuck(*, now: datetime | None = None) -> dict[str, list[int]]:
    """Requeue transitions whose worker died: provisioning and terminating rows past their timeout."""
    now = now or timezone.now()
    stuck_provisioning = list(
        Builder.objects.filter(
            state=Builder.State.PROVISIONING,
            state_changed_at__lt=now - PROVISION_STUCK_AFTER,
            retry_at=None,  # those wait for their pool's backoff on purpose
        ).values_list("pk", flat=True)
    )
    for builder_id in stuck_provisioning:
        builder = Builder.objects.get(pk=builder_id)
        if builder.attempts >= machines.MAX_ATTEMPTS:
            # The worker died, not (as far as we know) the provider: the pool is not blamed.
            machines._provision_failed(
                builder, "provisioning did not finish in time", permanent=True, count_for_pool=False
            )
        else:
            # The claim in provision_builder lets exactly one run go ahead.
            Builder.objects.filter(pk=builder_id, state=Builder.State.PROVISIONING).update(
                state_changed_at=now
            )
            with transaction.atomic():
                queue_task(PROVISION_BUILDER, builder_id)
    stuck_terminating = list(
        Builder.objects.filter(
            state=Builder.State.TERMINATING, state_changed_at__lt=now - TERMINATE_STUCK_AFTER
        ).values_list("pk", flat=True)
    )
    for builder_id in stuck_terminating:
        Builder.objects.filter(pk=builder_id, state=Builder.State.TERMINATING).update(state_changed_at=now)
        with transaction.atomic():
            queue_task(DELETE_BUILDER, builder_id)
    return {"provisioning": stuck_provisioning, "terminating": stuck_terminating}


ABANDONED_GRACE = timedelta(minutes=1)


def recover_abandoned_builders(*, now: datetime | None = None) -> list[int]:
    """Terminate builders left leased by a lease that has ended or no longer exists.

    Nothing else would ever free such a builder (a lease row deleted by hand, a crash between two
    writes), and on an SSH builder its user would keep root on a machine nobody deletes.
    """
    now = now or timezone.now()
    held = Exists(Lease.objects.open().filter(builder_id=OuterRef("pk")))
    abandoned = Builder.objects.filter(
        state=Builder.State.LEASED, state_changed_at__lt=now - ABANDONED_GRACE
    ).exclude(held)
    recovered = []
    for builder_id in list(abandoned.values_list("pk", flat=True)[:200]):
        with transaction.atomic():
            # Only a ready builder can be leased, so one without an open lease stays without one;
            # the compare-and-swap still guards against a second tick doing the same.
            if (
                Builder.objects.filter(pk=builder_id, state=Builder.State.LEASED)
                .exclude(held)
                .update(state=Builder.State.TERMINATING, state_changed_at=now, last_error="lease gone")
            ):
                audit(
                    AuditEvent.Action.BUILDER_RECOVERED,
                    via=TICK,
                    builder=Builder(pk=builder_id),
                    detail="leased, but its lease has ended or is gone: terminated",
                )
                queue_task(DELETE_BUILDER, builder_id)
                recovered.append(builder_id)
    if recovered:
        log.warning("terminated builders %s: their leases had ended or were gone", recovered)
    return recovered


def delete_orphans(*, now: datetime | None = None) -> list[str]:
    """Delete machines a provider lists as ours that no live builder row claims."""
    now = now or timezone.now()
    deleted: list[str] = []
    seen: set[tuple[str, str]] = set()
    for pool in Pool.objects.all():
        try:
            provider = machines.provider_for(pool)
            listed = provider.list_owned()
        except ProviderError as exc:
            log.warning("pool %s: cannot list machines: %s", pool.name, exc.message)
            continue
        for machine in listed:
            if (pool.provider, machine.provider_id) in seen:
                continue  # two pools on one provider account list the same machines
            seen.add((pool.provider, machine.provider_id))
            if not _is_orphan(machine, now):
                continue
            try:
                provider.delete(machine.provider_id)
            except ProviderError as exc:
                log.warning("deleting orphan %s failed: %s", machine.provider_id, exc.message)
                continue
            with transaction.atomic():
                audit(
                    AuditEvent.Action.ORPHAN_DELETED,
                    via=TICK,
                    detail=f"{pool.name}: {machine.name} ({machine.provider_id})",
                )
            deleted.append(machine.provider_id)
    return deleted


def _is_orphan(machine: Machine, now: datetime) -> bool:
    raw_id = machine.metadata.get(machines.BUILDER_ID_KEY, "")
    builder = Builder.objects.filter(pk=int(raw_id)).first() if raw_id.isdigit() else None
    if builder is not None:
        if builder.state in (Builder.State.TERMINATED, Builder.State.FAILED):
            return True  # its row is final: nothing will ever use or delete it otherwise
        # A live row owns it unless it recorded another machine (an earlier attempt's leftover).
        return bool(builder.provider_id) and builder.provider_id != machine.provider_id
    # No row: maybe a create racing its own commit; wait out the grace period.
    try:
        created = datetime.fromisoformat(machine.metadata.get(machines.CREATED_KEY, ""))
    except ValueError:
        # Without a creation time we cannot tell a create in progress from a leftover.
        log.warning(
            "machine %s has no readable %s; not deleting it", machine.provider_id, machines.CREATED_KEY
        )
        return False
    if timezone.is_naive(created):
        created = timezone.make_aware(created, UTC)
    return now - created > ORPHAN_GRACE
