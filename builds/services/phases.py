"""Running phases on their builders: start when the lease is assigned, finish, rescue.

No task waits on a running build. The agent on the builder reports its live log and its end
to the API with a token of its phase (builds/services/reports.py); a short task then collects
the results and finishes the phase here. The builds tick checks, once, the builder of a phase
whose agent fell silent, and finishes whatever a lost task left half done.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from builders import services as builders
from builders.models import Builder, Lease
from builders.providers.base import ProviderError
from builds import runner, sources, storage
from builds.models import FINAL_STATES, Build, BuildChroot, SrpmPhase, State
from builds.selectors import Phase, chroot_of, keys_of, kind_of, load_phase, phase_of_lease
from builds.services.leases import request_chroot_leases, rerun_command
from builds.services.notify import announce_ready
from builds.services.state import queue_check, queue_phase_ready, queue_stop, update_build_state
from builds.untrusted import one_line
from coprssh.exceptions import NotFoundError

log = logging.getLogger(__name__)

# A builder that does not answer for this long fails its phase (and is not reused).
UNREACHABLE_LIMIT = timedelta(minutes=5)
SRPM_RESULTS = re.compile(r".+\.(src\.rpm|spec)")
RPM_RESULTS = re.compile(r".+\.rpm")
SPEC_ONLY = re.compile(r".+\.spec")


def load(kind: str, phase_id: int) -> Phase | None:
    return load_phase(kind=kind, phase_id=phase_id)


# --- start ---------------------------------------------------------------------------


def phase_ready(*, lease_id: int) -> Phase | None:
    """The phase's lease got a builder: start the lease and the agent on the builder."""
    phase = phase_of_lease(lease_id=lease_id)
    if phase is None or phase.state in FINAL_STATES:
        # Canceled (or deleted) while waiting: give the builder back.
        builders.release_lease(lease_id=lease_id, via=builders.TASK, reason=Lease.EndReason.CANCELED)
        return phase
    if phase.state != State.PENDING:
        return phase  # a repeated delivery: the first one started it
    model = type(phase)
    # The claim on STARTING lasts as long as a start can take; past it the builds tick knows the
    # worker died half-way (before the keys were deployed, say) and starts the phase again.
    if not model.objects.filter(pk=phase.pk, state=State.PENDING).update(
        state=State.STARTING, watch_until=timezone.now() + start_claim()
    ):
        return phase
    try:
        lease = builders.start_lease(lease_id=lease_id)
    except builders.LeaseNotActive as exc:
        # The lease ended before the phase could use it (its builder was terminated).
        with transaction.atomic():
            model.objects.filter(pk=phase.pk, state=State.STARTING).update(state=State.PENDING)
        log.warning("phase %s %s: %s", kind_of(phase), phase.pk, exc.message)
        return phase
    builder = lease.builder
    assert builder is not None  # an active lease holds its builder
    label = f"{phase.build_id}-{chroot_of(phase)}"
    workdir = runner.new_workdir(builder, label)
    # backend.log is public: where a user's builder is reached is for its owner (the build page).
    where = "" if phase.build.has_ssh_keys else f" ({builder.host}:{builder.port})"
    storage.backend_log(phase.storage_dir, f"Builder {builder}{where} assigned; starting in {workdir}.")
    # The agent reports with this token; a builder that cannot reach the service gets none and is
    # checked over SSH by the tick instead. A restarted start (see rescue_phases) makes a new one.
    reports = builder.pool.reaches_service
    token = secrets.token_urlsafe(32) if reports else ""
    model.objects.filter(pk=phase.pk, state=State.STARTING).update(
        token_hash=token_digest(token) if token else "",
        reports=reports,
        reported_state="",
        reported_reason="",
        reported_log_size=None,
    )
    try:
        job, files = _job(phase, report_token=token)
        if phase.build.ssh:
            for line in _open_ssh_access(phase, workdir):
                storage.backend_log(phase.storage_dir, line)
        runner.start(builder, workdir=workdir, job=job, files=files)
    except (runner.RunnerError, ProviderError, builders.DeployError) as exc:
        _fail_start(phase, str(getattr(exc, "message", exc)))
        return load(kind_of(phase), phase.pk)
    if phase.build.ssh:
        announce_ready(lease_id=lease_id)
    now = timezone.now()
    with transaction.atomic():
        moved = model.objects.filter(pk=phase.pk, state=State.STARTING).update(
            state=State.RUNNING, started_at=now, remote_dir=workdir, watch_until=None, alive_at=now
        )
        update_build_state(phase.build_id)
        if not moved:
            # Canceled while the agent was being started: stop it again.
            model.objects.filter(pk=phase.pk).update(remote_dir=workdir)
            queue_stop(kind_of(phase), phase.pk)
        elif model.objects.filter(pk=phase.pk).exclude(reported_state="").exists():
            # The agent was done before the phase was marked running: collect it now.
            queue_check(kind_of(phase), phase.pk)
    if not moved:
        return load(kind_of(phase), phase.pk)
    storage.backend_log(phase.storage_dir, "The build is running; its output follows in builder-live.log.")
    return load(kind_of(phase), phase.pk)


def builder_of(phase: Phase) -> Builder:
    """The builder the phase's lease holds; RunnerError when there is none (any more)."""
    if phase.lease is None or phase.lease.builder is None:
        raise runner.RunnerError("the builder was lost (its lease ended)")
    return phase.lease.builder


def lease_of(phase: Phase) -> int:
    """The id of the lease a started phase runs on (it has one from its start on)."""
    assert phase.lease_id is not None
    return phase.lease_id


def token_digest(token: str) -> str:
    """What is stored of a phase's report token."""
    return hashlib.sha256(token.encode()).hexdigest()


def start_claim() -> timedelta:
    """How long starting a phase may take: SSH access and the agent's start, each one builder call."""
    return timedelta(seconds=2 * settings.COPRSSH_BUILDER_CALL_DEADLINE + 30)


def _job(phase: Phase, *, report_token: str = "") -> tuple[dict[str, Any], dict[str, Path]]:
    job, files = _work(phase)
    if report_token:
        job["report"] = {
            "url": f"{settings.COPRSSH_PUBLIC_URL}/api/v1/agent/{kind_of(phase)}/{phase.pk}/",
            "token": report_token,
            "chunk": settings.COPRSSH_AGENT_CHUNK_BYTES,
            "heartbeat": max(1, settings.COPRSSH_AGENT_SILENCE // 3),
        }
    return job, files


def _work(phase: Phase) -> tuple[dict[str, Any], dict[str, Path]]:
    build = phase.build
    timeout = settings.COPRSSH_BUILD_TIMEOUT
    if isinstance(phase, SrpmPhase):
        source = {
            "type": build.source_type,
            "file": build.source_filename,
            "clone_url": build.clone_url,
            "committish": build.committish,
            "spec": build.spec,
            "url": build.url,
        }
        files = {build.source_filename: storage.path(build.source_file)} if build.source_file else {}
        return {
            "phase": "srpm",
            "source": source,
            "timeout": timeout,
            "max_download": settings.COPRSSH_MAX_SRPM_BYTES,
            "fetch": sources.fetch_policy(),  # the agent checks redirects with it
        }, files
    srpm_name = Path(build.srpm_file).name
    return (
        {"phase": "rpm", "srpm": srpm_name, "chroot": phase.chroot.name, "timeout": timeout},
        {srpm_name: storage.path(build.srpm_file)},
    )


def _fail_start(phase: Phase, reason: str) -> None:
    reason = one_line(reason, cap=400)  # error texts carry what the builder answered
    storage.backend_log(phase.storage_dir, f"Could not start the build: {reason}")
    with transaction.atomic():
        type(phase).objects.filter(pk=phase.pk, state=State.STARTING).update(
            state=State.FAILED, ended_at=timezone.now(), status_reason=f"could not start: {reason}"[:500]
        )
        if isinstance(phase, SrpmPhase):
            _skip_chroots(phase.build_id, "the SRPM phase failed")
        update_build_state(phase.build_id)
    # A builder we could not use is not trusted for the next build either.
    builders.release_lease(lease_id=lease_of(phase), via=builders.TASK, reason=Lease.EndReason.FAILED)


def _open_ssh_access(phase: Phase, workdir: str, *, after_failure: bool = False) -> list[str]:
    """The user's keys, copr-builder and the lease file on the builder (before an SSH build starts,
    or `after_failure` of a build that keeps its builder then); the lines for backend.log."""
    build = phase.build
    info = builders.LeaseInfo(
        project=build.project.full_name,
        build_id=build.pk,
        chroot=chroot_of(phase),
        workdir=workdir,
        rerun=rerun_command(workdir),
        results=f"{workdir}/results",
    )
    access = builders.deploy_ssh_access(
        lease_id=lease_of(phase), keys=keys_of(build), info=info, via=builders.TASK
    )
    expires = timezone.localtime(access.expires_at)
    # backend.log is public: no host, port, command or key fingerprints here (issue #10).
    prolong = "prolong it from the build page, the API, the CLI or the builder."
    kept = (
        f"The builder is kept for debugging until {expires:%Y-%m-%d %H:%M:%S %Z}; {prolong}"
        if after_failure
        else f"The builder is kept until {expires:%Y-%m-%d %H:%M:%S %Z}, and for "
        f"the default lifetime after the build ends; {prolong}"
    )
    lines = [
        "SSH access was set up for the owner; connection details are on the build page for the owner.",
        kept,
        f"On the builder, run `{access.tool} help`.",
    ]
    if access.route == "gateway":
        lines.insert(
            1,
            "The builder is reached through the service's SSH gateway (ssh -J); the command is on the build page.",
        )
    return lines


# --- watch ---------------------------------------------------------------------------
# The agent reports the live log and the end itself (builds/services/reports.py); the service
# reads from the builder only to collect results, and to check on an agent that fell silent.


# --- finish --------------------------------------------------------------------------


def finish_phase(
    phase: Phase, *, state: str, reason: str = "", lease_reason: str = Lease.EndReason.BUILD_FINISHED
) -> None:
    """Fetch what the phase made, record its end, release its builder, move the build on."""
    reason = one_line(reason, cap=500)  # it may quote the builder: keep backend.log lines whole
    build = phase.build
    final = {"succeeded": State.SUCCEEDED, "failed": State.FAILED, "canceled": State.CANCELED}.get(
        state, State.FAILED
    )
    fetched: list[str] = []
    # A keep-on-failure build's failed phase: its builder becomes the owner's below, once the
    # spec and the logs are in (the live log is stored already); nothing is published.
    keep = build.ssh_on_failure and final == State.FAILED and lease_reason == Lease.EndReason.BUILD_FINISHED
    if build.ssh or keep:
        # Nothing built on a user's builder is trusted: only the spec (and the logs) come back.
        if isinstance(phase, SrpmPhase):
            fetched = _fetch_spec(phase)
    elif final == State.SUCCEEDED:
        target = storage.ensure_dir(phase.storage_dir)
        pattern = SRPM_RESULTS if isinstance(phase, SrpmPhase) else RPM_RESULTS
        try:
            fetched = runner.fetch_results(
                builder_of(phase),
                workdir=phase.remote_dir,
                target=target,
                only=pattern,
                storage_left=storage.room_left(build.storage_dir),
            )
        except runner.RunnerError as exc:
            final, reason = State.FAILED, f"results could not be fetched: {exc}"
        if isinstance(phase, SrpmPhase) and final == State.SUCCEEDED:
            srpms = [name for name in fetched if name.endswith(".src.rpm")]
            specs = [name for name in fetched if name.endswith(".spec")]
            if len(srpms) != 1:
                final, reason = State.FAILED, "the SRPM phase made no source package"
            else:
                _record_srpm(build, phase, srpms[0], specs[0] if specs else "")
    # Decided before the end is recorded, so that whoever sees the phase failed also sees its
    # SSH builder, or why there is none. A worker that dies before the record leaves the phase
    # running with its report: the builds tick collects it again, and keeping is safe twice.
    keeping = None
    if keep:
        # The agent's report token is on the builder: from now on it may only be the user's.
        type(phase).objects.filter(pk=phase.pk).update(token_hash="")
        keeping = _keep_for_ssh(phase)
    now = timezone.now()
    with transaction.atomic():
        ended: dict[str, Any] = {"state": final, "ended_at": now, "status_reason": reason[:500]}
        if keeping is not None:
            ended["not_kept_reason"] = keeping.not_kept
        moved = type(phase).objects.filter(pk=phase.pk, state=State.RUNNING).update(watch_until=None, **ended)
        if not moved:
            return
        if isinstance(phase, SrpmPhase) and not build.ssh:
            if final == State.SUCCEEDED:
                request_chroot_leases(
                    Build.objects.select_related("project__owner", "submitter").get(pk=build.pk)
                )
            else:
                _skip_chroots(build.pk, "the SRPM phase did not succeed")
        update_build_state(build.pk)
    summary = f"Finished: {final}" + (f" ({reason})" if reason else "")
    if fetched:
        summary += "; kept " + ", ".join(fetched)
    storage.backend_log(phase.storage_dir, summary + ".")
    if build.ssh and lease_reason == Lease.EndReason.BUILD_FINISHED:
        # The user's builder stays for debugging: the default lifetime counts from now.
        try:
            lease = builders.keep_after_work(lease_id=lease_of(phase), finished_at=now)
        except builders.LeaseNotActive:
            return
        until = timezone.localtime(lease.expires_at)
        storage.backend_log(
            phase.storage_dir, f"The builder is kept for debugging until {until:%Y-%m-%d %H:%M:%S %Z}."
        )
        return
    if keeping is not None:
        for line in keeping.lines:
            storage.backend_log(phase.storage_dir, line)
        if keeping.release:
            builders.release_lease(lease_id=lease_of(phase), via=builders.TASK, reason=keeping.release)
        if keeping.kept:
            announce_ready(lease_id=lease_of(phase))
        return
    # A build's outcome says nothing bad about its builder: by default it goes back to its sandbox.
    builders.release_lease(lease_id=lease_of(phase), via=builders.TASK, reason=lease_reason)


def _fetch_spec(phase: SrpmPhase) -> list[str]:
    """The spec of an SRPM phase from its builder (an SSH builder's, or one about to become one)."""
    try:
        return runner.fetch_results(
            builder_of(phase),
            workdir=phase.remote_dir,
            target=storage.ensure_dir(phase.storage_dir),
            only=SPEC_ONLY,
        )
    except runner.RunnerError as exc:
        log.warning("fetching the spec of %s: %s", phase, exc)
        return []


@dataclass(frozen=True)
class _Keeping:
    """What became of the builder of a failed phase that its build asked to keep for SSH."""

    kept: bool
    lines: list[str]  # for backend.log, after the phase's end
    not_kept: str = ""  # why it was not kept (the phase's not_kept_reason)
    release: str = ""  # the end reason of its lease when it is given back now


def _keep_for_ssh(phase: Phase) -> _Keeping:
    """A keep-on-failure build's phase failed: turn its builder into the owner's SSH builder, or say why not."""
    lease_id = lease_of(phase)
    try:
        builders.keep_for_ssh(lease_id=lease_id, via=builders.TASK)
    except builders.OverQuota as exc:
        # Nobody had access to it: the builder goes back to its sandbox like any other.
        return _not_kept(
            f"you are at your SSH quota ({exc.message})",
            hint="Release one of them, or resubmit the build and allow SSH: that build waits for a free slot.",
            release=Lease.EndReason.BUILD_FINISHED,
        )
    except (builders.LeaseNotActive, NotFoundError) as exc:
        return _not_kept(f"its lease had ended ({exc.message})")
    try:
        lines = _open_ssh_access(phase, phase.remote_dir, after_failure=True)
    except (builders.DeployError, builders.LeaseNotActive, ProviderError) as exc:
        # Keys may have reached it half-way: the builder is not reused.
        why = one_line(str(getattr(exc, "message", exc)), cap=300)
        return _not_kept(f"SSH access could not be set up ({why})", release=Lease.EndReason.FAILED)
    kept = "The build failed: its builder is kept for SSH access, as asked when it was submitted."
    return _Keeping(kept=True, lines=[kept, *lines])


def _not_kept(
    reason: str,
    *,
    hint: str = "To debug the build on a builder of its own, resubmit it and allow SSH.",
    release: str = "",
) -> _Keeping:
    text = f"The builder was not kept for SSH: {reason}"[:480]
    return _Keeping(kept=False, lines=[f"{text}. {hint}"], not_kept=text, release=release)


def _record_srpm(build: Build, phase: SrpmPhase, srpm: str, spec: str) -> None:
    nvr = srpm[: -len(".src.rpm")]
    parts = nvr.rsplit("-", 2)
    name, version = (parts[0], f"{parts[1]}-{parts[2]}") if len(parts) == 3 else (nvr, "")
    Build.objects.filter(pk=build.pk).update(
        srpm_file=f"{phase.storage_dir}/{srpm}",
        spec_file=f"{phase.storage_dir}/{spec}" if spec else "",
        package_name=name[:200],
        package_version=version[:200],
    )


def _skip_chroots(build_id: int, reason: str) -> None:
    pending = BuildChroot.objects.filter(build_id=build_id, state=State.PENDING)
    for lease_id in pending.exclude(lease=None).values_list("lease_id", flat=True):
        builders.release_lease(lease_id=lease_id, via=builders.TASK, reason=Lease.EndReason.CANCELED)
    pending.update(state=State.SKIPPED, status_reason=reason, ended_at=timezone.now())


def stop_phase(*, kind: str, phase_id: int) -> None:
    """Stop a canceled phase's agent on its builder and give the builder back."""
    phase = load(kind, phase_id)
    if phase is None or phase.lease_id is None or phase.state != State.CANCELED:
        return
    if not phase.remote_dir or phase.lease is None or phase.lease.builder is None:
        # Nothing was started where we could find it: the builder is not trusted to be idle.
        builders.release_lease(lease_id=lease_of(phase), via=builders.TASK, reason=Lease.EndReason.FAILED)
        return
    try:
        runner.stop(phase.lease.builder, pgid=None, workdir=phase.remote_dir)
    except runner.RunnerError as exc:
        storage.backend_log(
            phase.storage_dir, f"Could not stop the build on the builder: {one_line(str(exc))}"
        )
        builders.release_lease(lease_id=lease_of(phase), via=builders.TASK, reason=Lease.EndReason.FAILED)
        return
    storage.backend_log(phase.storage_dir, "Stopped on the builder.")
    builders.release_lease(lease_id=lease_of(phase), via=builders.TASK, reason=Lease.EndReason.CANCELED)


# --- the builds tick -------------------------------------------------------------------


def rescue_phases() -> dict[str, list[int]]:
    """Check phases whose agent fell silent or reported; restart stalled starts; fail lost pending ones."""
    now = timezone.now()
    rescued: dict[str, list[int]] = {"checked": [], "failed": [], "restarted": []}
    silent_since = now - timedelta(seconds=settings.COPRSSH_AGENT_SILENCE)
    models: list[tuple[type[SrpmPhase] | type[BuildChroot], str]] = [
        (SrpmPhase, "srpm"),
        (BuildChroot, "rpm"),
    ]
    for model, kind in models:
        # Unclaimed running phases that need a look: the agent reported its end (and the task that
        # collects it was lost), fell silent, or cannot report at all (checked every tick).
        due = (
            model.objects.filter(state=State.RUNNING)
            .filter(Q(watch_until__isnull=True) | Q(watch_until__lt=now))
            .filter(
                ~Q(reported_state="")
                | Q(reports=False)
                | Q(alive_at__isnull=True)
                | Q(alive_at__lt=silent_since)
            )
        )
        for phase_id in list(due.values_list("pk", flat=True)):
            with transaction.atomic():
                queue_check(kind, phase_id)
            rescued["checked"].append(phase_id)
        # A worker that died while starting a phase (deploying keys, starting the agent) left it
        # STARTING: start it again on the same lease; phase_ready is safe to run twice.
        stalled = model.objects.filter(state=State.STARTING, watch_until__lt=now, lease__isnull=False)
        for phase_id, lease_id in list(stalled.values_list("pk", "lease_id")):
            with transaction.atomic():
                if model.objects.filter(pk=phase_id, state=State.STARTING, watch_until__lt=now).update(
                    state=State.PENDING, watch_until=None
                ):
                    queue_phase_ready(lease_id)
                    rescued["restarted"].append(phase_id)
        lost = model.objects.filter(state=State.PENDING, lease__state=Lease.State.ENDED)
        for phase_id, build_id, end_reason in list(lost.values_list("pk", "build_id", "lease__end_reason")):
            with transaction.atomic():
                if model.objects.filter(pk=phase_id, state=State.PENDING).update(
                    state=State.FAILED, ended_at=now, status_reason=f"its lease ended ({end_reason})"
                ):
                    if model is SrpmPhase:
                        _skip_chroots(build_id, "the SRPM phase failed")
                    update_build_state(build_id)
            rescued["failed"].append(phase_id)
    return rescued
