"""What the API, the build page and the CLI show of an SSH builder (an SSH lease and the phase it serves)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser

from builders import ssh
from builders.models import Builder, Lease
from builders.services.access import host_key_fingerprint
from builds.models import Build, BuildChroot, SrpmPhase
from keys.parser import parse_keys


@dataclass(frozen=True)
class SshBuilderView:
    id: int  # the lease id
    build_id: int | None
    chroot: str | None  # a chroot name, or "srpm"
    state: str  # queued, provisioning, ready, ended, failed
    queue_reason: str
    host: str | None
    port: int | None
    user: str | None
    ipv4: str | None
    ipv6: str | None
    ssh_command: str | None
    host_key_fingerprint: str | None
    expires_at: datetime | None
    max_expires_at: datetime | None
    key_fingerprints: list[str]
    lease: Lease


def public_state(lease: Lease) -> str:
    if lease.state == Lease.State.QUEUED:
        return "queued"
    if lease.state in (Lease.State.WAITING, Lease.State.ASSIGNED):
        return "provisioning"
    if lease.state == Lease.State.ACTIVE:
        return "ready"
    return "failed" if lease.end_reason in (Lease.EndReason.FAILED, Lease.EndReason.TERMINATED) else "ended"


def view_of(lease: Lease, build: Build | None, chroot: str | None) -> SshBuilderView:
    builder: Builder | None = lease.builder
    ready = lease.state == Lease.State.ACTIVE and builder is not None and builder.host
    fingerprints = (
        [k.fingerprint for k in parse_keys(build.ssh_keys, allow_references=False, max_keys=None).keys]
        if build
        else []
    )
    return SshBuilderView(
        id=lease.pk,
        build_id=build.pk if build else None,
        chroot=chroot,
        state=public_state(lease),
        queue_reason=lease.queue_reason,
        host=builder.host if ready else None,
        port=builder.port if ready else None,
        user=builder.login_user if ready else None,
        ipv4=builder.ipv4 if ready else None,
        ipv6=builder.ipv6 if ready else None,
        ssh_command=ssh.format_ssh_command(builder.login_user, builder.host, builder.port) if ready else None,
        host_key_fingerprint=host_key_fingerprint(builder.host_key) if ready and builder.host_key else None,
        expires_at=lease.expires_at,
        max_expires_at=lease.max_expires_at,
        key_fingerprints=fingerprints,
        lease=lease,
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
        served[lease_id] = (build_id, "srpm")
    return served


def ssh_builders_of(user: AbstractBaseUser, *, lease_id: int | None = None) -> list[SshBuilderView]:
    """The user's SSH builders, newest first, in a constant number of queries."""
    leases = Lease.objects.filter(owner_id=user.pk, ssh=True).select_related("builder").order_by("-id")
    if lease_id is not None:
        leases = leases.filter(pk=lease_id)
    leases = list(leases[:200])
    ids = [lease.pk for lease in leases]
    phases: dict[int, tuple[Build, str]] = {}
    for phase in BuildChroot.objects.filter(lease_id__in=ids).select_related("build", "chroot"):
        phases[phase.lease_id] = (phase.build, phase.chroot.name)
    for phase in SrpmPhase.objects.filter(lease_id__in=ids).select_related("build"):
        phases[phase.lease_id] = (phase.build, "srpm")
    return [view_of(lease, *phases.get(lease.pk, (None, None))) for lease in leases]


def ssh_builder_of_phase(phase: SrpmPhase | BuildChroot) -> SshBuilderView | None:
    """The SSH builder serving one phase of an SSH build (for the build page and the builds API)."""
    if not phase.build.ssh or phase.lease is None:
        return None
    chroot = "srpm" if isinstance(phase, SrpmPhase) else phase.chroot.name
    return view_of(phase.lease, phase.build, chroot)
