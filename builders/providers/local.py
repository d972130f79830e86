"""The `local` provider: each machine is a sandbox directory served by its own OpenSSH sshd on loopback.

It is the embedded default for the demo and the tests. When the service runs as root, each machine
is isolated: its sshd (root, like any system sshd) logs users in only as an unprivileged account
made for that machine, whose home holds its authorized_keys, lease file and builds; root on the
builder is that account on the host, and cannot read the service's data, keys, database or
process environments. Without root there is no isolation: a machine logs in the service's own
account, and a user of it can do whatever the service can (the provider says so in its log, and
`check --deploy` refuses such a pool in production).

A sandbox `<root_dir>/<name>/` (mode 0700) holds:
    machine.json            what list_owned() reports; written before sshd starts, so a create that
                            crashed half-way is still found and deleted
    ssh_host_ed25519_key    the host key the service generated and pinned
    authorized_keys         the service's admin key (and later the users' keys)
    sshd_config             the only configuration sshd reads (-f)
    sshd.pid, sshd.log      written by sshd itself
"""

from __future__ import annotations

import json
import logging
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from . import accounts, procs, sandbox
from .base import HostKeyPair, Machine, Provider, ProviderError

log = logging.getLogger(__name__)

# Homes of the isolated builders' accounts: outside the service's data dir, which stays private.
DEFAULT_HOMES_DIR = Path("/var/lib/coprssh-builders")

# Written into machine.json so list_owned() never mistakes someone else's directory for a machine.
STATE_MARKER = "coprssh-local-machine/1"

# A machine name becomes a directory name and appears in sshd_config: keep it to a safe alphabet.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
# sshd_config splits arguments on whitespace, treats quotes and '#' specially and expands '%' tokens
# in AuthorizedKeysFile; rather than quoting, refuse roots whose path would need it.
UNSAFE_PATH_RE = re.compile(r"""[\s\x00-\x1f\x7f"'#%\\]""")


def config_path(setting: str, path: Path | str) -> Path:
    """`path` made absolute; ValueError when sshd_config could not spell it."""
    absolute = Path(path).absolute()
    if UNSAFE_PATH_RE.search(str(absolute)):
        raise ValueError(
            f"{setting} must not contain whitespace, control characters, quotes, '#', '%' or '\\': "
            f"{str(absolute)!r}"
        )
    return absolute


# OpenSSH 9.8 penalises sources whose connections end before authentication. Readiness and is_alive()
# probes do exactly that from 127.0.0.1, so the penalty must be off where the option exists.
PER_SOURCE_PENALTIES_SINCE = (9, 8)

SSHD_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"}


class LocalProvider(Provider):
    """Machines are loopback sshd processes over sandbox directories under `root_dir`."""

    name = "local"

    def __init__(
        self,
        root_dir: Path | str,
        *,
        name_prefix: str = "coprssh-",
        ipv6: bool = False,
        sshd_path: str = "/usr/sbin/sshd",
        boot_timeout: float = 10.0,
        start_attempts: int = 5,
        stop_timeout: float = 5.0,
        isolate: bool | None = None,
        homes_dir: Path | str = DEFAULT_HOMES_DIR,
    ) -> None:
        root = config_path("root_dir", root_dir)
        if not name_prefix or not NAME_RE.fullmatch(name_prefix):
            raise ValueError(f"unsafe name prefix: {name_prefix!r}")
        # sshd re-executes itself for every connection and refuses to start from a relative path.
        if not os.path.isabs(sshd_path):
            raise ValueError(f"sshd_path must be absolute: {sshd_path}")
        self.root_dir = root
        self.name_prefix = name_prefix
        self.ipv6 = ipv6
        self.sshd_path = sshd_path
        self.boot_timeout = boot_timeout
        self.start_attempts = start_attempts
        self.stop_timeout = stop_timeout
        self.address = "::1" if ipv6 else "127.0.0.1"
        # Isolation needs root (to make accounts and run sshd that switches to them).
        self.isolate = os.geteuid() == 0 if isolate is None else isolate
        self.homes_dir = config_path("homes_dir", homes_dir)
        self._sshd_version: tuple[int, int] | None = None

    # -- Provider interface -------------------------------------------------------------------------

    def create(
        self, *, name: str, metadata: dict[str, str], host_key: HostKeyPair, admin_public_key: str
    ) -> Machine:
        """Make a sandbox and start its sshd; a machine left half-made is stopped and removed."""
        if not name.startswith(self.name_prefix):
            name = self.name_prefix + name
        self._check_name(name)
        sandbox.check_metadata(metadata)
        admin_line = sandbox.check_public_key_line(admin_public_key)
        if not os.access(self.sshd_path, os.X_OK):
            # Retrying cannot help until someone installs it: the pool pauses on this.
            raise ProviderError(f"no sshd at {self.sshd_path}; {sandbox.SSHD_INSTALL_HINT}", permanent=True)
        if self.isolate and os.geteuid() != 0:
            raise ProviderError("isolated local builders need the service to run as root", permanent=True)
        user = sandbox.login_user()
        if not self.isolate:
            log.warning(
                "local builder %s logs in as the service's own account %s: its users can read everything"
                " the service can (run the service as root to isolate local builders)",
                name,
                user,
            )
        if not self.isolate and sandbox.locked_for_sshd(user):
            raise ProviderError(
                f"sshd without PAM refuses the locked account {user} ('!' in /etc/shadow);"
                f" give it a '*' password field (usermod -p '*' {user}) to allow key logins",
                permanent=True,
            )
        box = self._sandbox(name)
        try:
            self.root_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            # mkdir (not exist_ok) is the lock: two creates of one name cannot share a sandbox.
            box.dir.mkdir(mode=0o700)
        except FileExistsError:
            raise ProviderError(f"machine {name} already exists") from None
        except OSError as exc:
            raise ProviderError(f"cannot create sandbox {box.dir}: {exc}") from exc
        try:
            os.chmod(box.dir, 0o700)  # mkdir's mode is filtered by the umask
            # The state file comes first (port 0 until one is picked), so that list_owned() finds
            # and delete() removes a sandbox whose create was killed half-way. Ref: #8
            planned = Machine(
                provider_id=name,
                name=name,
                ipv4=None if self.ipv6 else self.address,
                ipv6=self.address if self.ipv6 else None,
                port=0,
                user=accounts.account_name(box.dir) if self.isolate else user,
                host_key=host_key.public_line.strip(),
                metadata=dict(metadata),
            )
            self._write_state(box, planned)
            sandbox.write_private(box.host_key, host_key.private_pem)
            sandbox.write_private(box.log, "")
            if self.isolate:
                user = self._make_account(box)
                home = self._home(box)
                sandbox.write_private(home / "authorized_keys", admin_line + "\n")
                account = pwd.getpwnam(user)
                os.chown(home / "authorized_keys", account.pw_uid, account.pw_gid)
            else:
                sandbox.write_private(box.authorized_keys, admin_line + "\n")
            for _ in range(self.start_attempts):
                port = self._pick_port()
                machine = Machine(
                    provider_id=name,
                    name=name,
                    ipv4=None if self.ipv6 else self.address,
                    ipv6=self.address if self.ipv6 else None,
                    port=port,
                    user=user,
                    host_key=host_key.public_line.strip(),
                    metadata=dict(metadata),
                )
                self._write_state(box, machine)
                sandbox.write_private(box.config, self._sshd_config(box, port))
                if self._start(box, port):
                    return machine
                # Someone took the port between our probe and sshd's bind: try another one.
                self._stop(box)
            raise ProviderError(f"no free port for {name} after {self.start_attempts} attempts")
        except BaseException as exc:
            try:
                self._destroy(box)
            except ProviderError:
                pass  # the original failure matters more; the tick retries the delete
            if isinstance(exc, accounts.AccountError):
                raise ProviderError(exc.message, permanent=exc.permanent) from exc
            if isinstance(exc, OSError):
                raise ProviderError(f"cannot create {name}: {exc}") from exc
            if isinstance(exc, subprocess.SubprocessError):
                raise ProviderError(f"cannot start sshd for {name}: {exc}") from exc
            raise

    def delete(self, provider_id: str) -> None:
        """Stop the machine's sshd and its sessions, then remove the sandbox; a no-op when gone."""
        self._check_name(provider_id)
        self._destroy(self._sandbox(provider_id))

    def list_owned(self) -> list[Machine]:
        """Sandboxes under root_dir with our prefix and our state file, running or not."""
        try:
            entries = sorted(self.root_dir.iterdir())
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise ProviderError(f"cannot list {self.root_dir}: {exc}") from exc
        machines = []
        for entry in entries:
            if not entry.name.startswith(self.name_prefix) or not NAME_RE.fullmatch(entry.name):
                continue
            if entry.is_symlink() or not entry.is_dir():
                continue
            machine = self._read_state(sandbox.Sandbox(entry))
            if machine is not None:
                machines.append(machine)
        return machines

    def is_alive(self, provider_id: str) -> bool:
        """Our sshd runs (by the pid file) and its port answers with an SSH banner."""
        self._check_name(provider_id)
        box = self._sandbox(provider_id)
        machine = self._read_state(box)
        if machine is None or self._listener_pid(box) is None:
            return False
        return sandbox.has_ssh_banner(self.address, machine.port, timeout=2.0)

    def authorized_keys_path(self, machine: Machine) -> str:
        """In the account's home when isolated; else in the sandbox (all machines share one account)."""
        return f"{self.state_dir(machine)}/authorized_keys"

    def state_dir(self, machine: Machine) -> str:
        """The machine's own writable folder: its account's home, or (without isolation) its sandbox."""
        self._check_name(machine.provider_id)
        box = self._sandbox(machine.provider_id)
        return str(self._home(box) if self._isolated(box) else box.dir)

    def jobs_dir(self, machine: Machine) -> str:
        """Inside the sandbox, so deleting the machine deletes the builds' work folders too."""
        return f"{self.state_dir(machine)}/jobs"

    def shares_host(self) -> bool:
        return True

    # -- Starting sshd ------------------------------------------------------------------------------

    def _sshd_config(self, box: sandbox.Sandbox, port: int) -> str:
        return sandbox.sshd_config(
            box,
            address=self.address,
            port=port,
            state_dir=self.state_dir_of(box),
            account=accounts.account_name(box.dir) if self._isolated(box) else None,
            penalties_option=self._version() >= PER_SOURCE_PENALTIES_SINCE,
        )

    def _start(self, box: sandbox.Sandbox, port: int) -> bool:
        """Start sshd and wait until it answers; False when its port was taken meanwhile."""
        box.pid_file.unlink(missing_ok=True)
        sandbox.write_private(box.log, "")  # a fresh log per attempt, so we only read this attempt's errors
        # Daemon mode (no -D): sshd detaches from us, so it outlives the service process and is
        # never our zombie. -E keeps its log in the sandbox instead of syslog.
        command = [self.sshd_path, "-f", str(box.config), "-E", str(box.log)]
        launch = self._launch(command)
        if launch.returncode != 0:
            # With -E sshd writes its fatal errors to the log file, not to stderr: read both.
            missing = sandbox.PRIVSEP_RE.search(launch.stderr + "\n" + sandbox.tail(box.log))
            if missing and os.geteuid() == 0:
                # As root, sshd needs its privsep directory (/run/sshd on Debian); it lives on a
                # tmpfs that the distribution's unit file creates when the system sshd starts, so a
                # machine that never ran the system sshd has none.
                sandbox.make_privsep_dir(Path(missing.group(1)))
                sandbox.write_private(box.log, "")
                launch = self._launch(command)
        if launch.returncode != 0:
            detail = launch.stderr.strip() or sandbox.tail(box.log) or "no message"
            raise ProviderError(f"sshd did not start (exit {launch.returncode}): {detail}")

        # The daemon binds its port and writes the pid file only after it has detached, so a
        # failed bind shows up in its log, not in the launcher's exit code.
        deadline = time.monotonic() + self.boot_timeout
        while time.monotonic() < deadline:
            if self._listener_pid(box) is not None and sandbox.has_ssh_banner(
                self.address, port, timeout=1.0
            ):
                return True
            log = sandbox.tail(box.log)
            if "Address already in use" in log or "Cannot bind any address" in log:
                return False
            # Until it writes its pid file the daemon is known only by its command line.
            if not box.pid_file.exists() and not self._sshd_processes(box):
                # Look again after a moment: the daemon may be between its fork and its pid file,
                # or gone with its reason just written.
                time.sleep(0.2)
                if box.pid_file.exists() or self._sshd_processes(box):
                    continue
                log = sandbox.tail(box.log)
                if "Address already in use" in log or "Cannot bind any address" in log:
                    return False
                raise ProviderError(f"sshd exited during start: {log or 'no log'}")
            time.sleep(0.05)
        raise ProviderError(f"sshd did not answer on {self.address} port {port} within {self.boot_timeout}s")

    def _launch(self, command: list[str]) -> subprocess.CompletedProcess[str]:
        # A small fixed environment: nothing of the service's (secrets included) leaks into sshd.
        return subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=SSHD_ENV,
            timeout=30,
            check=False,
        )

    def _pick_port(self) -> int:
        """A port that is free right now; sshd may still lose it to someone else before binding."""
        family = socket.AF_INET6 if self.ipv6 else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((self.address, 0))
            port: int = probe.getsockname()[1]
            return port

    def _version(self) -> tuple[int, int]:
        if self._sshd_version is None:
            try:
                out = subprocess.run(
                    [self.sshd_path, "-V"], capture_output=True, text=True, timeout=10, check=False
                )
                text = out.stdout + out.stderr
            except (OSError, subprocess.SubprocessError):
                text = ""
            found = re.search(r"OpenSSH_(\d+)\.(\d+)", text)
            self._sshd_version = (int(found.group(1)), int(found.group(2))) if found else (0, 0)
        return self._sshd_version

    # -- Stopping sshd ------------------------------------------------------------------------------

    def _destroy(self, box: sandbox.Sandbox) -> None:
        self._stop(box)
        try:
            if box.dir.is_symlink():
                box.dir.unlink()
            else:
                shutil.rmtree(box.dir)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise ProviderError(f"cannot remove {box.dir}: {exc}") from exc
        name = accounts.account_name(box.dir)
        if accounts.lookup(name) is not None or self._home(box).exists():
            try:
                accounts.remove(name, home=self._home(box))
            except (accounts.AccountError, OSError) as exc:
                raise ProviderError(f"cannot remove the account of {box.dir.name}: {exc}") from exc

    def _stop(self, box: sandbox.Sandbox) -> None:
        """Stop the sandbox's sshd and every session it started."""
        marker = f"COPRSSH_STATE_DIR={self.state_dir_of(box)}"
        account = accounts.lookup(accounts.account_name(box.dir))
        roots = self._sshd_processes(box)
        owned = procs.pids_of_uid(account.pw_uid) if account is not None else []
        if not roots and not owned and not procs.pids_with_environ(marker):
            return
        # Freeze the listeners first so no new connection forks while we collect the process tree:
        # sessions call setsid() and are reparented when the listener dies, so after that they can
        # no longer be told apart from any other process of this account.
        for proc in roots:
            self._signal(proc, signal.SIGSTOP)
        table = procs.proc_table()
        # Sessions can detach for good (setsid, nohup: the build agent does). Their environment
        # still carries the COPRSSH_STATE_DIR our sshd set, which names this sandbox; on an
        # isolated builder every process of its account is its own.
        if account is not None:
            owned = procs.pids_of_uid(account.pw_uid)
        detached = [table[pid] for pid in {*procs.pids_with_environ(marker), *owned} if pid in table]
        victims = procs.with_descendants([*roots, *detached], table)
        for proc in victims:
            self._signal(proc, signal.SIGTERM)
        for proc in roots:
            self._signal(proc, signal.SIGCONT)  # a stopped process acts on SIGTERM only once continued
        survivors = procs.wait_dead(victims, self.stop_timeout)
        for proc in survivors:
            self._signal(proc, signal.SIGKILL)
        survivors = procs.wait_dead(survivors, self.stop_timeout)
        if survivors:
            pids = ", ".join(str(proc.pid) for proc in survivors)
            raise ProviderError(f"processes of {box.dir.name} survive SIGKILL: {pids}")

    @staticmethod
    def _signal(proc: procs.Proc, sig: signal.Signals) -> None:
        try:
            procs.send_signal(proc, sig)
        except procs.ProcessError as exc:
            raise ProviderError(str(exc)) from exc

    def _sshd_processes(self, box: sandbox.Sandbox) -> list[procs.Proc]:
        """Live processes whose command line names this sandbox's sshd_config: listeners, pre-auth
        children. Found by scanning /proc rather than trusting the pid file, which is written late
        and may name a reused pid."""
        config = str(box.config)
        return [
            proc
            for proc in procs.proc_table().values()
            if not proc.dead and config in procs.cmdline_words(proc.pid)
        ]

    def _listener_pid(self, box: sandbox.Sandbox) -> int | None:
        """The pid from the pid file, if it is alive and really our sshd (pids get reused)."""
        try:
            pid = int(box.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        proc = procs.read_proc(pid)
        if proc is None or proc.dead or str(box.config) not in procs.cmdline_words(pid):
            return None
        return pid

    # -- Isolation ------------------------------------------------------------------------------------

    def _isolated(self, box: sandbox.Sandbox) -> bool:
        return self.isolate

    def _home(self, box: sandbox.Sandbox) -> Path:
        return self.homes_dir / accounts.account_name(box.dir)

    def state_dir_of(self, box: sandbox.Sandbox) -> Path:
        return self._home(box) if self._isolated(box) else box.dir

    def _make_account(self, box: sandbox.Sandbox) -> str:
        """The builder's own account and home; its users log in as it, never as the service."""
        name = accounts.account_name(box.dir)
        accounts.create(name, home=self._home(box), sandbox=box.dir)
        return name

    def delete_stray_accounts(self) -> list[str]:
        """Remove accounts made for sandboxes of this root that no longer exist (a crash mid-delete)."""
        removed = []
        for name in accounts.strays(self.root_dir):
            try:
                accounts.remove(name, home=self.homes_dir / name)
            except (accounts.AccountError, OSError) as exc:
                log.warning("cannot remove stray account %s: %s", name, exc)
                continue
            removed.append(name)
        return removed

    # -- State ----------------------------------------------------------------------------------------

    def _sandbox(self, name: str) -> sandbox.Sandbox:
        return sandbox.Sandbox(self.root_dir / name)

    def _check_name(self, name: str) -> None:
        if not NAME_RE.fullmatch(name) or not name.startswith(self.name_prefix):
            raise ProviderError(f"not a local machine name: {name!r}", permanent=True)

    def _write_state(self, box: sandbox.Sandbox, machine: Machine) -> None:
        state = {
            "marker": STATE_MARKER,
            "name": machine.name,
            "ipv4": machine.ipv4,
            "ipv6": machine.ipv6,
            "port": machine.port,
            "user": machine.user,
            "host_key": machine.host_key,
            "metadata": machine.metadata,
        }
        tmp = box.state.with_suffix(".tmp")
        sandbox.write_private(tmp, json.dumps(state, indent=2) + "\n")
        os.replace(tmp, box.state)  # readers never see half a file

    def _read_state(self, box: sandbox.Sandbox) -> Machine | None:
        try:
            state = json.loads(box.state.read_text())
            if state.get("marker") != STATE_MARKER or state.get("name") != box.dir.name:
                return None
            return Machine(
                provider_id=box.dir.name,
                name=box.dir.name,
                ipv4=state["ipv4"],
                ipv6=state["ipv6"],
                port=int(state["port"]),
                user=str(state["user"]),
                host_key=str(state["host_key"]),
                metadata={str(k): str(v) for k, v in state["metadata"].items()},
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None
