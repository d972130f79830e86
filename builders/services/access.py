"""SSH access to a leased builder: deploy the user's keys, copr-builder and the lease file; warn before expiry.

Every line of authorized_keys is built here from parsed keys: options the service sets,
the key type and blob, and a service comment. Nothing the user typed reaches the file.
Files go up with SFTP into a temporary name and are renamed into place.
"""

from __future__ import annotations

import json
import logging
import posixpath
import secrets
import shlex
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

import paramiko
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from fabric import Connection

from builders import copr_builder, keylines, ssh
from builders.admin_key import admin_key
from builders.models import AuditEvent, Builder, Lease
from builders.providers.base import Machine, ProviderError
from builders.selectors import LoginRoute, login_route
from builders.services import gateway
from builders.services.common import TICK, LeaseNotActive, Via, audit
from builders.services.machines import machine_of, provider_for
from builders.services.tokens import issue_lease_token
from coprssh.exceptions import ServiceError
from keys.parser import PublicKey

log = logging.getLogger(__name__)

# authorized_keys also expires on the builder's own clock, a little after the hard cap.
KEY_EXPIRY_SLACK = timedelta(minutes=15)

# A login shell of a builder that shares its host reads this from its home, the state dir, after
# /etc/profile has set PATH again: copr-builder first on PATH, and the message of the day.
LOGIN_PROFILE = b"""# Written by coprssh.
PATH="$COPRSSH_STATE_DIR:$PATH"
export PATH
case $- in *i*) cat "$COPRSSH_STATE_DIR/motd" 2> /dev/null ;; esac
"""


class DeployError(ServiceError):
    """Access could not be set up on the builder."""


@dataclass(frozen=True)
class LeaseInfo:
    """What the user of an SSH lease is told about the work it serves (the MOTD, copr-builder help).

    The caller (builds) fills it in; builders only shows it. Its field names are keys of the
    lease file that copr-builder reads on the builder: renaming one breaks copr-builder.
    """

    project: str  # owner/name
    build_id: int
    chroot: str  # a chroot name, or "srpm"
    workdir: str
    rerun: str  # the command that reruns the build on the builder
    results: str  # where the rerun puts its results


@dataclass(frozen=True)
class Access:
    """What a user needs to log in, as deployed."""

    user: str
    host: str
    port: int
    ipv4: str | None
    ipv6: str | None
    ssh_command: str
    host_key: str
    host_key_fingerprint: str
    key_fingerprints: list[str]
    expires_at: datetime
    tool: str
    route: str = "direct"  # or "gateway": the command to show first goes through the SSH gateway


def authorized_keys_lines(*, lease: Lease, keys: list[PublicKey], admin_line: str) -> str:
    """The whole authorized_keys file: the service's key, then each user key with our options."""
    cap = (lease.max_expires_at or timezone.now()) + KEY_EXPIRY_SLACK
    options = ["no-agent-forwarding", keylines.expiry_time(cap)]
    comment = keylines.lease_comment([lease.pk])
    lines = [admin_line.strip()]
    lines += [keylines.key_line(options, key, comment) for key in keys]
    return "\n".join(lines) + "\n"


def host_key_fingerprint(host_key_line: str) -> str:
    from keys.parser import parse_key_line

    try:
        return parse_key_line(host_key_line).fingerprint
    except ValueError:
        return ""


def deploy_ssh_access(*, lease_id: int, keys: list[PublicKey], info: LeaseInfo, via: Via) -> Access:
    """Install keys, the lease file and copr-builder on an active SSH lease's builder."""
    lease = Lease.objects.select_related("builder__pool", "owner").filter(pk=lease_id).first()
    if lease is None or not lease.ssh or lease.state != Lease.State.ACTIVE or lease.builder is None:
        raise LeaseNotActive(f"Lease #{lease_id} is not an active SSH lease.")
    if not keys:
        raise DeployError("No public key to deploy.")
    builder: Builder = lease.builder
    machine = machine_of(builder)
    provider = provider_for(builder.pool)
    keys_path = provider.authorized_keys_path(machine)
    state_dir = provider.state_dir(machine)
    tool = posixpath.join(state_dir, "copr-builder")
    token = issue_lease_token(lease_id=lease.pk)
    route = login_route(lease=lease)
    lease_file = {
        **asdict(info),
        "api_url": settings.COPRSSH_PUBLIC_URL,
        "token": token,
        "lease_id": lease.pk,
        "owner": lease.owner.get_username(),
        "expires_at": lease.expires_at.isoformat() if lease.expires_at else None,
        "max_expires_at": lease.max_expires_at.isoformat() if lease.max_expires_at else None,
        "login": _login_text(route),
    }
    content = authorized_keys_lines(lease=lease, keys=keys, admin_line=admin_key().public_line)
    try:
        with _session(machine) as conn, ssh.deadline(conn, settings.COPRSSH_BUILDER_CALL_DEADLINE):
            ssh.run(
                conn,
                f"mkdir -p -m 0700 {_quote(state_dir)} {_quote(posixpath.dirname(keys_path) or '.')}",
                timeout=settings.COPRSSH_BUILDER_IO_TIMEOUT,
            )
            sftp = ssh.open_sftp(conn, timeout=settings.COPRSSH_BUILDER_IO_TIMEOUT)
            _put_atomic(sftp, keys_path, content.encode(), 0o600)
            _put_atomic(
                sftp,
                posixpath.join(state_dir, "lease.json"),
                json.dumps(lease_file, indent=2).encode(),
                0o600,
            )
            _put_atomic(sftp, tool, copr_builder.executable(), 0o755)
            _put_atomic(sftp, posixpath.join(state_dir, "motd"), _motd(lease, info, tool).encode(), 0o644)
            # On PATH as the build page says, and the message of the day at login.
            if provider.shares_host():
                # The host is not the builder's: both stay in the state dir, which the sessions
                # have as PATH's first folder and as their home (local.py), for this to run.
                _put_atomic(sftp, posixpath.join(state_dir, ".profile"), LOGIN_PROFILE, 0o644)
            else:
                ssh.run(conn, f"install -m 0755 {_quote(tool)} /usr/local/bin/copr-builder 2>/dev/null; true")
                ssh.run(conn, f"cp {_quote(state_dir)}/motd /etc/motd")
    except ProviderError:
        raise
    except Exception as exc:
        raise DeployError(f"Could not set up SSH access on {builder}: {type(exc).__name__}: {exc}") from None
    fingerprints = [key.fingerprint for key in keys]
    with transaction.atomic():
        audit(
            AuditEvent.Action.KEYS_DEPLOYED,
            via=via,
            lease=lease,
            detail="keys " + ", ".join(fingerprints),
        )
        gateway.record_lease_keys(lease=lease, keys=keys)
        Lease.objects.filter(pk=lease.pk).update(access_ready_at=timezone.now())
    host = builder.host or ""
    return Access(
        user=builder.login_user,
        host=host,
        port=builder.port,
        ipv4=builder.ipv4,
        ipv6=builder.ipv6,
        ssh_command=ssh.format_ssh_command(builder.login_user, host, builder.port),
        host_key=builder.host_key,
        host_key_fingerprint=host_key_fingerprint(builder.host_key),
        key_fingerprints=fingerprints,
        expires_at=lease.expires_at or timezone.now(),
        tool=tool,
        route=route.route if route else "direct",
    )


LEASE_FILE_CAP = 256 * 1024


def _login_text(found: LoginRoute | None) -> dict[str, str | None] | None:
    """How the owner logs in again, for `copr-builder help` (directly or through the SSH gateway)."""
    if found is None:
        return None
    return {
        "route": found.route,
        "ssh_command": found.ssh_command,
        "direct_command": found.direct_command,
        "gateway_command": found.gateway_command,
        "ssh_config": found.ssh_config,
    }


def _session(machine: Machine) -> Connection:
    return ssh.connect(
        machine, key_filename=admin_key().private_path, timeout=settings.COPRSSH_BUILDER_IO_TIMEOUT
    )


def _quote(path: str) -> str:
    return shlex.quote(path)


def _put_atomic(sftp: paramiko.SFTPClient, path: str, data: bytes, mode: int) -> None:
    temp = f"{path}.coprssh-{secrets.token_hex(6)}"
    with sftp.open(temp, "wb") as handle:
        handle.chmod(mode)
        handle.write(data)
    sftp.posix_rename(temp, path)


def _motd(lease: Lease, info: LeaseInfo, tool: str) -> str:
    expires = timezone.localtime(lease.expires_at) if lease.expires_at else None
    lines = [
        "",
        f"  coprssh builder for {info.project} build #{info.build_id} ({info.chroot})",
        f"  lent to {lease.owner.get_username()} until {expires:%Y-%m-%d %H:%M:%S %Z}" if expires else "",
        "  Nobody else will ever use it; it is deleted when the lease ends.",
        f"  Run `{tool} help` for how to rerun the build, prolong or release.",
        "",
    ]
    return "\n".join(line for line in lines if line is not None) + "\n"


def refresh_lease_file(*, lease_id: int) -> bool:
    """Write the lease's current expiry into the lease file on its builder (after it changed)."""
    lease = Lease.objects.select_related("builder__pool").filter(pk=lease_id, ssh=True).first()
    if lease is None or lease.state != Lease.State.ACTIVE or lease.builder is None:
        return False
    machine = machine_of(lease.builder)
    try:
        path = posixpath.join(provider_for(lease.builder.pool).state_dir(machine), "lease.json")
        with _session(machine) as conn, ssh.deadline(conn, settings.COPRSSH_BUILDER_CALL_DEADLINE) as until:
            sftp = ssh.open_sftp(conn, timeout=settings.COPRSSH_BUILDER_IO_TIMEOUT)
            data = json.loads(ssh.read_capped(sftp, path, cap=LEASE_FILE_CAP, until=until))
            if not isinstance(data, dict):
                raise ValueError("the lease file is not a JSON object")
            data["expires_at"] = lease.expires_at.isoformat() if lease.expires_at else None
            data["max_expires_at"] = lease.max_expires_at.isoformat() if lease.max_expires_at else None
            _put_atomic(sftp, path, json.dumps(data, indent=2).encode(), 0o600)
    except Exception as exc:  # the builder is the user's: the file may be gone or changed
        log.warning("could not refresh the lease file of lease %s: %s", lease_id, exc)
        return False
    return True


def warn_expiring(*, now: datetime | None = None) -> list[int]:
    """Tell logged-in users (`wall`) that their SSH builder goes away soon; each lease is warned once."""
    from builders.services.quota import quota_for

    now = now or timezone.now()
    warned: list[int] = []
    candidates = Lease.objects.filter(
        state=Lease.State.ACTIVE, ssh=True, warned_at__isnull=True
    ).select_related("builder", "owner")
    for lease in candidates.filter(expires_at__lte=now + timedelta(hours=1)):
        quota = quota_for(lease.owner)
        if lease.expires_at is None or lease.expires_at - now > quota.warning_before:
            continue
        # Claim first: two ticks must not both warn.
        if not Lease.objects.filter(pk=lease.pk, warned_at__isnull=True).update(warned_at=now):
            continue
        minutes = max(int((lease.expires_at - now).total_seconds() // 60), 0)
        message = (
            f"coprssh: this builder is deleted in {minutes} min "
            f"({timezone.localtime(lease.expires_at):%H:%M %Z}). Run `copr-builder prolong` to keep it longer."
        )
        if lease.builder is None:
            continue
        try:
            with _session(machine_of(lease.builder)) as conn, ssh.deadline(conn, 30):
                ssh.run(conn, f"wall {_quote(message)} 2>/dev/null; true", timeout=20)
        except Exception as exc:  # a warning that cannot be delivered is not worth a retry storm
            log.warning("could not warn lease %s: %s", lease.pk, exc)
            continue
        with transaction.atomic():
            audit(AuditEvent.Action.WARNED, via=TICK, lease=lease, detail=message)
        warned.append(lease.pk)
    return warned
