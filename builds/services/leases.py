"""The leases a build's phases run on: one for the SRPM phase, one per chroot, SSH ones for SSH builds."""

from __future__ import annotations

import functools

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction

from builders import services as builders
from builders.models import Lease
from builds import storage
from builds.models import Build, SrpmPhase, State
from builds.services.state import PHASE_READY_TASK


def request_srpm_lease(build: Build, srpm: SrpmPhase) -> None:
    """The SRPM phase of a normal build waits for a builder of the SRPM architecture."""
    lease = builders.request_lease(
        owner=build.submitter,
        arch=settings.COPRSSH_SRPM_ARCH,
        sandbox=build.sandbox,
        purpose=f"build #{build.pk} srpm",
        on_assigned=PHASE_READY_TASK,
        at_once=True,
    )
    srpm.lease = lease
    srpm.save(update_fields=["lease"])
    message = (
        f"Build #{build.pk} of {build.project.full_name} submitted by {build.submitter.get_username()}; "
        f"waiting for a builder ({settings.COPRSSH_SRPM_ARCH}, lease #{lease.pk})."
    )
    if build.ssh_on_failure:
        # backend.log is public: the number of keys, not their fingerprints (issue #10).
        count = len(build.ssh_keys.splitlines())
        message += (
            f" If a phase fails, its builder is kept for SSH access ({count} key{'s' if count != 1 else ''})."
        )
    # Written once the build exists for good: a rolled-back submit leaves no log behind.
    transaction.on_commit(functools.partial(storage.backend_log, srpm.storage_dir, message))


def request_chroot_leases(build: Build) -> None:
    """After the SRPM phase: one lease per pending chroot, on a builder of its architecture."""
    for build_chroot in build.build_chroots.select_related("chroot").filter(state=State.PENDING, lease=None):
        lease = builders.request_lease(
            owner=build.submitter,
            arch=build_chroot.chroot.arch,
            sandbox=build.sandbox,
            purpose=f"build #{build.pk} {build_chroot.chroot.name}",
            on_assigned=PHASE_READY_TASK,
            at_once=True,
        )
        build_chroot.lease = lease
        build_chroot.save(update_fields=["lease"])
        message = f"Waiting for a builder ({build_chroot.chroot.arch}, lease #{lease.pk})."
        if lease.queue_reason:
            message += f" {lease.queue_reason}"
        transaction.on_commit(functools.partial(storage.backend_log, build_chroot.storage_dir, message))


def request_ssh_lease(*, build: Build, user: User, arch: str, what: str, via: builders.Via) -> Lease:
    """A lease on a fresh builder that `user` may log in to, for one phase (`what`) of an SSH build."""
    return builders.request_lease(
        owner=user,
        arch=arch,
        ssh=True,
        purpose=f"build #{build.pk} {what}",
        on_assigned=PHASE_READY_TASK,
        at_once=True,
        via=via,
    )


def rerun_command(workdir: str) -> str:
    """How the user reruns the build on an SSH builder (shown by copr-builder help)."""
    return f"cd {workdir} && python3 coprssh_agent.py run {workdir}"
