"""Reads of the builds app that several views, serializers and services need.

Selectors never write. The one question asked most is which phase a lease serves: a lease
serves at most one phase, the SRPM phase or one chroot of one build.
"""

from __future__ import annotations

from collections.abc import Iterable

from builds.models import Build, BuildChroot, SrpmPhase, State
from keys.parser import PublicKey, parse_keys

Phase = SrpmPhase | BuildChroot

# What the phase is called where a chroot name is expected (lease purposes, the SSH builder views).
SRPM = "srpm"


def kind_of(phase: Phase) -> str:
    """The phase's kind as tasks take it: "srpm" or "rpm"."""
    return "srpm" if isinstance(phase, SrpmPhase) else "rpm"


def chroot_of(phase: Phase) -> str:
    """The chroot a phase builds, or "srpm"."""
    return SRPM if isinstance(phase, SrpmPhase) else phase.chroot.name


def load_phase(*, kind: str, phase_id: int) -> Phase | None:
    """A phase with its build, project owner, submitter and builder, or None."""
    model = SrpmPhase if kind == "srpm" else BuildChroot
    related = ["build__project__owner", "build__submitter", "lease__builder__pool"]
    if model is BuildChroot:
        related.append("chroot")
    return model.objects.select_related(*related).filter(pk=phase_id).first()


def phase_of_lease(*, lease_id: int) -> Phase | None:
    """The phase that `lease_id` serves (loaded as `load_phase` does), or None."""
    for model, kind in ((SrpmPhase, "srpm"), (BuildChroot, "rpm")):
        phase_id = model.objects.filter(lease_id=lease_id).values_list("pk", flat=True).first()
        if phase_id is not None:
            return load_phase(kind=kind, phase_id=phase_id)
    return None


def build_of_lease(*, lease_id: int) -> int | None:
    """The id of the build whose phase `lease_id` serves, or None."""
    return (
        BuildChroot.objects.filter(lease_id=lease_id).values_list("build_id", flat=True).first()
        or SrpmPhase.objects.filter(lease_id=lease_id).values_list("build_id", flat=True).first()
    )


def served_by(lease_ids: list[int]) -> dict[int, tuple[int, str]]:
    """Lease id → (build id, chroot name or "srpm") for the phases these leases serve."""
    served = {
        lease_id: (build_id, chroot)
        for lease_id, build_id, chroot in BuildChroot.objects.filter(lease_id__in=lease_ids).values_list(
            "lease_id", "build_id", "chroot__name"
        )
    }
    for lease_id, build_id in SrpmPhase.objects.filter(lease_id__in=lease_ids).values_list(
        "lease_id", "build_id"
    ):
        served[lease_id] = (build_id, SRPM)
    return served


def builds_served_by(lease_ids: list[int]) -> dict[int, tuple[Build, str]]:
    """Lease id → (build, chroot name or "srpm"), in two queries whatever the number of leases."""
    phases: list[Phase] = [
        *BuildChroot.objects.filter(lease_id__in=lease_ids).select_related("build", "chroot"),
        *SrpmPhase.objects.filter(lease_id__in=lease_ids).select_related("build"),
    ]
    return {phase.lease_id: (phase.build, chroot_of(phase)) for phase in phases if phase.lease_id is not None}


def keys_of(build: Build) -> list[PublicKey]:
    """The keys an SSH build deploys (stored canonical, parsed again)."""
    return parse_keys(build.ssh_keys, allow_references=False, max_keys=None).keys


def default_ssh_chroots(build_chroots: Iterable[BuildChroot]) -> list[BuildChroot]:
    """The chroots an SSH resubmission builds when none is named: the failed ones, or the first.

    Each chosen chroot takes an SSH builder of its own, and so a slot of its owner's quota.
    """
    build_chroots = list(build_chroots)
    failed = [bc for bc in build_chroots if bc.state == State.FAILED]
    return failed or build_chroots[:1]


def srpm_reruns(build: Build) -> bool:
    """Whether an SSH resubmission of `build` reruns its SRPM phase (there is no SRPM to reuse)."""
    return not (build.srpm.state == State.SUCCEEDED and build.srpm_file)
