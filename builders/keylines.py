"""authorized_keys lines, built by the service only: options it chose, a parsed key, a comment of its own.

Both files the service writes from users' keys go through `key_line`: each builder's
(builders/services/access.py) and the gateway's (builders/services/gateway.py). Nothing a user
typed can reach a line: the key type must be one the parser accepts and the key data is encoded
again from the decoded blob; each option must have one of the few shapes below (the typed
helpers make them: an IP address and a port, a time); the comment names leases by number.
`key_line` checks all of this itself, so a caller passing anything else gets ValueError, never a
line with an option or a second key smuggled in.
"""

from __future__ import annotations

import base64
import ipaddress
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from keys.parser import PublicKey
from keys.wire import KEY_TYPES

# Options that take no value and that the service sets.
FLAGS = frozenset({"restrict", "port-forwarding", "no-agent-forwarding", "no-pty", "no-x11-forwarding"})
_OPTION_RES = (
    re.compile(r"expiry-time=\"\d{14}Z\""),
    re.compile(r"permitopen=\"(?:\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-f:.]+\]):\d{1,5}\""),
)
_COMMENT_RE = re.compile(r"lease-\d+(?:,lease-\d+)*")
_BASE64_RE = re.compile(r"[A-Za-z0-9+/]+={0,2}")


def expiry_time(moment: datetime) -> str:
    """`expiry-time="YYYYMMDDHHMMSSZ"`: sshd refuses the key from then on (its own clock, UTC)."""
    return f'expiry-time="{moment.astimezone(UTC):%Y%m%d%H%M%SZ}"'


def canonical_address(address: str) -> str:
    """An IP address as the service writes it everywhere (commands, permitopen): compressed, no zone."""
    ip = ipaddress.ip_address(address.strip("[]"))
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id:
        raise ValueError(f"an address with a zone cannot be forwarded to: {address!r}")
    return str(ip)


def permit_open(address: str, port: int) -> str:
    """`permitopen="HOST:PORT"` for one IP address (IPv6 in brackets, as sshd reads it) and port."""
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"not a TCP port: {port!r}")
    host = canonical_address(address)
    if ":" in host:
        host = f"[{host}]"
    return f'permitopen="{host}:{port}"'


def lease_comment(lease_ids: Iterable[int]) -> str:
    """`lease-12` or `lease-12,lease-15`: which leases a line serves."""
    ids = sorted({int(lease_id) for lease_id in lease_ids})
    if not ids:
        raise ValueError("a key line serves at least one lease")
    return ",".join(f"lease-{lease_id}" for lease_id in ids)


def _check_option(option: str) -> None:
    if option in FLAGS or any(shape.fullmatch(option) for shape in _OPTION_RES):
        return
    raise ValueError(f"not an option the service writes: {option!r}")


def key_line(options: Sequence[str], key: PublicKey, comment: str) -> str:
    """One authorized_keys line: `OPTIONS TYPE BASE64 COMMENT`, each part checked here."""
    if not options:
        raise ValueError("a user key is always written with options")
    for option in options:
        _check_option(option)
    if key.key_type not in KEY_TYPES:
        raise ValueError(f"not an accepted key type: {key.key_type!r}")
    if not isinstance(key.blob, bytes) or not key.blob:
        raise ValueError("the key has no data")
    data = base64.b64encode(key.blob).decode("ascii")
    if not _BASE64_RE.fullmatch(data):  # cannot fail; says what the line relies on
        raise ValueError("the key data is not base64")
    if not _COMMENT_RE.fullmatch(comment):
        raise ValueError(f"not a service comment: {comment!r}")
    return f"{','.join(options)} {key.key_type} {data} {comment}"
