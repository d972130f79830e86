"""The gateway's sshd: its files, its configuration, and running it in the foreground.

The gateway folder (COPRSSH_GATEWAY_DIR, mode 0700) holds:
    sshd_config                 the only configuration this sshd reads (-f)
    ssh_host_ed25519_key(.pub)  its host key, made by the service once and then kept (users pin it)
    authorized_keys             written by the service from the active SSH leases, renamed into place
    sshd.log (and sshd.log.1)   sshd's own messages, each stamped with the time it arrived

sshd reads authorized_keys through `AuthorizedKeysCommand cat FILE` run as root (as the service
when it is not root), so the gateway's account needs no home and can read nothing: not this
folder, not the service's data. A key can only open the TCP forwards its line permits
(`restrict,port-forwarding,permitopen=…`); sessions of any kind (a shell, a command, SFTP) are
refused (`MaxSessions 0`, and a forced `false` behind it), and so are remote, socket, agent and X11
forwarding and tunnels.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from builders.providers import procs, sandbox
from builders.providers.base import generate_host_key

# sshd_config splits on whitespace and treats quotes, '#' and '%' specially: refuse such paths.
UNSAFE_PATH_RE = re.compile(r"""[\s"'#%\\]""")
SSHD_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"}
# The log is rotated to sshd.log.1 past this size; the login reader finishes the old one first.
LOG_ROTATE_BYTES = 16 * 1024 * 1024
# sshd caps each message at 1 KiB and escapes what clients send in it (newlines included), so a
# line never comes near this; a longer one would be cut here.
MAX_LOG_LINE = 4096
PER_SOURCE_PENALTIES_SINCE = (9, 8)
PR_SET_PDEATHSIG = 1


class GatewayError(Exception):
    """The gateway could not be set up or started; the message says what to do."""


@dataclass(frozen=True)
class GatewayFiles:
    """The paths of the gateway folder."""

    dir: Path

    @property
    def config(self) -> Path:
        return self.dir / "sshd_config"

    @property
    def host_key(self) -> Path:
        return self.dir / "ssh_host_ed25519_key"

    @property
    def host_key_pub(self) -> Path:
        return self.dir / "ssh_host_ed25519_key.pub"

    @property
    def authorized_keys(self) -> Path:
        return self.dir / "authorized_keys"

    @property
    def log(self) -> Path:
        return self.dir / "sshd.log"

    @property
    def old_log(self) -> Path:
        return self.dir / "sshd.log.1"

    @property
    def lock(self) -> Path:
        return self.dir / ".lock"


def files_in(directory: Path | str) -> GatewayFiles:
    path = Path(directory).absolute()
    if UNSAFE_PATH_RE.search(str(path)):
        raise GatewayError(
            f"the gateway folder must not contain whitespace, quotes, '#', '%' or '\\': {path}"
        )
    return GatewayFiles(path)


def make_dir(files: GatewayFiles) -> None:
    """The gateway folder, readable by the service only."""
    files.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(files.dir, 0o700)


@contextlib.contextmanager
def locked(files: GatewayFiles) -> Iterator[None]:
    """Serialise the writers of the folder (several workers, the gateway command, the tick)."""
    fd = os.open(files.lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def host_key(files: GatewayFiles) -> str:
    """The gateway's public host key line, made on first use and kept from then on."""
    with locked(files):
        if not files.host_key.exists() or not files.host_key_pub.exists():
            pair = generate_host_key()
            sandbox.write_private(files.host_key, pair.private_pem)
            write_atomic(files.host_key_pub, pair.public_line + "\n", mode=0o644)
        return read_host_key(files.host_key_pub) or ""


def read_host_key(path: Path) -> str | None:
    """The first line of a public host key file, or None when there is none (yet)."""
    try:
        with open(path, "rb") as handle:
            text = handle.read(4096).decode("ascii", "replace")
    except OSError:
        return None
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if re.fullmatch(r"ssh-ed25519 [A-Za-z0-9+/]+={0,2}( \S*)?", line) else None


def write_atomic(path: Path, text: str, *, mode: int = 0o600) -> None:
    """Write `path` through a temporary file and a rename: sshd never reads half a file."""
    temp = path.with_name(f".{path.name}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise


def tool(name: str) -> str:
    """The absolute, resolved path of a system tool (sshd insists its commands are root's)."""
    found = shutil.which(name, path=SSHD_ENV["PATH"])
    if found is None:
        raise GatewayError(f"{name} is not installed")
    return os.path.realpath(found)


def sshd_version(sshd_path: str) -> tuple[int, int]:
    try:
        out = subprocess.run([sshd_path, "-V"], capture_output=True, text=True, timeout=10, check=False)
        text = out.stdout + out.stderr
    except (OSError, subprocess.SubprocessError):
        text = ""
    found = re.search(r"OpenSSH_(\d+)\.(\d+)", text)
    return (int(found.group(1)), int(found.group(2))) if found else (0, 0)


def sshd_config(
    files: GatewayFiles,
    *,
    listen: list[str],
    port: int,
    user: str,
    keys_reader: str,
    version: tuple[int, int],
) -> str:
    """The gateway's whole configuration; `keys_reader` runs `cat` on authorized_keys (root, or the service)."""
    lines = ["# Written by coprssh (manage.py gateway). sshd reads only this file (-f), not /etc/ssh."]
    lines += [f"ListenAddress {address}" for address in listen]
    lines += [
        f"Port {int(port)}",
        f"HostKey {files.host_key}",
        "PidFile none",
        # The keys come from the service's file through cat: the account reads nothing itself.
        "AuthorizedKeysFile none",
        f"AuthorizedKeysCommand {tool('cat')} {files.authorized_keys}",
        f"AuthorizedKeysCommandUser {keys_reader}",
        *sandbox.PUBLIC_KEY_ONLY,
        "PermitRootLogin no",
        f"AllowUsers {user}",
        "PermitUserEnvironment no",
        # Forwards to what each key's permitopen names, and nothing else: no session of any kind
        # (MaxSessions 0 refuses them while forwarding still works), no remote or socket forwards.
        "AllowTcpForwarding local",
        "PermitListen none",
        "AllowStreamLocalForwarding no",
        "AllowAgentForwarding no",
        "X11Forwarding no",
        "GatewayPorts no",
        "PermitTunnel no",
        "PermitTTY no",
        "PermitUserRC no",
        "MaxSessions 0",
        f"ForceCommand {tool('false')}",
        "PrintMotd no",
        "PrintLastLog no",
        "UseDNS no",
        "LoginGraceTime 30",
        "ClientAliveInterval 60",
        "ClientAliveCountMax 3",
        # VERBOSE logs each accepted key's fingerprint and the client's address: the login audit.
        "LogLevel VERBOSE",
    ]
    if version >= PER_SOURCE_PENALTIES_SINCE:
        # The service's own readiness probes come from the host itself.
        lines.append("PerSourcePenaltyExemptList 127.0.0.1,::1")
    return "\n".join(lines) + "\n"


def check_config(sshd_path: str, files: GatewayFiles) -> None:
    """`sshd -t`: the configuration is valid and sshd can start (its privsep folder made when root)."""
    command = [sshd_path, "-t", "-f", str(files.config)]
    done = _run(command)
    missing = sandbox.PRIVSEP_RE.search(done.stderr)
    if done.returncode != 0 and missing and os.geteuid() == 0:
        # /run/sshd is made by the system sshd's unit; a host that never ran it has none.
        sandbox.make_privsep_dir(Path(missing.group(1)))
        done = _run(command)
    if done.returncode != 0:
        raise GatewayError(
            f"sshd refuses the gateway's configuration: {done.stderr.strip() or done.returncode}"
        )


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            command,
            capture_output=True,
            text=True,
            env=SSHD_ENV,
            timeout=30,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise GatewayError(f"cannot run {command[0]}: {exc}") from exc


def _die_with_parent() -> None:
    # If the process that reads sshd's log dies, sshd must not go on without one.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


class Sshd:
    """The gateway's sshd in the foreground (-D -e), its messages stamped and written to the log."""

    def __init__(self, files: GatewayFiles, *, sshd_path: str) -> None:
        self.files = files
        self.sshd_path = sshd_path
        self.process: subprocess.Popen[bytes] | None = None
        self._pump: threading.Thread | None = None

    def start(self) -> None:
        if not os.path.isabs(self.sshd_path) or not os.access(self.sshd_path, os.X_OK):
            raise GatewayError(f"no sshd at {self.sshd_path}; {sandbox.SSHD_INSTALL_HINT}")
        check_config(self.sshd_path, self.files)
        self.process = subprocess.Popen(
            [self.sshd_path, "-D", "-e", "-f", str(self.files.config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=SSHD_ENV,  # nothing of the service's environment (its secrets) reaches sshd
            # Out of the terminal's process group: Ctrl-C reaches the command, which stops sshd.
            start_new_session=True,
            # Runs in the child between fork and exec: one prctl call, no lock taken.
            preexec_fn=_die_with_parent,
        )
        assert self.process.stderr is not None
        self._pump = threading.Thread(
            target=_pump, args=(self.process.stderr, self.files), name="gateway-log", daemon=True
        )
        self._pump.start()

    def wait_ready(self, address: str, port: int, *, timeout: float = 10.0) -> None:
        """Wait until sshd greets on `address`:`port`; GatewayError with its log when it exits instead."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._join()
                raise GatewayError(
                    f"sshd exited ({self.process.returncode}): {sandbox.tail(self.files.log, 1000)}"
                )
            if sandbox.has_ssh_banner(address, port, timeout=1.0):
                return
            time.sleep(0.05)
        raise GatewayError(f"the gateway did not answer on {address} port {port} within {timeout:g} s")

    def wait(self, timeout: float | None = None) -> int | None:
        assert self.process is not None
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self._join()
        return code

    def stop(self, *, timeout: float = 5.0) -> None:
        """Stop sshd and every connection it serves."""
        if self.process is None:
            return
        listener = procs.read_proc(self.process.pid)
        if listener is not None and not listener.dead:
            victims = procs.with_descendants([listener], procs.proc_table())
            for proc in victims:
                with contextlib.suppress(procs.ProcessError):
                    procs.send_signal(proc, signal.SIGTERM)
            for proc in procs.wait_dead(victims, timeout):
                with contextlib.suppress(procs.ProcessError):
                    procs.send_signal(proc, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout)
        self._join()

    def _join(self) -> None:
        if self._pump is not None:
            self._pump.join(5)


def _pump(stream: IO[bytes], files: GatewayFiles) -> None:
    """Copy sshd's messages to the log, each line prefixed with the UTC time it arrived."""
    out = _open_log(files)
    try:
        while True:
            raw = stream.readline(MAX_LOG_LINE)
            if not raw:
                return
            text = raw.decode("utf-8", "replace").rstrip("\r\n")
            stamp = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
            out.write(f"{stamp} {text}\n")
            out.flush()
            if out.tell() > LOG_ROTATE_BYTES:
                out.close()
                os.replace(files.log, files.old_log)
                out = _open_log(files)
    finally:
        out.close()


def _open_log(files: GatewayFiles) -> IO[str]:
    fd = os.open(files.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    return os.fdopen(fd, "a", encoding="utf-8")
