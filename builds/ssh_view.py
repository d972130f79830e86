"""What the API, the build page and the CLI show of an SSH builder (an SSH lease and the phase it serves).

Build pages are public, SSH builders are not: where and how to log in (host, port, login
user, the ssh command, the host key, the keys that may log in and their comments) is shown
to the lease's owner and to staff only. `sees_connection_details` is the one place that
decides; every view here takes the viewing user and leaves those fields empty for others,
who still see the state, why it waits and until when it lives.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.models import AnonymousUser, User

from builders import ssh
from builders.models import Lease
from builders.services.access import host_key_fingerprint
from builds.models import Build, BuildChroot, SrpmPhase
from builds.selectors import builds_served_by, chroot_of, keys_of
from keys.parser import PublicKey


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
    details: bool  # whether the connection details above are filled (the viewer may see them)


def sees_connection_details(viewer: User | AnonymousUser | None, owner_id: int | None) -> bool:
    """Whether `viewer` may see how to log in to an SSH builder of `owner_id`: its owner and staff."""
    if viewer is None or not viewer.is_authenticated or owner_id is None:
        return False
    return viewer.pk == owner_id or viewer.is_staff


def keys_shown(build: Build, viewer: User | AnonymousUser | None) -> list[PublicKey]:
    """The keys of an SSH build (with their comments), for its owner and staff; nobody else's business."""
    if not build.has_ssh_keys or not sees_connection_details(viewer, build.submitter_id):
        return []
    return keys_of(build)


def key_count(build: Build) -> int:
    return len(build.ssh_keys.splitlines()) if build.has_ssh_keys else 0


def public_state(lease: Lease) -> str:
    if lease.state == Lease.State.QUEUED:
        return "queued"
    if lease.state in (Lease.State.WAITING, Lease.State.ASSIGNED):
        return "provisioning"
    if lease.state == Lease.State.ACTIVE:
        return "ready"
    return "failed" if lease.end_reason in (Lease.EndReason.FAILED, Lease.EndReason.TERMINATED) else "ended"


def view_of(lease: Lease, build: Build | None, chroot: str | None, *, details: bool) -> SshBuilderView:
    """The SSH builder of `lease`; without `details`, nothing that says where or how to log in."""
    builder = lease.builder if details and lease.state == Lease.State.ACTIVE else None
    host = builder.host if builder is not None else None
    ready = builder if host else None  # ready to log in to, and the viewer may know where
    fingerprints = [k.fingerprint for k in keys_of(build)] if build and details else []
    return SshBuilderView(
        id=lease.pk,
        build_id=build.pk if build else None,
        chroot=chroot,
        state=public_state(lease),
        queue_reason=lease.queue_reason,
        host=host or None,
        port=ready.port if ready else None,
        user=ready.login_user if ready else None,
        ipv4=ready.ipv4 if ready else None,
        ipv6=ready.ipv6 if ready else None,
        ssh_command=ssh.format_ssh_command(ready.login_user, host, ready.port) if ready and host else None,
        host_key_fingerprint=host_key_fingerprint(ready.host_key) if ready and ready.host_key else None,
        expires_at=lease.expires_at,
        max_expires_at=lease.max_expires_at,
        key_fingerprints=fingerprints,
        lease=lease,
        details=details,
    )


def ssh_builders_of(user: User, *, lease_id: int | None = None) -> list[SshBuilderView]:
    """The user's SSH builders, newest first, in a constant number of queries."""
    leases = Lease.objects.filter(owner_id=user.pk, ssh=True).select_related("builder").order_by("-id")
    if lease_id is not None:
        leases = leases.filter(pk=lease_id)
    newest = list(leases[:200])
    phases = builds_served_by([lease.pk for lease in newest])
    # The user's own leases: the owner sees the details of each.
    return [view_of(lease, *phases.get(lease.pk, (None, None)), details=True) for lease in newest]


def ssh_builder_of_phase(
    phase: SrpmPhase | BuildChroot, *, viewer: User | AnonymousUser | None
) -> SshBuilderView | None:
    """The SSH builder serving one phase, as `viewer` may see it (build page, builds API).

    A phase of an SSH build has one from the start; a failed phase of a keep-on-failure build
    has one once its lease was turned into an SSH lease.
    """
    if phase.lease is None or not phase.lease.ssh:
        return None
    chroot = chroot_of(phase)
    details = sees_connection_details(viewer, phase.lease.owner_id)
    return view_of(phase.lease, phase.build, chroot, details=details)
