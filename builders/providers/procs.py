"""Processes seen through /proc: find them by command line, environment, owner or ancestry, and stop them.

A pid alone does not name a process (pids are reused), so each one is kept with its start time and
checked again just before it is signalled. Plain Python, Linux only, no Django.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass


class ProcessError(Exception):
    """A process could not be signalled."""


@dataclass(frozen=True)
class Proc:
    """One /proc entry; (pid, start time) names a process even after its pid is reused."""

    pid: int
    ppid: int
    state: str
    start_time: int

    @property
    def dead(self) -> bool:
        # A zombie has exited and only waits to be reaped, possibly forever when its parent is an
        # init that does not reap (as in some containers); it is gone for our purposes.
        return self.state in ("Z", "X", "x")


def _pids() -> list[int]:
    """The pids in /proc now; some may be gone by the time they are read."""
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def _read(pid: int, name: str) -> bytes | None:
    """/proc/PID/NAME, or None when the process is gone or keeps it from us."""
    try:
        with open(f"/proc/{pid}/{name}", "rb") as f:
            return f.read()
    except OSError:
        return None


def read_proc(pid: int) -> Proc | None:
    raw = _read(pid, "stat")
    if raw is None:
        return None
    stat = raw.decode("ascii", "replace")
    # The command name (2nd field) may contain spaces and parentheses; it ends at the last ')'.
    fields = stat[stat.rfind(")") + 2 :].split()
    try:
        return Proc(pid=pid, ppid=int(fields[1]), state=fields[0], start_time=int(fields[19]))
    except (IndexError, ValueError):
        return None


def proc_table() -> dict[int, Proc]:
    procs = (read_proc(pid) for pid in _pids())
    return {proc.pid: proc for proc in procs if proc is not None}


def cmdline_words(pid: int) -> list[str]:
    # sshd rewrites its title ("sshd: /usr/sbin/sshd -f CONFIG ... [listener] ..."), which replaces
    # the NUL-separated argv with one space-separated string; split on both.
    raw = _read(pid, "cmdline") or b""
    return raw.decode("utf-8", "replace").replace("\0", " ").split()


def pids_with_environ(entry: str) -> list[int]:
    """Processes whose environment holds exactly `entry` (NAME=value)."""
    wanted = entry.encode()
    return [pid for pid in _pids() if wanted in (_read(pid, "environ") or b"").split(b"\0")]


def with_descendants(roots: Iterable[Proc], table: dict[int, Proc]) -> list[Proc]:
    children: dict[int, list[Proc]] = {}
    for proc in table.values():
        children.setdefault(proc.ppid, []).append(proc)
    result: dict[int, Proc] = {}
    todo = list(roots)
    while todo:
        proc = todo.pop()
        if proc.pid in result:
            continue
        result[proc.pid] = proc
        todo.extend(children.get(proc.pid, []))
    return list(result.values())


def is_running(proc: Proc) -> bool:
    now = read_proc(proc.pid)
    return now is not None and now.start_time == proc.start_time and not now.dead


def send_signal(proc: Proc, sig: signal.Signals) -> None:
    # Check the start time just before signalling, so a pid reused since the scan is left alone.
    if not is_running(proc):
        return
    try:
        os.kill(proc.pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError as exc:
        raise ProcessError(f"cannot signal process {proc.pid}: {exc}") from exc


def wait_dead(procs: list[Proc], timeout: float) -> list[Proc]:
    """Wait until the processes are gone; return the ones still running at the timeout."""
    deadline = time.monotonic() + timeout
    alive = [proc for proc in procs if is_running(proc)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.02)
        alive = [proc for proc in alive if is_running(proc)]
    return alive


def pids_of_uid(uid: int) -> list[int]:
    """Processes whose real or effective user id is `uid`."""
    found = []
    for pid in _pids():
        status = (_read(pid, "status") or b"").decode("utf-8", "replace")
        for line in status.splitlines():
            if line.startswith("Uid:"):
                ids = line.split()[1:3]  # real, effective
                if str(uid) in ids:
                    found.append(pid)
                break
    return found
