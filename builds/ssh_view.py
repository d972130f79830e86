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

from builders.models import Lease
from builders.selectors import Gateway, GatewayLogin, last_gateway_logins, login_route
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
    # How ssh_command reaches the builder: "direct", or "gateway" (ssh -J through the service's gateway).
    route: str | None = None
    direct_command: str | None = None  # None when the pool is reached through the gateway only
    gateway_command: str | None = None  # None when the pool is reached directly only
    gateway: Gateway | None = None
    known_hosts: tuple[str, ...] = ()  # lines that pin the builder's and the gateway's host keys
    ssh_config: str | None = None  # a ~/.ssh/config snippet: `ssh coprssh-<id>`
    last_gateway_login: GatewayLogin | None = None

    @property
    def other_command(self) -> str | None:
        """The second way in, when the pool offers both."""
        if self.direct_command and self.gateway_command:
            return self.direct_command if self.route == "gateway" else self.gateway_command
        return None


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
        # Active, but the keys are not on the builder yet: a login would be refused.
        return "ready" if lease.access_ready_at else "provisioning"
    return "failed" if lease.end_reason in (Lease.EndReason.FAILED, Lease.EndReason.TERMINATED) else "ended"


def view_of(
    lease: Lease,
    build: Build | None,
    chroot: str | None,
    *,
    details: bool,
    last_login: GatewayLogin | None = None,
) -> SshBuilderView:
    """The SSH builder of `lease`; without `details`, nothing that says where or how to log in."""
    builder = lease.builder if details and public_state(lease) == "ready" else None
    host = builder.host if builder is not None else None
    ready = builder if host else None  # ready to log in to, and the viewer may know where
    fingerprints = [k.fingerprint for k in keys_of(build)] if build and details else []
    found = login_route(lease=lease) if ready else None
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
        ssh_command=found.ssh_command if found else None,
        host_key_fingerprint=host_key_fingerprint(ready.host_key) if ready and ready.host_key else None,
        expires_at=lease.expires_at,
        max_expires_at=lease.max_expires_at,
        key_fingerprints=fingerprints,
        lease=lease,
        details=details,
        route=found.route if found else None,
        direct_command=found.direct_command if found else None,
        gateway_command=found.gateway_command if found else None,
        gateway=found.gateway if found else None,
        known_hosts=tuple(found.known_hosts) if found else (),
        ssh_config=found.ssh_config if found else None,
        last_gateway_login=last_login if details else None,
    )


def ssh_builders_of(user: User, *, lease_id: int | None = None) -> list[SshBuilderView]:
    """The user's SSH builders, newest first, in a constant number of queries."""
    leases = Lease.objects.filter(owner_id=user.pk, ssh=True).select_related("builder__pool").order_by("-id")
    if lease_id is not None:
        leases = leases.filter(pk=lease_id)
    newest = list(leases[:200])
    ids = [lease.pk for lease in newest]
    phases = builds_served_by(ids)
    logins = last_gateway_logins(lease_ids=ids)
    # The user's own leases: the owner sees the details of each.
    return [
        view_of(lease, *phases.get(lease.pk, (None, None)), details=True, last_login=logins.get(lease.pk))
        for lease in newest
    ]


def ssh_builder_of_phase(
    phase: SrpmPhase | BuildChroot,
    *,
    viewer: User | AnonymousUser | None,
    last_logins: dict[int, GatewayLogin] | None = None,
) -> SshBuilderView | None:
    """The SSH builder serving one phase, as `viewer` may see it (build page, builds API).

    A phase of an SSH build has one from the start; a failed phase of a keep-on-failure build
    has one once its lease was turned into an SSH lease. `last_logins` (from `gateway_logins_of`)
    adds the last login through the gateway for its owner.
    """
    if phase.lease is None or not phase.lease.ssh:
        return None
    chroot = chroot_of(phase)
    details = sees_connection_details(viewer, phase.lease.owner_id)
    last_login = (last_logins or {}).get(phase.lease.pk)
    return view_of(phase.lease, phase.build, chroot, details=details, last_login=last_login)


def gateway_logins_of(
    phases: list[SrpmPhase | BuildChroot], viewer: User | AnonymousUser | None
) -> dict[int, GatewayLogin]:
    """The last gateway login of each phase's SSH lease that `viewer` may see, in one pass."""
    ids = [
        phase.lease_id
        for phase in phases
        if phase.lease_id is not None
        and phase.lease is not None
        and sees_connection_details(viewer, phase.lease.owner_id)
    ]
    return last_gateway_logins(lease_ids=ids)
