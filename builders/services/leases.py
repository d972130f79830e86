"""Leases: request, assign, start, prolong, release and expire.

Assignment follows resalloc's rules: a builder takes the sandbox of its first lease and
afterwards serves only leases of that sandbox; reused builders are preferred; an SSH lease
gets a sandbox of its own and its builder is terminated when the lease ends.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta

from django.contrib.auth.models import User
from django.db import connection, transaction
from django.db.models import Case, F, Q, Value, When
from django.utils import timezone

from builders.models import AuditEvent, Builder, Lease, Pool
from builders.services import pools as pool_health
from builders.services import quota as quotas
from builders.services.common import (
    ASSIGN_LEASES,
    DELETE_BUILDER,
    DELETE_TERMINATING,
    REFRESH_LEASE_FILE,
    START_LEASE,
    TICK,
    LeaseNotActive,
    OverQuota,
    ProlongRefused,
    Via,
    audit,
    queue_task,
)
from builders.services.gateway import gateway_changed
from coprssh.exceptions import NotFoundError, ServiceError

log = logging.getLogger(__name__)

MAX_PROLONG_HOURS = 48
# Ready builders tried per lease before giving the turn to the next lease.
CANDIDATES = 20


def pools_for(*, arch: str, pool_id: int | None = None) -> list[Pool]:
    """Enabled pools that serve `arch` (or just the one asked for), by name."""
    pools = Pool.objects.filter(enabled=True)
    if pool_id is not None:
        pools = pools.filter(pk=pool_id)
    return [pool for pool in pools if arch in pool.architectures]


# --- request ------------------------------------------------------------------------


def request_lease(
    *,
    owner: User,
    arch: str,
    sandbox: str = "",
    ssh: bool = False,
    purpose: str = "",
    pool: Pool | None = None,
    on_assigned: str = "",
    via: Via | None = None,
    at_once: bool = False,
) -> Lease:
    """Ask for a builder of `arch`; an SSH lease over the owner's quota is queued with a reason.

    With `at_once`, a ready builder is assigned as soon as the caller's transaction commits, in the
    caller's process (a user waiting for an SSH builder saves a trip through the task queue).
    """
    via = via or Via(user=owner, source="task")
    if not ssh and not sandbox:
        raise ServiceError("A lease without SSH needs a sandbox.", field="sandbox")
    with transaction.atomic():
        state = Lease.State.WAITING
        reason = ""
        if ssh:
            # Nobody ever shares an SSH builder: its sandbox is unique.
            sandbox = f"ssh-{uuid.uuid4().hex}"
            quotas.lock_quota(owner)
            quota = quotas.quota_for(owner)
            holders = quotas.slot_holders(owner)
            if len(holders) >= quota.max_ssh_builders:
                state = Lease.State.QUEUED
                reason = quotas.over_quota_reason(quota, holders)
        if state == Lease.State.WAITING and not pools_for(arch=arch, pool_id=pool.pk if pool else None):
            reason = f"No builder pool serves {arch}; the lease waits until an operator adds one."
        lease = Lease.objects.create(
            owner=owner,
            sandbox=sandbox,
            ssh=ssh,
            purpose=purpose[:200],
            arch=arch,
            pool=pool,
            on_assigned=on_assigned,
            state=state,
            queue_reason=reason,
        )
        action = (
            AuditEvent.Action.LEASE_QUEUED
            if state == Lease.State.QUEUED
            else AuditEvent.Action.LEASE_REQUESTED
        )
        audit(action, via=via, lease=lease, detail=reason or purpose)
        if state == Lease.State.WAITING and at_once:
            # A ready builder is given right after commit, without a trip through the task queue;
            # only when none is ready does a task look further (and start builders).
            lease_id = lease.pk
            transaction.on_commit(lambda: _assign_or_queue(lease_id))
        elif state == Lease.State.WAITING:
            queue_task(ASSIGN_LEASES)
    log.info("lease %s requested by %s: %s %s", lease.pk, owner.pk, state, reason)
    return lease


def _assign_or_queue(lease_id: int) -> None:
    try:
        assigned = _assign_one(lease_id)
    except _Retry:
        assigned = False
    if not assigned:
        with transaction.atomic():
            queue_task(ASSIGN_LEASES)


# --- assign ---------------------------------------------------------------------------


class _Retry(Exception):
    """Roll back a half-made assignment (the lease changed under us)."""


def assign_waiting_leases(*, limit: int = 200) -> list[int]:
    """Give ready builders to waiting leases, oldest first; return the ids of leases assigned."""
    assigned = []
    waiting = Lease.objects.filter(state=Lease.State.WAITING).order_by("created_at", "id")
    for lease_id in list(waiting.values_list("pk", flat=True)[:limit]):
        try:
            if _assign_one(lease_id):
                assigned.append(lease_id)
        except _Retry:
            continue
    return assigned


def _assign_one(lease_id: int) -> bool:
    with transaction.atomic():
        lease = Lease.objects.filter(pk=lease_id, state=Lease.State.WAITING).first()
        if lease is None:
            return False
        pools = pools_for(arch=lease.arch, pool_id=lease.pool_id)
        if not pools:
            reason = f"No builder pool serves {lease.arch}; the lease waits until an operator adds one."
            Lease.objects.filter(pk=lease.pk, state=Lease.State.WAITING).update(queue_reason=reason)
            return False
        ready = Builder.objects.ready().filter(pool__in=pools)
        # Reuse first: a builder already in this sandbox; then a fresh one.
        candidates: list[tuple[int, str | None]] = []
        if not lease.ssh:
            reused = ready.filter(sandbox=lease.sandbox, single_use=False).order_by("-reuse_count", "id")
            candidates += [(pk, lease.sandbox) for pk in reused.values_list("pk", flat=True)[:CANDIDATES]]
        fresh = ready.filter(sandbox__isnull=True, reuse_count=0).order_by("id")
        candidates += [(pk, None) for pk in fresh.values_list("pk", flat=True)[:CANDIDATES]]
        now = timezone.now()
        for builder_id, current_sandbox in candidates:
            # Compare-and-swap: only one lease can move this builder out of READY.
            claim = Builder.objects.filter(pk=builder_id, state=Builder.State.READY, sandbox=current_sandbox)
            if current_sandbox is None:
                claim = Builder.objects.filter(pk=builder_id, state=Builder.State.READY, sandbox__isnull=True)
            if not claim.update(
                state=Builder.State.LEASED, sandbox=lease.sandbox, single_use=lease.ssh, state_changed_at=now
            ):
                continue
            took = Lease.objects.filter(pk=lease.pk, state=Lease.State.WAITING).update(
                state=Lease.State.ASSIGNED, builder_id=builder_id, assigned_at=now, queue_reason=""
            )
            if not took:
                raise _Retry()
            lease.refresh_from_db()
            audit(AuditEvent.Action.LEASE_ASSIGNED, via=TICK, lease=lease, detail=f"builder #{builder_id}")
            log.info("lease %s assigned builder %s", lease.pk, builder_id)
            queue_task(lease.on_assigned or START_LEASE, lease.pk)
            return True
        # A waiting lease's reason is about its pools (quota reasons belong to queued leases).
        reason = pool_health.waiting_reason(pools, now=now)
        if lease.queue_reason != reason:
            Lease.objects.filter(pk=lease.pk, state=Lease.State.WAITING).update(queue_reason=reason)
    return False


# --- start, prolong, release ---------------------------------------------------------


def start_lease(*, lease_id: int, via: Via = TICK) -> Lease:
    """Hand the assigned builder over: the lease is active and its expiry starts counting."""
    with transaction.atomic():
        lease = Lease.objects.select_for_update().filter(pk=lease_id).first()
        if lease is None:
            raise NotFoundError("No such lease.")
        if lease.state == Lease.State.ACTIVE:
            return lease  # a repeated delivery of the same task
        if lease.state != Lease.State.ASSIGNED:
            raise LeaseNotActive(f"Lease #{lease.pk} is {lease.state}; only an assigned lease can start.")
        quota = quotas.quota_for(lease.owner)
        now = timezone.now()
        lease.state = Lease.State.ACTIVE
        lease.started_at = now
        lease.max_expires_at = now + quota.max_lifetime
        # A build lease is not a user's to keep: it lives as long as the cap allows.
        lease.expires_at = (
            min(now + quota.default_lifetime, lease.max_expires_at) if lease.ssh else lease.max_expires_at
        )
        lease.save(update_fields=["state", "started_at", "expires_at", "max_expires_at"])
        audit(
            AuditEvent.Action.LEASE_STARTED,
            via=via,
            lease=lease,
            detail=f"expires {lease.expires_at:%Y-%m-%d %H:%M:%S %Z}",
        )
    return lease


def keep_after_work(*, lease_id: int, finished_at: datetime | None = None) -> Lease:
    """The work on an SSH builder finished: keep it for the default lifetime from now (never past the cap)."""
    finished_at = finished_at or timezone.now()
    with transaction.atomic():
        lease = Lease.objects.select_for_update().filter(pk=lease_id).first()
        if lease is None:
            raise NotFoundError("No such lease.")
        if lease.state != Lease.State.ACTIVE or lease.expires_at is None or lease.max_expires_at is None:
            raise LeaseNotActive(f"Lease #{lease.pk} is not active.")
        wanted = min(finished_at + quotas.quota_for(lease.owner).default_lifetime, lease.max_expires_at)
        if wanted > lease.expires_at:
            lease.expires_at = wanted
            lease.save(update_fields=["expires_at"])
            queue_task(REFRESH_LEASE_FILE, lease.pk)
    return lease


def keep_for_ssh(*, lease_id: int, via: Via) -> Lease:
    """Turn an active build lease into an SSH lease of its owner from now on; OverQuota without a free slot.

    The work on the builder failed and its owner asked to debug it there. From here on the builder
    is the owner's: a sandbox of its own, never reused, terminated when the lease ends; the lease
    expires like any SSH lease (the default lifetime from now, the cap counted from now) and holds
    one of the owner's SSH slots. Over quota nothing changes and the caller releases the lease.
    """
    owner_id = Lease.objects.filter(pk=lease_id).values_list("owner_id", flat=True).first()
    if owner_id is None:
        raise NotFoundError("No such lease.")
    refusal: OverQuota | None = None
    with transaction.atomic():
        # The quota lock first (the owner's row), as request_lease takes it: a concurrent SSH
        # request of the same owner waits, so two of them cannot both take the last slot.
        owner = User.objects.get(pk=owner_id)
        quotas.lock_quota(owner)
        lease = Lease.objects.select_for_update().filter(pk=lease_id).first()
        if lease is None or lease.state != Lease.State.ACTIVE or lease.builder_id is None:
            raise LeaseNotActive(f"Lease #{lease_id} is not active; its builder cannot be kept.")
        if lease.ssh:
            return lease  # kept already (a repeated call)
        quota = quotas.quota_for(owner)
        holders = quotas.slot_holders(owner)
        if len(holders) >= quota.max_ssh_builders:
            refusal = OverQuota(quotas.slots_in_use(quota, holders))
        else:
            now = timezone.now()
            sandbox = f"ssh-{uuid.uuid4().hex}"
            lease.ssh = True
            lease.sandbox = sandbox
            lease.max_expires_at = now + quota.max_lifetime
            lease.expires_at = min(now + quota.default_lifetime, lease.max_expires_at)
            lease.warned_at = None
            lease.save(update_fields=["ssh", "sandbox", "expires_at", "max_expires_at", "warned_at"])
            # Tainted from now on: whatever happens to the lease, the builder is not reused.
            Builder.objects.filter(pk=lease.builder_id).update(single_use=True, sandbox=sandbox)
            audit(
                AuditEvent.Action.KEPT_FOR_SSH,
                via=via,
                lease=lease,
                detail=f"the work failed; kept for SSH, expires {lease.expires_at:%Y-%m-%d %H:%M:%S %Z}",
            )
    if refusal is not None:
        with transaction.atomic():
            audit(AuditEvent.Action.KEEP_REFUSED, via=via, lease=lease, detail=refusal.message)
        raise refusal
    log.info("lease %s kept for SSH", lease_id)
    return lease


def prolong_lease(*, lease_id: int, hours: int, via: Via, owner: User | None = None) -> Lease:
    """Add `hours` to the lease's expiry; refused past its cap (the message names the latest time)."""
    if isinstance(hours, bool) or not isinstance(hours, int) or not 1 <= hours <= MAX_PROLONG_HOURS:
        raise ServiceError(f"Hours must be a whole number from 1 to {MAX_PROLONG_HOURS}.", field="hours")
    with transaction.atomic():
        lease = _locked_lease(lease_id, owner)
        if lease is None:
            raise NotFoundError("No such SSH builder.")
        if lease.state != Lease.State.ACTIVE or lease.expires_at is None or lease.max_expires_at is None:
            raise LeaseNotActive(
                f"Lease #{lease.pk} is {lease.state}; only an active lease can be prolonged."
            )
        wanted = lease.expires_at + timedelta(hours=hours)
        if wanted > lease.max_expires_at:
            refusal = _prolong_refusal(lease, hours)
        else:
            refusal = None
            lease.expires_at = wanted
            lease.warned_at = None
            lease.save(update_fields=["expires_at", "warned_at"])
            audit(
                AuditEvent.Action.PROLONGED,
                via=via,
                lease=lease,
                detail=f"+{hours} h, expires {wanted:%Y-%m-%d %H:%M:%S %Z}",
            )
            if lease.ssh and via.source != "builder":  # copr-builder updates its own file
                queue_task(REFRESH_LEASE_FILE, lease.pk)
            if lease.ssh:
                gateway_changed()  # the key's expiry on the gateway follows the lease's
    if refusal is not None:
        with transaction.atomic():
            audit(AuditEvent.Action.PROLONG_REFUSED, via=via, lease=lease, detail=refusal.message)
        raise refusal
    return lease


def _locked_lease(lease_id: int, owner: User | None) -> Lease | None:
    """The lease, locked until the transaction ends; with `owner`, only one of their SSH leases."""
    leases = Lease.objects.select_for_update()
    if owner is not None:
        # Users act on their SSH builders only; build leases are the service's business.
        leases = leases.filter(owner_id=owner.pk, ssh=True)
    return leases.filter(pk=lease_id).first()


def _prolong_refusal(lease: Lease, hours: int) -> ProlongRefused:
    assert lease.max_expires_at is not None
    assert lease.expires_at is not None
    latest = timezone.localtime(lease.max_expires_at)
    room = int((lease.max_expires_at - lease.expires_at).total_seconds() // 60)
    return ProlongRefused(
        f"Cannot prolong by {hours} h: this builder may live until {latest:%Y-%m-%d %H:%M:%S %Z} at the latest "
        f"(at most {room // 60} h {room % 60} min more).",
        field="hours",
    )


def release_lease(
    *,
    lease_id: int,
    via: Via,
    reason: str = Lease.EndReason.RELEASED,
    owner: User | None = None,
) -> Lease:
    """End a lease now; ending one that has ended changes nothing."""
    with transaction.atomic():
        lease = _locked_lease(lease_id, owner)
        if lease is None:
            raise NotFoundError("No such SSH builder." if owner is not None else "No such lease.")
        if lease.state == Lease.State.ENDED:
            return lease
        held_slot = lease.ssh and lease.state in Lease.SLOT_STATES
        now = timezone.now()
        lease.state = Lease.State.ENDED
        lease.ended_at = now
        lease.end_reason = reason
        lease.save(update_fields=["state", "ended_at", "end_reason"])
        if lease.builder_id is not None:
            _give_back(lease, now)
        action = AuditEvent.Action.EXPIRED if reason in _EXPIRY_REASONS else AuditEvent.Action.RELEASED
        audit(action, via=via, lease=lease, detail=reason)
        if held_slot:
            promote_queued_leases(owner_id=lease.owner_id)
        if lease.ssh:
            gateway_changed()  # its keys stop reaching the builder through the gateway
        queue_task(ASSIGN_LEASES)
    log.info("lease %s ended: %s", lease.pk, reason)
    return lease


_EXPIRY_REASONS = {Lease.EndReason.EXPIRED, Lease.EndReason.MAX_LIFETIME}


def _give_back(lease: Lease, now: datetime) -> None:
    """After its lease, a builder is terminated (SSH or failed work) or returned for reuse."""
    terminate = lease.ssh or lease.end_reason in {Lease.EndReason.FAILED, Lease.EndReason.TERMINATED}
    assert lease.builder_id is not None
    builders = Builder.objects.filter(pk=lease.builder_id, state=Builder.State.LEASED)
    if terminate or builders.filter(single_use=True).exists():
        if builders.update(state=Builder.State.TERMINATING, state_changed_at=now):
            queue_task(DELETE_BUILDER, lease.builder_id)
    else:
        builders.update(state=Builder.State.READY, reuse_count=F("reuse_count") + 1, state_changed_at=now)


def promote_queued_leases(*, owner_id: int) -> list[int]:
    """Let an owner's queued SSH leases wait for a builder while slots are free, oldest first."""
    from django.contrib.auth import get_user_model

    owner = get_user_model().objects.filter(pk=owner_id).first()
    if owner is None:
        return []
    with transaction.atomic():
        quotas.lock_quota(owner)
        quota = quotas.quota_for(owner)
        holders = quotas.slot_holders(owner)
        queued = list(
            Lease.objects.filter(owner_id=owner_id, ssh=True, state=Lease.State.QUEUED).order_by(
                "created_at", "id"
            )
        )
        free = max(quota.max_ssh_builders - len(holders), 0)
        promoted = [lease.pk for lease in queued[:free]]
        if promoted:
            Lease.objects.filter(pk__in=promoted, state=Lease.State.QUEUED).update(
                state=Lease.State.WAITING, queue_reason=""
            )
            queue_task(ASSIGN_LEASES)
        still = queued[free:]
        if still:
            holders = quotas.slot_holders(owner)
            Lease.objects.filter(pk__in=[lease.pk for lease in still]).update(
                queue_reason=quotas.over_quota_reason(quota, holders)
            )
    return promoted


def promote_all_queued() -> list[int]:
    """The tick's pass over every owner with queued leases (a quota raised in the admin lands here)."""
    owners = Lease.objects.filter(state=Lease.State.QUEUED).values_list("owner_id", flat=True).distinct()
    promoted: list[int] = []
    for owner_id in list(owners):
        promoted += promote_queued_leases(owner_id=owner_id)
    return promoted


# --- expiry ---------------------------------------------------------------------------


def expire_leases(*, now: datetime | None = None) -> int:
    """End every active lease past its expiry in a few statements, whatever their number.

    Their builders are terminated: an SSH builder is never reused, and a build lease that
    outlived its cap means stuck work on a builder that is not trusted any more.
    """
    now = now or timezone.now()
    with transaction.atomic():
        # Locked so a concurrent release or prolong waits for this pass (or sees it done);
        # a second pass running at once skips them.
        due = list(
            Lease.objects.select_for_update(skip_locked=True)
            .filter(state=Lease.State.ACTIVE, expires_at__lte=now)
            .values_list("owner_id", "ssh")
        )
        if not due:
            return 0
        _audit_expiry(now)
        ended = Lease.objects.filter(state=Lease.State.ACTIVE, expires_at__lte=now).update(
            state=Lease.State.ENDED,
            ended_at=now,
            end_reason=Case(
                When(Q(expires_at__gte=F("max_expires_at")), then=Value(Lease.EndReason.MAX_LIFETIME)),
                default=Value(Lease.EndReason.EXPIRED),
            ),
        )
        just_ended = Lease.objects.filter(
            state=Lease.State.ENDED, ended_at=now, end_reason__in=_EXPIRY_REASONS
        )
        Builder.objects.filter(state=Builder.State.LEASED, pk__in=just_ended.values("builder_id")).update(
            state=Builder.State.TERMINATING, state_changed_at=now
        )
        ssh_owners = {owner_id for owner_id, ssh in due if ssh}
        if ssh_owners:
            gateway_changed()
        owners_with_queue = set(
            Lease.objects.filter(state=Lease.State.QUEUED, owner_id__in=ssh_owners).values_list(
                "owner_id", flat=True
            )
        )
        # A fixed order, so two passes running at once cannot lock owners crosswise.
        for owner_id in sorted(owners_with_queue):
            promote_queued_leases(owner_id=owner_id)
        queue_task(DELETE_TERMINATING)
    log.info("expired %d leases", ended)
    return ended


def _audit_expiry(now: datetime) -> None:
    """One INSERT … SELECT for the audit events of all due leases (bulk_create batches on SQLite)."""
    ops = connection.ops
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {AuditEvent._meta.db_table} (created_at, action, source, detail, lease_id, builder_id) "
            f"SELECT %s, %s, %s, end_text, id, builder_id FROM ("
            f"  SELECT id, builder_id, CASE WHEN expires_at >= max_expires_at THEN %s ELSE %s END AS end_text"
            f"  FROM {Lease._meta.db_table} WHERE state = %s AND expires_at <= %s"
            f") due",
            [
                ops.adapt_datetimefield_value(now),
                AuditEvent.Action.EXPIRED.value,
                "tick",
                Lease.EndReason.MAX_LIFETIME.value,
                Lease.EndReason.EXPIRED.value,
                Lease.State.ACTIVE.value,
                ops.adapt_datetimefield_value(now),
            ],
        )


# --- recovery -------------------------------------------------------------------------

# An assigned lease whose start task was lost is started again after this long, and given
# up (released as failed, freeing its builder and its owner's slot) after the longer one.
ASSIGNED_RETRY_AFTER = timedelta(minutes=10)
ASSIGNED_GIVE_UP_AFTER = timedelta(hours=1)


def recover_stuck_leases(*, now: datetime | None = None) -> dict[str, list[int]]:
    """Restart or give up leases stuck between assigned and active (their task was lost)."""
    now = now or timezone.now()
    stuck = Lease.objects.filter(state=Lease.State.ASSIGNED, assigned_at__lt=now - ASSIGNED_RETRY_AFTER)
    given_up = list(stuck.filter(assigned_at__lt=now - ASSIGNED_GIVE_UP_AFTER).values_list("pk", flat=True))
    for lease_id in given_up:
        release_lease(lease_id=lease_id, via=TICK, reason=Lease.EndReason.FAILED)
    retried = []
    for lease_id, task in stuck.exclude(pk__in=given_up).values_list("pk", "on_assigned"):
        with transaction.atomic():
            queue_task(task or START_LEASE, lease_id)
        retried.append(lease_id)
    return {"retried": retried, "given_up": given_up}
