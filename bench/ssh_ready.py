#!/usr/bin/env python3
"""Time from "resubmit with SSH" to a working `ssh … true` on a warm local pool (DESIGN §5: median < 2 s).

    DEBUG=1 COPRSSH_DATA_DIR=$(mktemp -d) .venv/bin/python bench/ssh_ready.py --runs 10

Everything is real except the task queue: Django with the database from the environment (a SQLite
file in COPRSSH_DATA_DIR by default), a local pool of sshd builders, rpmbuild, the OpenSSH client.
Tasks are recorded instead of queued and run here, oldest first, as in tests/builds/flow.py, with
the tick's matching pass (builders.tasks.assign_leases) whenever the queue runs dry.

Each run: the warm pool is full; t0; resubmit_with_ssh(); run tasks until the SSH phase's lease is
active and its keys are deployed; `ssh … true` with the pinned host key until it succeeds; t1.
Then the build is let finish, the lease released and the builder deleted, untimed.

Use a scratch data dir (and database): the script creates a user, a project and a pool there.
Every sshd it started is stopped at the end, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

# A package that builds and then fails its %check: the usual reason to ask for SSH.
SPEC = """\
Name:           bench-check-fails
Version:        1.0
Release:        1
Summary:        A package whose %%check fails
License:        MIT
BuildArch:      noarch

%description
Builds and installs; its test suite does not pass.

%prep

%build
echo 'echo hi' > bench-check-fails

%install
install -D -m 0755 bench-check-fails %{buildroot}%{_bindir}/bench-check-fails

%check
echo "check: expected 2, got 3"
false

%files
%{_bindir}/bench-check-fails
"""

POOL = "bench"
USER = "bench"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="timed runs (default 10)")
    parser.add_argument(
        "--warm", type=int, default=2, help="warm builders kept ready (default 2, at least 2)"
    )
    parser.add_argument("--max", type=int, default=4, help="builders alive at once (default 4, at least 4)")
    parser.add_argument("--timeout", type=float, default=60.0, help="give up a run after this many seconds")
    parser.add_argument("--trace", action="store_true", help="print each task and how long it took")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.warm < 2 or args.max < 4 or args.warm > args.max:
        parser.error("keep --warm at least 2, --max at least 4, and --warm at most --max")
    return args


def setup_django() -> Path | None:
    """Django from the environment; a temporary data dir (removed at the end) when none is given."""
    made = None
    if not os.environ.get("COPRSSH_DATA_DIR"):
        made = Path(tempfile.mkdtemp(prefix="coprssh-bench-"))
        os.environ["COPRSSH_DATA_DIR"] = str(made)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "coprssh.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ["COPRSSH_TASKS_SYNC"] = "0"
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    logging.getLogger("paramiko").setLevel(logging.WARNING)
    return made


class Worker:
    """Stands in for django-q: records what the services queue and runs it here, oldest first."""

    def __init__(self, *, trace: bool = False) -> None:
        self.tasks: list[tuple[str, tuple[Any, ...]]] = []
        self.workdirs: list[str] = []
        self.trace = trace

    def record(self, func: str, *args: Any, **kwargs: Any) -> str:
        assert not kwargs, f"tasks take ids as positional arguments: {func} {kwargs}"
        self.tasks.append((func, args))
        return "bench-task"

    def run(self, until: Callable[[], bool], *, timeout: float, what: str) -> None:
        from django.utils.module_loading import import_string

        deadline = time.monotonic() + timeout
        while not until():
            if time.monotonic() > deadline:
                raise SystemExit(f"bench: {what} did not happen within {timeout:.0f} s; queued: {self.tasks}")
            func, args = self.tasks.pop(0) if self.tasks else ("builders.tasks.assign_leases", ())
            started = time.monotonic()
            import_string(func)(*args)
            if self.trace:
                print(f"  {func}{args}: {time.monotonic() - started:.3f} s", file=sys.stderr)
            if func == "builders.tasks.assign_leases" and not self.tasks:
                time.sleep(0.01)

    def install(self) -> None:
        import django_q.tasks

        from builds import runner

        django_q.tasks.async_task = self.record  # the services import it inside their functions
        from serve import serve_api  # bench/serve.py, beside this script

        serve_api()  # the agents report there, as they would to the web service
        new_workdir = runner.new_workdir

        def remember(builder: object, label: str) -> str:
            workdir = new_workdir(builder, label)
            self.workdirs.append(workdir)
            return workdir

        runner.new_workdir = remember


def new_key(directory: Path) -> tuple[Path, str]:
    path = directory / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bench", "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return path, Path(f"{path}.pub").read_text().strip()


def ssh_true(key: Path, known_hosts: Path, user: str, host: str, port: int) -> bool:
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
        f"UserKnownHostsFile={known_hosts}",
        "-o",
        "GlobalKnownHostsFile=/dev/null",
        "-o",
        "ConnectTimeout=5",
        "-i",
        str(key),
        "-p",
        str(port),
        f"{user}@{host}",
        "true",
    ]
    done = subprocess.run(argv, capture_output=True, stdin=subprocess.DEVNULL, timeout=30, check=False)
    return done.returncode == 0


def p95(values: list[float]) -> float:
    """Nearest-rank 95th percentile: with 10 runs, the slowest."""
    ordered = sorted(values)
    return ordered[max(math.ceil(0.95 * len(ordered)) - 1, 0)]


def main() -> int:
    return run(parse_args(), bench)


def run(args: argparse.Namespace, body: Callable[[argparse.Namespace, Worker, Path, Path], int]) -> int:
    """Set up Django and the in-process worker, run `body`, and leave nothing behind, even on Ctrl-C."""
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr] - progress on stderr stays in order
    if shutil.which("rpmbuild") is None or not Path("/usr/sbin/sshd").exists() or not shutil.which("ssh"):
        print("bench: needs rpmbuild, OpenSSH's sshd and the ssh client", file=sys.stderr)
        return 2
    made = setup_django()

    def interrupted(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    # Started in the background by a shell, a process inherits SIGINT ignored; Ctrl-C must still stop it.
    signal.signal(signal.SIGINT, interrupted)
    worker = Worker(trace=args.trace)
    worker.install()
    from django.conf import settings

    root = Path(settings.DATA_DIR) / "bench-builders"
    scratch = Path(tempfile.mkdtemp(prefix="coprssh-bench-keys-"))
    try:
        return body(args, worker, root, scratch)
    except KeyboardInterrupt:
        print("\nbench: interrupted; cleaning up", file=sys.stderr)
        return 130
    finally:
        cleanup(worker, root, timeout=args.timeout)
        shutil.rmtree(scratch, ignore_errors=True)
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)


def bench(args: argparse.Namespace, worker: Worker, root: Path, scratch: Path) -> int:
    from django.contrib.auth import get_user_model
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.db import connection

    from builders import services as builders
    from builders.models import AuditEvent, Builder, Lease, Pool
    from builds.models import FINAL_STATES, Build, BuildChroot, Chroot, Project, State
    from builds.services import create_project, resubmit_with_ssh, submit_build
    from builds.sources import check_upload
    from builds.ssh_view import ssh_builder_of_phase
    from keys.parser import parse_keys

    arch = platform.machine()
    chroot = f"fedora-rawhide-{arch}"
    Chroot.objects.get_or_create(name=chroot, defaults={"os": "fedora", "version": "rawhide", "arch": arch})
    # Only our pool serves our architecture, so every builder below is one we start and stop.
    Pool.objects.exclude(name=POOL).filter(enabled=True).update(enabled=False)
    pool, _ = Pool.objects.update_or_create(
        name=POOL,
        defaults={
            "provider": Pool.Provider.LOCAL,
            "architectures": [arch],
            "max_builders": args.max,
            "warm_builders": args.warm,
            "provider_settings": {"root_dir": str(root)},
            "enabled": True,
        },
    )
    user, _ = get_user_model().objects.get_or_create(username=USER)
    project = Project.objects.filter(owner=user, name="bench").first() or create_project(
        owner=user, name="bench", chroots=[chroot]
    )
    key_path, key_line = new_key(scratch)
    keys = parse_keys(key_line).keys

    # Builders a previous run left in the database (its machines are gone) must not be lent.
    retire(pool, worker, timeout=args.timeout)

    def warm() -> bool:
        fresh = Builder.objects.filter(pool=pool, state=Builder.State.READY, sandbox__isnull=True).count()
        return fresh >= args.warm and not worker.tasks

    print(f"bench: warming the pool ({args.warm} builders)…", file=sys.stderr)
    builders.ensure_capacity()
    worker.run(warm, timeout=args.timeout, what="warming the pool")

    print("bench: building the original (its %check fails)…", file=sys.stderr)
    upload = SimpleUploadedFile("bench-check-fails.spec", SPEC.encode())
    original = submit_build(
        project=project, submitter=user, chroots=[chroot], source=check_upload(upload), upload=upload
    )
    worker.run(
        lambda: Build.objects.get(pk=original.pk).is_finished and not worker.tasks,
        timeout=args.timeout,
        what="the original build",
    )
    original.refresh_from_db()
    if original.state != State.FAILED or original.srpm.state != State.SUCCEEDED:
        print(f"bench: the original build is {original.state}, expected a failed chroot", file=sys.stderr)
        return 2
    worker.run(warm, timeout=args.timeout, what="warming the pool")

    seconds: list[float] = []
    deploys: list[float] = []
    attempts: list[int] = []
    for number in range(1, args.runs + 1):
        wall0, t0 = time.time(), time.monotonic()
        build = resubmit_with_ssh(build=original, user=user, keys=keys)
        phase = BuildChroot.objects.get(build=build)

        def deployed(phase_id: int = phase.pk) -> bool:
            current = BuildChroot.objects.select_related("lease").get(pk=phase_id)
            lease = current.lease
            return (
                lease is not None
                and lease.state == Lease.State.ACTIVE
                and AuditEvent.objects.filter(lease=lease, action=AuditEvent.Action.KEYS_DEPLOYED).exists()
            )

        worker.run(deployed, timeout=args.timeout, what=f"run {number}: keys deployed")
        t_deployed = time.monotonic()
        phase.refresh_from_db()
        # The keys are on the builder before phase_ready goes on to start the build: when exactly.
        event = AuditEvent.objects.get(lease_id=phase.lease_id, action=AuditEvent.Action.KEYS_DEPLOYED)
        keys_at = event.created_at.timestamp() - wall0
        view = ssh_builder_of_phase(phase, viewer=phase.lease.owner)
        builder = phase.lease.builder
        known_hosts = scratch / f"known_hosts-{number}"
        key_type, blob = builder.host_key.split()[:2]
        known_hosts.write_text(f"[{view.host}]:{view.port} {key_type} {blob}\n")
        tries = 1
        while not ssh_true(key_path, known_hosts, view.user, view.host, view.port):
            if time.monotonic() - t0 > args.timeout:
                print(f"bench: run {number}: ssh never succeeded", file=sys.stderr)
                return 1
            tries += 1
            time.sleep(0.02)
        t1 = time.monotonic()
        seconds.append(t1 - t0)
        deploys.append(keys_at)
        attempts.append(tries)
        print(
            f"run {number}: {t1 - t0:.2f} s (keys on the builder at {keys_at:.2f} s, build started at "
            f"{t_deployed - t0:.2f} s, ssh true {t1 - t_deployed:.2f} s in {tries} attempt(s), {builder.name})"
        )
        # Untimed: let the build end (a local builder's build outlives its deletion), release, delete.
        worker.run(
            lambda phase_id=phase.pk: BuildChroot.objects.get(pk=phase_id).state in FINAL_STATES,
            timeout=args.timeout,
            what=f"run {number}: the build's end",
        )
        builders.release_lease(lease_id=phase.lease_id, via=builders.Via(user=user, source="cli"))
        worker.run(
            lambda builder_id=builder.pk: (
                Builder.objects.get(pk=builder_id).state == Builder.State.TERMINATED
            ),
            timeout=args.timeout,
            what=f"run {number}: the builder's deletion",
        )
        worker.run(warm, timeout=args.timeout, what="warming the pool")

    print(
        f"runs={len(seconds)} median={statistics.median(seconds):.2f} s p95={p95(seconds):.2f} s "
        f"min={min(seconds):.2f} s max={max(seconds):.2f} s"
    )
    print(
        f"notes: warm pool {args.warm} (max {args.max}) local sshd builders, pre-provisioned before each run; "
        f"keys on the builder after median {statistics.median(deploys):.2f} s; "
        f"ssh attempts per run {min(attempts)}-{max(attempts)}; database {connection.vendor}; "
        f"target (DESIGN §5): median under 2 s"
    )
    return 0


def retire(pool: Any, worker: Worker, *, timeout: float) -> None:
    """Terminate every live builder of the pool through the service, and delete its machine."""
    from builders import services as builders
    from builders.models import Builder
    from coprssh.exceptions import ServiceError

    alive = list(Builder.objects.filter(pool=pool).alive().values_list("pk", flat=True))
    for builder_id in alive:
        with contextlib.suppress(ServiceError):
            builders.terminate_builder(builder_id=builder_id, via=builders.TICK)
    worker.run(
        lambda: not Builder.objects.filter(pool=pool, state=Builder.State.TERMINATING).exists(),
        timeout=timeout,
        what="retiring the pool's builders",
    )


def cleanup(worker: Worker, root: Path, *, timeout: float) -> None:
    """Stop every sshd of our pool's root and every agent we started, pass or fail."""
    from builders.models import Pool
    from builders.providers.local import LocalProvider

    pool = Pool.objects.filter(name=POOL).first()
    if pool is not None:
        worker.tasks.clear()
        try:
            retire(pool, worker, timeout=timeout)
        except (Exception, SystemExit) as exc:  # the machines are stopped below all the same
            print(f"bench: retiring the pool's builders: {exc}", file=sys.stderr)
    if root.is_dir():
        provider = LocalProvider(root, stop_timeout=2.0)
        for machine in provider.list_owned():
            with contextlib.suppress(Exception):
                provider.delete(machine.provider_id)
    for pid in _pids_mentioning([str(root) + "/", *worker.workdirs]):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    for workdir in worker.workdirs:
        shutil.rmtree(workdir, ignore_errors=True)


def _pids_mentioning(paths: list[str]) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = (
                Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            )
            cwd = os.readlink(f"/proc/{entry}/cwd")
        except OSError:
            continue
        if any(path in cmdline or (cwd + "/").startswith(path.rstrip("/") + "/") for path in paths):
            found.append(int(entry))
    return found


if __name__ == "__main__":
    sys.exit(main())
