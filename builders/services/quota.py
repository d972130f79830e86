"""The SSH quota: the global policy, per-user overrides, and who holds the slots."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser

from builders.models import Lease, QuotaOverride, QuotaPolicy


@dataclass(frozen=True)
class Quota:
    """The limits that apply to one user."""

    max_ssh_builders: int
    default_lifetime: timedelta
    max_lifetime: timedelta
    warning_before: timedelta


def quota_for(user: AbstractBaseUser) -> Quota:
    """The policy, with the user's override where it sets a value."""
    policy = QuotaPolicy.get()
    override = QuotaOverride.objects.filter(user_id=user.pk).first()

    def pick(name: str):  # noqa: ANN202 - a field of either model
        value = getattr(override, name, None) if override is not None else None
        return getattr(policy, name) if value is None else value

    return Quota(
        max_ssh_builders=pick("max_ssh_builders"),
        default_lifetime=pick("default_lifetime"),
        max_lifetime=pick("max_lifetime"),
        warning_before=policy.warning_before,
    )


def slot_holders(user: AbstractBaseUser) -> list[Lease]:
    """The user's SSH leases that count against the quota, oldest first."""
    return list(Lease.objects.holding_ssh_slot().filter(owner_id=user.pk).order_by("created_at", "id"))


def lock_quota(user: AbstractBaseUser) -> None:
    """Serialize quota decisions of one user.

    The lock is on the user row, never on the leases being counted: locking those lets a
    race through, because a lease inserted by a concurrent request is not locked by anyone.
    """
    list(get_user_model().objects.select_for_update().filter(pk=user.pk).values_list("pk", flat=True))


def over_quota_reason(quota: Quota, holders: list[Lease]) -> str:
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
    return f"{in_use}: {held}. This one starts as soon as one of them ends."
