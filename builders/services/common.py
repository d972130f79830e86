"""What every builders service shares: who is asking, the errors, the audit log."""

from __future__ import annotations

from dataclasses import dataclass
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


def queue_task(func: str, *args: object) -> None:
    """Queue a task once the current transaction commits, so the worker sees its rows."""
    from django_q.tasks import async_task

    transaction.on_commit(lambda: async_task(func, *args))


class LeaseNotActive(ConflictError):
    """The lease has ended (or has not started); it cannot be changed."""


class ProlongRefused(ServiceError):
    """Prolonging would pass the lease's hard cap."""


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
