#!/usr/bin/env python3
"""Faults, measured (DESIGN §5, issue 8 part 6): each fault against a real pool and task cluster, then the tick.

    DEBUG=1 .venv/bin/python bench/faults.py            # every fault, about 10 minutes on 2 cores
    DEBUG=1 .venv/bin/python bench/faults.py --list
    DEBUG=1 .venv/bin/python bench/faults.py --only watch-kill --only sshd-idle

Everything is real: a scratch PostgreSQL database (created here, dropped at the end), a scratch
COPRSSH_DATA_DIR, a local pool of OpenSSH sshd builders, rpmbuild, and `manage.py qcluster`
subprocesses in process groups of their own, which the faults kill with SIGKILL. After each fault
this process runs the two ticks (builders.tasks.tick and builds.tasks.tick) every few seconds,
as the cluster's schedules would every minute, until the system settles or a bound passes, and
then looks for machines nobody owns, rows stuck in a transition, sshd (or build) processes of
sandboxes that no live builder has, and builds that ended without their logs or results.

Each row counts only what is new since the rows before it; the last row counts everything left
at the end. Every process started under the scratch data dir is stopped at the end, also on
Ctrl-C or an error, the database is dropped, and PostgreSQL is started again if a fault left it
stopped.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
SERVER_URL = "postgres://postgres@127.0.0.1:5432/"
ARCH = platform.machine()
# Pools of their own for the provider faults, so that the main pool keeps working meanwhile.
FLAKY_ARCH = "aarch64" if ARCH != "aarch64" else "ppc64le"
BROKEN_ARCH = "s390x"
MAIN_POOL, FLAKY_POOL, BROKEN_POOL = "faults", "flaky", "broken"
# A local pool whose sshd does not exist: the permanent error of a machine without openssh-server.
MISSING_SSHD = "/nonexistent/sbin/sshd"
USER = "faults"
# Short cycles, so that redelivery, health checks and backoff happen within the bench's time.
# A short task timeout: a killed task is redelivered after it plus 60 s (no task runs long now).
BENCH_ENV = {
    "COPRSSH_TASK_TIMEOUT": "45",  # the broker redelivers an unacknowledged task after 45 + 60 s
    "COPRSSH_HEALTH_CHECK_SECONDS": "5",
    "COPRSSH_POOL_BACKOFF_FIRST": "2",
    "COPRSSH_POOL_BACKOFF_MAX": "8",
    "COPRSSH_WORKERS": "2",
    "COPRSSH_STOP_GRACE": "5",
    # A phase whose start was cut off is started again after 2 × this + 30 s (the start claim).
    "COPRSSH_BUILDER_CALL_DEADLINE": "20",
    "COPRSSH_TASKS_SYNC": "0",
}
TICK_SECONDS = 5.0
SETTLE_SECONDS = 150.0

SPEC = """\
Name:           {name}
Version:        1.0
Release:        1
Summary:        A package for the fault bench
License:        MIT
BuildArch:      noarch

%description
Built by bench/faults.py.

%prep

%build
for i in $(seq 1 {seconds}); do echo "building step $i"; sleep 1; done
echo 'echo hi' > {name}

%install
install -D -m 0755 {name} %{{buildroot}}%{{_bindir}}/{name}

%check
{check}

%files
%{{_bindir}}/{name}
"""


def spec(name: str, *, seconds: int = 0, fails: bool = False) -> str:
    check = 'echo "check: expected 2, got 3"; false' if fails else "true"
    return SPEC.format(name=name, seconds=seconds, check=check)


# --- processes -----------------------------------------------------------------------------


def read_proc(pid: int) -> tuple[str, str, dict[str, str]] | None:
    """(state, cmdline, environ) of a process, or None when it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(errors="replace")
        state = stat[stat.rfind(")") + 2 :].split()[0]
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except (OSError, IndexError):
        return None
    if state in ("Z", "X", "x"):
        return None
    environ = {}
    for entry in raw.split(b"\0"):
        name, _, value = entry.decode(errors="replace").partition("=")
        if name:
            environ[name] = value
    return state, cmdline, environ


def pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def sshd_pids(sandbox: Path) -> list[int]:
    """The sshd processes (listener and per-connection) serving one sandbox."""
    config = str(sandbox / "sshd_config")
    found = []
    for pid in pids():
        info = read_proc(pid)
        if info is not None and config in info[1].split():
            found.append(pid)
    return found


def pgid_of(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


# --- the task cluster ------------------------------------------------------------------------


class Cluster:
    """`manage.py qcluster` in a process group of its own, so that SIGKILL reaches every worker."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0

    @property
    def pgid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def start(self, *, timeout: float = 60.0) -> float:
        """Start a cluster and wait until it runs a task; return how long that took."""
        from django.db import close_old_connections
        from django_q.models import Task
        from django_q.tasks import async_task

        self.started += 1
        log = open(self.log_dir / f"qcluster-{self.started}.log", "wb")  # noqa: SIM115 - the child keeps it
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "qcluster"],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        task_id = async_task("math.floor", 1.5)
        while time.monotonic() - t0 < timeout:
            close_old_connections()
            if Task.objects.filter(id=task_id).exists():
                return time.monotonic() - t0
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError(f"qcluster did not run a task within {timeout:.0f} s; see {log.name}")

    def kill(self) -> None:
        """SIGKILL the whole process group (sentinel, pusher, workers, monitor)."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        self.proc = None

    def stop(self, *, timeout: float = 30.0) -> None:
        """SIGTERM, then SIGKILL for whatever of the group is left after `timeout`."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=timeout)
        self.kill()


# --- PostgreSQL --------------------------------------------------------------------------------


def pg_cluster() -> tuple[str, str]:
    versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    return (versions[-1] if versions else ""), "main"


def pg_ctl(action: str, *, timeout: float = 90.0) -> subprocess.CompletedProcess[str]:
    version, name = pg_cluster()
    return subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, name, action],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def pg_up(url: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def server_and_name(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    return urlunsplit((parts.scheme, parts.netloc, "/postgres", "", "")), name


def create_database(url: str) -> None:
    import psycopg
    from psycopg import sql

    server, name = server_and_name(url)
    with psycopg.connect(server, autocommit=True, connect_timeout=10) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            raise SystemExit(f"faults: database {name} exists; give a scratch name that does not")
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def drop_database(url: str) -> None:
    import psycopg
    from psycopg import sql

    server, name = server_and_name(url)
    with psycopg.connect(server, autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


# --- what is wrong after a fault ----------------------------------------------------------------

Item = tuple[str, ...]  # ("stuck", "builder", "12", "provisioning"), … : hashable, printable


@dataclass
class Findings:
    orphans: set[Item] = field(default_factory=set)
    stuck: set[Item] = field(default_factory=set)
    leaked: set[Item] = field(default_factory=set)
    lost: set[Item] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)

    def all(self) -> set[Item]:
        return self.orphans | self.stuck | self.leaked | self.lost

    def minus(self, seen: set[Item]) -> Findings:
        return Findings(
            self.orphans - seen, self.stuck - seen, self.leaked - seen, self.lost - seen, list(self.notes)
        )


def survey(data_dir: Path, homes_dir: Path, cluster_pgids: set[int]) -> Findings:
    """Orphans, stuck rows, leaked processes and lost data, as the database and /proc show them now."""
    from django.db.models import Q
    from django.utils import timezone

    from builders.models import Builder, Lease, Pool
    from builders.providers.base import ProviderError
    from builders.services.machines import BUILDER_ID_KEY, provider_for
    from builds import storage
    from builds.models import FINAL_STATES, Build, BuildChroot, SrpmPhase, State

    found = Findings()
    now = timezone.now()
    alive = Builder.objects.alive()
    roots: dict[Path, Any] = {}
    for pool in Pool.objects.filter(provider=Pool.Provider.LOCAL):
        provider = provider_for(pool)
        roots[provider.root_dir] = pool
        try:
            machines = provider.list_owned()
        except ProviderError as exc:
            found.notes.append(f"pool {pool.name}: cannot list machines: {exc.message}")
            continue
        mine = alive.filter(pool=pool)
        for machine in machines:
            owner = mine.filter(provider_id=machine.provider_id).exists() or (
                machine.metadata.get(BUILDER_ID_KEY, "").isdigit()
                and mine.filter(
                    pk=int(machine.metadata[BUILDER_ID_KEY]), state=Builder.State.PROVISIONING, provider_id=""
                ).exists()
            )
            if not owner:
                found.orphans.add(("orphan", pool.name, machine.provider_id))
        listed = {machine.provider_id for machine in machines}
        with contextlib.suppress(OSError):
            for entry in provider.root_dir.iterdir():
                # A half-made machine that list_owned() cannot see is never deleted by anyone.
                if entry.name not in listed and not mine.filter(provider_id=entry.name).exists():
                    found.orphans.add(("orphan", pool.name, entry.name, "sandbox dir without machine.json"))

    # Rows stuck in a transition: nothing is in flight once the system has settled.
    for builder in Builder.objects.filter(
        state__in=[Builder.State.PROVISIONING, Builder.State.TERMINATING]
    ).values("pk", "state"):
        found.stuck.add(("stuck", "builder", str(builder["pk"]), builder["state"]))
    open_leases = Lease.objects.open()
    for builder_id in (
        Builder.objects.filter(state=Builder.State.LEASED)
        .exclude(pk__in=open_leases.exclude(builder=None).values("builder_id"))
        .values_list("pk", flat=True)
    ):
        found.stuck.add(("stuck", "builder", str(builder_id), "leased without an open lease"))
    for lease in Lease.objects.filter(
        Q(state=Lease.State.ASSIGNED) | Q(state=Lease.State.ACTIVE, expires_at__lt=now)
    ).values("pk", "state"):
        found.stuck.add(("stuck", "lease", str(lease["pk"]), lease["state"]))
    for model, kind in ((SrpmPhase, "srpm"), (BuildChroot, "rpm")):
        phases = model.objects.select_related("lease")
        for phase in phases.filter(state=State.STARTING):
            found.stuck.add(("stuck", kind, str(phase.pk), "starting"))
        for phase in phases.filter(state=State.RUNNING).exclude(lease__state__in=Lease.SLOT_STATES):
            found.stuck.add(("stuck", kind, str(phase.pk), "running without a live lease"))
        for phase in phases.filter(state=State.PENDING, lease__state=Lease.State.ENDED):
            found.stuck.add(("stuck", kind, str(phase.pk), "pending on an ended lease"))
        # A finished phase whose build lease is still held keeps a builder from everyone.
        for phase in phases.filter(state__in=FINAL_STATES, lease__ssh=False).exclude(
            lease__state=Lease.State.ENDED
        ):
            if phase.lease_id is not None:
                found.stuck.add(("stuck", "lease", str(phase.lease_id), f"open after its {kind} phase ended"))
    for build in Build.objects.exclude(state__in=FINAL_STATES).prefetch_related("build_chroots"):
        srpm = SrpmPhase.objects.filter(build=build).first()
        chroots = [bc.state for bc in build.build_chroots.all()]
        if srpm is not None and srpm.state in FINAL_STATES and all(s in FINAL_STATES for s in chroots):
            found.stuck.add(("stuck", "build", str(build.pk), f"{build.state} with every phase ended"))

    # Processes of sandboxes that no live builder has (sshd, sessions, build agents), and the
    # unprivileged accounts of isolated local builders whose machine is gone.
    live: set[str] = set()
    for provider_root, pool in roots.items():
        for name in alive.filter(pool=pool).exclude(provider_id="").values_list("provider_id", flat=True):
            live.add(name)
            live.add(account_name(provider_root / name))
    ours = our_accounts(data_dir)
    for name, sandbox in ours.items():
        if sandbox.name not in live:
            found.leaked.add(("leaked", "account", name, sandbox.name))
    uids = {pwd_uid(name): name for name in ours}
    marks = [str(data_dir), str(homes_dir)]
    me = os.getpid()
    for pid in pids():
        if pid == me or pgid_of(pid) in cluster_pgids:
            continue
        info = read_proc(pid)
        if info is None:
            continue
        _state, cmdline, environ = info
        owner = uids.get(proc_uid(pid))
        texts = [cmdline, *environ.values()]
        if owner is None and not any(mark in text for mark in marks for text in texts):
            continue
        key = owner or _sandbox_of(cmdline, environ, [*roots, homes_dir])
        if key is None:
            found.leaked.add(("leaked", str(pid), cmdline[:80].strip() or "?", "no sandbox"))
        elif key not in live:
            found.leaked.add(("leaked", str(pid), cmdline[:80].strip() or "?", key))

    # Builds that ended without what they should have kept.
    for model, kind in ((SrpmPhase, "srpm"), (BuildChroot, "rpm")):
        ran = model.objects.filter(state__in=FINAL_STATES).exclude(remote_dir="").select_related("build")
        if model is BuildChroot:
            ran = ran.select_related("chroot")
        for phase in ran:
            directory = storage.path(phase.storage_dir)
            if not (directory / storage.BACKEND_LOG).is_file():
                found.lost.add(("lost", kind, str(phase.pk), "backend.log missing"))
            live_log = directory / storage.LIVE_LOG
            size = live_log.stat().st_size if live_log.is_file() else 0
            if size < min(phase.log_size, 1):
                found.lost.add(("lost", kind, str(phase.pk), "builder-live.log missing"))
            elif phase.log_size and size < phase.log_size:
                found.lost.add(("lost", kind, str(phase.pk), f"builder-live.log {size} < {phase.log_size} B"))
            if phase.state == State.SUCCEEDED and not phase.build.ssh:
                wanted = ".src.rpm" if kind == "srpm" else ".rpm"
                if not any(p.name.endswith(wanted) for p in directory.glob("*")):
                    found.lost.add(("lost", kind, str(phase.pk), f"no {wanted} kept"))
    return found


def _sandbox_of(cmdline: str, environ: dict[str, str], roots: list[Path]) -> str | None:
    """The machine (or account) name a process belongs to, from its command line or state dir."""
    state_dir = environ.get("COPRSSH_STATE_DIR", "")
    for root in roots:
        prefix = str(root) + "/"
        for text in (state_dir + "/", cmdline):
            at = text.find(prefix)
            if at >= 0:
                name = re.split(r"[/\s]", text[at + len(prefix) :], maxsplit=1)[0]
                if name:
                    return name
    return None


# Isolated local builders (the service as root) log in as an account of their own, named after the
# sandbox and described as "coprssh local builder <sandbox>".
ACCOUNT_PREFIX = "csb-"
ACCOUNT_COMMENT = "coprssh local builder "


def account_name(sandbox: Path) -> str:
    try:
        from builders.providers import accounts
    except ImportError:  # a provider without isolation
        return ""
    return accounts.account_name(sandbox)


def our_accounts(data_dir: Path) -> dict[str, Path]:
    """Accounts made for sandboxes under the data dir: name -> sandbox."""
    import pwd

    prefix = f"{ACCOUNT_COMMENT}{data_dir}/"
    return {
        entry.pw_name: Path(entry.pw_gecos[len(ACCOUNT_COMMENT) :])
        for entry in pwd.getpwall()
        if entry.pw_name.startswith(ACCOUNT_PREFIX) and entry.pw_gecos.startswith(prefix)
    }


def pwd_uid(name: str) -> int:
    import pwd

    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        return -1


def proc_uid(pid: int) -> int:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return -1


# --- the bench ---------------------------------------------------------------------------------


@dataclass
class Row:
    number: int
    name: str
    saw: str = "?"
    settled: str = "?"
    moment: str = ""
    found: Findings = field(default_factory=Findings)
    notes: list[str] = field(default_factory=list)


class Bench:
    """The scratch world: data dir, database, pools, a user and a project, the cluster, the ticks."""

    def __init__(self, data_dir: Path, homes_dir: Path, *, settle: float) -> None:
        self.data_dir = data_dir
        self.homes_dir = homes_dir
        self.settle = settle
        self.cluster = Cluster(data_dir)
        self.ticks = 0
        self.tick_errors = 0
        self.last_tick = 0.0
        self.seen: set[Item] = set()
        self.scratch = data_dir / "bench"
        self.scratch.mkdir()

    # -- setup -------------------------------------------------------------------------------

    def setup(self) -> None:
        from django.contrib.auth import get_user_model
        from django.test import Client

        from builders.models import Pool
        from builds.models import Chroot
        from builds.services import create_project

        for arch in (ARCH, FLAKY_ARCH, BROKEN_ARCH):
            Chroot.objects.get_or_create(
                name=f"fedora-rawhide-{arch}", defaults={"os": "fedora", "version": "rawhide", "arch": arch}
            )
        Pool.objects.update(enabled=False)  # only our pools start builders
        self.pool = Pool.objects.create(
            name=MAIN_POOL,
            provider=Pool.Provider.LOCAL,
            architectures=[ARCH],
            max_builders=8,
            warm_builders=2,
            provider_settings={"root_dir": str(self.data_dir / "builders" / MAIN_POOL)},
        )
        self.user, _ = get_user_model().objects.get_or_create(username=USER)
        self.project = create_project(
            owner=self.user,
            name="faults",
            chroots=[f"fedora-rawhide-{a}" for a in (ARCH, FLAKY_ARCH, BROKEN_ARCH)],
        )
        self.api = Client(HTTP_HOST="127.0.0.1")
        self.api.force_login(self.user)
        self.key_path = self.scratch / "id_ed25519"
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "faults", "-f", str(self.key_path)],
            check=True,
            capture_output=True,
            timeout=30,
        )
        self.cluster.start()
        self.wait(lambda: self.fresh_ready() >= 2, timeout=60, what="the warm pool")
        self.original = self.submit("check-fails", fails=True)
        self.wait(lambda: self.build(self.original.pk).is_finished, timeout=120, what="the original build")
        self.original = self.build(self.original.pk)
        if self.original.state != "failed":
            raise RuntimeError(f"the original build is {self.original.state}; its %check should have failed")

    # -- helpers -------------------------------------------------------------------------------

    def submit(self, name: str, *, seconds: int = 0, fails: bool = False, arch: str = ARCH) -> Any:
        from django.core.files.uploadedfile import SimpleUploadedFile

        from builds.services import submit_build
        from builds.sources import check_upload

        upload = SimpleUploadedFile(f"{name}.spec", spec(name, seconds=seconds, fails=fails).encode())
        return submit_build(
            project=self.project,
            submitter=self.user,
            chroots=[f"fedora-rawhide-{arch}"],
            source=check_upload(upload),
            upload=upload,
        )

    def build(self, build_id: int) -> Any:
        from builds.models import Build

        return Build.objects.get(pk=build_id)

    def rpm_phase(self, build_id: int) -> Any:
        from builds.models import BuildChroot

        return BuildChroot.objects.select_related("lease__builder", "chroot").get(build_id=build_id)

    def fresh_ready(self, pool: Any = None) -> int:
        from builders.models import Builder

        return Builder.objects.filter(
            pool=pool or self.pool, state=Builder.State.READY, sandbox__isnull=True
        ).count()

    def seen_by_user(self, build_id: int) -> str:
        """The build as the API shows it to its owner: state, and each phase's state and reason."""
        try:
            response = self.api.get(f"/api/v1/builds/{build_id}/")
        except Exception as exc:  # the API itself failing is worth a row too
            build = self.build(build_id)
            return f"API raised {type(exc).__name__}: {exc}"[:120] + f"; database: build {build.state}"
        if response.status_code != 200:
            return f"API {response.status_code}; database: build {self.build(build_id).state}"
        data = response.json()
        parts = [f"build {data['state']}"]
        srpm = data.get("srpm") or {}
        if srpm.get("state") not in ("succeeded", None) or srpm.get("status_reason", "").startswith("its"):
            parts.append(
                f"srpm {srpm['state']}" + (f" ({srpm['status_reason']})" if srpm["status_reason"] else "")
            )
        for chroot in data["chroots"]:
            text = f"{chroot['name'].rsplit('-', 1)[-1]} {chroot['state']}"
            if chroot["status_reason"]:
                text += f" ({chroot['status_reason'][:110]})"
            builder = chroot.get("ssh_builder")
            if builder:
                text += f", SSH builder {builder.get('state')}"
            parts.append(text)
        return "; ".join(parts)

    def tick(self) -> None:
        """Both ticks, as the cluster's schedules run them (here every few seconds)."""
        from django.db import close_old_connections

        import builders.tasks
        import builds.tasks

        self.last_tick = time.monotonic()
        for func in (builders.tasks.tick, builds.tasks.tick):
            close_old_connections()
            try:
                func()
            except Exception as exc:  # a fault may take the database away for a while
                self.tick_errors += 1
                print(f"faults: tick: {type(exc).__name__}: {exc}", file=sys.stderr)
                reset_db()
        self.ticks += 1

    def wait(
        self,
        until: Callable[[], bool],
        *,
        timeout: float,
        what: str,
        poll: float = 0.2,
        ticks: bool = True,
        required: bool = True,
    ) -> float | None:
        """Poll `until` (running the ticks every TICK_SECONDS); return the seconds it took, or None."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            try:
                if until():
                    return time.monotonic() - t0
            except Exception as exc:
                if not is_db_error(exc):
                    raise
                reset_db()
            if ticks and time.monotonic() - self.last_tick >= TICK_SECONDS:
                self.tick()
            time.sleep(poll)
        if required:
            raise RuntimeError(f"{what} did not happen within {timeout:.0f} s")
        return None

    def settle_row(self, row: Row, target: Callable[[], bool], *, started: float, timeout: float) -> None:
        """Wait for the fault's outcome and for nothing new to be wrong, then record what is."""
        ticks0 = self.ticks

        def settled() -> bool:
            return target() and not self.findings().minus(self.seen).all()

        took = self.wait(settled, timeout=timeout, what=row.name, poll=1.0, required=False)
        if took is None:
            row.settled = f"NOT in {time.monotonic() - started:.0f} s"
        else:
            row.settled = f"{time.monotonic() - started:.0f} s, {self.ticks - ticks0} ticks"
        self.record(row)

    def findings(self) -> Findings:
        return survey(self.data_dir, self.homes_dir, {pgid for pgid in [self.cluster.pgid] if pgid})

    def record(self, row: Row) -> None:
        found = self.wait_value(self.findings)
        row.found = found.minus(self.seen)
        self.seen |= row.found.all()

    def wait_value(self, func: Callable[[], Any], timeout: float = 60.0) -> Any:
        t0 = time.monotonic()
        while True:
            try:
                return func()
            except Exception as exc:
                if not is_db_error(exc) or time.monotonic() - t0 > timeout:
                    raise
                reset_db()
                time.sleep(0.5)

    def known_hosts(self, builder: Any) -> Path:
        key_type, blob = builder.host_key.split()[:2]
        path = self.scratch / f"known_hosts-{builder.pk}"
        path.write_text(f"[{builder.host}]:{builder.port} {key_type} {blob}\n")
        return path

    def ssh_as_service(self, builder: Any, command: str) -> subprocess.CompletedProcess[str]:
        """Run a command on a builder with the service's admin key and the pinned host key."""
        from django.conf import settings

        argv = [
            "ssh",
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            f"UserKnownHostsFile={self.known_hosts(builder)}",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "ConnectTimeout=5",
            "-i",
            str(settings.COPRSSH_ADMIN_KEY_FILE),
            "-p",
            str(builder.port),
            f"{builder.login_user}@{builder.host}",
            command,
        ]
        return subprocess.run(
            argv, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL, check=False
        )

    def sandbox(self, builder: Any) -> Path:
        from builders.services.machines import provider_for

        return provider_for(builder.pool).root_dir / builder.provider_id

    def kill_cluster_and_restart(self, row: Row) -> None:
        self.cluster.kill()
        took = self.cluster.start()
        row.notes.append(f"new qcluster running tasks {took:.1f} s after the kill")

    # -- cleanup -------------------------------------------------------------------------------

    def cleanup(self) -> None:
        """Stop the cluster, every machine of every pool, and any process left under the data dir."""
        self.cluster.stop(timeout=15)
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
        kill_everything_under(self.data_dir, self.homes_dir)


def kill_everything_under(data_dir: Path, homes_dir: Path) -> int:
    """SIGKILL every process that names either scratch dir or runs as one of our accounts; remove those."""
    marks = [str(data_dir), str(homes_dir)]
    accounts = our_accounts(data_dir)
    uids = {pwd_uid(name) for name in accounts} - {-1}
    killed = 0
    for _ in range(3):
        victims = []
        for pid in pids():
            if pid == os.getpid():
                continue
            info = read_proc(pid)
            texts = [info[1], *info[2].values()] if info is not None else []
            if info is not None and (proc_uid(pid) in uids or any(m in t for m in marks for t in texts)):
                victims.append(pid)
        if not victims:
            break
        for pid in victims:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
                killed += 1
        time.sleep(0.3)
    for name in accounts:
        subprocess.run(["userdel", name], capture_output=True, timeout=30, check=False)
    return killed


def is_db_error(exc: BaseException) -> bool:
    from django.db import Error

    return isinstance(exc, Error)


def reset_db() -> None:
    from django.db import connections

    for conn in connections.all():
        with contextlib.suppress(Exception):
            conn.close()


# --- the faults ----------------------------------------------------------------------------------


def fault_provisioning_kill(b: Bench, row: Row) -> None:
    from builders.models import Builder
    from builders.services import ensure_capacity
    from builders.services.machines import provider_for

    t0 = time.monotonic()
    before = set(Builder.objects.values_list("pk", flat=True))
    # One more warm builder: the next provision_builder task runs in the cluster.
    type(b.pool).objects.filter(pk=b.pool.pk).update(warm_builders=3)
    b.pool.refresh_from_db()
    ensure_capacity()
    new = Builder.objects.exclude(pk__in=before).filter(pool=b.pool).order_by("pk").first()
    assert new is not None, "ensure_capacity started no builder"
    root = provider_for(b.pool).root_dir
    box = root / f"coprssh-{new.name}"
    # Killed as soon as the worker has made the machine's sandbox dir (create in progress).
    b.wait(lambda: box.is_dir(), timeout=30, what="the sandbox dir", poll=0.002, ticks=False)
    b.cluster.kill()
    killed_at = time.monotonic()
    new.refresh_from_db()
    files = sorted(p.name for p in box.iterdir()) if box.is_dir() else []
    row.moment = (
        f"the tight loop (2 ms) saw builder #{new.pk}'s sandbox dir appear, then SIGKILL; at the kill the row was "
        f"{new.state} (attempt {new.attempts}), the dir held {', '.join(files) or 'nothing'}, "
        f"sshd running: {bool(sshd_pids(box))}"
    )
    b.kill_cluster_and_restart(row)

    def back() -> bool:
        current = Builder.objects.get(pk=new.pk)
        return (
            current.state not in (Builder.State.PROVISIONING,)
            and b.fresh_ready() >= 3
            and not Builder.objects.filter(pool=b.pool, state=Builder.State.PROVISIONING).exists()
        )

    b.settle_row(row, back, started=killed_at, timeout=b.settle)
    new.refresh_from_db()
    row.saw = (
        f"builder #{new.pk} {new.state} after attempt {new.attempts}"
        + (f" ({new.last_error[:80]})" if new.last_error else "")
        + f"; pool warm again ({b.fresh_ready()} fresh ready) {time.monotonic() - t0:.0f} s after the request"
    )
    type(b.pool).objects.filter(pk=b.pool.pk).update(warm_builders=2)
    b.pool.refresh_from_db()


def fault_deploy_kill(b: Bench, row: Row) -> None:
    from builders.models import AuditEvent, Lease
    from builds.models import BuildChroot
    from builds.services import resubmit_with_ssh
    from keys.parser import parse_keys

    keys = parse_keys(Path(f"{b.key_path}.pub").read_text().strip()).keys
    build = resubmit_with_ssh(build=b.original, user=b.user, keys=keys)
    t0 = time.monotonic()
    phase = BuildChroot.objects.get(build=build)

    def deploying() -> bool:
        lease = Lease.objects.get(pk=phase.lease_id)
        return (
            lease.state == Lease.State.ACTIVE
            and not AuditEvent.objects.filter(
                lease_id=lease.pk, action=AuditEvent.Action.KEYS_DEPLOYED
            ).exists()
        )

    b.wait(deploying, timeout=60, what="the key deploy", poll=0.003, ticks=True)
    b.cluster.kill()
    killed_at = time.monotonic()
    lease = Lease.objects.get(pk=phase.lease_id)
    deployed = AuditEvent.objects.filter(lease_id=lease.pk, action=AuditEvent.Action.KEYS_DEPLOYED).exists()
    phase.refresh_from_db()
    row.moment = (
        f"the tight loop (3 ms) saw the SSH lease #{lease.pk} active with no keys-deployed event yet "
        f"(phase_ready is inside deploy_ssh_access), then SIGKILL {killed_at - t0:.2f} s after the resubmit; "
        f"at the kill: phase {phase.state}, keys deployed: {deployed}"
    )
    b.kill_cluster_and_restart(row)
    b.settle_row(row, lambda: b.build(build.pk).is_finished, started=killed_at, timeout=b.settle)
    lease.refresh_from_db()
    row.saw = (
        f"SSH resubmit #{build.pk}: {b.seen_by_user(build.pk)}; lease {lease.state}"
        + (f" ({lease.end_reason})" if lease.end_reason else "")
        + f", keys deployed: {AuditEvent.objects.filter(lease_id=lease.pk, action='keys-deployed').exists()}"
    )


def fault_watch_kill(b: Bench, row: Row) -> None:
    from builds.models import State

    build = b.submit("watched", seconds=25)
    t0 = time.monotonic()

    def watched() -> bool:
        phase = b.rpm_phase(build.pk)
        return phase.state == State.RUNNING and phase.log_size > 0

    b.wait(watched, timeout=90, what="a running RPM phase with live log", poll=0.05)
    b.cluster.kill()
    killed_at = time.monotonic()
    phase = b.rpm_phase(build.pk)
    row.moment = (
        f"polled (50 ms) until the RPM phase was running and its agent had reported {phase.log_size} B of live "
        f"log, then SIGKILL ({killed_at - t0:.1f} s after submit, mid-way through a 25 s build)"
    )
    b.kill_cluster_and_restart(row)
    b.settle_row(row, lambda: b.build(build.pk).is_finished, started=killed_at, timeout=b.settle)
    phase = b.rpm_phase(build.pk)
    row.saw = f"#{build.pk}: {b.seen_by_user(build.pk)}; live log {phase.log_size} B; done {time.monotonic() - t0:.0f} s after submit"


def fault_terminate_kill(b: Bench, row: Row) -> None:
    from builders.models import Builder
    from builders.services import Via, terminate_builder

    b.wait(lambda: b.fresh_ready() >= 1, timeout=60, what="a ready builder")
    builder = Builder.objects.filter(pool=b.pool, state=Builder.State.READY, sandbox__isnull=True).first()
    box = b.sandbox(builder)
    # A session that ignores SIGTERM keeps the provider's delete waiting (its stop timeout) before it
    # uses SIGKILL: the moment the worker is certainly inside the delete.
    spawn = b.ssh_as_service(
        builder, "setsid sh -c 'trap \"\" TERM; exec sleep 600' </dev/null >/dev/null 2>&1 &"
    )
    if spawn.returncode != 0:
        raise RuntimeError(f"could not start a session on {builder}: {spawn.stderr.strip()}")
    listeners = sshd_pids(box)
    t0 = time.monotonic()
    terminate_builder(builder_id=builder.pk, via=Via(source="admin"))

    def deleting() -> bool:
        return not any(pid in sshd_pids(box) for pid in listeners) and box.is_dir()

    b.wait(deleting, timeout=60, what="the delete", poll=0.002, ticks=False)
    b.cluster.kill()
    killed_at = time.monotonic()
    builder.refresh_from_db()
    row.moment = (
        f"a session that ignores SIGTERM was started on builder #{builder.pk}; terminate_builder(); the tight "
        f"loop (2 ms) saw its sshd gone while the sandbox still existed (the worker waiting for the session to "
        f"die), then SIGKILL {killed_at - t0:.2f} s after the terminate; row {builder.state} at the kill"
    )
    b.kill_cluster_and_restart(row)

    def gone() -> bool:
        return Builder.objects.get(pk=builder.pk).state == Builder.State.TERMINATED and not box.exists()

    b.settle_row(row, gone, started=killed_at, timeout=b.settle)
    builder.refresh_from_db()
    row.saw = f"operator: builder #{builder.pk} {builder.state}, sandbox {'still there' if box.exists() else 'removed'}"


class SshdDuringBuild:
    """A builder's sshd killed while its build runs; settles only once the watcher gives up (5 min)."""

    def start(self, b: Bench, row: Row) -> None:
        from builds.models import State

        self.build = b.submit("sshd-dies", seconds=30)
        self.t0 = time.monotonic()

        def running() -> bool:
            phase = b.rpm_phase(self.build.pk)
            return phase.state == State.RUNNING and phase.log_size > 0

        b.wait(running, timeout=90, what="the RPM phase running", poll=0.1)
        phase = b.rpm_phase(self.build.pk)
        self.builder = phase.lease.builder
        box = b.sandbox(self.builder)
        victims = sshd_pids(box)
        for pid in victims:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        self.killed_at = time.monotonic()
        row.moment = (
            f"polled (100 ms) until the RPM phase ran and had live log, then SIGKILL to the {len(victims)} sshd "
            f"process(es) of builder #{self.builder.pk} (the build agent itself goes on)"
        )

    def finish(self, b: Bench, row: Row, *, timeout: float) -> None:
        b.settle_row(row, lambda: b.build(self.build.pk).is_finished, started=self.killed_at, timeout=timeout)
        self.builder.refresh_from_db()
        row.saw = (
            f"#{self.build.pk}: {b.seen_by_user(self.build.pk)}, {time.monotonic() - self.killed_at:.0f} s after "
            f"the kill; builder #{self.builder.pk} {self.builder.state}"
        )


def fault_sshd_idle(b: Bench, row: Row) -> None:
    from builders.models import Builder

    b.wait(lambda: b.fresh_ready() >= 2, timeout=90, what="two fresh ready builders")
    builder = Builder.objects.filter(pool=b.pool, state=Builder.State.READY, sandbox__isnull=True).first()
    box = b.sandbox(builder)
    before = set(Builder.objects.values_list("pk", flat=True))
    for pid in sshd_pids(box):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()
    ticks0 = b.ticks
    row.moment = (
        f"SIGKILL to the sshd of ready builder #{builder.pk}, idle; the ticks run every {TICK_SECONDS:.0f} s"
    )
    noticed: list[int] = []

    def replaced() -> bool:
        current = Builder.objects.get(pk=builder.pk)
        if current.state != Builder.State.READY and not noticed:
            noticed.append(b.ticks - ticks0)
        new = Builder.objects.exclude(pk__in=before).filter(pool=b.pool, state=Builder.State.READY)
        return current.state == Builder.State.TERMINATED and new.exists() and b.fresh_ready() >= 2

    b.settle_row(row, replaced, started=killed_at, timeout=b.settle)
    builder.refresh_from_db()
    new = Builder.objects.exclude(pk__in=before).filter(pool=b.pool).order_by("pk").first()
    row.saw = (
        f"builder #{builder.pk} {builder.state} ({builder.last_error[:60]}); noticed at tick "
        f"{noticed[0] if noticed else '?'} after the kill; replacement #{new.pk if new else '?'} "
        f"{new.state if new else ''}, pool warm again at tick {b.ticks - ticks0}"
    )


def fault_provider_transient(b: Bench, row: Row) -> None:
    from builders.models import Builder, Pool

    parent = b.data_dir / "flaky-parent"
    parent.write_text("a file where the pool's root dir's parent should be: mkdir fails\n")
    pool = Pool.objects.create(
        name=FLAKY_POOL,
        provider=Pool.Provider.LOCAL,
        architectures=[FLAKY_ARCH],
        max_builders=2,
        warm_builders=0,
        provider_settings={"root_dir": str(parent / "pool")},
    )
    build = b.submit("flaky", arch=FLAKY_ARCH)
    t0 = time.monotonic()
    reasons: list[str] = []

    def failed_three_times() -> bool:
        current = Pool.objects.get(pk=pool.pk)
        reason = b.rpm_phase(build.pk).reason
        if reason and reason not in reasons:
            reasons.append(reason)
        return current.consecutive_failures >= 3

    b.wait(failed_three_times, timeout=120, what="three failed creates", poll=0.05)
    failures = Pool.objects.get(pk=pool.pk).consecutive_failures
    seen_reason = b.seen_by_user(build.pk)
    parent.unlink()
    parent.mkdir()
    fixed_at = time.monotonic()
    row.moment = (
        f"pool {FLAKY_POOL}'s root_dir below a regular file (mkdir fails, a transient ProviderError); polled until "
        f"{failures} consecutive failures ({fixed_at - t0:.0f} s), then made the parent a directory"
    )
    b.settle_row(row, lambda: b.build(build.pk).is_finished, started=fixed_at, timeout=b.settle)
    pool.refresh_from_db()
    creates = sum(Builder.objects.filter(pool=pool).values_list("attempts", flat=True))
    row.saw = (
        f"#{build.pk} while failing: {seen_reason[:200]} | then {b.seen_by_user(build.pk)}; pool "
        f"{'healthy' if not pool.consecutive_failures else 'still failing'}, {creates} create calls in all"
    )
    Pool.objects.filter(pk=pool.pk).update(enabled=False)


def fault_provider_permanent(b: Bench, row: Row) -> None:
    from builders.models import AuditEvent, Builder, Pool
    from builders.services import Via, resume_pool

    root = str(b.data_dir / "builders" / BROKEN_POOL)
    pool = Pool.objects.create(
        name=BROKEN_POOL,
        provider=Pool.Provider.LOCAL,
        architectures=[BROKEN_ARCH],
        max_builders=2,
        warm_builders=1,
        provider_settings={"root_dir": root, "sshd_path": MISSING_SSHD},
    )
    build = b.submit("broken", arch=BROKEN_ARCH)
    took = b.wait(lambda: Pool.objects.get(pk=pool.pk).paused_at is not None, timeout=60, what="the pause")
    # Demand stays (a waiting build, a warm builder wanted): nothing more may be created meanwhile.
    b.wait(lambda: False, timeout=4 * TICK_SECONDS, what="ticks while paused", required=False)
    paused_at = Pool.objects.get(pk=pool.pk).paused_at
    attempts = list(Builder.objects.filter(pool=pool).values_list("attempts", flat=True))
    creates = sum(attempts)
    seen_reason = b.seen_by_user(build.pk)
    # The operator installs sshd (here: points the pool at the real one) and resumes the pool.
    Pool.objects.filter(pk=pool.pk).update(provider_settings={"root_dir": root})
    resume_pool(pool_id=pool.pk, via=Via(source="admin"))
    resumed_at = time.monotonic()
    row.moment = (
        f"a local pool whose sshd_path is {MISSING_SSHD} (a machine without openssh-server: a permanent "
        f"ProviderError); paused {took:.1f} s after the submit (at {paused_at:%H:%M:%S}), watched for 4 more "
        "ticks, then sshd_path fixed and resume_pool()"
    )
    b.settle_row(row, lambda: b.build(build.pk).is_finished, started=resumed_at, timeout=b.settle)
    events = AuditEvent.objects.filter(action__in=["pool-paused", "pool-resumed"]).count()
    row.saw = (
        f"#{build.pk} while paused: {seen_reason[:200]} | {len(attempts)} builders, {creates} create calls "
        f"(max_builders {pool.max_builders}) before the resume; then {b.seen_by_user(build.pk)}; "
        f"{events} pause/resume audit events"
    )
    Pool.objects.filter(pk=pool.pk).update(enabled=False)


def fault_postgres_restart(b: Bench, row: Row) -> None:
    from builds.models import State

    build = b.submit("pg-restart", seconds=20)
    t0 = time.monotonic()

    def watched() -> bool:
        phase = b.rpm_phase(build.pk)
        return phase.state == State.RUNNING and phase.log_size > 0

    b.wait(watched, timeout=90, what="the RPM phase running", poll=0.1)
    restart_at = time.monotonic()
    done = pg_ctl("restart")
    reset_db()
    up = b.wait(
        lambda: pg_up(b.database_url), timeout=60, what="PostgreSQL back", ticks=False, required=False
    )
    row.moment = (
        f"polled (100 ms) until the RPM phase ran ({restart_at - t0:.0f} s after submit), then "
        f"pg_ctlcluster restart (exit {done.returncode}, {time.monotonic() - restart_at:.1f} s); "
        f"accepting connections again: {up is not None}"
    )
    alive = b.cluster.proc is not None and b.cluster.proc.poll() is None
    row.notes.append(f"qcluster still running after the restart: {alive}")
    b.settle_row(row, lambda: b.build(build.pk).is_finished, started=restart_at, timeout=b.settle)
    row.saw = f"#{build.pk}: {b.seen_by_user(build.pk)}; done {time.monotonic() - t0:.0f} s after submit"


FAULTS: list[tuple[str, str]] = [
    ("provisioning-kill", "qcluster SIGKILL during provisioning, new qcluster"),
    ("deploy-kill", "qcluster SIGKILL during the key deploy of an SSH resubmit"),
    ("watch-kill", "qcluster SIGKILL while a build runs (watched)"),
    ("terminate-kill", "qcluster SIGKILL during terminate (builder deleted)"),
    ("sshd-build", "builder's sshd killed during a build"),
    ("sshd-idle", "builder's sshd killed while idle (ready)"),
    ("provider-transient", "provider fails 3x, then recovers"),
    ("provider-permanent", "provider fails permanently, then resume_pool"),
    ("postgres-restart", "PostgreSQL restarted during a build"),
]
RUNNERS = {
    "provisioning-kill": fault_provisioning_kill,
    "deploy-kill": fault_deploy_kill,
    "watch-kill": fault_watch_kill,
    "terminate-kill": fault_terminate_kill,
    "sshd-idle": fault_sshd_idle,
    "provider-transient": fault_provider_transient,
    "provider-permanent": fault_provider_permanent,
    "postgres-restart": fault_postgres_restart,
}
SSHD_BUILD_TIMEOUT = 480.0  # the watchdog gives an unreachable builder 5 minutes (UNREACHABLE_LIMIT)


def run_faults(b: Bench, names: list[str]) -> list[Row]:
    rows = {name: Row(number=i + 1, name=name) for i, (name, _title) in enumerate(FAULTS) if name in names}
    background = None
    if "sshd-build" in rows:
        # It takes the watcher's 5-minute limit to settle: it runs while the others do.
        background = SshdDuringBuild()
        print("faults: sshd-build (in the background)…", file=sys.stderr)
        guarded(b, rows["sshd-build"], lambda row: background.start(b, row))
    for name, _title in FAULTS:
        if name not in rows or name == "sshd-build":
            continue
        if name == "postgres-restart" and background is not None:
            finish_background(b, rows["sshd-build"], background)
            background = None
        print(f"faults: {name}…", file=sys.stderr)
        guarded(b, rows[name], lambda row, name=name: RUNNERS[name](b, row))
    if background is not None:
        finish_background(b, rows["sshd-build"], background)
    return [rows[name] for name, _ in FAULTS if name in rows]


def finish_background(b: Bench, row: Row, fault: SshdDuringBuild) -> None:
    if not hasattr(fault, "killed_at"):
        return
    print("faults: sshd-build (waiting for it to settle)…", file=sys.stderr)
    left = SSHD_BUILD_TIMEOUT - (time.monotonic() - fault.killed_at)
    guarded(b, row, lambda r: fault.finish(b, r, timeout=max(left, 10)))


def guarded(b: Bench, row: Row, func: Callable[[Row], None]) -> None:
    """Run one fault; an error in the bench is reported in its row, and the cluster is brought back."""
    try:
        func(row)
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        row.saw = f"BENCH ERROR {type(exc).__name__}: {exc}"[:300]
        reset_db()
        if b.cluster.pgid is None:
            with contextlib.suppress(Exception):
                b.cluster.start()
        with contextlib.suppress(Exception):
            b.record(row)


# --- output ---------------------------------------------------------------------------------------


def header(database_url: str) -> list[str]:
    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    version = "?"
    with contextlib.suppress(Exception):
        import psycopg

        with psycopg.connect(database_url, connect_timeout=5) as conn:
            version = conn.execute("SHOW server_version").fetchone()[0]
    sshd = subprocess.run(
        ["/usr/sbin/sshd", "-V"], capture_output=True, text=True, check=False
    ).stderr.strip()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return [
        f"date: {datetime.now().astimezone():%Y-%m-%d %H:%M:%S %Z}",
        f"machine: {platform.node()}, {os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {model}, "
        f"load {load}",
        f"software: PostgreSQL {version}, {sshd.splitlines()[0] if sshd else 'sshd ?'}, Python "
        f"{platform.python_version()}",
        "settings: "
        + ", ".join(f"{k}={v}" for k, v in BENCH_ENV.items() if k != "COPRSSH_TASKS_SYNC")
        + f"; ticks run by the bench every {TICK_SECONDS:.0f} s",
    ]


def table(rows: list[Row], end: Row | None) -> list[str]:
    lines = []
    head = f"{'#':>2} {'fault':<19} {'orphans':>7} {'stuck':>5} {'leaked':>6} {'lost':>4}  {'settled':<18} what the user saw"
    lines.append(head)
    lines.append("-" * len(head))
    for row in [*rows, *([end] if end else [])]:
        f = row.found
        lines.append(
            f"{row.number if row.number else '':>2} {row.name:<19} {len(f.orphans):>7} {len(f.stuck):>5} "
            f"{len(f.leaked):>6} {len(f.lost):>4}  {row.settled:<18} {row.saw}"
        )
    return lines


def details(rows: list[Row], end: Row | None) -> list[str]:
    lines = []
    for row in [*rows, *([end] if end else [])]:
        lines.append(f"{row.number or '-'}. {row.name}")
        if row.moment:
            lines.append(f"   moment: {row.moment}")
        for note in [*row.notes, *row.found.notes]:
            lines.append(f"   note: {note}")
        for item in sorted(row.found.all()):
            lines.append("   " + " ".join(item))
    return lines


# --- main -------------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--list", action="store_true", help="list the faults and exit")
    parser.add_argument("--only", action="append", metavar="NAME", help="run this fault only (repeatable)")
    parser.add_argument(
        "--database-url",
        default=None,
        help=f"a scratch database to create and drop (default {SERVER_URL}coprssh_faults_<pid>; must not exist)",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=SETTLE_SECONDS,
        help=f"bound per fault in seconds ({SETTLE_SECONDS:.0f})",
    )
    args = parser.parse_args()
    known = [name for name, _ in FAULTS]
    for name in args.only or []:
        if name not in known:
            parser.error(f"unknown fault {name!r}; --list shows them")
    return args


def main() -> int:
    args = parse_args()
    if args.list:
        for i, (name, title) in enumerate(FAULTS, 1):
            print(f"{i}. {name:<19} {title}")
        return 0
    if shutil.which("rpmbuild") is None or not Path("/usr/sbin/sshd").exists() or not shutil.which("ssh"):
        print("faults: needs rpmbuild, OpenSSH's sshd and the ssh client", file=sys.stderr)
        return 2
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    names = args.only or [name for name, _ in FAULTS]
    database_url = args.database_url or f"{SERVER_URL}coprssh_faults_{os.getpid()}"
    data_dir = Path(tempfile.mkdtemp(prefix="coprssh-faults-")).resolve()
    # Isolated builders' accounts must reach their homes: not below the private (0700) data dir.
    homes_dir = Path(tempfile.mkdtemp(prefix="coprssh-faults-homes-")).resolve()
    homes_dir.chmod(0o755)

    def interrupted(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)
    os.environ.update(BENCH_ENV)
    os.environ.update(
        {
            "DATABASE_URL": database_url,
            "COPRSSH_DATA_DIR": str(data_dir),
            "COPRSSH_LOCAL_HOMES_DIR": str(homes_dir),
            "DJANGO_SETTINGS_MODULE": "coprssh.settings",
            "LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING"),
        }
    )
    os.environ.setdefault("DEBUG", "1")
    os.environ.setdefault("SECRET_KEY", "faults-bench-scratch-key")
    sys.path.insert(0, str(ROOT))
    t_start = time.monotonic()
    print("\n".join(header(f"{SERVER_URL}postgres")))
    pg_was_up = pg_up(f"{SERVER_URL}postgres")
    if not pg_was_up:
        print("faults: PostgreSQL is not answering on 127.0.0.1:5432", file=sys.stderr)
        return 2
    created = False
    bench: Bench | None = None
    rows: list[Row] = []
    end: Row | None = None
    try:
        create_database(database_url)
        created = True
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        from serve import serve_api  # bench/serve.py, beside this script

        # The agents report to this process; the clusters started below write its URL into each job.
        os.environ["COPRSSH_PUBLIC_URL"] = serve_api()
        bench = Bench(data_dir, homes_dir, settle=args.settle)
        bench.database_url = database_url  # type: ignore[attr-defined]
        print("faults: setting up (warm pool, a first build that fails its %check)…", file=sys.stderr)
        bench.setup()
        rows = run_faults(bench, names)
        end = Row(number=0, name="(end of run)", saw="all that is still wrong at the end, new or not")
        bench.wait(lambda: False, timeout=2 * TICK_SECONDS, what="last ticks", required=False)
        end.found = bench.wait_value(bench.findings)
        end.settled = f"total {time.monotonic() - t_start:.0f} s"
    except KeyboardInterrupt:
        print("\nfaults: interrupted; cleaning up", file=sys.stderr)
    finally:
        if not pg_up(f"{SERVER_URL}postgres"):
            print("faults: PostgreSQL is down; starting it", file=sys.stderr)
            pg_ctl("start")
        if bench is not None:
            bench.cleanup()
        else:
            kill_everything_under(data_dir, homes_dir)
        if created:
            reset_db()
            try:
                drop_database(database_url)
            except Exception as exc:
                print(f"faults: could not drop the database: {exc}", file=sys.stderr)
        logs = Path(tempfile.gettempdir()) / f"coprssh-faults-{os.getpid()}-logs"
        for path in data_dir.glob("qcluster-*.log"):
            logs.mkdir(exist_ok=True)
            shutil.copy(path, logs / path.name)
        shutil.rmtree(data_dir, ignore_errors=True)
        shutil.rmtree(homes_dir, ignore_errors=True)
    if logs.is_dir():
        print(f"faults: the clusters' logs are kept in {logs}", file=sys.stderr)
    if rows:
        print()
        print("\n".join(table(rows, end)))
        print()
        print("\n".join(details(rows, end)))
        bad = [r for r in rows if r.found.all() or not r.settled[:1].isdigit()]
        print(
            f"\nfaults: {len(rows) - len(bad)} of {len(rows)} rows settled with 0 orphans, 0 stuck, 0 leaked, 0 lost"
        )
        return 1 if bad else 0
    return 130


if __name__ == "__main__":
    sys.exit(main())
