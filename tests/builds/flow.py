"""Run the whole build machine in-process: a real local pool, real SSH, real rpmbuild, no qcluster.

`farm` stands in for the django-q cluster. Services queue their tasks with
`transaction.on_commit(lambda: async_task("dotted.name", *ids))`; the fixture records them instead
(`django_q.tasks.async_task` is imported inside the functions, so patching the module attribute
reaches every caller) and `Farm.run()` executes them by dotted name, oldest first, calling
`builders.tasks.assign_leases()` (the tick's matching pass) whenever the queue runs dry.

Tests that use it need `@pytest.mark.django_db(transaction=True)`: on-commit callbacks only fire on
a real commit. Every sshd and every agent started during a test is gone after it, pass or fail.

Test modules take the fixtures with `from tests.builds.flow import *` (`__all__` keeps that to the
fixtures) and import the helpers by name.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import platform
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connections
from django.utils.module_loading import import_string

from builders.models import Pool
from builders.providers.local import LocalProvider
from builds import runner, storage
from builds.models import Build, BuildChroot, Chroot, Project, State
from builds.services import create_project, submit_build
from builds.sources import check_upload

__all__ = ["farm", "hello_srpm", "http_root"]

ARCH = platform.machine()
CHROOTS = [f"fedora-rawhide-{ARCH}", f"fedora-43-{ARCH}"]
SPECS = Path(__file__).resolve().parent / "specs"
HELLO_SPEC = Path(__file__).resolve().parents[2] / "builds" / "demo" / "hello-coprssh.spec"
# Every task here takes well under a second or two: none waits on a running build.
TASK_TIMEOUT = 6.0

Task = tuple[str, tuple[Any, ...]]


@dataclass
class Farm:
    """A local pool and a one-thread worker that runs what the services queue."""

    pool: Pool
    root: Path
    tasks: list[Task] = field(default_factory=list)
    done: list[Task] = field(default_factory=list)
    workdirs: list[str] = field(default_factory=list)
    task_timeout: float = TASK_TIMEOUT
    seconds: list[float] = field(default_factory=list)  # how long each task in `done` took
    hung: list[threading.Thread] = field(default_factory=list)

    def record(self, func: str, *args: Any, **kwargs: Any) -> str:
        """Stands in for django_q.tasks.async_task."""
        assert not kwargs, f"tasks take ids as positional arguments: {func} {kwargs}"
        self.tasks.append((func, args))
        return f"flow-task-{len(self.done) + len(self.tasks)}"

    def names(self) -> list[str]:
        return [func for func, _ in self.tasks]

    def step(self) -> Task:
        """Run the oldest queued task, as a worker would, within the worker's time limit.

        The task runs in a thread of its own so that one that hangs (on a builder) fails the test
        after `task_timeout` seconds, as django-q's timeout would kill it, instead of blocking it.
        """
        func, args = self.tasks.pop(0)
        self.done.append((func, args))
        outcome: list[BaseException | None] = []

        def work() -> None:
            try:
                import_string(func)(*args)
                outcome.append(None)
            except BaseException as exc:  # handed to the test below
                outcome.append(exc)
            finally:
                connections.close_all()  # this thread's connections only

        thread = threading.Thread(target=work, name=f"flow-{func}", daemon=True)
        started = time.monotonic()
        thread.start()
        thread.join(self.task_timeout)
        if thread.is_alive():
            self.hung.append(thread)
            raise AssertionError(
                f"task {func}{args} still runs after {self.task_timeout} s; a worker would kill it"
            )
        self.seconds.append(round(time.monotonic() - started, 2))
        if outcome[0] is not None:
            raise outcome[0]
        return func, args

    def run(
        self, until: Callable[[], bool] | None = None, *, timeout: float = 30.0, builds_tick: bool = False
    ) -> None:
        """Run tasks until `until()` holds (checked before each task), else until none is queued.

        When the queue is empty but `until()` does not hold yet, play the tick's matching pass
        (`assign_leases`), and with `builds_tick` the builds tick (its checks of silent agents), and
        wait a little: builds advance on their builders, and their agents report, meanwhile.
        """
        deadline = time.monotonic() + timeout
        while True:
            if until is not None and until():
                return
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"the machine did not get there within {timeout} s; queued: {self.names()}; "
                    f"last tasks run: {self.done[-8:]}"
                )
            if self.tasks:
                self.step()
            elif until is None:
                return
            else:
                import_string("builders.tasks.assign_leases")()
                if builds_tick:
                    import_string("builds.tasks.tick")()
                if not self.tasks:
                    time.sleep(0.05)

    def finish(self, build: Build, *, timeout: float = 30.0) -> Build:
        """Run until `build` is over and nothing is left queued; return it fresh."""
        self.run(lambda: Build.objects.get(pk=build.pk).is_finished and not self.tasks, timeout=timeout)
        return Build.objects.get(pk=build.pk)

    def run_until_running(self, build_chroot: BuildChroot, *, timeout: float = 30.0) -> BuildChroot:
        """Run until the chroot's phase runs on its builder (its watch is queued, not run)."""

        def running() -> bool:
            build_chroot.refresh_from_db()
            return build_chroot.state == State.RUNNING

        self.run(running, timeout=timeout)
        return build_chroot

    # -- cleanup --------------------------------------------------------------------------

    def cleanup(self) -> None:
        """Kill every agent and build process we started, then every sshd of the pool's root."""
        for workdir in self.workdirs:
            for pid in processes_in(workdir):
                # The agent leads its own process group (setsid): the build's processes are in it.
                with contextlib.suppress(OSError):
                    group = os.getpgid(pid)
                    if group != os.getpgrp():
                        os.killpg(group, signal.SIGKILL)
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        if self.root.is_dir():
            provider = LocalProvider(self.root, stop_timeout=2.0)
            for machine in provider.list_owned():
                with contextlib.suppress(Exception):  # the safety net below catches the rest
                    provider.delete(machine.provider_id)
        _kill_processes_mentioning(self.root)
        # A task that hung on a builder returns once its processes are gone.
        for thread in self.hung:
            thread.join(30)
        for workdir in self.workdirs:
            shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def farm(
    settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, transactional_db: None, live_server: Any
) -> Iterator[Farm]:
    """A local pool of real sshd builders (none warm, at most 4) and the worker that drives it.

    The agents report to a live test server on loopback, as they would to COPRSSH_PUBLIC_URL.
    """
    if shutil.which("rpmbuild") is None or not Path("/usr/sbin/sshd").exists():
        pytest.skip("needs rpmbuild and OpenSSH's sshd")
    settings.COPRSSH_BUILDERS_DIR = tmp_path / "builders-dir"
    settings.COPRSSH_ADMIN_KEY_FILE = tmp_path / "ssh" / "admin_ed25519"
    settings.COPRSSH_STORAGE_DIR = tmp_path / "storage"
    settings.COPRSSH_SRPM_ARCH = ARCH
    settings.COPRSSH_PUBLIC_URL = live_server.url
    for name in CHROOTS:
        # Seeded by a migration, but a transactional test before this one flushed them.
        os_name, version, arch = name.split("-")
        Chroot.objects.get_or_create(name=name, defaults={"os": os_name, "version": version, "arch": arch})
    root = tmp_path / "builders"
    pool = Pool.objects.create(
        name="local",
        provider=Pool.Provider.LOCAL,
        architectures=[ARCH],
        max_builders=4,
        warm_builders=0,
        provider_settings={"root_dir": str(root)},
    )
    machine = Farm(pool=pool, root=root)
    monkeypatch.setattr("django_q.tasks.async_task", machine.record)
    # Every work directory handed out, so cleanup finds each agent, even one started for a phase
    # that never recorded its remote_dir.
    new_workdir = runner.new_workdir

    def remember_workdir(builder: Any, label: str) -> str:
        workdir = new_workdir(builder, label)
        machine.workdirs.append(workdir)
        return workdir

    monkeypatch.setattr(runner, "new_workdir", remember_workdir)
    try:
        yield machine
    finally:
        machine.cleanup()


# -- sources ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def hello_srpm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A source RPM made with `rpmbuild -bs` from the demo spec."""
    if shutil.which("rpmbuild") is None:
        pytest.skip("rpmbuild is not installed")
    top = tmp_path_factory.mktemp("hello-srpm")
    subprocess.run(
        ["rpmbuild", "-bs", "--quiet", "--define", f"_topdir {top}", str(HELLO_SPEC)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    (srpm,) = (top / "SRPMS").glob("*.src.rpm")
    return srpm


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        pass


@dataclass(frozen=True)
class HttpRoot:
    """A folder served over plain HTTP on loopback (dumb git, .src.rpm downloads)."""

    dir: Path
    url: str


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[HttpRoot]:
    served = tmp_path / "http"
    served.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="flow-http", daemon=True)
    thread.start()
    try:
        yield HttpRoot(dir=served, url=f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


# -- helpers -----------------------------------------------------------------------------------


def make_project(owner: Any, name: str = "hello", chroots: list[str] | None = None) -> Project:
    return create_project(owner=owner, name=name, chroots=chroots or CHROOTS)


def submit_file(project: Project, user: Any, path: Path, chroots: list[str] | None = None) -> Build:
    """Submit an uploaded .spec or .src.rpm, as the web form and the API do."""
    upload = SimpleUploadedFile(path.name, path.read_bytes())
    source = check_upload(upload)
    return submit_build(project=project, submitter=user, chroots=chroots, source=source, upload=upload)


def stored(relative: str) -> Path:
    return storage.path(relative)


def read_log(directory: str, name: str) -> str:
    target = storage.path(directory) / name
    return target.read_text(errors="replace") if target.exists() else ""


def processes_in(workdir: str) -> list[int]:
    """Live processes started for a phase: the agent names `workdir`, its build runs inside it."""
    prefix = workdir.rstrip("/") + "/"
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
            cmdline = (
                Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            )
            cwd = os.readlink(f"/proc/{entry}/cwd")
        except (OSError, IndexError):
            continue
        if state in ("Z", "X"):
            continue
        if f" {workdir}" in cmdline or (cwd + "/").startswith(prefix):
            found.append(int(entry))
    return found


def wait_for(predicate: Callable[[], bool], *, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _kill_processes_mentioning(root: Path) -> None:
    """Safety net: SIGKILL any process whose command line names a path under `root`."""
    prefix = str(root) + "/"
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().decode("utf-8", "replace")
        except OSError:
            continue
        if prefix in cmdline:
            with contextlib.suppress(OSError):
                os.kill(int(entry), signal.SIGKILL)
