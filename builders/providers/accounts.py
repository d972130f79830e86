"""Unprivileged accounts of the host, one per isolated local builder (useradd/userdel).

Root on a builder lent to a user must not be the service's account on the host: each isolated
local builder logs its users in as an account of its own, with a home of its own (mode 0700) and
no password, whose comment names the sandbox it belongs to so that leftovers can be recognised.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import subprocess
import time
from pathlib import Path

PREFIX = "csb-"
COMMENT_PREFIX = "coprssh local builder "
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"}
# useradd and userdel exit with these while another process holds the password file's lock.
_LOCK_BUSY = {1, 10}


class AccountError(Exception):
    """An account could not be created or removed; `permanent` when retrying cannot help."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent


def account_name(sandbox: Path) -> str:
    """A short, stable user name for a sandbox (user names are at most 32 characters)."""
    return PREFIX + hashlib.sha256(str(sandbox).encode()).hexdigest()[:12]


def lookup(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def create(name: str, *, home: Path, sandbox: Path) -> pwd.struct_passwd:
    """Create the account (or take over the one an interrupted create left) and its private home."""
    comment = f"{COMMENT_PREFIX}{sandbox}"
    existing = lookup(name)
    if existing is not None and existing.pw_gecos != comment:
        raise AccountError(f"user {name} exists and is not this builder's", permanent=True)
    if existing is None:
        tool = _tool("useradd")
        _run(
            [
                tool,
                "--system",
                "--no-create-home",
                "--home-dir",
                str(home),
                "--shell",
                "/bin/bash",
                # '*' rather than useradd's '!': sshd without PAM refuses a locked account even
                # with a valid key, and '*' matches no password either.
                "--password",
                "*",
                "--user-group",
                "--comment",
                comment,
                name,
            ],
            what=f"create user {name}",
        )
    account = lookup(name)
    if account is None:
        raise AccountError(f"user {name} was not created")
    home.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    # Readable, not only searchable: rpm opens every directory of a path on its way down. The
    # names it lists say nothing; each home itself is 0700.
    os.chmod(home.parent, 0o755)
    home.mkdir(mode=0o700, exist_ok=True)
    os.chown(home, account.pw_uid, account.pw_gid)
    os.chmod(home, 0o700)
    return account


def remove(name: str, *, home: Path) -> None:
    """Remove the account, its group and its home; a no-op when gone. Its processes must be gone first."""
    if home.exists() or home.is_symlink():
        if home.is_symlink():
            home.unlink()
        else:
            shutil.rmtree(home, ignore_errors=False)
    if lookup(name) is None:
        return
    # --force: a process of the account that exited but was never reaped (a zombie whose parent is
    # an init that does not reap, as in some containers) still counts as "using" it for userdel.
    _run([_tool("userdel"), "--force", name], what=f"remove user {name}", missing_ok=True)


GATEWAY_COMMENT = "coprssh SSH gateway"
NOLOGIN_PATHS = ("/usr/sbin/nologin", "/sbin/nologin")


def create_gateway(name: str) -> pwd.struct_passwd:
    """The SSH gateway's account: no shell, no home, no password; made once, then reused."""
    existing = lookup(name)
    if existing is not None:
        if existing.pw_gecos != GATEWAY_COMMENT:
            raise AccountError(f"user {name} exists and is not coprssh's gateway account", permanent=True)
        return existing
    shell = next((path for path in NOLOGIN_PATHS if os.access(path, os.X_OK)), None)
    if shell is None:
        raise AccountError(
            "nologin is not installed (it comes with the login or util-linux package)", permanent=True
        )
    _run(
        [
            _tool("useradd"),
            "--system",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            shell,
            # '*': no password matches, and sshd without PAM still takes keys ('!' would lock it).
            "--password",
            "*",
            "--user-group",
            "--comment",
            GATEWAY_COMMENT,
            name,
        ],
        what=f"create user {name}",
    )
    account = lookup(name)
    if account is None:
        raise AccountError(f"user {name} was not created")
    return account


def strays(sandbox_root: Path) -> list[str]:
    """Accounts made for sandboxes under `sandbox_root` whose sandbox no longer exists."""
    return list(stray_sandboxes(sandbox_root))


def stray_sandboxes(sandbox_root: Path) -> dict[str, Path]:
    """Those accounts, each with the sandbox its passwd comment names."""
    prefix = f"{COMMENT_PREFIX}{sandbox_root}/"
    found = {}
    for entry in pwd.getpwall():
        if entry.pw_name.startswith(PREFIX) and entry.pw_gecos.startswith(prefix):
            box = Path(entry.pw_gecos[len(COMMENT_PREFIX) :])
            if not box.exists():
                found[entry.pw_name] = box
    return found


def _tool(name: str) -> str:
    path = shutil.which(name, path=ENV["PATH"])
    if path is None:
        raise AccountError(
            f"{name} is not installed; it comes with the passwd package (Debian, Ubuntu) or shadow-utils (Fedora)",
            permanent=True,
        )
    return path


def _run(command: list[str], *, what: str, missing_ok: bool = False, attempts: int = 20) -> None:
    for _ in range(attempts):
        try:
            done = subprocess.run(
                command,
                capture_output=True,
                text=True,
                env=ENV,
                timeout=30,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise AccountError(f"cannot {what}: {exc}") from exc
        if done.returncode == 0:
            return
        if missing_ok and done.returncode == 6:  # userdel: no such user
            return
        if done.returncode in _LOCK_BUSY and "lock" in done.stderr.lower():
            time.sleep(0.1)  # another create or delete holds /etc/passwd's lock
            continue
        raise AccountError(f"cannot {what} (exit {done.returncode}): {done.stderr.strip()}")
    raise AccountError(f"cannot {what}: the password file stayed locked")
