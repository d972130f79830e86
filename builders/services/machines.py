"""Builders as machines: provision, health-check, terminate, keep pools warm, delete orphans.

Provider calls happen outside transactions: a service commits what it is about to do,
calls the provider, then records the outcome with a compare-and-swap on the row's state,
so a worker that dies half-way leaves a row the tick can recognise by its age.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Q
from django.utils import timezone

from builders import ssh
from builders.admin_key import admin_key
from builders.models import AuditEvent, Builder, Lease, Pool
from builders.providers import options as provider_options
from builders.providers.base import Machine, Provider, ProviderError, generate_host_key
from builders.services import pools as pool_health
from builders.services.common import (
    ASSIGN_LEASES,
    DELETE_BUILDER,
    ERROR_CHARS,
    HEALTH_CHECK,
    PROVISION_BUILDER,
    TASK,
    TICK,
    Via,
    audit,
    fail_provisioning,
    queue_task,
)
from coprssh.exceptions import ConflictError, NotFoundError

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
BUILDER_ID_KEY = "coprssh-builder"
CREATED_KEY = "coprssh-created"


def provider_for(pool: Pool) -> Provider:
    """The provider of a pool, configured from its provider settings.

    Settings no provider can be made from (the admin refuses them, a row may hold them anyway)
    raise a permanent ProviderError: retrying cannot help, and the pool pauses on it.
    """
    options = dict(pool.provider_settings or {})
    found = provider_options.problems(pool.provider, options)
    try:
        if found:
            raise ValueError("; ".join(found))
        return _make_provider(pool, options)
    except ValueError as exc:
        raise ProviderError(
            f"pool {pool.name}: provider settings not usable: {exc}", permanent=True
        ) from None


def _make_provider(pool: Pool, options: dict[str, Any]) -> Provider:
    if pool.provider == Pool.Provider.LOCAL:
        from builders.providers.local import LocalProvider

        root = Path(options.get("root_dir") or Path(settings.COPRSSH_BUILDERS_DIR) / pool.name)
        isolate = options.get("isolate")
        return LocalProvider(
            root,
            ipv6=bool(options.get("ipv6", False)),
            name_prefix="coprssh-",
            # Unset: isolated whenever the service runs as root.
            isolate=None if isolate is None else bool(isolate),
            sshd_path=str(options.get("sshd_path") or "/usr/sbin/sshd"),
            homes_dir=Path(options.get("homes_dir") or settings.COPRSSH_LOCAL_HOMES_DIR),
        )
    if pool.provider == Pool.Provider.OPENSTACK:
        from builders.providers.openstack import OpenStackProvider

        return OpenStackProvider(**options)
    raise ProviderError(f"pool {pool.name}: unknown provider {pool.provider!r}", permanent=True)


def machine_of(builder: Builder) -> Machine:
    """The Machine that `builders.ssh.connect` needs, from the builder's row."""
    return Machine(
        provider_id=builder.provider_id,
        name=builder.name,
        ipv4=builder.ipv4,
        ipv6=builder.ipv6,
        port=builder.port,
        user=builder.login_user,
        host_key=builder.host_key,
    )


# --- capacity ----------------------------------------------------------------------


def ensure_capacity() -> list[int]:
    """Start builders where leases wait or a pool has fewer warm builders than it should.

    Called by the tick and after leases are queued; safe to run concurrently: the pool
    row is locked while its builders are counted and new ones inserted.
    """
    created: list[int] = []
    retry_due_provisions()
    waiting = list(
        Lease.objects.filter(state=Lease.State.WAITING).values_list("arch", "pool_id", "ssh", "sandbox")
    )
    for pool in Pool.objects.filter(enabled=True).order_by("name"):
        with transaction.atomic():
            pool = Pool.objects.select_for_update().get(pk=pool.pk)
            created += _fill(pool, waiting)
    return created


def _fill(pool: Pool, waiting: Sequence[tuple[str, int | None, bool, str]]) -> list[int]:
    if not pool_health.can_create(pool):
        return []  # paused, or backing off: demand waits and says why
    builders = Builder.objects.filter(pool=pool)
    counts = builders.alive().aggregate(
        alive=Count("pk"),
        fresh=Count("pk", filter=Q(state=Builder.State.READY, sandbox__isnull=True)),
        provisioning=Count("pk", filter=Q(state=Builder.State.PROVISIONING)),
    )
    served = [w for w in waiting if w[0] in pool.architectures and w[1] in (None, pool.pk)]
    # Leases that a ready builder of their own sandbox can take need nothing new.
    reusable = set(
        builders.ready()
        .filter(sandbox__in=[w[3] for w in served if not w[2]])
        .values_list("sandbox", flat=True)
    )
    demand = len([w for w in served if w[2] or w[3] not in reusable])
    wanted = pool.warm_builders + demand - counts["fresh"] - counts["provisioning"]
    room = pool.max_builders - counts["alive"]
    if wanted > room and demand:
        # Full of idle builders kept for other sandboxes: retire the oldest to make room.
        idle = builders.ready().filter(sandbox__isnull=False).order_by("state_changed_at")
        for builder_id in list(idle.values_list("pk", flat=True)[: wanted - room]):
            if Builder.objects.filter(pk=builder_id, state=Builder.State.READY).update(
                state=Builder.State.TERMINATING, state_changed_at=timezone.now()
            ):
                queue_task(DELETE_BUILDER, builder_id)
    new = max(min(wanted, room), 0)
    if pool.consecutive_failures:
        # A failing pool probes with one machine at a time until one comes up.
        new = min(new, max(1 - counts["provisioning"], 0))
    ids = []
    for _ in range(new):
        builder = Builder.objects.create(pool=pool, state=Builder.State.PROVISIONING)
        builder.name = f"{pool.name}-{builder.pk}"
        builder.save(update_fields=["name"])
        ids.append(builder.pk)
        queue_task(PROVISION_BUILDER, builder.pk)
    if ids:
        log.info("pool %s: starting builders %s", pool.name, ids)
    return ids


# --- provisioning ----------------------------------------------------------------------


def provision_builder(*, builder_id: int) -> Builder | None:
    """Create the builder's machine, wait until SSH answers with the pinned key, mark it ready."""
    builder = Builder.objects.select_related("pool").filter(pk=builder_id).first()
    if builder is None or builder.state != Builder.State.PROVISIONING:
        return builder  # done already, or terminated meanwhile
    if builder.retry_at is not None and builder.retry_at > timezone.now():
        return builder  # an early delivery: the retry waits for the pool's backoff
    if not pool_health.can_create(builder.pool):
        return _hold_for_pool(builder)
    # Claim this attempt; a second delivery of the same task finds the counter moved.
    claimed = Builder.objects.filter(
        pk=builder.pk, state=Builder.State.PROVISIONING, attempts=builder.attempts
    ).update(attempts=builder.attempts + 1, state_changed_at=timezone.now(), provider_id="", retry_at=None)
    if not claimed:
        return builder
    builder.attempts += 1
    started = time.monotonic()
    try:
        provider = provider_for(builder.pool)
        if builder.attempts > 1:
            _delete_machines_of(provider, builder)
        host_key = generate_host_key()
        machine = provider.create(
            name=builder.name,
            metadata={BUILDER_ID_KEY: str(builder.pk), CREATED_KEY: timezone.now().isoformat()},
            host_key=host_key,
            admin_public_key=admin_key().public_line,
        )
    except ProviderError as exc:
        return _provision_failed(builder, f"cannot create: {exc.message}", permanent=exc.permanent)
    recorded = Builder.objects.filter(pk=builder.pk, state=Builder.State.PROVISIONING).update(
        provider_id=machine.provider_id,
        name=machine.name,
        ipv4=machine.ipv4,
        ipv6=machine.ipv6,
        port=machine.port,
        login_user=machine.user,
        host_key=machine.host_key,
    )
    if not recorded:
        # Terminated while the machine was being made: it must not outlive its row.
        _delete_quietly(provider, machine.provider_id)
        return Builder.objects.filter(pk=builder.pk).first()
    try:
        wait_for_ssh(machine, timeout=float(builder.pool.provider_settings.get("boot_timeout", 300)))
    except ProviderError as exc:
        _delete_quietly(provider, machine.provider_id)
        return _provision_failed(builder, f"did not boot: {exc.message}", permanent=False)
    now = timezone.now()
    with transaction.atomic():
        ready = Builder.objects.filter(pk=builder.pk, state=Builder.State.PROVISIONING).update(
            state=Builder.State.READY, ready_at=now, state_changed_at=now, last_error=""
        )
        builder.refresh_from_db()
        if ready:
            audit(
                AuditEvent.Action.BUILDER_READY,
                via=TASK,
                builder=builder,
                detail=f"{machine.name} at {builder.host}:{builder.port} in {time.monotonic() - started:.1f} s",
            )
            queue_task(ASSIGN_LEASES)
    if ready:
        pool_health.record_success(pool_id=builder.pool_id)
    else:
        _delete_quietly(provider, machine.provider_id)
    return builder


def _hold_for_pool(builder: Builder) -> Builder | None:
    """The pool may not create now: a paused pool gives the attempt up, a backing-off one defers it."""
    pool = builder.pool
    now = timezone.now()
    if pool.paused_at is not None:
        message = f"not started: pool {pool.name} is paused ({pool_health.health_of(pool).text})"
        with transaction.atomic():
            fail_provisioning(builder, message, now=now)
    else:
        Builder.objects.filter(pk=builder.pk, state=Builder.State.PROVISIONING).update(
            retry_at=pool.backoff_until, state_changed_at=now
        )
    return Builder.objects.filter(pk=builder.pk).first()


def retry_due_provisions(*, now: datetime | None = None) -> list[int]:
    """Queue the provisioning attempts whose pool's backoff is over (the tick and demand call this)."""
    now = now or timezone.now()
    due = Builder.objects.filter(state=Builder.State.PROVISIONING, retry_at__lte=now, pool__paused_at=None)
    queued = []
    for builder_id in list(due.values_list("pk", flat=True)[:100]):
        with transaction.atomic():
            # Compare-and-swap on retry_at: two ticks at once queue the retry once.
            if Builder.objects.filter(pk=builder_id, retry_at__lte=now).update(
                retry_at=None, state_changed_at=now
            ):
                queue_task(PROVISION_BUILDER, builder_id)
                queued.append(builder_id)
    return queued


def wait_for_ssh(machine: Machine, *, timeout: float) -> None:
    """Log in with the admin key and the pinned host key until `true` runs, or raise ProviderError."""
    deadline = time.monotonic() + timeout
    last = "no attempt"
    while True:
        try:
            check_ssh(machine)
            return
        except ProviderError as exc:
            last = exc.message
        if time.monotonic() >= deadline:
            raise ProviderError(f"SSH did not answer within {timeout:.0f} s: {last}")
        time.sleep(min(2.0, max(deadline - time.monotonic(), 0.1)))


def check_ssh(machine: Machine, *, timeout: float = 10.0) -> None:
    """Run `true` on the machine as the service; raise ProviderError saying what failed."""
    try:
        with (
            ssh.connect(machine, key_filename=admin_key().private_path, timeout=timeout) as conn,
            ssh.deadline(conn, timeout * 2),
        ):
            ssh.run(conn, "true", timeout=timeout)
    except Exception as exc:  # paramiko, socket and invoke each raise their own types
        raise ProviderError(f"{type(exc).__name__}: {exc}") from None


def _provision_failed(
    builder: Builder, message: str, *, permanent: bool, count_for_pool: bool = True
) -> Builder | None:
    pool = builder.pool
    if count_for_pool:
        pool = pool_health.record_failure(pool_id=builder.pool_id, message=message, permanent=permanent)
    retry = not permanent and builder.attempts < MAX_ATTEMPTS and pool.paused_at is None
    now = timezone.now()
    with transaction.atomic():
        if retry:
            # Not at once: the retry waits for the pool's backoff, and the tick queues it then.
            Builder.objects.filter(pk=builder.pk, state=Builder.State.PROVISIONING).update(
                last_error=message[:ERROR_CHARS], state_changed_at=now, retry_at=pool.backoff_until or now
            )
        elif fail_provisioning(builder, message, now=now):
            if not count_for_pool:  # record_failure has queued it already
                queue_task(ASSIGN_LEASES)
    log.warning(
        "builder %s attempt %s failed%s: %s",
        builder.pk,
        builder.attempts,
        " (retrying)" if retry else "",
        message,
    )
    return Builder.objects.filter(pk=builder.pk).first()


def _delete_machines_of(provider: Provider, builder: Builder) -> None:
    """Before a new attempt: delete whatever an earlier attempt may have left behind."""
    for machine in provider.list_owned():
        if machine.metadata.get(BUILDER_ID_KEY) == str(builder.pk):
            provider.delete(machine.provider_id)


def _delete_quietly(provider: Provider, provider_id: str) -> None:
    try:
        provider.delete(provider_id)
    except ProviderError as exc:
        log.warning("deleting %s failed (the tick deletes orphans): %s", provider_id, exc.message)


# --- health and termination ----------------------------------------------------------


def check_idle_builders(*, now: datetime | None = None, limit: int = 10) -> list[int]:
    """Queue health checks of ready builders idle and unchecked for a while, least recently checked first.

    A builder whose machine died while idle is then replaced before a lease is given a dead one.
    """
    every = settings.COPRSSH_HEALTH_CHECK_SECONDS
    if not every:
        return []
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=every)
    unchecked = Q(checked_at=None) | Q(checked_at__lt=cutoff)
    due = (
        Builder.objects.ready()
        .filter(unchecked, state_changed_at__lt=cutoff)
        .order_by(F("checked_at").asc(nulls_first=True), "state_changed_at")
    )
    queued = []
    for builder_id in list(due.values_list("pk", flat=True)[:limit]):
        with transaction.atomic():
            # Compare-and-swap on checked_at: two ticks at once check a builder once.
            if Builder.objects.ready().filter(unchecked, pk=builder_id).update(checked_at=now):
                queue_task(HEALTH_CHECK, builder_id)
                queued.append(builder_id)
    return queued


def health_check(*, builder_id: int) -> bool:
    """Check an idle ready builder over SSH; a builder that does not answer is terminated."""
    builder = Builder.objects.filter(pk=builder_id, state=Builder.State.READY).first()
    if builder is None:
        return False
    Builder.objects.filter(pk=builder_id).update(checked_at=timezone.now())
    try:
        check_ssh(machine_of(builder))
    except ProviderError as exc:
        with transaction.atomic():
            if Builder.objects.filter(pk=builder.pk, state=Builder.State.READY).update(
                state=Builder.State.TERMINATING,
                last_error=f"health check: {exc.message}"[:ERROR_CHARS],
                state_changed_at=timezone.now(),
            ):
                audit(AuditEvent.Action.BUILDER_FAILED, via=TICK, builder=builder, detail=exc.message)
                queue_task(DELETE_BUILDER, builder.pk)
        return False
    return True


def terminate_builder(*, builder_id: int, via: Via) -> Builder:
    """Stop lending the builder now (its open lease ends) and delete its machine."""
    with transaction.atomic():
        builder = Builder.objects.select_for_update().filter(pk=builder_id).first()
        if builder is None:
            raise NotFoundError("No such builder.")
        if builder.state in (Builder.State.TERMINATING, Builder.State.TERMINATED):
            return builder
        if builder.state == Builder.State.FAILED and not builder.provider_id:
            raise ConflictError(f"Builder {builder} failed and has no machine to terminate.")
        now = timezone.now()
        lease = Lease.objects.open().filter(builder_id=builder.pk).first()
        if lease is not None:
            Lease.objects.filter(pk=lease.pk).exclude(state=Lease.State.ENDED).update(
                state=Lease.State.ENDED, ended_at=now, end_reason=Lease.EndReason.TERMINATED
            )
        Builder.objects.filter(pk=builder.pk).update(state=Builder.State.TERMINATING, state_changed_at=now)
        builder.refresh_from_db()
        audit(AuditEvent.Action.TERMINATED, via=via, builder=builder, lease=lease, detail="terminated")
        if lease is not None and lease.ssh:
            from builders.services.leases import promote_queued_leases

            promote_queued_leases(owner_id=lease.owner_id)
        queue_task(DELETE_BUILDER, builder.pk)
    return builder


def delete_builder(*, builder_id: int) -> Builder | None:
    """Delete a terminating builder's machine; on failure it stays terminating for the tick to retry."""
    builder = Builder.objects.select_related("pool").filter(pk=builder_id).first()
    if builder is None or builder.state != Builder.State.TERMINATING:
        return builder
    try:
        provider = provider_for(builder.pool)
        if builder.provider_id:
            provider.delete(builder.provider_id)
        else:
            _delete_machines_of(provider, builder)
    except ProviderError as exc:
        Builder.objects.filter(pk=builder.pk, state=Builder.State.TERMINATING).update(
            last_error=f"delete: {exc.message}"[:ERROR_CHARS]
        )
        log.warning("deleting builder %s failed, the tick retries: %s", builder.pk, exc.message)
        return builder
    now = timezone.now()
    Builder.objects.filter(pk=builder.pk, state=Builder.State.TERMINATING).update(
        state=Builder.State.TERMINATED, terminated_at=now, state_changed_at=now
    )
    queue_task(ASSIGN_LEASES)
    return Builder.objects.filter(pk=builder.pk).first()


def delete_terminating(*, limit: int = 500) -> int:
    """Delete the machines of every terminating builder (after a bulk expiry)."""
    ids = list(Builder.objects.filter(state=Builder.State.TERMINATING).values_list("pk", flat=True)[:limit])
    for builder_id in ids:
        delete_builder(builder_id=builder_id)
    return len(ids)
