#!/usr/bin/env python3
"""The build farm under load: time to SSH, queue latency, live-log latency and service cost per running build.

    .venv/bin/python bench/farm_load.py                      # loads 10, 25, 50; 10 SSH runs each
    .venv/bin/python bench/farm_load.py --loads 5 --runs 3   # a quick look

Everything is the real service: a scratch PostgreSQL database (dropped and created again at the
start, dropped at the end), a scratch COPRSSH_DATA_DIR, the web service (`manage.py runserver
--noreload`, or gunicorn when it is installed) on a free loopback port that is also
COPRSSH_PUBLIC_URL, so that the builders' agents push their live logs and ends to it, and one
`manage.py qcluster` with its default two workers. Builders are a local pool of OpenSSH sshd
sandboxes; builds run rpmbuild; SSH logins are the OpenSSH client with the builder's pinned host
key. This process talks to the service over its REST API, and reads the database only to wait
(for the warm pool, for builds to end) and for the builder's host key.

First on an idle service, then while N builds run (each printing a `LOGTIME <epoch>` line every
half second until a fixed time), it measures:

- time to SSH: `POST /api/v1/builds/{id}/resubmit/` with a key, until `ssh … true` succeeds;
- queue latency: a probe task queued every second, from queued to running in a worker;
- live-log latency: for a few of the builds, when a LOGTIME line can first be read from the raw
  log URL, minus the time in it;
- CPU seconds of the web and task processes and their children over a fixed window (not the
  builders' sshd, agents and rpmbuild, nor PostgreSQL's own processes), and their peak memory.

At the end of each load every build must have succeeded, and each stored builder-live.log must be
byte-identical to the one on its builder. Everything started is stopped at the end, also on an
error, Ctrl-C or SIGTERM; the scratch database and folders are removed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from faults import kill_everything_under, reset_db
from ssh_ready import SPEC as CHECK_FAILS_SPEC
from ssh_ready import new_key, p95, ssh_true

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATABASE = "postgres://postgres@127.0.0.1:5432/coprssh_bench_farm"
ARCH = platform.machine()
CHROOT = f"fedora-rawhide-{ARCH}"
USER, PROJECT, POOL = "farm", "farm", "farm"
PROBE_TASK = "bench.farm_probe.probe"
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Prints a LOGTIME line every half second until END (epoch seconds), at most MAX lines. rpmbuild
# traces %build with `set -x`: off, so that the log holds the lines and little else. `%%` is a
# literal % in a spec.
FARM_SPEC = """\
Name:           farm-load
Version:        1.0
Release:        @RELEASE@
Summary:        A build that prints the time every half second
License:        MIT
BuildArch:      noarch

%description
Built by bench/farm_load.py: prints LOGTIME lines until a fixed time.

%prep

%build
set +x
i=0
while [ "$(date +%%s)" -lt @END@ ] && [ "$i" -lt @MAX@ ]; do
    printf 'LOGTIME %%s\\n' "$(date +%%s.%%N)"
    i=$((i + 1))
    sleep 0.5
done
echo 'echo hi' > farm-load

%install
install -D -m 0755 farm-load %{buildroot}%{_bindir}/farm-load

%files
%{_bindir}/farm-load
"""


class BenchError(Exception):
    """Something the bench waited for did not happen; the message says what."""


def farm_spec(*, end: int, release: int) -> str:
    lines = max(2 * (end - int(time.time())) + 20, 20)
    return (
        FARM_SPEC.replace("@END@", str(end)).replace("@MAX@", str(lines)).replace("@RELEASE@", str(release))
    )


def percentiles(values: list[float]) -> tuple[float, float] | None:
    """Median and nearest-rank 95th percentile, or None without values."""
    if not values:
        return None
    return statistics.median(values), p95(values)


def wait_for(
    what: str, until: Any, *, timeout: float, poll: float = 0.2, also: Any = None, required: bool = True
) -> float | None:
    """Poll `until()` (and run `also()` each round) until true; return the seconds it took.

    Past `timeout`: BenchError, or None when not `required`.
    """
    t0 = time.monotonic()
    while True:
        if until():
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            if not required:
                return None
            raise BenchError(f"{what} did not happen within {timeout:.0f} s")
        if also is not None:
            also()
        time.sleep(poll)


# --- processes: the service's, and their cost --------------------------------------------------


def proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state first), or None once gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def tree(roots: list[int]) -> list[int]:
    """`roots` and every live process below them, by parent links."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = proc_stat(int(entry))
            if fields is not None and fields[0] not in ("Z", "X"):
                children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [pid for pid in roots if proc_stat(pid) is not None]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def cpu_seconds(roots: list[int]) -> float:
    """utime + stime of the tree, with what its members' reaped children used (cutime + cstime).

    A process that ends is reaped by its parent, which is in the tree, so its time moves into the
    parent's cutime/cstime: the sum only grows. Builders' sshd daemons detach from the worker that
    starts them (their parent becomes init) and their sessions (the agent, rpmbuild) are theirs, so
    none of that is counted.
    """
    total = 0
    for pid in tree(roots):
        fields = proc_stat(pid)
        if fields is not None:
            total += sum(int(value) for value in fields[11:15])
    return total / CLK_TCK


def memory(roots: list[int]) -> tuple[int, int]:
    """(summed RSS, summed PSS) of the tree in bytes. RSS counts pages shared by the forked
    workers once per process; PSS splits each shared page between its sharers."""
    rss = pss = 0
    for pid in tree(roots):
        for name, key in ((f"/proc/{pid}/status", "VmRSS:"), (f"/proc/{pid}/smaps_rollup", "Pss:")):
            with contextlib.suppress(OSError, ValueError, IndexError):
                for line in Path(name).read_text().splitlines():
                    if line.startswith(key):
                        value = int(line.split()[1]) * 1024
                        if key == "VmRSS:":
                            rss += value
                        else:
                            pss += value
                        break
    return rss, pss


class Sampler(threading.Thread):
    """Samples the service's memory twice a second; `peak` is the highest (RSS, PSS) since `reset()`."""

    def __init__(self, roots: list[int]) -> None:
        super().__init__(name="memory-sampler", daemon=True)
        self.roots = roots
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.peak = (0, 0)

    def run(self) -> None:
        while not self.stop.wait(0.5):
            rss, pss = memory(self.roots)
            with self.lock:
                self.peak = (max(self.peak[0], rss), max(self.peak[1], pss))

    def reset(self) -> None:
        with self.lock:
            self.peak = memory(self.roots)


@dataclass
class Service:
    """The web server and the task cluster, each in a session of its own."""

    data_dir: Path
    server: str
    web_workers: int
    port: int = 0
    web: subprocess.Popen[bytes] | None = None
    cluster: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def roots(self) -> list[int]:
        return [proc.pid for proc in (self.web, self.cluster) if proc is not None]

    def _spawn(self, argv: list[str], log_name: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = open(self.data_dir / log_name, "wb")  # noqa: SIM115 - the child keeps it open
        try:
            return subprocess.Popen(
                argv,
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()

    def start_web(self, env: dict[str, str]) -> None:
        import requests

        bind = f"127.0.0.1:{self.port}"
        if self.server == "gunicorn":
            argv = [sys.executable, "-m", "gunicorn", "coprssh.wsgi", "--bind", bind]
            argv += ["--workers", str(self.web_workers), "--timeout", "60"]
        else:
            argv = [sys.executable, str(ROOT / "manage.py"), "runserver", "--noreload", bind]
        self.web = self._spawn(argv, "web.log", env)

        def answers() -> bool:
            if self.web is not None and self.web.poll() is not None:
                raise BenchError(f"the web server exited (status {self.web.returncode}); see web.log")
            try:
                return requests.get(f"{self.url}/healthz", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_for("the web server answering /healthz", answers, timeout=60, poll=0.3)

    def start_cluster(self, env: dict[str, str]) -> None:
        self.cluster = self._spawn([sys.executable, str(ROOT / "manage.py"), "qcluster"], "qcluster.log", env)

    def check_alive(self) -> None:
        for name, proc in (("web server", self.web), ("task cluster", self.cluster)):
            if proc is not None and proc.poll() is not None:
                raise BenchError(f"the {name} exited (status {proc.returncode})")

    def stop(self) -> None:
        """SIGTERM to each session, then SIGKILL to whatever of it is left after a bounded wait."""
        for proc, grace in ((self.cluster, 20.0), (self.web, 10.0)):
            if proc is None:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=grace)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        self.web = self.cluster = None


# --- measurements that run beside the main loop --------------------------------------------------


class Probes(threading.Thread):
    """Queues the probe task every `interval` seconds while active; each is tagged with a label."""

    def __init__(self, path: Path, interval: float) -> None:
        super().__init__(name="probes", daemon=True)
        self.path = path
        self.interval = interval
        self.stop = threading.Event()
        self.label: str | None = None
        self.sent: list[tuple[str, float]] = []  # (label, queued at)

    def run(self) -> None:
        from django.db import connection
        from django_q.tasks import async_task

        try:
            while not self.stop.wait(self.interval):
                label = self.label
                if label is None:
                    continue
                queued_at = time.time()
                try:
                    async_task(PROBE_TASK, queued_at, str(self.path))
                except Exception as exc:  # the database briefly away: that probe is missing
                    print(f"farm: queuing a probe: {type(exc).__name__}: {exc}", file=sys.stderr)
                    connection.close()
                    continue
                self.sent.append((label, queued_at))
        finally:
            connection.close()

    def results(self, label: str, *, wait: float = 15.0) -> tuple[list[float], int]:
        """(seconds each probe of `label` waited, how many never ran within `wait` s of asking)."""
        wanted = {round(t, 6) for lab, t in self.sent if lab == label}
        t0 = time.monotonic()
        while True:
            done = self._read()
            if wanted <= done.keys() or time.monotonic() - t0 > wait:
                break
            time.sleep(0.5)
        waited = [done[t] for t in sorted(wanted) if t in done]
        return waited, len(wanted) - len(waited)

    def _read(self) -> dict[float, float]:
        found: dict[float, float] = {}
        with contextlib.suppress(OSError):
            for line in self.path.read_text().splitlines():
                parts = line.split()
                if len(parts) == 2:
                    found[round(float(parts[0]), 6)] = float(parts[1])
        return found


class LogWatcher(threading.Thread):
    """Reads the raw live logs of a few builds as a browser would; times each LOGTIME line first seen."""

    def __init__(self, urls: list[str], poll: float) -> None:
        super().__init__(name="log-watcher", daemon=True)
        self.urls = urls
        self.poll = poll
        self.stop = threading.Event()
        self.since = time.time()
        self.latencies: list[float] = []
        self.errors = 0

    def run(self) -> None:
        import requests

        session = requests.Session()
        # Start at each log's current end: lines written before the window do not count.
        offsets = {url: 10**12 for url in self.urls}
        partial = {url: b"" for url in self.urls}
        while not self.stop.is_set():
            t_round = time.monotonic()
            for url in self.urls:
                try:
                    response = session.get(url, params={"offset": offsets[url]}, timeout=10)
                except requests.RequestException:
                    self.errors += 1
                    continue
                seen = time.time()
                if response.status_code != 200:
                    self.errors += 1
                    continue
                first = offsets[url] == 10**12
                size = response.headers.get("X-Log-Size", "")
                offsets[url] = int(size) if size.isdigit() else offsets[url] + len(response.content)
                if first:
                    continue
                text = partial[url] + response.content
                *lines, partial[url] = text.split(b"\n")
                for line in lines:
                    if line.startswith(b"LOGTIME "):
                        with contextlib.suppress(ValueError):
                            written = float(line.split()[1])
                            if written >= self.since:
                                self.latencies.append(seen - written)
            self.stop.wait(max(self.poll - (time.monotonic() - t_round), 0.01))
        session.close()


def task_times(wall0: float, lease_id: int) -> str:
    """When, from `wall0`, the cluster ran the two tasks between a resubmit and its builder's keys."""
    from django_q.models import Task

    from builders.models import AuditEvent

    parts = []
    for func in ("builders.tasks.assign_leases", "builds.tasks.phase_ready"):
        task = (
            Task.objects.filter(func=func, started__gte=datetime.fromtimestamp(wall0).astimezone())
            .order_by("started")
            .first()
        )
        if task is not None:
            started, stopped = task.started.timestamp() - wall0, task.stopped.timestamp() - wall0
            parts.append(f"{func.rsplit('.', 1)[1]} ran {started:.2f}-{stopped:.2f} s")
    event = AuditEvent.objects.filter(lease_id=lease_id, action=AuditEvent.Action.KEYS_DEPLOYED).first()
    if event is not None:
        parts.append(f"keys on the builder at {event.created_at.timestamp() - wall0:.2f} s")
    return ", ".join(parts)


# --- the check of every stored live log ---------------------------------------------------------


@dataclass
class LogCheck:
    """Compares each ended phase's stored builder-live.log with the one on its builder."""

    builds: set[int] = field(default_factory=set)
    done: set[tuple[str, int]] = field(default_factory=set)
    identical: int = 0
    mismatched: list[str] = field(default_factory=list)
    unverifiable: list[str] = field(default_factory=list)

    def poll(self) -> None:
        from builds import storage
        from builds.models import FINAL_STATES, BuildChroot, SrpmPhase

        for model, kind in ((SrpmPhase, "srpm"), (BuildChroot, "rpm")):
            ended = model.objects.filter(build_id__in=self.builds, state__in=FINAL_STATES).exclude(
                remote_dir=""
            )
            for phase in ended.exclude(pk__in=[pk for k, pk in self.done if k == kind]):
                self.done.add((kind, phase.pk))
                stored_path = storage.path(phase.storage_dir) / storage.LIVE_LOG
                remote_path = Path(phase.remote_dir) / "builder-live.log"
                name = f"build {phase.build_id} {kind}"
                try:
                    remote = remote_path.read_bytes()
                except OSError as exc:
                    self.unverifiable.append(f"{name}: {remote_path}: {exc.strerror}")
                    continue
                stored = stored_path.read_bytes() if stored_path.is_file() else b""
                if stored == remote:
                    self.identical += 1
                else:
                    self.mismatched.append(f"{name}: stored {len(stored)} B, on the builder {len(remote)} B")


# --- the bench -------------------------------------------------------------------------------------


@dataclass
class Row:
    load: int
    ssh: list[float] = field(default_factory=list)
    queue: list[float] = field(default_factory=list)
    queue_missing: int = 0
    live: list[float] = field(default_factory=list)
    live_errors: int = 0
    cpu: float | None = None
    cpu_window: float = 0.0
    peak_rss: int = 0
    peak_pss: int = 0
    succeeded: int = 0
    builds: int = 0
    checked: int = 0
    mismatched: int = 0
    unverifiable: int = 0
    ramp: float | None = None
    min_running: int | None = None
    finished: bool = False  # False: cut short by an error or an interrupt
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return ("idle" if not self.load else str(self.load)) + ("" if self.finished else "*")


class Bench:
    def __init__(self, args: argparse.Namespace, service: Service, data_dir: Path) -> None:
        import requests

        self.args = args
        self.service = service
        self.data_dir = data_dir
        self.scratch = data_dir / "bench"
        self.scratch.mkdir()
        self.http = requests.Session()
        self.checker = LogCheck()
        self.rows: list[Row] = []
        self.probes = Probes(self.scratch / "probes.txt", args.probe_every)
        self.sampler: Sampler | None = None

    # -- API ------------------------------------------------------------------------------------

    def api(self, method: str, path: str, expect: int = 200, **kwargs: Any) -> Any:
        response = self.http.request(method, f"{self.service.url}{path}", timeout=60, **kwargs)
        if response.status_code != expect:
            raise BenchError(f"{method} {path}: HTTP {response.status_code}: {response.text[:300]}")
        return response.json()

    def submit(self, name: str, spec: str) -> int:
        files = {"source_file": (f"{name}.spec", spec.encode(), "text/plain")}
        data = self.api(
            "POST",
            "/api/v1/builds/",
            201,
            data={"project": f"{USER}/{PROJECT}", "chroots": CHROOT},
            files=files,
        )
        return int(data["id"])

    # -- setup --------------------------------------------------------------------------------------

    def setup(self) -> None:
        from django.contrib.auth import get_user_model

        from builders.models import Pool, QuotaPolicy
        from builders.services import Via
        from builders.services.quota import save_quota_policy
        from builds.models import Chroot
        from builds.services import create_project
        from coprssh.services import get_api_token

        Chroot.objects.get_or_create(
            name=CHROOT, defaults={"os": "fedora", "version": "rawhide", "arch": ARCH}
        )
        Pool.objects.update(enabled=False)  # only our pool starts builders
        largest = max(self.args.loads or [0])
        self.pool = Pool.objects.create(
            name=POOL,
            provider=Pool.Provider.LOCAL,
            architectures=[ARCH],
            # The builds of the largest load, the warm builders, the SSH builder and its replacement.
            max_builders=largest + self.args.warm + 4,
            warm_builders=self.args.warm,
            provider_settings={"root_dir": str(self.data_dir / "builders" / POOL)},
            reaches_service=True,
        )
        policy = QuotaPolicy.get()
        policy.max_ssh_builders = 4
        save_quota_policy(policy=policy, via=Via(source="admin"))
        self.user = get_user_model().objects.create_user(username=USER)
        create_project(owner=self.user, name=PROJECT, chroots=[CHROOT])
        self.http.headers["Authorization"] = f"Token {get_api_token(user=self.user).key}"
        self.key_path, self.key_line = new_key(self.scratch)

    def start_measuring(self) -> None:
        from django.db import close_old_connections

        from builders.services import ensure_capacity

        self.sampler = Sampler(self.service.roots)
        self.sampler.start()
        self.probes.start()
        # The first probe also shows that the cluster runs tasks (and can import the probe).
        self.probes.label = "startup"
        waited, _missing = self.probes.results("startup", wait=0)
        t0 = time.monotonic()
        while not waited:
            self.service.check_alive()
            if time.monotonic() - t0 > 90:
                raise BenchError("the task cluster ran no probe within 90 s; see qcluster.log")
            time.sleep(0.5)
            waited, _missing = self.probes.results("startup", wait=0)
        self.probes.label = None
        close_old_connections()
        ensure_capacity()  # as `manage.py tick` would; the cluster's tick does it within a minute anyway
        print(f"farm: warming the pool ({self.args.warm} builders)…", file=sys.stderr)
        self.wait_warm(timeout=180)
        print("farm: building the original (its %check fails)…", file=sys.stderr)
        self.original = self.submit("farm-check-fails", CHECK_FAILS_SPEC)
        wait_for(
            "the original build's end",
            lambda: self.build(self.original).is_finished,
            timeout=300,
            also=self.tend,
        )
        original = self.build(self.original)
        if original.state != "failed" or original.srpm.state != "succeeded":
            raise BenchError(f"the original build is {original.state}; it should have failed its %check")

    # -- helpers -----------------------------------------------------------------------------------

    def build(self, build_id: int) -> Any:
        from builds.models import Build

        return Build.objects.select_related("srpm").get(pk=build_id)

    def tend(self) -> None:
        """Run between polls: the service still up, ended phases' logs compared."""
        self.service.check_alive()
        self.checker.poll()

    def fresh_ready(self) -> int:
        from builders.models import Builder

        return Builder.objects.filter(pool=self.pool, state=Builder.State.READY, sandbox__isnull=True).count()

    def wait_warm(self, *, timeout: float) -> float:
        from builders.models import Builder

        def warm() -> bool:
            busy = Builder.objects.filter(
                pool=self.pool, state__in=[Builder.State.PROVISIONING, Builder.State.TERMINATING]
            )
            return self.fresh_ready() >= self.args.warm and not busy.exists()

        return wait_for("a full warm pool", warm, timeout=timeout, also=self.tend)

    def running(self, build_ids: list[int]) -> int:
        from builds.models import BuildChroot, State

        return BuildChroot.objects.filter(build_id__in=build_ids, state=State.RUNNING, log_size__gt=0).count()

    # -- one SSH run --------------------------------------------------------------------------------

    def ssh_run(self, number: int, label: str) -> float:
        from builders.models import Builder, Lease
        from builders.services.access import host_key_fingerprint

        wall0, t0 = time.time(), time.monotonic()
        data = self.api(
            "POST", f"/api/v1/builds/{self.original}/resubmit/", 201, json={"ssh_public_keys": self.key_line}
        )
        t_api = time.monotonic() - t0
        build_id = int(data["id"])
        lease_id = int(data["chroots"][0]["ssh_builder"]["id"])
        while True:
            view = self.api("GET", f"/api/v1/ssh-builders/{lease_id}/")
            if view["state"] == "ready" and view["host"]:
                break
            if view["state"] in ("ended", "failed") or time.monotonic() - t0 > self.args.timeout:
                raise BenchError(
                    f"{label} run {number}: SSH builder {lease_id} is {view['state']} {view['queue_reason']}"
                )
            time.sleep(0.05)
        t_ready = time.monotonic() - t0
        builder = Lease.objects.select_related("builder").get(pk=lease_id).builder
        if host_key_fingerprint(builder.host_key) != view["host_key_fingerprint"]:
            raise BenchError(f"{label} run {number}: the API's host key fingerprint is not the builder's")
        known_hosts = self.scratch / f"known_hosts-{lease_id}"
        key_type, blob = builder.host_key.split()[:2]
        known_hosts.write_text(f"[{view['host']}]:{view['port']} {key_type} {blob}\n")
        tries = 1
        while not ssh_true(self.key_path, known_hosts, view["user"], view["host"], int(view["port"])):
            if time.monotonic() - t0 > self.args.timeout:
                raise BenchError(
                    f"{label} run {number}: ssh … true never succeeded on {view['host']}:{view['port']}"
                )
            tries += 1
            time.sleep(0.05)
        seconds = time.monotonic() - t0
        # Untimed: the build ends (its %check fails), the SSH builder is released and deleted.
        wait_for(
            f"SSH build {build_id}'s end",
            lambda: self.build(build_id).is_finished,
            timeout=self.args.timeout * 2,
            also=self.tend,
        )
        print(
            f"{label} run {number}: {seconds:.2f} s (resubmit answered at {t_api:.2f} s; "
            f"{task_times(wall0, lease_id)}; ready in the API at {t_ready:.2f} s; ssh true in {tries} "
            f"attempt(s); {builder.name})"
        )
        self.api("POST", f"/api/v1/ssh-builders/{lease_id}/release/")
        wait_for(
            f"SSH builder {builder.name}'s deletion",
            lambda: Builder.objects.get(pk=builder.pk).state == Builder.State.TERMINATED,
            timeout=120,
            also=self.tend,
        )
        return seconds

    # -- one load -------------------------------------------------------------------------------------

    def measure(self, row: Row, build_ids: list[int]) -> None:
        """The CPU window, the live-log window (with builds) and the SSH runs; probes all along."""
        assert self.sampler is not None
        label = "idle" if not row.load else f"load {row.load}"
        self.probes.label = label
        self.sampler.reset()
        # 1. The service's CPU over a fixed window, with nothing but the builds (and the probes).
        print(f"farm: {label}: CPU window ({self.args.cpu_window:.0f} s)…", file=sys.stderr)
        cpu0, t0 = cpu_seconds(self.service.roots), time.monotonic()
        while time.monotonic() - t0 < self.args.cpu_window:
            self.tend()
            time.sleep(0.5)
        row.cpu_window = time.monotonic() - t0
        row.cpu = cpu_seconds(self.service.roots) - cpu0
        # 2. Live-log latency: a few builds' raw logs read as the build page does.
        if build_ids:
            watched = build_ids[: self.args.watch]
            urls = []
            for build_id in watched:
                data = self.api("GET", f"/api/v1/builds/{build_id}/")
                urls.append(data["chroots"][0]["logs"]["builder_live"])
            print(
                f"farm: {label}: live logs of {len(urls)} builds ({self.args.log_window:.0f} s)…",
                file=sys.stderr,
            )
            watcher = LogWatcher(urls, self.args.log_poll)
            watcher.start()
            t0 = time.monotonic()
            while time.monotonic() - t0 < self.args.log_window:
                self.tend()
                time.sleep(0.5)
            watcher.stop.set()
            watcher.join(30)
            row.live = watcher.latencies
            row.live_errors = watcher.errors
        # 3. Time to SSH, each run from a full warm pool.
        running = []
        for number in range(1, self.args.runs + 1):
            self.wait_warm(timeout=300)
            if build_ids:
                running.append(self.running(build_ids))
            row.ssh.append(self.ssh_run(number, label))
        if build_ids:
            row.min_running = min(running + [self.running(build_ids)])
        self.probes.label = None
        row.queue, row.queue_missing = self.probes.results(label)
        row.peak_rss, row.peak_pss = self.sampler.peak

    def idle(self) -> None:
        row = Row(load=0)
        self.rows.append(row)
        self.measure(row, [])
        row.finished = True

    def load(self, n: int) -> None:
        from builds.models import BuildChroot, State

        row = Row(load=n, builds=n)
        self.rows.append(row)
        ramp_budget = self.args.ramp_seconds if self.args.ramp_seconds is not None else 30 + 3 * n
        end = int(time.time() + ramp_budget + self.args.build_seconds)
        spec = farm_spec(end=end, release=n)
        print(
            f"farm: load {n}: submitting {n} builds (they print until {datetime.fromtimestamp(end):%H:%M:%S})…",
            file=sys.stderr,
        )
        checked = self.checker.identical + len(self.checker.mismatched) + len(self.checker.unverifiable)
        mismatched, unverifiable = len(self.checker.mismatched), len(self.checker.unverifiable)
        t0 = time.monotonic()
        build_ids = [self.submit(f"farm-load-{n}-{i}", spec) for i in range(n)]
        self.checker.builds.update(build_ids)
        row.ramp = wait_for(
            f"all {n} builds running",
            lambda: self.running(build_ids) == n,
            timeout=ramp_budget,
            poll=0.5,
            also=self.tend,
            required=False,
        )
        if row.ramp is None:
            row.notes.append(
                f"only {self.running(build_ids)} of {n} builds ran within the ramp ({ramp_budget:.0f} s)"
            )
        else:
            row.ramp = time.monotonic() - t0  # from the first submit
        self.measure(row, build_ids)
        if end - time.time() < 0:
            row.notes.append("the builds' fixed time ended before the measurements did")
        print(f"farm: load {n}: waiting for the builds to end…", file=sys.stderr)
        left = end - time.time() + 120 + 2 * n
        error = None
        try:
            wait_for(
                f"the end of load {n}'s builds",
                lambda: all(self.build(b).is_finished for b in build_ids),
                timeout=max(left, 60),
                poll=1.0,
                also=self.tend,
            )
        except BenchError as exc:
            error = exc
        self.checker.poll()
        row.succeeded = sum(1 for b in build_ids if self.build(b).state == State.SUCCEEDED)
        stuck = BuildChroot.objects.filter(build_id__in=build_ids).exclude(state=State.SUCCEEDED)
        for phase in stuck[:5]:
            row.notes.append(f"build {phase.build_id}: {phase.state} {phase.status_reason}"[:160])
        row.checked = (
            self.checker.identical + len(self.checker.mismatched) + len(self.checker.unverifiable) - checked
        )
        row.mismatched = len(self.checker.mismatched) - mismatched
        row.unverifiable = len(self.checker.unverifiable) - unverifiable
        row.notes += self.checker.mismatched[mismatched:][:5] + self.checker.unverifiable[unverifiable:][:5]
        if error is not None:
            raise error
        row.finished = True

    # -- cleanup ---------------------------------------------------------------------------------------

    def stop_threads(self) -> None:
        self.probes.stop.set()
        if self.sampler is not None:
            self.sampler.stop.set()
        for thread in (self.probes, self.sampler):
            if thread is not None and thread.is_alive():
                thread.join(10)


# --- output ---------------------------------------------------------------------------------------------


def fmt_pair(values: list[float]) -> str:
    found = percentiles(values)
    return "-" if found is None else f"{found[0]:.2f} / {found[1]:.2f}"


def table(rows: list[Row]) -> list[str]:
    idle = next((row for row in rows if row.load == 0), None)
    idle_median = statistics.median(idle.ssh) if idle and idle.ssh else None
    head = (
        f"{'load':>5} | {'to SSH med/p95 s':>16} | {'×idle':>5} | {'queue med/p95 s':>15} | "
        f"{'live log med/p95 s':>18} | {'CPU s/build':>11} | {'peak RSS':>9} | {'builds ok':>9} | logs identical"
    )
    lines = [head, "-" * len(head)]
    for row in rows:
        ratio = "-"
        if row.ssh and idle_median:
            ratio = f"{statistics.median(row.ssh) / idle_median:.2f}"
        if row.cpu is None:
            cpu = "-"
        elif row.load:
            cpu = f"{row.cpu / row.load:.3f}"
        else:
            cpu = f"({row.cpu:.1f} all)"
        queue = fmt_pair(row.queue) + (f" ({row.queue_missing} lost)" if row.queue_missing else "")
        builds = f"{row.succeeded}/{row.builds}" if row.load else "-"
        logs = "-"
        if row.load:
            logs = f"{row.checked - row.mismatched - row.unverifiable}/{row.checked}, {row.mismatched} mismatched"
            if row.unverifiable:
                logs += f", {row.unverifiable} unreadable"
        lines.append(
            f"{row.name:>5} | {fmt_pair(row.ssh):>16} | {ratio:>5} | {queue:>15} | "
            f"{fmt_pair(row.live):>18} | {cpu:>11} | {row.peak_rss / 2**20:>5.0f} MiB | {builds:>9} | {logs}"
        )
    return lines


def details(rows: list[Row]) -> list[str]:
    lines = []
    idle = next((row for row in rows if row.load == 0), None)
    for row in rows:
        label = ("idle" if not row.load else f"load {row.load}") + ("" if row.finished else " (cut short)")
        parts = [f"{len(row.ssh)} SSH runs", f"{len(row.queue)} probes", f"CPU window {row.cpu_window:.0f} s"]
        if row.cpu is not None:
            parts.append(f"service CPU {row.cpu:.1f} s in it")
        memory = f"peak RSS {row.peak_rss / 2**20:.0f} MiB, PSS {row.peak_pss / 2**20:.0f} MiB"
        if row.load and idle is not None and idle.peak_pss and row.peak_pss:
            memory += (
                f" ({(row.peak_pss - idle.peak_pss) / 2**20 / row.load:+.1f} MiB PSS per build over idle)"
            )
        parts.append(memory)
        if row.load:
            parts.append(
                f"{len(row.live)} live-log lines timed"
                + (f" ({row.live_errors} failed reads)" if row.live_errors else "")
            )
            if row.ramp is not None:
                parts.append(f"all {row.load} running {row.ramp:.0f} s after the first submit")
            if row.min_running is not None:
                parts.append(f"at least {row.min_running} running during the SSH runs")
        lines.append(f"{label}: " + "; ".join(parts))
        lines += [f"  note: {note}" for note in row.notes]
    window = next((row.cpu_window for row in rows if row.cpu is not None), 0.0)
    lines.append(
        f"CPU s/build: CPU seconds of the web server and the task cluster in the {window:.0f} s window, "
        "divided by the running builds"
    )
    if not all(row.finished for row in rows):
        lines.append("*: cut short by an error or an interrupt; its figures are partial")
    return lines


def targets(rows: list[Row]) -> list[str]:
    idle = next((row for row in rows if row.load == 0), None)
    idle_median = statistics.median(idle.ssh) if idle and idle.ssh else None
    out = []
    if idle_median is not None:
        out.append(
            f"idle time to SSH median < 1.0 s: {idle_median:.2f} s, {'met' if idle_median < 1.0 else 'NOT met'}"
        )
    for row in rows:
        if not row.load or not row.ssh:
            continue
        median = statistics.median(row.ssh)
        ok = idle_median is not None and median <= 1.2 * idle_median and median < 2.0
        ratio = f"{median / idle_median:.2f}×" if idle_median else "?"
        live = percentiles(row.live)
        live_text = f"{live[1]:.2f} s" if live else "none timed"
        out.append(
            f"load {row.name}: time to SSH ≤ 1.2× idle and < 2 s: {median:.2f} s ({ratio}), "
            f"{'met' if ok else 'NOT met'}; live-log p95 < 2 s: {live_text}, "
            f"{'met' if live and live[1] < 2.0 else 'NOT met'}; complete with identical logs: "
            f"{'yes' if row.succeeded == row.builds and not row.mismatched and not row.unverifiable else 'NO'}"
        )
    if not any(row.load >= 50 for row in rows):
        out.append("50 builds complete with byte-identical logs: not run (no load of 50)")
    return out


def machine_notes(database_url: str, service: Service, load_at_start: float) -> str:
    model = "?"
    memory = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 2**20:.1f} GiB"
    version = "?"
    with contextlib.suppress(Exception):
        import psycopg

        with psycopg.connect(database_url, connect_timeout=5) as conn:
            version = conn.execute("SHOW server_version").fetchone()[0]
    sshd = subprocess.run(
        ["/usr/sbin/sshd", "-V"], capture_output=True, text=True, check=False
    ).stderr.strip()
    web = (
        f"gunicorn ×{service.web_workers}"
        if service.server == "gunicorn"
        else "runserver --noreload (threads)"
    )
    return (
        f"machine: nproc {len(os.sched_getaffinity(0))}, {memory}, {model}, load average {load_at_start:.2f} at "
        f"the start, {os.getloadavg()[0]:.2f} at the end; Python {platform.python_version()}, PostgreSQL {version}, "
        f"{sshd.splitlines()[0] if sshd else 'sshd ?'}; web {web}, one qcluster (2 workers), "
        f"DEBUG {'on' if os.environ.get('DEBUG') == '1' else 'off'}, "
        f"DB_CONN_MAX_AGE {os.environ.get('DB_CONN_MAX_AGE', '0')}"
    )


# --- main -----------------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--loads", default="10,25,50", help="running builds per load, comma-separated (10,25,50)"
    )
    parser.add_argument("--runs", type=int, default=10, help="SSH runs per load, idle included (10)")
    parser.add_argument("--warm", type=int, default=2, help="warm builders of the pool (2)")
    parser.add_argument("--watch", type=int, default=3, help="builds whose live log is timed (3)")
    parser.add_argument("--cpu-window", type=float, default=30.0, help="seconds of the CPU window (30)")
    parser.add_argument("--log-window", type=float, default=20.0, help="seconds of live-log timing (20)")
    parser.add_argument(
        "--log-poll", type=float, default=0.2, help="seconds between reads of a live log (0.2)"
    )
    parser.add_argument("--probe-every", type=float, default=1.0, help="seconds between probe tasks (1)")
    parser.add_argument(
        "--build-seconds",
        type=int,
        default=None,
        help="how long the builds print once all run (default: the windows + 12 s per SSH run + 20)",
    )
    parser.add_argument(
        "--ramp-seconds", type=float, default=None, help="time allowed for N builds to start (30 + 3 × N)"
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="bound of one SSH run (60)")
    parser.add_argument(
        "--server",
        choices=["auto", "runserver", "gunicorn"],
        default="auto",
        help="web server: gunicorn when importable (auto), else runserver",
    )
    parser.add_argument("--web-workers", type=int, default=2, help="gunicorn workers (2)")
    parser.add_argument(
        "--database-url", default=DEFAULT_DATABASE, help="scratch database, dropped and created"
    )
    args = parser.parse_args()
    try:
        args.loads = [int(part) for part in args.loads.split(",") if part.strip()]
    except ValueError:
        parser.error("--loads takes whole numbers, e.g. 10,25,50")
    if any(n < 1 or n > 500 for n in args.loads):
        parser.error("each load is 1 to 500 builds")
    if args.runs < 1 or args.warm < 1 or args.watch < 1:
        parser.error("--runs, --warm and --watch are at least 1")
    if args.build_seconds is None:
        args.build_seconds = int(args.cpu_window + args.log_window + 12 * args.runs + 20)
    if args.server == "auto":
        import importlib.util

        args.server = "gunicorn" if importlib.util.find_spec("gunicorn") else "runserver"
    return args


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def recreate_database(url: str) -> None:
    import psycopg
    from psycopg import sql

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    if not name.startswith("coprssh_"):
        raise SystemExit(f"farm: the scratch database's name must start with coprssh_ (got {name!r})")
    server = urlunsplit((parts.scheme, parts.netloc, "/postgres", "", ""))
    with psycopg.connect(server, autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def drop_database(url: str) -> None:
    import psycopg
    from psycopg import sql

    parts = urlsplit(url)
    server = urlunsplit((parts.scheme, parts.netloc, "/postgres", "", ""))
    with psycopg.connect(server, autocommit=True, connect_timeout=10) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(parts.path.lstrip("/")))
        )


def main() -> int:
    args = parse_args()
    if shutil.which("rpmbuild") is None or not Path("/usr/sbin/sshd").exists() or not shutil.which("ssh"):
        print("farm: needs rpmbuild, OpenSSH's sshd and the ssh client", file=sys.stderr)
        return 2
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    load_at_start = os.getloadavg()[0]
    data_dir = Path(tempfile.mkdtemp(prefix="coprssh-farm-")).resolve()
    # Isolated builders' accounts must reach their homes: not below the private (0700) data dir.
    homes_dir = Path(tempfile.mkdtemp(prefix="coprssh-farm-homes-")).resolve()
    homes_dir.chmod(0o755)

    def interrupted(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)
    service = Service(data_dir=data_dir, server=args.server, web_workers=args.web_workers, port=free_port())
    env = {
        "DATABASE_URL": args.database_url,
        "COPRSSH_DATA_DIR": str(data_dir),
        "COPRSSH_LOCAL_HOMES_DIR": str(homes_dir),
        "COPRSSH_PUBLIC_URL": service.url,
        "DJANGO_SETTINGS_MODULE": "coprssh.settings",
        "COPRSSH_TASKS_SYNC": "0",
        "LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING"),
        "SECRET_KEY": os.environ.get("SECRET_KEY", "farm-bench-scratch-key-" + os.urandom(16).hex()),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        # Plain HTTP on loopback: no redirect to HTTPS, cookies and HSTS as in development.
        "DEBUG": "0",
        "SECURE_SSL_REDIRECT": "0",
        "SESSION_COOKIE_SECURE": "0",
        "CSRF_COOKIE_SECURE": "0",
        "SECURE_HSTS_SECONDS": "0",
        # The bench's own API calls (polling an SSH builder 20 times a second) would hit the
        # per-user limit of 600 a minute; the agents' limit stays as it is.
        "COPRSSH_API_RATE_USER": "100000/min",
        "COPRSSH_STOP_GRACE": "10",
        "PYTHONUNBUFFERED": "1",
    }
    os.environ.update(env)
    os.environ.pop("COPRSSH_WORKERS", None)  # the cluster's default: 2 workers
    sys.path.insert(0, str(ROOT))
    created = False
    bench: Bench | None = None
    status = 0
    try:
        print(f"farm: scratch database {args.database_url}, data in {data_dir}", file=sys.stderr)
        recreate_database(args.database_url)
        created = True
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        # DEBUG is off: pages name the hashed static files that collectstatic writes (docs/deploy.md).
        call_command("collectstatic", interactive=False, verbosity=0)
        bench = Bench(args, service, data_dir)
        bench.setup()
        child_env = dict(os.environ)
        service.start_web(child_env)
        service.start_cluster(child_env)
        print(f"farm: web ({args.server}) at {service.url}, qcluster started", file=sys.stderr)
        bench.start_measuring()
        bench.idle()
        for n in args.loads:
            bench.load(n)
    except KeyboardInterrupt:
        print("\nfarm: interrupted; cleaning up", file=sys.stderr)
        status = 130
    except BenchError as exc:
        print(f"farm: {exc}", file=sys.stderr)
        status = 1
    except Exception:  # a bug, or the service failing in a way not foreseen: still clean up, still report
        traceback.print_exc()
        status = 1
    finally:
        # A second Ctrl-C must not leave builders behind: cleanup runs to its (bounded) end.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("farm: stopping everything…", file=sys.stderr)
        notes = machine_notes(args.database_url, service, load_at_start) if created else ""
        if bench is not None:
            bench.stop_threads()
        cleanup(service, data_dir, homes_dir)
        if created:
            reset_db()
            try:
                drop_database(args.database_url)
            except Exception as exc:
                print(f"farm: could not drop the database: {exc}", file=sys.stderr)
        if bench is not None and any(
            row.load and (row.succeeded < row.builds or row.mismatched or row.unverifiable)
            for row in bench.rows
        ):
            status = status or 1
        logs = Path(tempfile.gettempdir()) / f"coprssh-farm-{os.getpid()}-logs"
        for name in ("web.log", "qcluster.log"):
            if status and (data_dir / name).is_file():  # kept when something went wrong
                logs.mkdir(exist_ok=True)
                shutil.copy(data_dir / name, logs / name)
        shutil.rmtree(data_dir, ignore_errors=True)
        shutil.rmtree(homes_dir, ignore_errors=True)
    if logs.is_dir():
        print(f"farm: the web server's and the cluster's logs are kept in {logs}", file=sys.stderr)
    if bench is not None and bench.rows:
        print()
        print("\n".join(table(bench.rows)))
        print()
        print("\n".join(details(bench.rows)))
        print(notes)
        print("targets: " + "; ".join(targets(bench.rows)))
    return status


def cleanup(service: Service, data_dir: Path, homes_dir: Path) -> None:
    """Stop the web server and the cluster, every builder's machine, and anything left under our dirs."""
    service.stop()
    reset_db()  # an interrupt may have cut a query short
    with contextlib.suppress(Exception):
        from builders.models import Pool
        from builders.services.machines import provider_for

        for pool in Pool.objects.filter(provider=Pool.Provider.LOCAL):
            provider = provider_for(pool)
            provider.stop_timeout = 2.0
            for machine in provider.list_owned():
                with contextlib.suppress(Exception):
                    provider.delete(machine.provider_id)
    reset_db()
    killed = kill_everything_under(data_dir, homes_dir)
    if killed:
        print(f"farm: killed {killed} processes left under the scratch folders", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
