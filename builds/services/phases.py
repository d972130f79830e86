"""Running phases on their builders: start when the lease is assigned, watch, finish.

A phase is watched by short, repeatable task runs: each claims the phase for a while
(`watch_until`), copies new live log bytes at the recorded offset, and either finishes
the phase or queues the next run. A watcher that dies is replaced by the builds tick.
"""

from __future__ import annotations

import logging
import re
import time
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from builders import services as builders
from builders.models import Lease
from builders.providers.base import ProviderError
from builds import runner, sources, storage
from builds.models import FINAL_STATES, Build, BuildChroot, SrpmPhase, State
from builds.selectors import Phase, chroot_of, keys_of, kind_of, load_phase, phase_of_lease
from builds.services.leases import request_chroot_leases, rerun_command
from builds.services.state import queue_phase_ready, queue_stop, queue_watch, update_build_state
from builds.untrusted import as_reported, one_line

log = logging.getLogger(__name__)

WATCH_SECONDS = 40
POLL_INTERVAL = 1.0
# A builder that does not answer for this long fails its phase (and is not reused).
UNREACHABLE_LIMIT = timedelta(minutes=5)
UNREACHABLE_PAUSE = 5.0
CLAIM = timedelta(seconds=WATCH_SECONDS + 50)
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
    label = f"{phase.build_id}-{chroot_of(phase)}"
    workdir = runner.new_workdir(builder, label)
    # backend.log is public: where a user's builder is reached is for its owner (the build page).
    where = "" if phase.build.ssh else f" ({builder.host}:{builder.port})"
    storage.backend_log(phase.storage_dir, f"Builder {builder}{where} assigned; starting in {workdir}.")
    try:
        job, files = _job(phase)
        if phase.build.ssh:
            _open_ssh_access(phase, workdir)
        runner.start(builder, workdir=workdir, job=job, files=files)
    except (runner.RunnerError, ProviderError, builders.DeployError) as exc:
        _fail_start(phase, str(getattr(exc, "message", exc)))
        return load(kind_of(phase), phase.pk)
    now = timezone.now()
    with transaction.atomic():
        moved = model.objects.filter(pk=phase.pk, state=State.STARTING).update(
            state=State.RUNNING, started_at=now, remote_dir=workdir, watch_until=None
        )
        update_build_state(phase.build_id)
        if moved:
            queue_watch(kind_of(phase), phase.pk)
        else:
            # Canceled while the agent was being started: stop it again.
            model.objects.filter(pk=phase.pk).update(remote_dir=workdir)
            queue_stop(kind_of(phase), phase.pk)
    if not moved:
        return load(kind_of(phase), phase.pk)
    storage.backend_log(phase.storage_dir, "The build is running; its output follows in builder-live.log.")
    return load(kind_of(phase), phase.pk)


def start_claim() -> timedelta:
    """How long starting a phase may take: SSH access and the agent's start, each one builder call."""
    return timedelta(seconds=2 * settings.COPRSSH_BUILDER_CALL_DEADLINE + 30)


def _job(phase: Phase) -> tuple[dict, dict[str, Path]]:
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
    builders.release_lease(lease_id=phase.lease_id, via=builders.TASK, reason=Lease.EndReason.FAILED)


def _open_ssh_access(phase: Phase, workdir: str) -> None:
    """Before an SSH build starts: the user's keys, copr-builder and the lease file on the builder."""
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
        lease_id=phase.lease_id, keys=keys_of(build), info=info, via=builders.TASK
    )
    expires = timezone.localtime(access.expires_at)
    # backend.log is public: no host, port, command or key fingerprints here (issue #10).
    lines = [
        "SSH access was set up for the owner; connection details are on the build page for the owner.",
        f"The builder is kept until {expires:%Y-%m-%d %H:%M:%S %Z}, and for "
        "the default lifetime after the build ends; prolong it from the build page, the API, the CLI or the builder.",
        f"On the builder, run `{access.tool} help`.",
    ]
    if access.route == "gateway":
        lines.insert(
            1,
            "The builder is reached through the service's SSH gateway (ssh -J); the command is on the build page.",
        )
    for line in lines:
        storage.backend_log(phase.storage_dir, line)


# --- watch ---------------------------------------------------------------------------


def watch_phase(*, kind: str, phase_id: int, seconds: float = WATCH_SECONDS) -> Phase | None:
    """Follow a running phase for up to `seconds`: copy its live log, finish it when it ends."""
    model = SrpmPhase if kind == "srpm" else BuildChroot
    now = timezone.now()
    claimed = model.objects.filter(
        Q(watch_until__isnull=True) | Q(watch_until__lt=now), pk=phase_id, state=State.RUNNING
    ).update(watch_until=now + CLAIM)
    if not claimed:
        return load(kind, phase_id)  # finished, or another watcher holds it
    phase = load(kind, phase_id)
    assert phase is not None
    deadline = time.monotonic() + seconds
    while True:
        try:
            progress = runner.poll(phase.lease.builder, workdir=phase.remote_dir, log_offset=phase.log_size)
        except runner.RunnerError as exc:
            log.warning("watching %s %s: %s", kind, phase_id, exc)
            if _lease_gone(phase):
                finish_phase(phase, state=State.FAILED, reason="the builder was lost (its lease ended)")
                return load(kind, phase_id)
            since = phase.unreachable_since or timezone.now()
            if phase.unreachable_since is None:
                model.objects.filter(pk=phase_id).update(unreachable_since=since)
                phase.unreachable_since = since
            past_limit = phase.started_at is not None and timezone.now() - phase.started_at > _overall_limit()
            if past_limit or timezone.now() - since > UNREACHABLE_LIMIT:
                finish_phase(
                    phase,
                    state=State.FAILED,
                    reason=f"the builder stopped answering ({exc})",
                    lease_reason=Lease.EndReason.FAILED,
                )
                return load(kind, phase_id)
            time.sleep(min(UNREACHABLE_PAUSE, seconds))  # no busy loop against a builder that refuses us
            break
        if phase.unreachable_since is not None:
            model.objects.filter(pk=phase_id).update(unreachable_since=None)
            phase.unreachable_since = None
        if phase.started_at and timezone.now() - phase.started_at > _overall_limit():
            # The agent enforces the time limit itself; this catches an agent that does not.
            runner_stop_quietly(phase)
            finish_phase(phase, state=State.FAILED, reason="the build ran past its time limit")
            return load(kind, phase_id)
        if progress.log:
            _store_log(phase, progress.log)
        current = model.objects.filter(pk=phase_id).values_list("state", flat=True).first()
        if current != State.RUNNING:
            return load(kind, phase_id)  # canceled meanwhile
        drained = len(progress.log) < runner.LOG_CHUNK
        if progress.status.state in ("succeeded", "failed", "canceled") and drained:
            reason = progress.status.reason
            if phase.build.ssh:  # the user is root on this builder: its report is only its word
                reason = as_reported(progress.status.state, reason)
            finish_phase(phase, state=progress.status.state, reason=reason)
            return load(kind, phase_id)
        if time.monotonic() >= deadline:
            break
        if drained:
            time.sleep(POLL_INTERVAL)
    with transaction.atomic():
        model.objects.filter(pk=phase_id, state=State.RUNNING).update(watch_until=None)
        queue_watch(kind, phase_id)
    return load(kind, phase_id)


def _overall_limit() -> timedelta:
    # A little slack, so that the agent's own limit (which reports properly) normally fires first.
    limit = timedelta(seconds=settings.COPRSSH_BUILD_TIMEOUT)
    return limit + min(timedelta(minutes=10), limit / 10)


def runner_stop_quietly(phase: Phase) -> None:
    try:
        runner.stop(phase.lease.builder, pgid=None, workdir=phase.remote_dir)
    except runner.RunnerError as exc:
        log.warning("stopping %s: %s", phase, exc)


def _lease_gone(phase: Phase) -> bool:
    return not Lease.objects.filter(pk=phase.lease_id).exclude(state=Lease.State.ENDED).exists()


def _store_log(phase: Phase, data: bytes) -> None:
    limit = settings.COPRSSH_MAX_LOG_BYTES
    offset = phase.log_size
    if offset >= limit:
        phase.log_size = offset + len(data)  # keep reading (to reach the end) but store no more
    else:
        if offset + len(data) > limit:
            data = (
                data[: limit - offset]
                + b"\n[coprssh: the log is longer than the limit; the rest is not kept]\n"
            )
        storage.write_at(phase.storage_dir, storage.LIVE_LOG, offset, data)
        phase.log_size = offset + len(data)
    type(phase).objects.filter(pk=phase.pk, log_size=offset).update(log_size=phase.log_size)


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
    if build.ssh:
        # Nothing built on a user's builder is trusted: only the spec (and the logs) come back.
        if isinstance(phase, SrpmPhase):
            try:
                fetched = runner.fetch_results(
                    phase.lease.builder,
                    workdir=phase.remote_dir,
                    target=storage.ensure_dir(phase.storage_dir),
                    only=SPEC_ONLY,
                )
            except runner.RunnerError as exc:
                log.warning("fetching the spec of %s: %s", phase, exc)
    elif final == State.SUCCEEDED:
        target = storage.ensure_dir(phase.storage_dir)
        pattern = SRPM_RESULTS if isinstance(phase, SrpmPhase) else RPM_RESULTS
        try:
            fetched = runner.fetch_results(
                phase.lease.builder,
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
    now = timezone.now()
    with transaction.atomic():
        moved = (
            type(phase)
            .objects.filter(pk=phase.pk, state=State.RUNNING)
            .update(state=final, ended_at=now, status_reason=reason[:500], watch_until=None)
        )
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
            lease = builders.keep_after_work(lease_id=phase.lease_id, finished_at=now)
        except builders.LeaseNotActive:
            return
        until = timezone.localtime(lease.expires_at)
        storage.backend_log(
            phase.storage_dir, f"The builder is kept for debugging until {until:%Y-%m-%d %H:%M:%S %Z}."
        )
        return
    # A build's outcome says nothing bad about its builder: by default it goes back to its sandbox.
    builders.release_lease(lease_id=phase.lease_id, via=builders.TASK, reason=lease_reason)


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
        builders.release_lease(lease_id=phase.lease_id, via=builders.TASK, reason=Lease.EndReason.FAILED)
        return
    try:
        runner.stop(phase.lease.builder, pgid=None, workdir=phase.remote_dir)
    except runner.RunnerError as exc:
        storage.backend_log(
            phase.storage_dir, f"Could not stop the build on the builder: {one_line(str(exc))}"
        )
        builders.release_lease(lease_id=phase.lease_id, via=builders.TASK, reason=Lease.EndReason.FAILED)
        return
    storage.backend_log(phase.storage_dir, "Stopped on the builder.")
    builders.release_lease(lease_id=phase.lease_id, via=builders.TASK, reason=Lease.EndReason.CANCELED)


# --- the builds tick -------------------------------------------------------------------


def rescue_phases() -> dict[str, list[int]]:
    """Watch running phases whose watcher died; fail pending phases whose lease ended."""
    now = timezone.now()
    rescued: dict[str, list[int]] = {"watched": [], "failed": [], "restarted": []}
    for model, kind in ((SrpmPhase, "srpm"), (BuildChroot, "rpm")):
        orphaned = model.objects.filter(state=State.RUNNING).filter(
            Q(watch_until__isnull=True) | Q(watch_until__lt=now)
        )
        for phase_id in list(orphaned.values_list("pk", flat=True)):
            with transaction.atomic():
                queue_watch(kind, phase_id)
            rescued["watched"].append(phase_id)
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
        for phase in list(lost.select_related("lease")):
            with transaction.atomic():
                if model.objects.filter(pk=phase.pk, state=State.PENDING).update(
                    state=State.FAILED,
                    ended_at=now,
                    status_reason=f"its lease ended ({phase.lease.end_reason})",
                ):
                    if model is SrpmPhase:
                        _skip_chroots(phase.build_id, "the SRPM phase failed")
                    update_build_state(phase.build_id)
            rescued["failed"].append(phase.pk)
    return rescued
