"""What every builders service shares: who is asking, the errors, the audit log."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from django.db import transaction

from coprssh.exceptions import ConflictError, ServiceError

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser, User

    from builders.models import Builder, Lease


@dataclass(frozen=True)
class Via:
    """Who asked for a change and from where, for the audit log."""

    user: User | AnonymousUser | None = None
    source: str = "task"  # web, api, cli, builder, admin, tick, task
    remote_addr: str | None = None


TICK = Via(source="tick")
TASK = Via(source="task")

# The builders app's tasks (builders/tasks.py), by the dotted path django-q2 imports them from.
ASSIGN_LEASES = "builders.tasks.assign_leases"
PROVISION_BUILDER = "builders.tasks.provision_builder"
DELETE_BUILDER = "builders.tasks.delete_builder"
DELETE_TERMINATING = "builders.tasks.delete_terminating"
HEALTH_CHECK = "builders.tasks.health_check"
REFRESH_LEASE_FILE = "builders.tasks.refresh_lease_file"
START_LEASE = "builders.tasks.start_lease"

ERROR_CHARS = 2000


def queue_task(func: str, *args: object) -> None:
    """Queue a task once the current transaction commits, so the worker sees its rows."""
    from django_q.tasks import async_task

    transaction.on_commit(lambda: async_task(func, *args))


class LeaseNotActive(ConflictError):
    """The lease has ended (or has not started); it cannot be changed."""


class ProlongRefused(ServiceError):
    """Prolonging would pass the lease's hard cap."""


class OverQuota(ConflictError):
    """The owner holds as many SSH builders as the quota allows: no other one can be kept."""


def audit(
    action: str,
    *,
    via: Via,
    lease: Lease | None = None,
    builder: Builder | None = None,
    detail: str = "",
) -> None:
    """Record one event; call inside the transaction of the change it describes."""
    from django.contrib.auth.models import User

    from builders.models import AuditEvent

    user = via.user if isinstance(via.user, User) else None
    AuditEvent.objects.create(
        action=action,
        actor=user,
        source=via.source,
        remote_addr=via.remote_addr,
        lease=lease,
        builder=builder if builder is not None else (lease.builder if lease is not None else None),
        detail=detail,
    )


def fail_provisioning(builder: Builder, message: str, *, now: datetime) -> bool:
    """Give up a builder that is still provisioning: FAILED, with `message`, in the audit log too.

    Call inside the transaction of the change; False when the builder had moved on meanwhile.
    """
    from builders.models import AuditEvent, Builder

    detail = message[:ERROR_CHARS]
    if not Builder.objects.filter(pk=builder.pk, state=Builder.State.PROVISIONING).update(
        state=Builder.State.FAILED, last_error=detail, retry_at=None, state_changed_at=now, terminated_at=now
    ):
        return False
    audit(AuditEvent.Action.BUILDER_FAILED, via=TASK, builder=builder, detail=detail)
    return True
