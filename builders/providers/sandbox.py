"""The files of a local builder's sandbox, and the small host-side helpers its sshd needs.

Plain Python, no Django: the local provider (builders/providers/local.py) is built on these.
"""

from __future__ import annotations

import os
import pwd
import re
import socket
from dataclasses import dataclass
from pathlib import Path

from . import accounts, procs
from .base import ProviderError

SHADOW_PATH = Path("/etc/shadow")

PRIVSEP_RE = re.compile(r"Missing privilege separation directory: (/[^\s:]+)")

# What to tell an operator whose machine has no sshd (the local provider cannot work without it).
SSHD_INSTALL_HINT = "install OpenSSH's server: apt-get install openssh-server (Debian, Ubuntu) or dnf install openssh-server (Fedora)"


class _File:
    """A file of the sandbox directory, by its name there (see local.py for what each one holds)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, box: Sandbox, owner: type[Sandbox] | None = None) -> Path:
        return box.dir / self.name


@dataclass(frozen=True)
class Sandbox:
    """The paths of one machine's sandbox directory."""

    dir: Path

    state = _File("machine.json")
    host_key = _File("ssh_host_ed25519_key")
    authorized_keys = _File("authorized_keys")
    config = _File("sshd_config")
    pid_file = _File("sshd.pid")
    log = _File("sshd.log")


# sshd_config lines that let in public keys only, for builders and the gateway alike. PAM would
# bring the host's login policy (and its need for root) into a sandbox.
PUBLIC_KEY_ONLY = (
    "AuthorizedPrincipalsFile none",
    "AuthenticationMethods publickey",
    "PubkeyAuthentication yes",
    "PasswordAuthentication no",
    "KbdInteractiveAuthentication no",
    "HostbasedAuthentication no",
    "UsePAM no",
)


def login_user() -> str:
    # The account sshd runs as is the only one it can log in without root. Ask the kernel rather
    # than getpass.getuser(), which believes $USER/$LOGNAME.
    return pwd.getpwuid(os.geteuid()).pw_name


def locked_for_sshd(user: str) -> bool:
    """Whether a root sshd with UsePAM no would refuse `user` even with a valid key.

    Such an sshd reads /etc/shadow and treats a password field starting with '!' as a locked
    account. An sshd running as another user cannot read the file and lets the account in.
    """
    if os.geteuid() != 0:
        return False
    try:
        lines = SHADOW_PATH.read_text().splitlines()
    except OSError:
        return False
    for line in lines:
        fields = line.split(":")
        if len(fields) > 1 and fields[0] == user:
            return fields[1].startswith("!")
    return False


def check_metadata(metadata: dict[str, str]) -> None:
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ProviderError(f"metadata must map str to str: {key!r}={value!r}", permanent=True)


def check_public_key_line(line: str) -> str:
    line = line.strip()
    # One line only: anything after a newline would be a second authorized key.
    if not line or "\n" in line or "\r" in line or len(line.split()) < 2:
        raise ProviderError("admin_public_key must be one OpenSSH public key line", permanent=True)
    return line


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read; never through a symlink."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchmod(fd, 0o600)  # O_CREAT's mode does not apply to an existing file
        f.write(text)


def make_privsep_dir(path: Path) -> None:
    try:
        path.mkdir(mode=0o755, parents=True, exist_ok=True)
        os.chmod(path, 0o755)  # sshd refuses a group- or world-writable privsep directory
    except OSError as exc:
        raise ProviderError(f"cannot create sshd's privilege separation directory {path}: {exc}") from exc


def tail(path: Path, size: int = 4000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - size))
            return f.read().decode("utf-8", "replace").strip()
    except OSError:
        return ""


def has_ssh_banner(host: str, port: int, *, timeout: float) -> bool:
    """Whether an SSH server greets us on host:port (the readiness test for a machine)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            data = b""
            while b"\n" not in data and len(data) < 255:
                chunk = sock.recv(255)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return False
    return data.startswith(b"SSH-2.0-")


def sshd_config(
    box: Sandbox, *, address: str, port: int, state_dir: Path, account: str | None, penalties_option: bool
) -> str:
    """The only configuration the sandbox's sshd reads; `account` set: an isolated builder's."""
    keys = state_dir / "authorized_keys" if account else box.authorized_keys
    lines = [
        "# Written by coprssh's local provider. sshd reads only this file (-f), not /etc/ssh.",
        f"ListenAddress {address}",
        f"Port {port}",
        f"HostKey {box.host_key}",
        f"PidFile {box.pid_file}",
        f"AuthorizedKeysFile {keys}",
        *PUBLIC_KEY_ONLY,
        # Only an isolated builder's own account may log in, root never; without isolation the
        # service's account (root, when the service is) must.
        "PermitRootLogin no" if account else "PermitRootLogin prohibit-password",
        # StrictModes checks every parent directory of authorized_keys up to '/', and refuses
        # world-writable ones such as /tmp, where test roots live. We make the sandbox 0700 and
        # its files 0600 ourselves.
        "StrictModes no",
        "PermitUserEnvironment no",
        "X11Forwarding no",
        "PrintMotd no",
        "PrintLastLog no",
        "UseDNS no",
        "LoginGraceTime 60",
        # VERBOSE logs the fingerprint of each key that logs in: the audit trail of a sandbox.
        "LogLevel VERBOSE",
        # The service uploads files with SFTP; internal-sftp needs no sftp-server binary.
        "Subsystem sftp internal-sftp",
        # Where the service puts this builder's lease file, copr-builder and message of the day
        # (local machines share a host, so /etc/coprssh and /usr/local/bin would be shared too):
        # first on the sessions' PATH, and their home, whose .profile puts it first again for a
        # login shell after /etc/profile has set PATH. An isolated account's home is the folder.
        f"SetEnv COPRSSH_STATE_DIR={state_dir}"
        + (
            f" PATH={state_dir}:/usr/local/bin:/usr/bin:/bin"
            if account
            else f" PATH={state_dir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME={state_dir}"
        ),
    ]
    if account:
        lines.append(f"AllowUsers {account}")
    if penalties_option:
        lines.append("PerSourcePenalties no")
    return "\n".join(lines) + "\n"


def left_behind(root: Path) -> list[str]:
    """Names of the sandboxes under `root` whose folder is gone while their sshd or account is not.

    Deleting the service's data folder while its local builders run does that: their sshd keeps
    running, naming its sshd_config under `root` on its command line, and an isolated builder's
    account names the sandbox in its passwd comment. The local provider's delete() of such a name
    stops the sshd and its sessions and removes the account, as for any sandbox.
    """
    names = {box.name for box in accounts.stray_sandboxes(root).values() if box.parent == root}
    for proc in procs.proc_table().values():
        if proc.dead:
            continue
        for word in procs.cmdline_words(proc.pid):
            path = Path(word)
            if path.name == "sshd_config" and path.parent.parent == root:
                names.add(path.parent.name)
    return sorted(name for name in names if not (root / name).exists())
