"""The build's state, derived from its phases, and the tasks that move phases on.

Every task of the builds app is named here once and queued after commit, so that the
worker sees the rows the caller wrote.
"""

from __future__ import annotations

import functools

from django.db import transaction
from django.utils import timezone

from builds.models import FINAL_STATES, Build, BuildChroot, SrpmPhase, State

PHASE_READY_TASK = "builds.tasks.phase_ready"
CHECK_TASK = "builds.tasks.check_phase"
STOP_TASK = "builds.tasks.stop_phase"


def _queue(task: str, *args: object) -> None:
    from django_q.tasks import async_task  # django-q2 needs the app registry: import it late

    async_task(task, *args)


def queue_check(kind: str, phase_id: int) -> None:
    """Collect a phase whose agent reported its end, or check on a silent one, after commit."""
    transaction.on_commit(functools.partial(_queue, CHECK_TASK, kind, phase_id))


def queue_stop(kind: str, phase_id: int) -> None:
    """Stop the phase's agent on its builder once the current transaction commits."""
    transaction.on_commit(functools.partial(_queue, STOP_TASK, kind, phase_id))


def queue_phase_ready(lease_id: int) -> None:
    """Start the phase of `lease_id` again once the current transaction commits."""
    transaction.on_commit(functools.partial(_queue, PHASE_READY_TASK, lease_id))


def update_build_state(build_id: int) -> str:
    """Derive the build's state from its phases (call inside the transaction that moved one)."""
    build = Build.objects.select_for_update().get(pk=build_id)
    srpm = SrpmPhase.objects.get(build_id=build_id)
    chroot_states = list(BuildChroot.objects.filter(build_id=build_id).values_list("state", flat=True))
    if srpm.state in (State.FAILED, State.CANCELED):
        state = srpm.state
    elif srpm.state != State.SUCCEEDED:
        state = State.PENDING if srpm.state == State.PENDING else State.RUNNING
    elif any(s not in FINAL_STATES for s in chroot_states):
        state = State.RUNNING
    elif State.FAILED in chroot_states:
        state = State.FAILED
    elif State.SUCCEEDED in chroot_states:
        state = State.SUCCEEDED if State.CANCELED not in chroot_states else State.CANCELED
    else:
        state = State.CANCELED
    now = timezone.now()
    fields: dict[str, object] = {"state": state}
    if state != State.PENDING and build.started_at is None:
        fields["started_at"] = now
    if state in FINAL_STATES and build.ended_at is None:
        fields["ended_at"] = now
    Build.objects.filter(pk=build_id).update(**fields)
    return state
