"""The SSH quota: the global policy, per-user overrides, and who holds the slots."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db import transaction

from builders.models import AuditEvent, Lease, QuotaOverride, QuotaPolicy
from builders.services.common import Via, audit

POLICY_FIELDS = ["max_ssh_builders", "default_lifetime", "max_lifetime", "warning_before"]
OVERRIDE_FIELDS = ["user", "max_ssh_builders", "default_lifetime", "max_lifetime", "note"]


@dataclass(frozen=True)
class Quota:
    """The limits that apply to one user."""

    max_ssh_builders: int
    default_lifetime: timedelta
    max_lifetime: timedelta
    warning_before: timedelta


def quota_for(user: User) -> Quota:
    """The policy, with the user's override where it sets a value."""
    policy = QuotaPolicy.get()
    override = QuotaOverride.objects.filter(user_id=user.pk).first()

    def pick(name: str) -> Any:  # a field of either model
        value = getattr(override, name, None) if override is not None else None
        return getattr(policy, name) if value is None else value

    return Quota(
        max_ssh_builders=pick("max_ssh_builders"),
        default_lifetime=pick("default_lifetime"),
        max_lifetime=pick("max_lifetime"),
        warning_before=policy.warning_before,
    )


def slot_holders(user: User) -> list[Lease]:
    """The user's SSH leases that count against the quota, oldest first."""
    return list(Lease.objects.holding_ssh_slot().filter(owner_id=user.pk).order_by("created_at", "id"))


def lock_quota(user: User) -> None:
    """Serialize quota decisions of one user.

    The lock is on the user row, never on the leases being counted: locking those lets a
    race through, because a lease inserted by a concurrent request is not locked by anyone.
    """
    list(get_user_model().objects.select_for_update().filter(pk=user.pk).values_list("pk", flat=True))


def slots_in_use(quota: Quota, holders: list[Lease]) -> str:
    """ "2 of 2 SSH builders in use: build #12 fedora-rawhide-x86_64 (SSH builder #6), …"."""
    # Named as users see them: the purpose ("build #12 fedora-rawhide-x86_64") and the
    # SSH builder id the API and the CLI use.
    held = ", ".join(
        (f"{lease.purpose} (SSH builder #{lease.pk})" if lease.purpose else f"SSH builder #{lease.pk}")
        for lease in holders
    )
    if len(holders) <= quota.max_ssh_builders:
        in_use = f"{len(holders)} of {quota.max_ssh_builders} SSH builders in use"
    else:  # the quota was lowered below what is already running
        in_use = f"{len(holders)} SSH builders in use, over the limit of {quota.max_ssh_builders}"
    return f"{in_use}: {held}" if held else in_use


def over_quota_reason(quota: Quota, holders: list[Lease]) -> str:
    return f"{slots_in_use(quota, holders)}. This one starts as soon as one of them ends."


# --- operators' edits, each with an audit event -------------------------------------------


def save_quota_policy(*, policy: QuotaPolicy, via: Via) -> QuotaPolicy:
    """Store an operator's edit of the quota policy and audit what it changed.

    The values are the caller's to validate (the admin form runs the model's checks); the
    database constraints refuse what slips through. Nothing changed, nothing is audited.
    """
    with transaction.atomic():
        # Locking the row makes the "before" of two concurrent edits the value each replaced.
        before = QuotaPolicy.objects.select_for_update().filter(pk=policy.pk).first()
        policy.save()
        changes = _changes(before, policy, POLICY_FIELDS)
        if changes:
            audit(AuditEvent.Action.QUOTA_CHANGED, via=via, detail=f"quota policy: {changes}")
    return policy


def save_quota_override(*, override: QuotaOverride, via: Via) -> QuotaOverride:
    """Create or change a user's quota override and audit what it changed."""
    with transaction.atomic():
        before = None
        if override.pk is not None:
            before = QuotaOverride.objects.select_for_update().filter(pk=override.pk).first()
        override.save()
        # A new override names its user in the prefix; a changed one may have moved to another user.
        changes = _changes(before, override, OVERRIDE_FIELDS if before is not None else OVERRIDE_FIELDS[1:])
        if changes:
            verb = "changed" if before is not None else "created"
            detail = f"quota override for {override.user} {verb}: {changes}"
            audit(AuditEvent.Action.QUOTA_CHANGED, via=via, detail=detail)
    return override


def delete_quota_override(*, override_id: int, via: Via) -> QuotaOverride | None:
    """Delete a user's quota override (the policy applies again); None if it was already gone."""
    with transaction.atomic():
        override = QuotaOverride.objects.select_for_update().filter(pk=override_id).first()
        if override is None:
            return None
        was = _changes(None, override, OVERRIDE_FIELDS[1:]) or "nothing set"
        override.delete()
        detail = f"quota override for {override.user} deleted (was {was}); the policy applies"
        audit(AuditEvent.Action.QUOTA_CHANGED, via=via, detail=detail)
    return override


def _changes(before: object | None, after: object, fields: list[str]) -> str:
    """What changed, as "max_ssh_builders 2 → 3, note '' → 'x'"; against nothing, the values set."""
    parts = []
    for name in fields:
        new = getattr(after, name)
        if before is None:
            if new not in (None, ""):
                parts.append(f"{name} {_shown(new)}")
            continue
        old = getattr(before, name)
        if old != new:
            parts.append(f"{name} {_shown(old)} → {_shown(new)}")
    return ", ".join(parts)


def _shown(value: object) -> str:
    if value is None:
        return "unset"
    if isinstance(value, timedelta):
        seconds = int(value.total_seconds())
        return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
    if isinstance(value, str):
        return repr(value)
    return str(value)
