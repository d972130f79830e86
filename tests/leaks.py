"""Finding processes a test's builders left behind, by the process list.

A local builder's processes are its sshd (whose command line names its sandbox), the sessions it
starts and whatever they leave running (whose environment holds COPRSSH_STATE_DIR=<state dir>). When
the service runs as root, an isolated builder's users log in as an account of its own, whose
passwd comment names the sandbox and whose home is the state dir: those accounts are found through
the passwd database, so that their processes count too.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from builders.providers import accounts as host_accounts


@dataclass(frozen=True)
class Accounts:
    """The host accounts made for the sandboxes under some folder: their uids and home folders."""

    uids: frozenset[int]
    homes: frozenset[str]


def builder_accounts(marker: Path) -> Accounts:
    """Accounts whose passwd comment names a path under `marker`, as isolated builders' accounts do."""
    needle = str(marker) + "/"
    found = [entry for entry in pwd.getpwall() if needle in entry.pw_gecos]
    return Accounts(
        uids=frozenset(entry.pw_uid for entry in found),
        homes=frozenset(entry.pw_dir for entry in found),
    )


def processes_of(marker: Path, *, accounts: Accounts | None = None, session: int | None = None) -> list[str]:
    """Live processes (zombies aside) that belong to builders under `marker`, described by pid and
    command line: they name `marker` in their command line or environment, run as one of `accounts`
    or name its home, or belong to `session` (as process group or session)."""
    accounts = accounts or Accounts(frozenset(), frozenset())
    needles = [str(marker).encode(), *(f"COPRSSH_STATE_DIR={home}".encode() for home in accounts.homes)]
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            environ = Path(f"/proc/{entry}/environ").read_bytes()
            status = Path(f"/proc/{entry}/status").read_text()
        except (OSError, IndexError):
            continue
        if fields[0] in ("Z", "X"):
            continue
        uids = {
            int(uid) for line in status.splitlines() if line.startswith("Uid:") for uid in line.split()[1:]
        }
        if (
            any(needle in cmdline or needle in environ for needle in needles)
            or uids & accounts.uids
            or (session is not None and session in (int(fields[2]), int(fields[3])))
        ):
            words = cmdline.replace(b"\0", b" ").decode(errors="replace").strip()
            found.append(f"{entry}: {words}")
    return found


def remove_leftovers(marker: Path) -> None:
    """A failed test's safety net: SIGKILL what the builders under `marker` left running, then remove
    the accounts made for them (with their homes), so that nothing outlives the test's folder."""
    found = builder_accounts(marker)
    deadline = time.monotonic() + 5
    while (left := processes_of(marker, accounts=found)) and time.monotonic() < deadline:
        for entry in left:
            with contextlib.suppress(OSError):
                os.kill(int(entry.split(":", 1)[0]), signal.SIGKILL)
        time.sleep(0.1)
    needle = str(marker) + "/"
    for account in pwd.getpwall():
        if needle in account.pw_gecos:
            with contextlib.suppress(host_accounts.AccountError, OSError):
                host_accounts.remove(account.pw_name, home=Path(account.pw_dir))
