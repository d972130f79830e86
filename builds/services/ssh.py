"""Resubmit with SSH: the build runs again on a fresh builder the user can log in to.

The SSH build reuses the original SRPM when its SRPM phase succeeded and reruns the chosen
chroots, each on an SSH builder of its own; when the SRPM phase itself failed, that phase
runs again on an SSH builder (and no chroot is built). Results never come back from an
SSH builder: only the spec and the logs do.
"""

from __future__ import annotations

import logging
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from builders import services as builders
from builds import storage
from builds.models import Build, SrpmPhase, State
from builds.selectors import SRPM, default_ssh_chroots, srpm_reruns
from builds.services.leases import request_ssh_lease
from builds.services.projects import active_chroots, check_can_build
from builds.services.state import update_build_state
from builds.services.submit import Staging, create_build, staging
from builds.sources import Source
from coprssh.exceptions import ConflictError, ServiceError
from keys.parser import PublicKey

log = logging.getLogger(__name__)

SRPM_ONLY = "an SSH build of a failed SRPM phase reruns only the SRPM phase"


def resubmit_with_ssh(
    *,
    build: Build,
    user: User,
    keys: list[PublicKey],
    chroots: list[str] | None = None,
    via: builders.Via | None = None,
) -> Build:
    """A new build of `build` on SSH builders that `keys` can log in to."""
    check_can_build(build.project, user)
    if not build.is_finished:
        raise ConflictError(f"Build #{build.pk} is still {build.state}; cancel it or wait until it ends.")
    if not keys:
        raise ServiceError("Give at least one public SSH key.", field="ssh_public_keys")
    via = via or builders.Via(user=user, source="web")
    original = build.build_chroots.select_related("chroot")
    srpm_ok = not srpm_reruns(build)
    if chroots:
        targets = active_chroots(chroots)
        known = {bc.chroot.name for bc in original}
        outside = [c.name for c in targets if c.name not in known]
        if outside:
            raise ServiceError(f"Not chroots of build #{build.pk}: {', '.join(outside)}.", field="chroots")
    else:
        # No chroot is built when the SRPM phase reruns: the new build lists them all as skipped.
        targets = [bc.chroot for bc in (default_ssh_chroots(original) if srpm_ok else original)]
    source_copy = storage.path(build.source_file) if build.source_file else None
    if not srpm_ok and source_copy is not None and not source_copy.is_file():
        # The SRPM phase must run again, and there is nothing left to run it on.
        raise ConflictError(f"The source of build #{build.pk} is no longer stored.")
    with staging() as files:
        staged_source = None
        if source_copy is not None and source_copy.is_file():
            staged_source = files.copy(source_copy, name=build.source_filename)
        reused = (
            [files.copy(storage.path(f)) for f in (build.srpm_file, build.spec_file) if f] if srpm_ok else []
        )
        with transaction.atomic():
            new, srpm, phases = create_build(
                project=build.project,
                submitter=user,
                source=Source.of(build),
                chroots=targets,
                files=files,
                source_file=staged_source,
                resubmitted_from=build,
                ssh_keys="\n".join(key.line for key in keys),
                skip_chroots="" if srpm_ok else SRPM_ONLY,
            )
            if srpm_ok:
                _reuse_srpm(build, new, srpm, files, reused)
                for phase in phases:
                    phase.lease = request_ssh_lease(
                        build=new, user=user, arch=phase.chroot.arch, what=phase.chroot.name, via=via
                    )
                    phase.save(update_fields=["lease"])
            else:
                srpm.lease = request_ssh_lease(
                    build=new, user=user, arch=settings.COPRSSH_SRPM_ARCH, what=SRPM, via=via
                )
                srpm.save(update_fields=["lease"])
            update_build_state(new.pk)
            # backend.log is public: the number of keys, not their fingerprints (issue #10).
            count = f"{len(keys)} key{'s' if len(keys) != 1 else ''}"
            message = (
                f"Build #{new.pk}: resubmission of #{build.pk} with SSH access by {user.get_username()} "
                f"for {count}."
            )
            transaction.on_commit(lambda: storage.backend_log(srpm.storage_dir, message))
    log.info("build %s resubmitted with SSH as %s", build.pk, new.pk)
    return new


def _reuse_srpm(build: Build, new: Build, srpm: SrpmPhase, files: Staging, staged: list[Path]) -> None:
    """The new build starts from the original's SRPM (and spec): its SRPM phase has succeeded already."""
    placed = [files.place(path, srpm.storage_dir) for path in staged]
    new.srpm_file = placed[0]
    new.spec_file = placed[1] if len(placed) > 1 else ""
    new.package_name, new.package_version = build.package_name, build.package_version
    new.save(update_fields=["srpm_file", "spec_file", "package_name", "package_version"])
    now = timezone.now()
    SrpmPhase.objects.filter(pk=srpm.pk).update(
        state=State.SUCCEEDED,
        started_at=now,
        ended_at=now,
        status_reason=f"the SRPM of build #{build.pk} is reused",
    )
