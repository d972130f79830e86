"""`manage.py qcluster`, django-q2's command with a stop that ends in bounded time.

django-q2's own stop waits for every running task to finish, however long that takes, so a
cluster with a task in flight ignores SIGTERM until the task's timeout. Here SIGTERM or SIGINT
starts the same stop (the pusher stops fetching, idle workers exit) and, if the cluster still runs
after COPRSSH_STOP_GRACE seconds, kills every process below this one: sentinel, workers, monitor,
pusher and whatever a task started. A second SIGINT (Ctrl-C again) kills them at once. The tasks
they held were never acknowledged, so the ORM broker hands them out again once its retry time has
passed; every task is idempotent.

Exit status: 0 when the cluster stopped, also when it had to be killed (that is logged as a
warning): a stop that was asked for happened in the promised time. --run-once and -n/--name work as
in django-q2.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management.base import CommandError
from django_q.cluster import Cluster
from django_q.management.commands import qcluster

from coprssh.checks import MISSING_KEY, secret_key_missing

log = logging.getLogger("coprssh.qcluster")

# django-q2 signs each task with SECRET_KEY when it is queued and checks the signature before running it.
SIGNED_TASKS = "The task cluster checks the signature of every task with it: give it the web processes' key"

# Rounds of "freeze what is new" before the kill; a frozen process cannot fork, so one or two do.
FREEZE_ROUNDS = 10


class BoundedCluster(Cluster):
    """A cluster whose stop signal asks the sentinel to stop and arms a watchdog; it never blocks.

    The signal handler only writes the signal down. Python runs a handler in the main thread
    between two bytecodes, also while that thread waits inside a lock it holds (a multiprocessing
    Event's lock, whose wait runs pending handlers): a handler that took that lock again, as
    `stop_event.set()` does, would wait for itself for good, with no watchdog armed. So a thread of
    its own, the stopper, does everything a signal asks for; and as `set()` waits for the sentinel
    (which may be slow, or killed meanwhile), yet another thread calls it, so that neither the
    stopper nor the watchdog ever waits on the sentinel.
    """

    def __init__(self, *, grace: float) -> None:
        super().__init__()  # installs sig_handler for SIGTERM and SIGINT
        self.grace = grace
        self.stop_requested_at: float | None = None
        self.killed: list[int] = []
        self._signals: list[int] = []  # appended by the handler (no lock), read by the stopper
        self._lock = threading.Lock()
        self._kill_now = threading.Event()
        self._watchdog: threading.Thread | None = None

    def sig_handler(self, signum: int, frame: FrameType | None) -> None:
        self._signals.append(signum)

    def start(self) -> int:
        threading.Thread(target=self._handle_signals, name="qcluster-signals", daemon=True).start()
        return super().start()

    def _handle_signals(self) -> None:
        """Act on the signals the handler wrote down: the first stops, a second SIGINT kills at once."""
        seen = interrupts = 0
        while True:
            while seen < len(self._signals):
                signum = self._signals[seen]
                seen += 1
                name = signal.Signals(signum).name
                interrupts += signum == signal.SIGINT
                if self.stop_requested_at is None:
                    log.info(
                        "got %s: stopping the cluster, at most %s s for running tasks to finish (Ctrl-C again"
                        " to kill it at once)",
                        name,
                        self.grace,
                    )
                elif interrupts > 1 and signum == signal.SIGINT and not self._kill_now.is_set():
                    log.warning("got SIGINT again: killing the cluster now")
                    self._kill_now.set()
                else:
                    log.info("got %s again: the cluster is already stopping", name)
                self.request_stop()
            time.sleep(0.1)

    def request_stop(self) -> None:
        """Ask the sentinel to stop; after the grace time, kill what still runs."""
        with self._lock:
            if self.stop_requested_at is not None:
                return
            self.stop_requested_at = time.monotonic()
            self._watchdog = threading.Thread(
                target=self._kill_after_grace, name="qcluster-stop", daemon=True
            )
            self._watchdog.start()
            threading.Thread(target=self._set_stop_event, name="qcluster-stop-event", daemon=True).start()

    def _set_stop_event(self) -> None:
        while self.stop_event is None:  # the signal came before start() made the event
            time.sleep(0.1)
        self.stop_event.set()

    def wait(self) -> None:
        """Return once the sentinel has exited, by itself or killed."""
        while self.sentinel is not None and self.sentinel.is_alive():
            self.sentinel.join(0.5)
        if self._watchdog is not None:
            self._watchdog.join()

    def _kill_after_grace(self) -> None:
        assert self.stop_requested_at is not None
        deadline = self.stop_requested_at + self.grace
        while time.monotonic() < deadline and not self._kill_now.is_set():
            if self.sentinel is not None and not self.sentinel.is_alive():
                return
            self._kill_now.wait(0.1)
        if self.sentinel is not None and not self.sentinel.is_alive():
            return
        self.killed = kill_descendants(os.getpid())
        log.warning(
            "the cluster %s: killed its processes %s; the tasks they ran are handed out again after the"
            " broker's retry time (%s s)",
            "was interrupted again" if self._kill_now.is_set() else f"did not stop within {self.grace} s",
            ", ".join(map(str, self.killed)) or "(none left)",
            settings.Q_CLUSTER["retry"],
        )


class Command(qcluster.Command):
    help = "Start a django-q2 cluster; on SIGTERM or SIGINT it stops within COPRSSH_STOP_GRACE seconds."

    def handle(self, *args: Any, **options: Any) -> None:
        if secret_key_missing():
            raise CommandError(f"{MISSING_KEY}. {SIGNED_TASKS}")
        if options.get("cluster_name"):
            # django-q2 reads the cluster (and queue) name from here.
            os.environ["Q_CLUSTER_NAME"] = options["cluster_name"]
        cluster = BoundedCluster(grace=float(settings.COPRSSH_STOP_GRACE))
        try:
            cluster.start()
        except RuntimeError:
            if not cluster.killed and cluster.stop_requested_at is None:
                raise  # the sentinel died by itself: django-q2 logged why
        if options.get("run_once"):
            cluster.request_stop()
        cluster.wait()


# --- the process tree, from /proc ------------------------------------------------------------


def kill_descendants(root: int) -> list[int]:
    """SIGKILL every process below `root`, freezing the tree first so that nothing forks meanwhile.

    A parent that dies first would leave its children to init, out of our sight: so every
    descendant is stopped (SIGSTOP) until no new one appears, then all are killed at once.
    """
    frozen: dict[int, int] = {}  # pid -> start time
    for _ in range(FREEZE_ROUNDS):
        new = {pid: start for pid, start in descendants(root).items() if frozen.get(pid) != start}
        if not new:
            break
        _send(new, signal.SIGSTOP)
        frozen.update(new)
    _send(frozen, signal.SIGKILL)
    return sorted(frozen)


def descendants(root: int) -> dict[int, int]:
    """Live (not zombie) processes below `root` by parent links, with their start times."""
    children: dict[int, list[tuple[int, int]]] = {}
    for pid, ppid, state, start in _proc_entries():
        if state not in ("Z", "X"):
            children.setdefault(ppid, []).append((pid, start))
    found: dict[int, int] = {}
    todo = [root]
    while todo:
        for pid, start in children.get(todo.pop(), []):
            if pid not in found:
                found[pid] = start
                todo.append(pid)
    return found


def _send(procs: dict[int, int], sig: signal.Signals) -> None:
    for pid, start in procs.items():
        # Skip a pid that has been reused by another process since it was seen.
        if _start_time(pid) != start:
            continue
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _proc_entries() -> Iterable[tuple[int, int, str, int]]:
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            parsed = _stat(int(entry))
            if parsed is not None:
                yield parsed


def _stat(pid: int) -> tuple[int, int, str, int] | None:
    """(pid, ppid, state, start time) from /proc/PID/stat, or None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name in parentheses may hold spaces and parentheses: split after the last ')'.
    fields = text.rsplit(")", 1)[1].split()
    return pid, int(fields[1]), fields[0], int(fields[19])


def _start_time(pid: int) -> int | None:
    parsed = _stat(pid)
    return parsed[3] if parsed is not None else None
