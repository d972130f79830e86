"""The SSH gateway, as the service runs it: its authorized_keys from the active SSH leases, its logins audited.

Each key deployed for an active SSH lease on a pool reached through the gateway gets one line:
`restrict,port-forwarding,permitopen="<builder>:<port>",expiry-time="<lease expiry>"`. A key on
several such leases (one person's two builders) gets one line naming every builder it may reach,
valid until the last of those leases expires: sshd uses only the first line that matches a key.
The file is written again, whole, after every change of such a lease (deploy, prolong, release,
expire), by the tick, and by the gateway command itself every few seconds, on the host where the
gateway runs (the folder that `manage.py gateway` made exists there and nowhere else).

Logins are read from the gateway's own log (not a builder's, which its user controls): each
accepted login becomes one `gateway-login` audit event per lease the key then served.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import pwd
from collections import defaultdict
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from builders import keylines
from builders.gateway import logins, sshd
from builders.models import AuditEvent, GatewayLogCursor, Lease, LeaseKey, SshRoute
from builders.providers import accounts
from coprssh.exceptions import ServiceError
from keys.parser import PublicKey

log = logging.getLogger(__name__)

GATEWAY_ROUTES = [SshRoute.GATEWAY, SshRoute.BOTH]
# Reads of the log per pass (each at most logins.READ_CAP bytes, each in a transaction of its own).
READS_PER_PASS = 4


def gateway_files() -> sshd.GatewayFiles:
    return sshd.files_in(settings.COPRSSH_GATEWAY_DIR)


def runs_here() -> bool:
    """Whether this host runs the gateway: one is configured and `manage.py gateway` made its folder here."""
    return bool(settings.COPRSSH_GATEWAY_HOST) and gateway_files().config.exists()


def record_lease_keys(*, lease: Lease, keys: list[PublicKey]) -> None:
    """Remember the keys deployed for `lease` (the gateway's lines and its login audit use them)."""
    LeaseKey.objects.filter(lease=lease).delete()
    unique = {key.fingerprint: key for key in keys}
    LeaseKey.objects.bulk_create(
        LeaseKey(lease=lease, key_type=key.key_type, data=key.data, fingerprint=fingerprint)
        for fingerprint, key in unique.items()
    )
    gateway_changed()


def gateway_changed() -> None:
    """Write the gateway's keys again once the current transaction commits (where the gateway runs)."""
    transaction.on_commit(_write_quietly)


def _write_quietly() -> None:
    # A lease change has committed; the tick writes the file again if this write fails.
    try:
        write_gateway_keys()
    except Exception:
        log.exception("could not write the gateway's authorized_keys")


def gateway_lines(*, now: datetime | None = None) -> list[str]:
    """The gateway's authorized_keys lines for the SSH leases active now."""
    now = now or timezone.now()
    leases = (
        Lease.objects.filter(
            state=Lease.State.ACTIVE,
            ssh=True,
            builder__isnull=False,
            expires_at__gt=now,
            builder__pool__ssh_route__in=GATEWAY_ROUTES,
        )
        .select_related("builder")
        .prefetch_related("keys")
        .order_by("pk")
    )
    holders: dict[tuple[str, str], list[Lease]] = defaultdict(list)
    for lease in leases:
        for key in lease.keys.all():
            holders[(key.key_type, key.data)].append(lease)
    lines = []
    for (key_type, data), served in holders.items():
        try:
            lines.append(_line(key_type, data, served))
        except (ValueError, binascii.Error) as exc:  # a row changed by hand; the other keys still work
            log.warning("gateway: no line for a key of leases %s: %s", [lease.pk for lease in served], exc)
    return lines


def _line(key_type: str, data: str, served: list[Lease]) -> str:
    key = PublicKey(key_type, base64.b64decode(data, validate=True), 0)
    targets = set()
    for lease in served:
        builder = lease.builder
        assert builder is not None
        for address in (builder.ipv4, builder.ipv6):
            if address:
                targets.add((keylines.canonical_address(address), builder.port))
    if not targets:
        raise ValueError("its builders have no address")
    expires = max(lease.expires_at for lease in served if lease.expires_at is not None)
    options = ["restrict", "port-forwarding"]
    options += [keylines.permit_open(address, port) for address, port in sorted(targets)]
    options.append(keylines.expiry_time(expires))
    return keylines.key_line(options, key, keylines.lease_comment(lease.pk for lease in served))


def write_gateway_keys(*, now: datetime | None = None) -> int | None:
    """Write the gateway's authorized_keys from the active SSH leases; None where no gateway runs."""
    if not runs_here():
        return None
    files = gateway_files()
    # Read and write under the lock: of two writers, the later one reads the later leases.
    with sshd.locked(files):
        lines = gateway_lines(now=now)
        sshd.write_atomic(files.authorized_keys, "".join(f"{line}\n" for line in lines))
    return len(lines)


def record_gateway_logins(*, cap: int = logins.READ_CAP, passes: int = READS_PER_PASS) -> int:
    """Add a `gateway-login` audit event per lease for each login the gateway's log shows since the last read."""
    if not settings.COPRSSH_GATEWAY_HOST:
        return 0
    files = gateway_files()
    if not files.log.exists() and not files.old_log.exists():
        return 0
    GatewayLogCursor.objects.get_or_create(pk=1)
    recorded = 0
    for _ in range(passes):
        with transaction.atomic():
            # Locked: two readers (the tick, the gateway command) never record one line twice.
            cursor = GatewayLogCursor.objects.select_for_update().get(pk=1)
            before = logins.Position(cursor.file_id, cursor.offset)
            batch = logins.read_new(files.log, files.old_log, before, cap=cap)
            if batch.position == before:
                break
            found = [login for line in batch.lines if (login := logins.parse_line(line)) is not None]
            recorded += _record([login for login in found if login.user == settings.COPRSSH_GATEWAY_USER])
            cursor.file_id = batch.position.file_id
            cursor.offset = batch.position.offset
            cursor.read_at = timezone.now()
            cursor.save(update_fields=["file_id", "offset", "read_at"])
    return recorded


def _record(found: list[logins.Login]) -> int:
    if not found:
        return 0
    served: dict[str, list[Lease]] = defaultdict(list)
    keys = LeaseKey.objects.filter(
        fingerprint__in={login.fingerprint for login in found},
        lease__ssh=True,
        lease__started_at__isnull=False,
        lease__builder__pool__ssh_route__in=GATEWAY_ROUTES,
    ).select_related("lease")
    for key in keys:
        served[key.fingerprint].append(key.lease)
    events = []
    for login in found:
        for lease in served.get(login.fingerprint, []):
            # The leases the key served at that moment, not the ones it serves now.
            assert lease.started_at is not None
            if lease.started_at <= login.at and (lease.ended_at is None or login.at <= lease.ended_at):
                events.append(
                    AuditEvent(
                        action=AuditEvent.Action.GATEWAY_LOGIN,
                        created_at=login.at,
                        source="gateway",
                        remote_addr=login.address,
                        lease=lease,
                        builder_id=lease.builder_id,
                        detail=f"key {login.label} {login.fingerprint} from {login.address} port {login.port}",
                    )
                )
    AuditEvent.objects.bulk_create(events)
    return len(events)


def keys_reader() -> str:
    """Who runs `cat` on authorized_keys for sshd: root, or the service's own account without root."""
    return "root" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name


# --- starting it --------------------------------------------------------------------


class GatewayUnavailable(ServiceError):
    """The gateway cannot be set up or started here; the message says what to change."""


def prepare_gateway() -> sshd.GatewayFiles:
    """Make the gateway's folder, host key, account, sshd_config and authorized_keys (idempotent)."""
    host = settings.COPRSSH_GATEWAY_HOST
    if not host:
        raise GatewayUnavailable(
            "Set COPRSSH_GATEWAY_HOST to the name or address users reach the gateway at."
        )
    user = settings.COPRSSH_GATEWAY_USER
    try:
        files = gateway_files()
        sshd.make_dir(files)
        line = sshd.host_key(files)
        pinned = settings.COPRSSH_GATEWAY_HOST_KEY
        if pinned and pinned.split()[:2] != line.split()[:2]:
            raise GatewayUnavailable(
                f"COPRSSH_GATEWAY_HOST_KEY is not this gateway's host key ({files.host_key_pub}): users would be "
                "told to trust another key. Set it to the line in that file."
            )
        if os.geteuid() == 0:
            accounts.create_gateway(user)
        else:
            me = keys_reader()
            if user != me:
                raise GatewayUnavailable(
                    f"Without root the gateway can only let its own account in: run it as root (it then makes the "
                    f"account {user}, with no shell), or set COPRSSH_GATEWAY_USER={me}."
                )
            log.warning(
                "the gateway runs without root: users log in to it as the service's own account %s (sessions are "
                "refused, forwards are limited by each key's line); run it as root to give it an account of its own",
                me,
            )
        config = sshd.sshd_config(
            files,
            listen=list(settings.COPRSSH_GATEWAY_LISTEN),
            port=settings.COPRSSH_GATEWAY_PORT,
            user=user,
            keys_reader=keys_reader(),
            version=sshd.sshd_version(settings.COPRSSH_GATEWAY_SSHD),
        )
        sshd.write_atomic(files.config, config)
        with sshd.locked(files):
            sshd.write_atomic(files.authorized_keys, "".join(f"{line}\n" for line in gateway_lines()))
    except (sshd.GatewayError, accounts.AccountError, OSError) as exc:
        raise GatewayUnavailable(f"Cannot set up the gateway: {exc}") from exc
    return files


def start_gateway(*, timeout: float = 10.0) -> sshd.Sshd:
    """Prepare the gateway and start its sshd in the foreground; the caller stops it (`.stop()`)."""
    files = prepare_gateway()
    server = sshd.Sshd(files, sshd_path=settings.COPRSSH_GATEWAY_SSHD)
    probe = (list(settings.COPRSSH_GATEWAY_LISTEN) or ["127.0.0.1"])[0]
    try:
        server.start()
        server.wait_ready(probe, settings.COPRSSH_GATEWAY_PORT, timeout=timeout)
    except sshd.GatewayError as exc:
        server.stop()
        raise GatewayUnavailable(f"The gateway did not start: {exc}") from exc
    return server
