"""Logins through the gateway, read from the gateway's own log.

The log is written by the gateway command from sshd's messages (builders/gateway/sshd.py), each
line stamped with the time it arrived. Users cannot write to it (they get no session on the
gateway), and sshd escapes whatever a client sends before logging it. Still, only one exact shape
of line counts as a login, its parts are checked, and the log is read from where the last read
stopped, at most `READ_CAP` bytes at a time and whole lines only.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

READ_CAP = 256 * 1024

# "2026-05-01T12:04:05.123456Z Accepted publickey for coprssh-gw from 203.0.113.9 port 51234 ssh2:
# ED25519 SHA256:…" (sshd's VERBOSE line once authentication succeeded).
ACCEPTED_RE = re.compile(
    r"(?P<at>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?)Z "
    r"Accepted publickey for (?P<user>[a-z_][a-z0-9_-]{0,31}) from (?P<address>[0-9A-Fa-f.:]{2,45}) "
    r"port (?P<port>\d{1,5}) ssh2: (?P<label>[A-Z0-9-]{2,20}) (?P<fingerprint>SHA256:[A-Za-z0-9+/]{43})"
)


@dataclass(frozen=True)
class Login:
    """One accepted login: when, which account, from where, with which key."""

    at: datetime
    user: str
    address: str
    port: int
    label: str  # ED25519, RSA, ECDSA, …
    fingerprint: str


@dataclass(frozen=True)
class Position:
    """Where reading stopped: which file (device:inode) and the offset of the next unread byte."""

    file_id: str = ""
    offset: int = 0


@dataclass(frozen=True)
class Batch:
    """Whole lines read after a position, and the position after them."""

    lines: list[str]
    position: Position


def parse_line(line: str) -> Login | None:
    """The login a log line records, or None for any other line (or a malformed one)."""
    found = ACCEPTED_RE.fullmatch(line.rstrip("\r\n"))
    if found is None:
        return None
    try:
        at = datetime.fromisoformat(found["at"]).replace(tzinfo=UTC)
        address = str(ipaddress.ip_address(found["address"]))
    except ValueError:
        return None
    port = int(found["port"])
    if port > 65535:
        return None
    return Login(
        at=at,
        user=found["user"],
        address=address,
        port=port,
        label=found["label"],
        fingerprint=found["fingerprint"],
    )


def read_new(log: Path, old_log: Path, position: Position, *, cap: int = READ_CAP) -> Batch:
    """Up to `cap` bytes of whole lines after `position`: the rest of a rotated log first, then the log."""
    old = _stat(old_log)
    if old is not None and _file_id(old) == position.file_id:
        if old.st_size > position.offset:
            batch = _read(old_log, position, cap)
            if batch is not None:
                return batch
        position = Position()  # the rotated log is read to its end: the new one starts at 0
    batch = _read(log, position, cap)
    return batch if batch is not None else Batch([], position)


def _stat(path: Path) -> os.stat_result | None:
    try:
        return os.stat(path, follow_symlinks=False)
    except OSError:
        return None


def _file_id(stat: os.stat_result) -> str:
    return f"{stat.st_dev}:{stat.st_ino}"


def _read(path: Path, position: Position, cap: int) -> Batch | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        stat = os.fstat(fd)
        file_id = _file_id(stat)
        offset = position.offset
        # Another file (rotated, recreated) or one cut shorter (truncated): from its start.
        if file_id != position.file_id or stat.st_size < offset:
            offset = 0
        # One byte before the offset says whether it starts a line (see below).
        start = max(offset - 1, 0)
        os.lseek(fd, start, os.SEEK_SET)
        wanted = cap + (offset - start)
        chunks: list[bytes] = []
        got = 0
        while got < wanted:
            chunk = os.read(fd, wanted - got)
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if offset > start:
        before, data = data[:1], data[1:]
    else:
        before = b"\n"
    end = data.rfind(b"\n")
    if end < 0:
        if len(data) >= cap:
            # A line longer than a whole read is no line of sshd's: step over it, a read at a time.
            return Batch([], Position(file_id, offset + len(data)))
        return Batch([], Position(file_id, offset))  # a line still being written
    text = data[: end + 1].decode("utf-8", "replace")
    lines = text.splitlines()
    if before != b"\n":
        lines = lines[1:]  # the rest of a line stepped over: it is not a line of its own
    return Batch(lines, Position(file_id, offset + end + 1))
