"""What the agent on a builder reports, and the checks that stand in when it falls silent.

The agent pushes its live log in chunks tagged with their byte offset, and its end, to the API
with its phase's token (builds/api/agent.py). Everything it sends is untrusted: an offset must
continue the stored log (a resent chunk changes nothing), sizes are capped, and the end it
reports is only its word until the service has collected the results itself, over SFTP, with
the usual bounds. No worker waits on a running build: a report queues one short task, and the
builds tick checks a silent agent's builder once per silence period.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from builders.models import Lease
from builds import runner, storage
from builds.models import BuildChroot, SrpmPhase, State
from builds.selectors import Phase, kind_of, load_phase
from builds.services.phases import UNREACHABLE_LIMIT, builder_of, finish_phase, start_claim, token_digest
from builds.services.state import queue_check
from builds.untrusted import as_reported, one_line
from coprssh.exceptions import ConflictError, ServiceError

log = logging.getLogger(__name__)

END_STATES = ("succeeded", "failed", "canceled")
# Phases an agent may report for: it starts before the phase is marked running.
OPEN = (State.STARTING, State.RUNNING)
TRUNCATED_NOTE = b"\n[coprssh: the log is longer than the limit; the rest is not kept]\n"


class LogGap(ConflictError):
    """A chunk starts past the end of the stored log; the agent resends from `log_size`."""

    code = "log_gap"

    def __init__(self, log_size: int) -> None:
        super().__init__(f"The log continues at byte {log_size}.")
        self.log_size = log_size


class PhaseOver(ConflictError):
    """The phase ended (canceled, say) while its agent was still reporting."""

    code = "phase_over"


@dataclass(frozen=True)
class Reporter:
    """The phase an agent's token speaks for."""

    kind: str
    phase_id: int


def reporter_for_token(token: str) -> Reporter | None:
    """The open phase whose report token is `token`, or None (unknown, or the phase is over)."""
    if not token or len(token) > 200:
        return None
    digest = token_digest(token)
    for model in (SrpmPhase, BuildChroot):
        phase_id = (
            model.objects.filter(token_hash=digest, state__in=OPEN).values_list("pk", flat=True).first()
        )
        if phase_id is not None:
            return Reporter(kind="srpm" if model is SrpmPhase else "rpm", phase_id=phase_id)
    return None


def _model(kind: str) -> type[SrpmPhase] | type[BuildChroot]:
    return SrpmPhase if kind == "srpm" else BuildChroot


def append_log(*, reporter: Reporter, offset: int, data: bytes) -> int:
    """Store a chunk of the live log at `offset`; return the stored log's size.

    Bytes the log already holds are skipped, so a chunk sent twice changes nothing; a chunk that
    starts past the end raises LogGap. Past COPRSSH_MAX_LOG_BYTES nothing more is kept.
    """
    if offset < 0:
        raise ServiceError("The offset must be 0 or more.", field="offset")
    if len(data) > settings.COPRSSH_AGENT_CHUNK_BYTES:
        raise ServiceError(f"A chunk holds at most {settings.COPRSSH_AGENT_CHUNK_BYTES} bytes.", field="data")
    phase = load_phase(kind=reporter.kind, phase_id=reporter.phase_id)
    if phase is None or phase.state not in OPEN:
        raise PhaseOver("The phase is over.")
    stored = phase.log_size
    if offset > stored:
        raise LogGap(stored)
    fresh = data[stored - offset :]
    now = timezone.now()
    if fresh:
        return _store_log(phase, fresh, alive_at=now) or stored
    _model(reporter.kind).objects.filter(pk=reporter.phase_id, state__in=OPEN).update(alive_at=now)
    return stored


def _store_log(phase: Phase, data: bytes, *, alive_at: datetime | None = None) -> int | None:
    """Write `data` after the stored log, within the cap; return the new size, None if another wrote first.

    `alive_at`: the agent sent it, which is also its sign of life (one UPDATE for both).
    """
    limit = settings.COPRSSH_MAX_LOG_BYTES
    offset = phase.log_size
    if offset >= limit:
        return offset  # the note that ends a cut log is already there
    if offset + len(data) > limit:
        data = data[: limit - offset] + TRUNCATED_NOTE
    storage.write_at(phase.storage_dir, storage.LIVE_LOG, offset, data)
    size = offset + len(data)
    # Compare-and-swap on the size: of two reports of the same bytes, one moves it.
    fields: dict[str, object] = {"log_size": size}
    if alive_at is not None:
        fields["alive_at"] = alive_at
    if type(phase).objects.filter(pk=phase.pk, log_size=offset).update(**fields):
        phase.log_size = size
        return size
    return None


def report_end(*, reporter: Reporter, state: str, reason: str, log_size: int) -> bool:
    """Record the end the agent reports and queue its collection; False if one was recorded already."""
    if state not in END_STATES:
        raise ServiceError(f"The state must be one of {', '.join(END_STATES)}.", field="state")
    if log_size < 0:
        raise ServiceError("The log size must be 0 or more.", field="log_size")
    model = _model(reporter.kind)
    recorded = model.objects.filter(pk=reporter.phase_id, state__in=OPEN, reported_state="").update(
        reported_state=state,
        reported_reason=one_line(reason, cap=300),
        reported_log_size=min(log_size, settings.COPRSSH_MAX_LOG_BYTES),
        alive_at=timezone.now(),
    )
    if recorded:
        queue_check(reporter.kind, reporter.phase_id)
    return bool(recorded)


# --- the task behind a report, and behind the tick's checks -------------------------------------


def check_phase(*, kind: str, phase_id: int) -> Phase | None:
    """Collect a phase whose agent reported its end; otherwise look at its builder once, over SSH."""
    model = _model(kind)
    now = timezone.now()
    unclaimed = Q(watch_until__isnull=True) | Q(watch_until__lt=now)
    reported = model.objects.filter(unclaimed, pk=phase_id, state=State.RUNNING).exclude(reported_state="")
    # The claim leaves room for every call collecting makes: the rest of the log, then the results.
    if reported.update(watch_until=now + timedelta(seconds=settings.COPRSSH_BUILDER_FETCH_DEADLINE + 120)):
        phase = load_phase(kind=kind, phase_id=phase_id)
        assert phase is not None
        _collect(phase)
        return load_phase(kind=kind, phase_id=phase_id)
    claim = now + start_claim()
    if not model.objects.filter(unclaimed, pk=phase_id, state=State.RUNNING).update(watch_until=claim):
        return load_phase(kind=kind, phase_id=phase_id)  # over, or another task holds it
    phase = load_phase(kind=kind, phase_id=phase_id)
    assert phase is not None
    _probe(phase)
    return load_phase(kind=kind, phase_id=phase_id)


def _collect(phase: Phase) -> None:
    """Fetch what the log still lacks, then finish the phase with the end the agent reported."""
    wanted = phase.reported_log_size or 0
    if phase.log_size < wanted and phase.remote_dir and not _lease_gone(phase):
        try:
            _pull_log(phase, until=wanted)
        except runner.RunnerError as exc:
            log.warning("the rest of %s's log: %s", phase, exc)
    _finish_as_reported(phase, phase.reported_state, phase.reported_reason)


def _finish_as_reported(phase: Phase, state: str, reason: str) -> None:
    """Finish a running phase with the end its builder gave (its report, or its status file)."""
    lease_reason = Lease.EndReason.BUILD_FINISHED
    if state == "canceled":
        # The service cancels a phase before it stops the agent, and a canceled phase's reports are
        # refused: a running phase's agent stopped by a signal from elsewhere (the machine shutting
        # down, a user on an SSH builder) failed, on a builder that is not trusted any more.
        state, lease_reason = State.FAILED, Lease.EndReason.FAILED
        reason = (
            f"stopped on the builder, not by the service: {reason}" if reason else "stopped on the builder"
        )
    if phase.build.ssh:  # the user is root on this builder: its report is only its word
        reason = as_reported(state, reason)
    finish_phase(phase, state=state, reason=reason, lease_reason=lease_reason)


def _pull_log(phase: Phase, *, until: int) -> None:
    """Read the live log over SFTP from the stored size up to `until`, within one call's deadline each."""
    while phase.log_size < min(until, settings.COPRSSH_MAX_LOG_BYTES):
        progress = runner.poll(builder_of(phase), workdir=phase.remote_dir, log_offset=phase.log_size)
        if not progress.log or _store_log(phase, progress.log[: until - phase.log_size]) is None:
            return


def _probe(phase: Phase) -> None:
    """One bounded look at a silent agent's builder: keep waiting, finish, or apply the unreachable rules."""
    model = type(phase)
    if phase.lease is None or phase.lease.builder is None or not phase.remote_dir:
        finish_phase(phase, state=State.FAILED, reason="the builder was lost (its lease ended)")
        return
    try:
        progress = runner.poll(
            builder_of(phase), workdir=phase.remote_dir, log_offset=phase.log_size, ask_agent=True
        )
    except runner.RunnerError as exc:
        log.warning("checking %s: %s", phase, exc)
        _unreachable(phase, str(exc))
        return
    now = timezone.now()
    if progress.log:
        _store_log(phase, progress.log)
    if phase.started_at and now - phase.started_at > overall_limit():
        # The agent enforces the time limit itself; this catches an agent that does not.
        stop_quietly(phase)
        finish_phase(phase, state=State.FAILED, reason="the build ran past its time limit")
        return
    status = progress.status
    drained = len(progress.log) < runner.LOG_CHUNK
    if status.state in END_STATES and drained:
        _finish_as_reported(phase, status.state, status.reason)
        return
    if status.state not in END_STATES and progress.agent_alive is False:
        # Read the status once more: the agent may have ended between the two reads.
        if _ended_meanwhile(phase):
            return
        stop_quietly(phase)
        finish_phase(
            phase,
            state=State.FAILED,
            reason="the build agent on the builder stopped without reporting an end",
            lease_reason=Lease.EndReason.FAILED,
        )
        return
    # Alive and working (or more log to read): give the claim back. A pushing agent that merely
    # cannot reach us is trusted again for a silence period; the tick checks a polled one each minute.
    fields: dict[str, object] = {"watch_until": None, "unreachable_since": None}
    if phase.reports and drained:
        fields["alive_at"] = now
    model.objects.filter(pk=phase.pk, state=State.RUNNING).update(**fields)
    if not drained or model.objects.filter(pk=phase.pk).exclude(reported_state="").exists():
        queue_check(kind_of(phase), phase.pk)  # more to read now, or the end arrived meanwhile


def _ended_meanwhile(phase: Phase) -> bool:
    try:
        progress = runner.poll(builder_of(phase), workdir=phase.remote_dir, log_offset=phase.log_size)
    except runner.RunnerError:
        return False
    if progress.status.state not in END_STATES:
        return False
    if progress.log:
        _store_log(phase, progress.log)
    _finish_as_reported(phase, progress.status.state, progress.status.reason)
    return True


def _unreachable(phase: Phase, error: str) -> None:
    model = type(phase)
    now = timezone.now()
    if _lease_gone(phase):
        finish_phase(phase, state=State.FAILED, reason="the builder was lost (its lease ended)")
        return
    since = phase.unreachable_since or now
    past_limit = phase.started_at is not None and now - phase.started_at > overall_limit()
    if past_limit or now - since > UNREACHABLE_LIMIT:
        finish_phase(
            phase,
            state=State.FAILED,
            reason=f"the builder stopped answering ({one_line(error, cap=300)})",
            lease_reason=Lease.EndReason.FAILED,
        )
        return
    # The next tick looks again; alive_at stays old, so the phase stays due.
    model.objects.filter(pk=phase.pk, state=State.RUNNING).update(unreachable_since=since, watch_until=None)


def overall_limit() -> timedelta:
    """How long a phase may run: the agent's own limit, and a little slack so that it fires first."""
    limit = timedelta(seconds=settings.COPRSSH_BUILD_TIMEOUT)
    return limit + min(timedelta(minutes=10), limit / 10)


def stop_quietly(phase: Phase) -> None:
    try:
        runner.stop(builder_of(phase), pgid=None, workdir=phase.remote_dir)
    except runner.RunnerError as exc:
        log.warning("stopping %s: %s", phase, exc)


def _lease_gone(phase: Phase) -> bool:
    if phase.lease_id is None:
        return True
    return not Lease.objects.filter(pk=phase.lease_id).exclude(state=Lease.State.ENDED).exists()
