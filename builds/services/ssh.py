"""Resubmit with SSH: the build runs again on a fresh builder the user can log in to.

The SSH build reuses the original SRPM when its SRPM phase succeeded and reruns the chosen
chroots, each on an SSH builder of its own; when the SRPM phase itself failed, that phase
runs again on an SSH builder (and no chroot is built). Results never come back from an
SSH builder: only the spec and the logs do.
"""

from __future__ import annotations

import logging
import shutil

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from builders import services as builders
from builders.models import Lease
from builds import storage
from builds.models import Build, BuildChroot, SrpmPhase, State
from builds.services.projects import active_chroots
from builds.services.submit import _check_can_build
from coprssh.exceptions import ConflictError, ServiceError
from keys.parser import PublicKey, parse_keys

log = logging.getLogger(__name__)

SSH_PHASE_READY = "builds.tasks.phase_ready"
SRPM_ONLY = "an SSH build of a failed SRPM phase reruns only the SRPM phase"


def resubmit_with_ssh(
    *,
    build: Build,
    user: AbstractBaseUser,
    keys: list[PublicKey],
    chroots: list[str] | None = None,
    via: builders.Via | None = None,
) -> Build:
    """A new build of `build` on SSH builders that `keys` can log in to."""
    _check_can_build(build.project, user)
    if not build.is_finished:
        raise ConflictError(f"Build #{build.pk} is still {build.state}; cancel it or wait until it ends.")
    if not keys:
        raise ServiceError("Give at least one public SSH key.", field="ssh_public_keys")
    via = via or builders.Via(user=user, source="web")
    original = build.build_chroots.select_related("chroot")
    srpm_ok = build.srpm.state == State.SUCCEEDED and bool(build.srpm_file)
    if chroots:
        targets = active_chroots(chroots)
        known = {bc.chroot.name for bc in original}
        outside = [c.name for c in targets if c.name not in known]
        if outside:
            raise ServiceError(f"Not chroots of build #{build.pk}: {', '.join(outside)}.", field="chroots")
    else:
        failed = [bc.chroot for bc in original if bc.state == State.FAILED]
        targets = failed or [bc.chroot for bc in original]
    source_copy = storage.path(build.source_file) if build.source_file else None
    if not srpm_ok and source_copy is not None and not source_copy.is_file():
        # The SRPM phase must run again, and there is nothing left to run it on.
        raise ConflictError(f"The source of build #{build.pk} is no longer stored.")
    with transaction.atomic():
        new = Build.objects.create(
            project=build.project,
            submitter=user,
            source_type=build.source_type,
            source_filename=build.source_filename,
            clone_url=build.clone_url,
            committish=build.committish,
            spec=build.spec,
            url=build.url,
            resubmitted_from=build,
            ssh=True,
            ssh_keys="\n".join(key.line for key in keys),
        )
        srpm = SrpmPhase.objects.create(build=new)
        if source_copy is not None and source_copy.is_file():
            directory = storage.ensure_dir(srpm.storage_dir + "/source")
            shutil.copyfile(source_copy, directory / build.source_filename)
            new.source_file = f"{srpm.storage_dir}/source/{build.source_filename}"
            new.save(update_fields=["source_file"])
        now = timezone.now()
        if srpm_ok:
            _reuse_srpm(build, new, srpm, now)
            for chroot in targets:
                phase = BuildChroot.objects.create(build=new, chroot=chroot)
                phase.lease = _ssh_lease(new, user, chroot.arch, chroot.name, via)
                phase.save(update_fields=["lease"])
        else:
            BuildChroot.objects.bulk_create(
                [
                    BuildChroot(
                        build=new, chroot=c, state=State.SKIPPED, status_reason=SRPM_ONLY, ended_at=now
                    )
                    for c in targets
                ]
            )
            srpm.lease = _ssh_lease(new, user, settings.COPRSSH_SRPM_ARCH, "srpm", via)
            srpm.save(update_fields=["lease"])
        from builds.services.phases import update_build_state

        update_build_state(new.pk)
        # backend.log is public: the number of keys, not their fingerprints (issue #10).
        count = f"{len(keys)} key{'s' if len(keys) != 1 else ''}"
        transaction.on_commit(
            lambda: storage.backend_log(
                srpm.storage_dir,
                f"Build #{new.pk}: resubmission of #{build.pk} with SSH access by {user.get_username()} "
                f"for {count}.",
            )
        )
    log.info("build %s resubmitted with SSH as %s", build.pk, new.pk)
    return new


def _reuse_srpm(build: Build, new: Build, srpm: SrpmPhase, now) -> None:  # noqa: ANN001 - a datetime
    directory = storage.ensure_dir(srpm.storage_dir)
    for relative in (build.srpm_file, build.spec_file):
        if relative:
            shutil.copyfile(storage.path(relative), directory / relative.rsplit("/", 1)[-1])
    new.srpm_file = f"{srpm.storage_dir}/{build.srpm_file.rsplit('/', 1)[-1]}"
    new.spec_file = f"{srpm.storage_dir}/{build.spec_file.rsplit('/', 1)[-1]}" if build.spec_file else ""
    new.package_name, new.package_version = build.package_name, build.package_version
    new.save(update_fields=["srpm_file", "spec_file", "package_name", "package_version"])
    SrpmPhase.objects.filter(pk=srpm.pk).update(
        state=State.SUCCEEDED,
        started_at=now,
        ended_at=now,
        status_reason=f"the SRPM of build #{build.pk} is reused",
    )


def _ssh_lease(build: Build, user: AbstractBaseUser, arch: str, what: str, via: builders.Via) -> Lease:
    return builders.request_lease(
        owner=user,
        arch=arch,
        ssh=True,
        purpose=f"build #{build.pk} {what}",
        on_assigned=SSH_PHASE_READY,
        via=via,
    )


def keys_of(build: Build) -> list[PublicKey]:
    """The keys an SSH build deploys (stored canonical, parsed again)."""
    return parse_keys(build.ssh_keys, allow_references=False, max_keys=None).keys


def rerun_command(phase: SrpmPhase | BuildChroot, workdir: str) -> str:
    return f"cd {workdir} && python3 coprssh_agent.py run {workdir}"
