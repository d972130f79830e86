"""Builds: submit, cancel and resubmit."""

from __future__ import annotations

import contextlib
import logging
import shutil
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.utils import timezone

from builders import services as builders
from builders.models import Lease
from builds import storage
from builds.models import FINAL_STATES, Build, BuildChroot, Project, SrpmPhase, State
from builds.services.projects import active_chroots
from builds.sources import Source, store_upload
from coprssh.exceptions import ConflictError, ForbiddenError, NotFoundError, ServiceError

log = logging.getLogger(__name__)

PHASE_READY_TASK = "builds.tasks.phase_ready"


def _check_can_build(project: Project, user: AbstractBaseUser) -> None:
    if not project.can_build(user):
        raise ForbiddenError(f"Only the owner of {project.full_name} can build in it.")


def submit_build(
    *,
    project: Project,
    submitter: AbstractBaseUser,
    chroots: list[str] | None,
    source: Source,
    upload: UploadedFile | None = None,
    copy_from: Path | None = None,
    resubmitted_from: Build | None = None,
) -> Build:
    """Store the source and queue the SRPM phase; chroots default to all of the project's."""
    _check_can_build(project, submitter)
    project_chroots = {c.name: c for c in project.chroots.filter(active=True)}
    if chroots:
        targets = active_chroots(chroots)
        outside = [c.name for c in targets if c.name not in project_chroots]
        if outside:
            raise ServiceError(f"Not chroots of {project.full_name}: {', '.join(outside)}.", field="chroots")
    else:
        targets = list(project_chroots.values())
        if not targets:
            raise ServiceError(f"{project.full_name} has no active chroots.", field="chroots")
    stored: Path | None = None
    try:
        with transaction.atomic():
            build = Build.objects.create(
                project=project,
                submitter=submitter,
                source_type=source.type,
                source_filename=source.filename,
                clone_url=source.clone_url,
                committish=source.committish,
                spec=source.spec,
                url=source.url,
                resubmitted_from=resubmitted_from,
            )
            srpm = SrpmPhase.objects.create(build=build)
            BuildChroot.objects.bulk_create([BuildChroot(build=build, chroot=chroot) for chroot in targets])
            if upload is not None or copy_from is not None:
                directory = storage.ensure_dir(srpm.storage_dir + "/source")
                if upload is not None:
                    stored = store_upload(upload, directory=directory)
                else:
                    stored = directory / source.filename
                    shutil.copyfile(copy_from, stored)
                build.source_file = str(stored.relative_to(storage.root()))
                build.save(update_fields=["source_file"])
            _request_srpm_lease(build, srpm)
    except BaseException:
        if stored is not None:
            stored.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                stored.parent.rmdir()
        raise
    log.info("build %s submitted to %s by %s", build.pk, project.full_name, submitter.pk)
    return build


def _request_srpm_lease(build: Build, srpm: SrpmPhase) -> None:
    lease = builders.request_lease(
        owner=build.submitter,
        arch=settings.COPRSSH_SRPM_ARCH,
        sandbox=build.sandbox,
        purpose=f"build #{build.pk} srpm",
        on_assigned=PHASE_READY_TASK,
    )
    srpm.lease = lease
    srpm.save(update_fields=["lease"])
    message = (
        f"Build #{build.pk} of {build.project.full_name} submitted by {build.submitter.get_username()}; "
        f"waiting for a builder ({settings.COPRSSH_SRPM_ARCH}, lease #{lease.pk})."
    )
    # Written once the build exists for good: a rolled-back submit leaves no log behind.
    transaction.on_commit(lambda: storage.backend_log(srpm.storage_dir, message))


def request_chroot_leases(build: Build) -> None:
    """After the SRPM phase: one lease per pending chroot, on a builder of its architecture."""
    for build_chroot in build.build_chroots.select_related("chroot").filter(state=State.PENDING, lease=None):
        lease = builders.request_lease(
            owner=build.submitter,
            arch=build_chroot.chroot.arch,
            sandbox=build.sandbox,
            purpose=f"build #{build.pk} {build_chroot.chroot.name}",
            on_assigned=PHASE_READY_TASK,
        )
        build_chroot.lease = lease
        build_chroot.save(update_fields=["lease"])
        message = f"Waiting for a builder ({build_chroot.chroot.arch}, lease #{lease.pk})."
        if lease.queue_reason:
            message += f" {lease.queue_reason}"
        storage.backend_log(build_chroot.storage_dir, message)


def cancel_build(*, build_id: int, user: AbstractBaseUser) -> Build:
    """Cancel every unfinished phase of a build; running ones are stopped on their builders."""
    with transaction.atomic():
        build = Build.objects.select_for_update().select_related("project").filter(pk=build_id).first()
        if build is None:
            raise NotFoundError("No such build.")
        _check_can_build(build.project, user)
        if build.state in FINAL_STATES:
            raise ConflictError(f"Build #{build.pk} has already finished ({build.state}).")
        now = timezone.now()
        phases: list[SrpmPhase | BuildChroot] = [build.srpm, *build.build_chroots.select_related("chroot")]
        for phase in phases:
            model = type(phase)
            reason = f"canceled by {user.get_username()}"
            # Conditional updates: a phase may move from pending to starting meanwhile.
            if model.objects.filter(pk=phase.pk, state=State.RUNNING).update(
                state=State.CANCELED, ended_at=now, status_reason=reason
            ):
                kind = "srpm" if isinstance(phase, SrpmPhase) else "rpm"
                transaction.on_commit(_queue_stop(kind, phase.pk))
            elif model.objects.filter(pk=phase.pk, state=State.STARTING).update(
                state=State.CANCELED, ended_at=now, status_reason=reason
            ):
                # Its agent is being started right now: phase_ready sees the cancel when it
                # is done and stops the agent itself (it alone knows where it runs).
                pass
            elif model.objects.filter(pk=phase.pk, state=State.PENDING).update(
                state=State.CANCELED, ended_at=now, status_reason=reason
            ):
                if phase.lease_id is not None:
                    builders.release_lease(
                        lease_id=phase.lease_id,
                        via=builders.Via(user=user, source="web"),
                        reason=Lease.EndReason.CANCELED,
                    )
            else:
                continue
            storage.backend_log(phase.storage_dir, f"Canceled by {user.get_username()}.")
        from builds.services.phases import update_build_state

        update_build_state(build.pk)
    build.refresh_from_db()
    return build


def _queue_stop(kind: str, phase_id: int):  # noqa: ANN202 - a callback
    def queue() -> None:
        from django_q.tasks import async_task

        async_task("builds.tasks.stop_phase", kind, phase_id)

    return queue


def resubmit_build(*, build: Build, user: AbstractBaseUser, chroots: list[str] | None = None) -> Build:
    """Submit the same source again (to some or all of its chroots) as a new build."""
    _check_can_build(build.project, user)
    if not build.is_finished:
        raise ConflictError(f"Build #{build.pk} is still {build.state}; cancel it or wait until it ends.")
    source = Source(
        type=build.source_type,
        filename=build.source_filename,
        clone_url=build.clone_url,
        committish=build.committish,
        spec=build.spec,
        url=build.url,
    )
    copy_from = storage.path(build.source_file) if build.source_file else None
    if copy_from is not None and not copy_from.is_file():
        raise ConflictError(f"The source of build #{build.pk} is no longer stored.")
    if chroots is None:
        chroots = list(build.build_chroots.values_list("chroot__name", flat=True))
    return submit_build(
        project=build.project,
        submitter=user,
        chroots=chroots,
        source=source,
        copy_from=copy_from,
        resubmitted_from=build,
    )
