"""Builds: submit, cancel and resubmit.

Every new build, normal or SSH, is made by `create_build`. Its files (an upload, or a copy
of another build's source or SRPM, up to 512 MiB) are written before the transaction, into
a staging directory of the storage; inside it they are only renamed into the new build's
directories, and a transaction that rolls back takes them away again.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from django.contrib.auth.models import User
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.utils import timezone

from builders import services as builders
from builders.models import Lease
from builds import storage
from builds.models import FINAL_STATES, Build, BuildChroot, Chroot, Project, SrpmPhase, State
from builds.selectors import kind_of
from builds.services.leases import request_srpm_lease
from builds.services.projects import active_chroots, check_can_build
from builds.services.state import queue_stop, update_build_state
from builds.sources import Source, store_upload
from coprssh.exceptions import ConflictError, NotFoundError, ServiceError
from keys.parser import PublicKey

log = logging.getLogger(__name__)


class Staging:
    """Files written for a build that does not exist yet, moved into its directories when it does."""

    def __init__(self) -> None:
        self._directory: Path | None = None
        self.placed: list[Path] = []
        self.kept = False

    @property
    def directory(self) -> Path:
        """Made on first use, in the storage root: renames from it into the storage stay on one filesystem."""
        if self._directory is None:
            root = storage.ensure_dir(".")
            self._directory = Path(tempfile.mkdtemp(dir=root, prefix=".incoming-"))
        return self._directory

    def remove(self) -> None:
        if not self.kept:
            self.remove_placed()
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)

    def slot(self) -> Path:
        """A directory of its own for one staged file (a source and a spec may have one name)."""
        return Path(tempfile.mkdtemp(dir=self.directory))

    def copy(self, source: Path, *, name: str | None = None) -> Path:
        """Copy `source` (another build's file) into the staging directory."""
        staged = self.slot() / (name or source.name)
        shutil.copyfile(source, staged)
        return staged

    def place(self, staged: Path, directory: str) -> str:
        """Move a staged file into `directory` of the storage (a rename); return its storage path."""
        target = storage.ensure_dir(directory) / staged.name
        os.replace(staged, target)
        self.placed.append(target)
        return str(target.relative_to(storage.root()))

    def keep(self) -> None:
        self.kept = True

    def remove_placed(self) -> None:
        for target in self.placed:
            target.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                target.parent.rmdir()  # the source/ directory made for it, when it is empty


@contextlib.contextmanager
def staging() -> Iterator[Staging]:
    """A staging directory for the files of one new build; what was placed goes again on rollback.

    Enter the build's transaction inside it. The placed files stay when that block ends
    normally, or when it committed and a commit callback failed afterwards.
    """
    files = Staging()
    try:
        yield files
        files.keep()
    finally:
        files.remove()


def create_build(
    *,
    project: Project,
    submitter: User,
    source: Source,
    chroots: list[Chroot],
    files: Staging,
    source_file: Path | None = None,
    resubmitted_from: Build | None = None,
    ssh_keys: str = "",
    ssh_on_failure: bool = False,
    skip_chroots: str = "",
) -> tuple[Build, SrpmPhase, list[BuildChroot]]:
    """The rows of a new build (call inside its transaction): the build, its SRPM phase, its chroots.

    `source_file` is a staged file, moved into the SRPM phase's directory; with `skip_chroots`
    (a reason) the chroots are created skipped. `ssh_keys` make an SSH build, or with
    `ssh_on_failure` a normal build that keeps a failed phase's builder for those keys.
    """
    # Registered first, so it runs first: once committed, the files belong to the build.
    transaction.on_commit(files.keep)
    build = Build.objects.create(
        project=project,
        submitter=submitter,
        **source.columns(),
        resubmitted_from=resubmitted_from,
        ssh=bool(ssh_keys) and not ssh_on_failure,
        ssh_on_failure=ssh_on_failure,
        ssh_keys=ssh_keys,
    )
    srpm = SrpmPhase.objects.create(build=build)
    skipped = (
        {"state": State.SKIPPED, "status_reason": skip_chroots, "ended_at": timezone.now()}
        if skip_chroots
        else {}
    )
    phases = BuildChroot.objects.bulk_create([BuildChroot(build=build, chroot=c, **skipped) for c in chroots])
    if source_file is not None:
        build.source_file = files.place(source_file, srpm.storage_dir + "/source")
        build.save(update_fields=["source_file"])
    return build, srpm, phases


def submit_build(
    *,
    project: Project,
    submitter: User,
    chroots: list[str] | None,
    source: Source,
    upload: UploadedFile[bytes] | None = None,
    copy_from: Path | None = None,
    resubmitted_from: Build | None = None,
    keep_for_ssh: list[PublicKey] | None = None,
) -> Build:
    """Store the source and queue the SRPM phase; chroots default to all of the project's.

    With `keep_for_ssh` (keys, resolved and checked by keys.services) the builder of a phase that
    fails is kept for those keys to log in to; nothing is deployed unless a phase fails.
    """
    check_can_build(project, submitter)
    if keep_for_ssh is not None and not keep_for_ssh:
        raise ServiceError(
            "Give at least one public SSH key to keep the builder for.", field="ssh_public_keys"
        )
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
    with staging() as files:
        staged = None
        if upload is not None:
            staged = store_upload(upload, directory=files.slot())
        elif copy_from is not None:
            staged = files.copy(copy_from, name=source.filename)
        with transaction.atomic():
            build, srpm, _chroots = create_build(
                project=project,
                submitter=submitter,
                source=source,
                chroots=targets,
                files=files,
                source_file=staged,
                resubmitted_from=resubmitted_from,
                ssh_keys="\n".join(key.line for key in keep_for_ssh or []),
                ssh_on_failure=bool(keep_for_ssh),
            )
            request_srpm_lease(build, srpm)
    log.info("build %s submitted to %s by %s", build.pk, project.full_name, submitter.pk)
    return build


def cancel_build(*, build_id: int, user: User, via: builders.Via | None = None) -> Build:
    """Cancel every unfinished phase of a build; running ones are stopped on their builders."""
    via = via or builders.Via(user=user, source="web")
    with transaction.atomic():
        build = Build.objects.select_for_update().select_related("project").filter(pk=build_id).first()
        if build is None:
            raise NotFoundError("No such build.")
        check_can_build(build.project, user)
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
                queue_stop(kind_of(phase), phase.pk)
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
                        via=via,
                        reason=Lease.EndReason.CANCELED,
                    )
            else:
                continue
            transaction.on_commit(
                functools.partial(
                    storage.backend_log, phase.storage_dir, f"Canceled by {user.get_username()}."
                )
            )
        update_build_state(build.pk)
    build.refresh_from_db()
    return build


def resubmit_build(
    *,
    build: Build,
    user: User,
    chroots: list[str] | None = None,
    keep_for_ssh: list[PublicKey] | None = None,
) -> Build:
    """Submit the same source again (to some or all of its chroots) as a new build (see submit_build)."""
    check_can_build(build.project, user)
    if not build.is_finished:
        raise ConflictError(f"Build #{build.pk} is still {build.state}; cancel it or wait until it ends.")
    copy_from = storage.path(build.source_file) if build.source_file else None
    if copy_from is not None and not copy_from.is_file():
        raise ConflictError(f"The source of build #{build.pk} is no longer stored.")
    if chroots is None:
        chroots = list(build.build_chroots.values_list("chroot__name", flat=True))
    return submit_build(
        project=build.project,
        submitter=user,
        chroots=chroots,
        source=Source.of(build),
        copy_from=copy_from,
        resubmitted_from=build,
        keep_for_ssh=keep_for_ssh,
    )
