"""SSH to builders with the host key the service pinned, and nothing else from the local machine.

A builder lent to a user is the user's: its host key must be the one the service generated, and the
service must not offer its agent, its other keys or its own SSH configuration to it.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import os
import shlex
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paramiko
from fabric import Config, Connection
from fabric.runners import Remote, Result

from .providers.base import Machine

# Each SFTP request and each channel read waits at most this long for the builder (seconds).
IO_TIMEOUT = 15.0
READ_CHUNK = 32 * 1024


class BuilderIOError(Exception):
    """The builder answered in a way the service refuses (too large, not a regular file, too slow)."""


class BuilderReplyTooLarge(BuilderIOError):
    def __init__(self, path: str, cap: int) -> None:
        super().__init__(f"{path} on the builder is larger than {cap} bytes")
        self.path = path
        self.cap = cap


class BuilderDeadline(BuilderIOError):
    """The whole call took longer than its deadline; the connection was cut."""


def connect(
    machine: Machine,
    *,
    key_filename: str | os.PathLike[str] | None = None,
    pkey: paramiko.PKey | None = None,
    timeout: float = 10.0,
) -> Connection:
    """A fabric Connection (not yet opened) that only accepts `machine.host_key`.

    Authenticates with exactly one of `key_filename` or `pkey`; never the agent, never ~/.ssh keys.
    """
    if (key_filename is None) == (pkey is None):
        raise ValueError("give exactly one of key_filename or pkey")
    connect_kwargs: dict[str, object] = {
        "look_for_keys": False,
        "allow_agent": False,
        "timeout": timeout,  # fabric's own connect_timeout is truncated to whole seconds
        "banner_timeout": timeout,
        "auth_timeout": timeout,
    }
    if key_filename is not None:
        connect_kwargs["key_filename"] = os.fspath(key_filename)
    else:
        connect_kwargs["pkey"] = pkey
    # An explicit, empty SSHConfig stops fabric from reading ~/.ssh/config and /etc/ssh/ssh_config
    # (a Host block there could change the address, port, user, keys or add a ProxyCommand); lazy
    # skips fabric's own config files and environment variables.
    config = Config(lazy=True, ssh_config=paramiko.SSHConfig(), overrides={"runners": {"remote": _Remote}})
    conn = Connection(
        host=machine.host,
        user=machine.user,
        port=machine.port,
        config=config,
        forward_agent=False,
        connect_kwargs=connect_kwargs,
    )
    # fabric installs AutoAddPolicy, which trusts any key on first sight. We never load
    # known_hosts files, so the pinned key is the only one the client knows; any other is refused.
    conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
    key_type, key = _parse_host_key(machine.host_key)
    conn.client.get_host_keys().add(_known_hosts_name(machine.host, machine.port), key_type, key)
    return conn


def run(conn: Connection, command: str, timeout: float = 60.0, *, warn: bool = False) -> Result:
    """Run `command` without a pty, without output on our terminal, and without our stdin.

    Fabric mirrors the local stdin into the command by default (slowly, and a worker's stdin is not
    ours to give); `in_stream=False` turns that off, and the command reads EOF. Raises invoke's
    CommandTimedOut after `timeout` seconds and UnexpectedExit on a non-zero exit unless `warn`.
    """
    result: Result = conn.run(command, hide=True, in_stream=False, pty=False, timeout=timeout, warn=warn)
    return result


@contextlib.contextmanager
def deadline(conn: Connection, seconds: float) -> Iterator[float]:
    """Cut `conn` after `seconds`, whatever it is waiting for; yields the monotonic deadline.

    Per-operation timeouts bound each wait, but a builder that answers one byte just before each
    timeout could still hold a worker for hours; closing the transport from a timer ends every
    blocked read at once, and BuilderDeadline says why.
    """
    cut = threading.Event()

    def expire() -> None:
        cut.set()
        with contextlib.suppress(Exception):
            conn.close()

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    try:
        yield time.monotonic() + seconds
    except Exception as exc:
        if cut.is_set():
            raise BuilderDeadline(f"the builder did not finish within {seconds:.0f} s") from exc
        raise
    finally:
        timer.cancel()
    if cut.is_set():
        raise BuilderDeadline(f"the builder did not finish within {seconds:.0f} s")


def open_sftp(conn: Connection, *, timeout: float = IO_TIMEOUT) -> paramiko.SFTPClient:
    """An SFTP session whose every request times out after `timeout` seconds.

    fabric's `conn.sftp()` waits without a limit for the server's first answer, so a builder whose
    sshd runs `sleep` as its SFTP subsystem would hold the caller forever.
    """
    conn.open()
    transport = conn.client.get_transport()
    if transport is None:
        raise BuilderIOError("the SSH connection to the builder is not open")
    try:
        channel = transport.open_session(timeout=timeout)
        channel.settimeout(timeout)  # before the first byte: the version exchange waits on it too
        channel.invoke_subsystem("sftp")
        return paramiko.SFTPClient(channel)
    except (OSError, EOFError, paramiko.SSHException) as exc:
        raise BuilderIOError(
            f"the builder's SFTP server did not answer: {type(exc).__name__}: {exc}"
        ) from exc


def _check_deadline(until: float | None, path: str) -> None:
    if until is not None and time.monotonic() > until:
        raise BuilderDeadline(f"reading {path} from the builder took too long")


def read_capped(
    sftp: paramiko.SFTPClient,
    path: str,
    *,
    cap: int,
    offset: int = 0,
    truncate: bool = False,
    until: float | None = None,
) -> bytes:
    """Read a regular file (never through a symlink) from `offset`, stopping at `cap` bytes while reading.

    What lstat says is only a first filter: a builder's SFTP server may lie about sizes, or a file
    may be swapped between lstat and open, so the cap is enforced on the bytes that arrive. Past the
    cap: BuilderReplyTooLarge, or the first `cap` bytes when `truncate`. FileNotFoundError when absent.
    """
    info = sftp.lstat(path)
    if not stat.S_ISREG(info.st_mode or 0):
        raise BuilderIOError(f"{path} on the builder is not a regular file")
    with sftp.open(path, "rb") as handle:
        opened = handle.stat()
        if not stat.S_ISREG(opened.st_mode or 0):
            raise BuilderIOError(f"{path} on the builder was replaced while it was read")
        if offset:
            handle.seek(offset)
        wanted = cap if truncate else cap + 1
        chunks: list[bytes] = []
        got = 0
        while got < wanted:
            _check_deadline(until, path)
            chunk = handle.read(min(READ_CHUNK, wanted - got))
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
    if got > cap:
        raise BuilderReplyTooLarge(path, cap)
    return b"".join(chunks)


def fetch_capped(
    sftp: paramiko.SFTPClient,
    path: str,
    target: Path,
    *,
    expected_size: int,
    cap: int,
    until: float | None = None,
) -> int:
    """Copy a regular file of `expected_size` bytes (its lstat size) to `target`, or nothing at all.

    The copy goes to a hidden partial file next to `target` and is renamed into place only when
    exactly `expected_size` bytes arrived; on any error (a lie about the size, a swapped file, a
    full disk, a deadline) the partial file is removed. Returns the size.
    """
    if expected_size > cap:
        raise BuilderReplyTooLarge(path, cap)
    partial = target.with_name(f".{target.name}.part")
    got = 0
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "wb") as out, sftp.open(path, "rb") as handle:
            opened = handle.stat()
            if not stat.S_ISREG(opened.st_mode or 0) or opened.st_size != expected_size:
                raise BuilderIOError(f"{path} on the builder changed while it was fetched")
            while True:
                _check_deadline(until, path)
                chunk = handle.read(min(READ_CHUNK, expected_size + 1 - got))
                if not chunk:
                    break
                got += len(chunk)
                if got > expected_size:
                    raise BuilderIOError(
                        f"{path} on the builder is longer than it said ({expected_size} bytes)"
                    )
                out.write(chunk)
        if got != expected_size:
            raise BuilderIOError(
                f"{path} on the builder is shorter than it said ({got} of {expected_size} bytes)"
            )
        os.replace(partial, target)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            raise BuilderIOError(f"no space left to store {target.name}") from exc
        raise
    return got


def format_ssh_command(user: str, host: str, port: int = 22) -> str:
    """The command a user types to reach a builder: `ssh root@HOST`, plus `-p PORT` when not 22.

    IPv6 addresses stay bare (`root@2001:db8::1`): ssh takes everything after the last '@' as the
    host name, and `[...]` would be looked up literally ("Could not resolve hostname [::1]").
    """
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    target = shlex.quote(f"{user}@{host}")
    return f"ssh {target}" if port == 22 else f"ssh -p {int(port)} {target}"


class _Remote(Remote):  # type: ignore[misc]  # invoke ships no types
    """fabric's runner, except that a command given no stdin reads EOF instead of waiting forever."""

    def send_start_message(self, command: str) -> None:
        super().send_start_message(command)
        # With in_stream=False fabric leaves the channel's write side open: `cat` would never end.
        if self.streams["in"] is False:
            self.channel.shutdown_write()


def _known_hosts_name(host: str, port: int) -> str:
    # The same spelling paramiko's SSHClient.connect looks the server's key up by.
    return host if port == 22 else f"[{host}]:{port}"


def _parse_host_key(line: str) -> tuple[str, paramiko.PKey]:
    """Parse "ssh-ed25519 AAAA... [comment]" into paramiko's key type and key."""
    fields = line.split()
    if len(fields) < 2:
        raise ValueError(f"not an OpenSSH public key line: {line!r}")
    key_type, blob = fields[0], fields[1]
    try:
        key = paramiko.PKey.from_type_string(key_type, base64.b64decode(blob, validate=True))
    except (binascii.Error, paramiko.SSHException, paramiko.pkey.UnknownKeyType, ValueError) as exc:
        raise ValueError(f"cannot read pinned host key {key_type}: {exc}") from exc
    return key.get_name(), key
