"""Scale-out: no task worker waits on a running build, and two task clusters on one database do each thing once.

Everything is a real process: `manage.py qcluster` subprocesses on the test's PostgreSQL database,
the local pool's sshd builders they provision, the agents on those builders, which report to
pytest-django's live server (a thread of this process, at COPRSSH_PUBLIC_URL), and rpmbuild. The
test process submits builds through the services, as the web and API views do, and watches the
database. What is asserted is the order of events and what the database, the builders' folders and
the process list hold, never how long something took.
"""

from __future__ import annotations

import contextlib
import io
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django_q.models import OrmQ, Schedule, Task

from builders.admin_key import admin_key
from builders.models import AuditEvent, Builder, Lease, Pool, QuotaOverride
from builders.providers.accounts import COMMENT_PREFIX
from builders.providers.local import LocalProvider
from builders.services import Via, release_lease
from builders.services.machines import BUILDER_ID_KEY
from builders.services.quota import save_quota_override
from builds import storage
from builds.models import FINAL_STATES, Build, BuildChroot, Chroot, SrpmPhase, State
from builds.services import resubmit_with_ssh
from keys.services import resolve_keys
from tests.builds.flow import ARCH, CHROOTS, HELLO_SPEC, SPECS, make_project, read_log, submit_file
from tests.concurrency import errors, run_at_once
from tests.leaks import Accounts, builder_accounts, processes_of
from tests.test_qcluster_stop import _in_session
from tests.test_task_queue import _database_url

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parent.parent
NAP_SPEC = SPECS / "nap.spec"  # %build sleeps for half a minute
CHECK_TASKS = ("builds.tasks.check_phase", "builds.tasks.watch_phase")
FINISHED_LINE = re.compile(r"^\[[^\]]+\] Finished: ", re.MULTILINE)
# The schedules the migrations create; a transactional test before this one flushed them.
TICKS = {"coprssh-tick": "builders.tasks.tick", "coprssh-builds-tick": "builds.tasks.tick"}


# -- the service: task clusters, a local pool, the live server -------------------------------------


@dataclass
class Cluster:
    process: subprocess.Popen[bytes]
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@dataclass
class Service:
    """A local pool and the `manage.py qcluster` processes that run its tasks, as on separate hosts."""

    pool: Pool
    root: Path
    env: dict[str, str]
    logs: Path
    clusters: list[Cluster] = field(default_factory=list)

    def start_cluster(self, *, workers: int) -> Cluster:
        log = self.logs / f"qcluster-{len(self.clusters) + 1}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "manage.py", "qcluster"],
                cwd=ROOT,
                env={**self.env, "COPRSSH_WORKERS": str(workers)},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        cluster = Cluster(process=process, log=log)
        self.clusters.append(cluster)
        return cluster

    def wait(
        self,
        predicate: Callable[[], Any],
        *,
        timeout: float,
        what: str,
        sample: Callable[[], None] | None = None,
    ) -> Any:
        """Poll `predicate` (and take a `sample` each time) until it holds; fail with the machine's state."""
        deadline = time.monotonic() + timeout
        while True:
            for cluster in self.clusters:
                assert cluster.process.poll() is None, f"a qcluster exited:\n{cluster.text()[-3000:]}"
            if sample is not None:
                sample()
            result = predicate()
            if result:
                return result
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {what}\n{self.describe()}")
            time.sleep(0.2)

    def describe(self) -> str:
        """What the database and the clusters say, for a failure message."""
        lines = ["builds:"]
        for build in Build.objects.order_by("pk"):
            chroots = ", ".join(f"{bc.pk}:{bc.state}" for bc in build.build_chroots.all())
            lines.append(
                f"  #{build.pk} {build.state} ssh={build.ssh} srpm={build.srpm.state} rpm=[{chroots}]"
            )
        lines.append("leases:")
        for lease in Lease.objects.order_by("pk"):
            lines.append(
                f"  #{lease.pk} {lease.state} ssh={lease.ssh} builder={lease.builder_id} {lease.queue_reason}"
            )
        lines.append("builders:")
        for builder in Builder.objects.order_by("pk"):
            lines.append(f"  #{builder.pk} {builder.state} {builder.sandbox} {builder.last_error[:200]}")
        lines.append(f"queued tasks: {[queued.func() for queued in OrmQ.objects.all()]}")
        for task in Task.objects.filter(success=False):
            lines.append(f"failed task {task.func}{task.args}: {str(task.result)[-500:]}")
        for cluster in self.clusters:
            lines.append(f"--- {cluster.log.name}\n{cluster.text()[-2000:]}")
        return "\n".join(lines)

    def stop_clusters(self) -> None:
        """SIGTERM each cluster (it stops its workers itself), SIGKILL whatever is left of its session."""
        for cluster in self.clusters:
            if cluster.process.poll() is None:
                cluster.process.send_signal(signal.SIGTERM)
        for cluster in self.clusters:
            try:
                cluster.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(OSError):
                    os.killpg(cluster.process.pid, signal.SIGKILL)
                cluster.process.wait(timeout=30)
            for pid in _in_session(cluster.process.pid):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)

    def remove_builders(self) -> None:
        """Delete every sandbox of the pool (sshd, sessions, agents, accounts), then SIGKILL any straggler."""
        accounts = builder_accounts(self.root)
        if self.root.is_dir():
            provider = LocalProvider(self.root, stop_timeout=2.0)
            with contextlib.suppress(Exception):  # the safety net below catches the rest
                for machine in provider.list_owned():
                    with contextlib.suppress(Exception):
                        provider.delete(machine.provider_id)
            with contextlib.suppress(Exception):
                provider.delete_stray_accounts()
        for entry in leftovers(self.root, accounts):
            with contextlib.suppress(OSError):
                os.kill(int(entry.split(":", 1)[0]), signal.SIGKILL)


@pytest.fixture
def service(settings: Any, tmp_path: Path, transactional_db: None, live_server: Any) -> Iterator[Service]:
    """A local pool (no warm builders) whose tasks run in qcluster subprocesses the test starts.

    The subprocesses and this process share the test database, the builders' folder, the service's
    SSH key and the build storage through their environment; agents report to the live server.
    """
    if connection.vendor != "postgresql":
        pytest.skip(
            "needs PostgreSQL: qcluster processes and the test write one database at once, which is not"
            " how coprssh runs on SQLite (run with DATABASE_URL=postgres://…)"
        )
    if shutil.which("rpmbuild") is None or not Path("/usr/sbin/sshd").exists():
        pytest.skip("needs rpmbuild and OpenSSH's sshd")
    shared = {
        "COPRSSH_BUILDERS_DIR": tmp_path / "builders-dir",
        "COPRSSH_ADMIN_KEY_FILE": tmp_path / "ssh" / "admin_ed25519",
        "COPRSSH_STORAGE_DIR": tmp_path / "storage",
    }
    for name, value in shared.items():
        setattr(settings, name, value)
    settings.COPRSSH_SRPM_ARCH = ARCH
    settings.COPRSSH_PUBLIC_URL = live_server.url
    admin_key()  # made once here, not by two processes at once
    for name in CHROOTS:
        os_name, version, arch = name.split("-")
        Chroot.objects.get_or_create(name=name, defaults={"os": os_name, "version": version, "arch": arch})
    for name, func in TICKS.items():
        Schedule.objects.update_or_create(
            name=name, defaults={"func": func, "schedule_type": Schedule.MINUTES, "minutes": 1, "repeats": -1}
        )
    root = tmp_path / "builders"
    pool = Pool.objects.create(
        name="local",
        provider=Pool.Provider.LOCAL,
        architectures=[ARCH],
        max_builders=8,
        warm_builders=0,
        provider_settings={"root_dir": str(root)},
    )
    env = {
        **os.environ,
        **{name: str(value) for name, value in shared.items()},
        "DATABASE_URL": _database_url(),
        "COPRSSH_DATA_DIR": str(tmp_path / "data"),
        "COPRSSH_SRPM_ARCH": ARCH,
        "COPRSSH_PUBLIC_URL": live_server.url,
        "COPRSSH_TASKS_SYNC": "0",
        "COPRSSH_STOP_GRACE": "5",
        "DEBUG": "1",
    }
    machine = Service(pool=pool, root=root, env=env, logs=tmp_path)
    try:
        yield machine
    finally:
        # Before the database is flushed: the clusters first, so that nothing starts new builders.
        try:
            machine.stop_clusters()
        finally:
            machine.remove_builders()


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user("alice")


@pytest.fixture
def ssh_keys(tmp_path: Path, alice) -> list:
    """One fresh ed25519 key of alice's, resolved as the resubmit form resolves pasted keys."""
    path = tmp_path / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "alice", "-f", str(path)],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return resolve_keys(text=Path(f"{path}.pub").read_text(), user=alice).keys


# -- helpers --------------------------------------------------------------------------------------


def fresh(build: Build) -> Build:
    return Build.objects.get(pk=build.pk)


def failed_build(service: Service, project, user) -> Build:
    """A build whose %check fails, run to its end by the cluster: something to resubmit with SSH."""
    build = submit_file(project, user, SPECS / "check-fails.spec")
    service.wait(lambda: fresh(build).is_finished, timeout=90, what="the check-fails build to end")
    build = fresh(build)
    assert build.state == State.FAILED, service.describe()
    return build


def tasks_for_phase(kind: str, phase_id: int) -> list[Task]:
    """The recorded runs (succeeded or failed) of the tasks that check or collect one phase."""
    return [
        task
        for task in Task.objects.filter(func__in=CHECK_TASKS)
        if tuple(task.args or ()) == (kind, phase_id)
    ]


def finished_lines(phase: SrpmPhase | BuildChroot) -> int:
    return len(FINISHED_LINE.findall(read_log(phase.storage_dir, storage.BACKEND_LOG)))


def most_at_once(intervals: list[tuple[datetime, datetime | None]]) -> int:
    """The largest number of [start, end) intervals that overlap at one moment (None: not ended)."""
    events = []
    for start, end in intervals:
        events.append((start, 1))
        if end is not None:
            events.append((end, -1))
    most = current = 0
    for _, step in sorted(events, key=lambda event: (event[0], event[1])):  # ends before starts at a tie
        current += step
        most = max(most, current)
    return most


def idle() -> bool:
    """No task is queued or running: the broker drops a task once its run has been recorded."""
    return not OrmQ.objects.exists()


def still_ours(accounts: Accounts, root: Path) -> Accounts:
    """`accounts` less the uids that another root's builder account has taken since ours were removed.

    Other tests on this host make and remove builder accounts too, and a freed uid is given out
    again: a process of such a uid is not one of ours.
    """
    kept = set()
    for uid in accounts.uids:
        try:
            entry = pwd.getpwuid(uid)
        except KeyError:
            kept.add(uid)  # removed, and nobody's since
            continue
        sandbox = Path(entry.pw_gecos.removeprefix(COMMENT_PREFIX))
        if sandbox == root or root in sandbox.parents:
            kept.add(uid)
    return Accounts(frozenset(kept), accounts.homes)


def leftovers(root: Path, accounts: Accounts) -> list[str]:
    """Live processes of the builders under `root`, by the process list."""
    return processes_of(root, accounts=still_ours(accounts, root))


def account_of(builder: Builder) -> Accounts:
    """The host account an isolated local builder logs its users in as (none when not isolated)."""
    try:
        entry = pwd.getpwnam(builder.login_user)
    except KeyError:
        return Accounts(frozenset(), frozenset())
    if entry.pw_uid == os.getuid():
        return Accounts(frozenset(), frozenset())  # not isolated: the service's own account
    return Accounts(frozenset({entry.pw_uid}), frozenset({entry.pw_dir}))


# -- more running builds than workers -------------------------------------------------------------


def test_six_builds_run_on_one_worker_and_an_ssh_deploy_meanwhile_is_not_held_behind_them(
    service, alice, ssh_keys
):
    service.start_cluster(workers=1)
    project = make_project(alice, chroots=[CHROOTS[0]])
    original = failed_build(service, project, alice)

    builds = [submit_file(project, alice, NAP_SPEC) for _ in range(6)]
    nap_phases = BuildChroot.objects.filter(build__in=builds)

    def all_running_or_one_ended() -> bool:
        states = list(nap_phases.values_list("state", flat=True))
        return states.count(State.RUNNING) == 6 or any(state in FINAL_STATES for state in states)

    service.wait(all_running_or_one_ended, timeout=150, what="six builds running at once")
    assert set(nap_phases.values_list("state", flat=True)) == {State.RUNNING}, (
        "a build ended before all six ran: a worker waited on a running build, or nap.spec"
        " sleeps too short for this machine\n" + service.describe()
    )
    assert [tasks_for_phase("rpm", phase.pk) for phase in nap_phases.all()] == [[]] * 6

    ssh_build = resubmit_with_ssh(build=original, user=alice, keys=ssh_keys)

    [ssh_phase] = ssh_build.build_chroots.all()
    service.wait(
        lambda: all(fresh(build).is_finished for build in [*builds, ssh_build]) and idle(),
        timeout=150,
        what="the six builds and the SSH build to end, and the queue to empty",
    )
    ssh_phase.refresh_from_db()
    phases = list(nap_phases.all())
    deployed = AuditEvent.objects.get(action=AuditEvent.Action.KEYS_DEPLOYED, lease_id=ssh_phase.lease_id)
    started = [phase.started_at for phase in phases]
    ended = [phase.ended_at for phase in phases]
    # The SSH builder was provisioned, its keys deployed and its build started while all six ran.
    assert max(started) < deployed.created_at < min(ended)
    assert deployed.created_at <= ssh_phase.started_at < min(ended)
    assert ssh_phase.state == State.FAILED  # its %check fails, as before
    assert Lease.objects.get(pk=ssh_phase.lease_id).state == Lease.State.ACTIVE  # kept for its owner
    assert [fresh(build).state for build in builds] == [State.SUCCEEDED] * 6
    for phase in phases:
        # The agent pushed the end; only then was a task queued for the phase (django-q's `started`
        # is when the task was queued), to collect it.
        assert phase.reported_state == "succeeded"
        checks = tasks_for_phase("rpm", phase.pk)
        assert checks, f"no task collected phase {phase.pk}"
        assert all(task.started >= phase.alive_at for task in checks), [
            (task.started, phase.alive_at) for task in checks
        ]
        assert "Finished: succeeded; kept nap-1.0-1.noarch.rpm." in read_log(phase.storage_dir, "backend.log")
    # The cluster ran one worker process from start to end.
    assert len(re.findall(r" ready for work at ", service.clusters[0].text())) == 1
    assert not Task.objects.filter(success=False).exists(), service.describe()

    builder = Builder.objects.get(pk=Lease.objects.get(pk=ssh_phase.lease_id).builder_id)
    account = account_of(builder)  # while it exists
    release_lease(lease_id=ssh_phase.lease_id, via=Via(user=alice, source="web"), owner=alice)
    service.wait(
        lambda: Builder.objects.get(pk=builder.pk).state == Builder.State.TERMINATED,
        timeout=60,
        what="the released SSH builder to be deleted",
    )
    assert leftovers(service.root / builder.provider_id, account) == []


# -- two clusters on one database -----------------------------------------------------------------


@dataclass
class Samples:
    """What the test saw while the clusters worked: counts at each look, machines and their builders."""

    alive_builders: list[int] = field(default_factory=list)
    machines: list[int] = field(default_factory=list)
    active_ssh: list[int] = field(default_factory=list)
    slot_holders: list[int] = field(default_factory=list)
    names_of_builder: dict[str, set[str]] = field(default_factory=dict)
    builders_of_name: dict[str, set[str]] = field(default_factory=dict)


def test_two_clusters_on_one_database_do_each_thing_once_under_a_burst(service, alice, ssh_keys):
    override = QuotaOverride(user=alice, max_ssh_builders=2)
    save_quota_override(override=override, via=Via(source="admin"))
    service.start_cluster(workers=2)
    service.start_cluster(workers=2)
    project = make_project(alice, chroots=[CHROOTS[0]])
    original = failed_build(service, project, alice)

    provider = LocalProvider(service.root)
    seen = Samples()
    ssh_leases = Lease.objects.filter(owner=alice, ssh=True)

    def sample() -> None:
        seen.alive_builders.append(Builder.objects.alive().count())
        seen.active_ssh.append(ssh_leases.filter(state=Lease.State.ACTIVE).count())
        seen.slot_holders.append(ssh_leases.filter(state__in=Lease.SLOT_STATES).count())
        machines = provider.list_owned()
        seen.machines.append(len(machines))
        for machine in machines:
            builder_id = machine.metadata.get(BUILDER_ID_KEY, "")
            seen.names_of_builder.setdefault(builder_id, set()).add(machine.provider_id)
            seen.builders_of_name.setdefault(machine.provider_id, set()).add(builder_id)

    calls: list[Callable[[], Build]] = []
    for n in range(8):
        calls.append(lambda: submit_file(project, alice, HELLO_SPEC))
        if n < 6:
            calls.append(lambda: resubmit_with_ssh(build=original, user=alice, keys=ssh_keys))
    outcomes = run_at_once(calls)
    assert errors(outcomes) == []
    normal = [build for build in outcomes if not build.ssh]
    ssh_builds = [build for build in outcomes if build.ssh]
    assert (len(normal), len(ssh_builds)) == (8, 6)

    def settled() -> bool:
        """Normal builds over, each SSH lease queued or active with its build over, nothing in flight."""
        if not all(fresh(build).is_finished for build in normal):
            return False
        if ssh_leases.exclude(state__in=[Lease.State.ACTIVE, Lease.State.QUEUED]).exists():
            return False
        if Builder.objects.filter(state__in=[Builder.State.PROVISIONING, Builder.State.TERMINATING]).exists():
            return False
        ssh_phases = BuildChroot.objects.filter(build__in=ssh_builds, lease__state=Lease.State.ACTIVE)
        return all(phase.state in FINAL_STATES for phase in ssh_phases) and idle()

    service.wait(settled, timeout=200, what="the burst to settle", sample=sample)
    sample()

    # Both clusters took their share of the work (the broker hands each task to one of them).
    for cluster in service.clusters:
        processed = set(re.findall(r" processing \S+ '(\w+)\.tasks\.", cluster.text()))
        assert processed == {"builds", "builders"}, cluster.text()[-3000:]

    # Every normal build succeeded, and nothing failed on the way.
    assert [fresh(build).state for build in normal] == [State.SUCCEEDED] * 8
    assert not Task.objects.filter(success=False).exists(), service.describe()

    # The quota held: never more than two SSH builders of alice at once, by the samples and the audit.
    states = sorted(ssh_leases.values_list("state", flat=True))
    assert states == [Lease.State.ACTIVE] * 2 + [Lease.State.QUEUED] * 4
    assert max(seen.slot_holders) <= 2
    assert max(seen.active_ssh) <= 2
    events = AuditEvent.objects.filter(lease__in=ssh_leases)
    assert events.filter(action=AuditEvent.Action.LEASE_QUEUED).count() == 4

    # No double provisioning: one machine per builder row, made in one attempt, and the pool's cap held.
    builders = list(Builder.objects.order_by("pk"))
    # (Idle builders of alice's sandbox may have been retired to make room for her SSH builders.)
    assert {builder.state for builder in builders} <= {
        Builder.State.READY,
        Builder.State.LEASED,
        Builder.State.TERMINATED,
    }
    assert [(builder.attempts, builder.last_error) for builder in builders] == [(1, "")] * len(builders)
    alive = [builder for builder in builders if builder.state != Builder.State.TERMINATED]
    ready_events = AuditEvent.objects.filter(action=AuditEvent.Action.BUILDER_READY)
    assert sorted(ready_events.values_list("builder_id", flat=True)) == [builder.pk for builder in builders]
    assert {name: ids for name, ids in seen.builders_of_name.items() if len(ids) > 1} == {}
    assert {pk: names for pk, names in seen.names_of_builder.items() if len(names) > 1} == {}
    machines = provider.list_owned()
    assert sorted(
        (machine.provider_id, machine.metadata.get(BUILDER_ID_KEY)) for machine in machines
    ) == sorted((builder.provider_id, str(builder.pk)) for builder in alive)
    assert sorted(entry.name for entry in service.root.iterdir()) == sorted(m.provider_id for m in machines)
    assert max(seen.alive_builders) <= service.pool.max_builders
    assert max(seen.machines) <= service.pool.max_builders

    # No double assignment: a lease got one builder once, a builder served one lease at a time.
    leases = list(Lease.objects.exclude(builder=None).order_by("assigned_at", "pk"))
    assigned = AuditEvent.objects.filter(action=AuditEvent.Action.LEASE_ASSIGNED)
    assert sorted(assigned.values_list("lease_id", flat=True)) == sorted(lease.pk for lease in leases)
    for builder in builders:
        own = [lease for lease in leases if lease.builder_id == builder.pk]
        assert most_at_once([(lease.assigned_at, lease.ended_at) for lease in own]) <= 1, [
            (lease.pk, lease.assigned_at, lease.ended_at) for lease in own
        ]
    assert all(not lease.ssh or lease.builder.single_use for lease in leases)

    # No phase finished twice: one "Finished:" line for each phase that ran, none for one that did not.
    ran = 0
    for model in (SrpmPhase, BuildChroot):
        for phase in model.objects.filter(build__in=[original, *normal, *ssh_builds]):
            # A reused SRPM phase (of an SSH resubmit) never had a lease: it did not run.
            expected = 1 if phase.lease_id is not None and phase.started_at is not None else 0
            assert finished_lines(phase) == expected, (
                phase,
                read_log(phase.storage_dir, storage.BACKEND_LOG),
            )
            ran += expected
    assert ran == 2 + 2 * 8 + 2  # the original's two phases, two per normal build, two SSH phases

    # Release them all (the queued ones first, or they would take the freed slots) as alice would.
    ssh_builders = list(Builder.objects.filter(leases__in=ssh_leases))
    accounts = builder_accounts(service.root)
    ssh_accounts = {builder.pk: account_of(builder) for builder in ssh_builders}  # while they exist
    by_alice = Via(user=alice, source="api")
    for lease in sorted(ssh_leases, key=lambda lease: lease.state != Lease.State.QUEUED):
        release_lease(lease_id=lease.pk, via=by_alice, owner=alice)
    service.wait(
        lambda: all(
            Builder.objects.get(pk=builder.pk).state == Builder.State.TERMINATED for builder in ssh_builders
        ),
        timeout=60,
        what="the released SSH builders to be deleted",
        sample=sample,
    )
    assert max(seen.slot_holders) <= 2
    assert ssh_leases.exclude(state=Lease.State.ENDED).count() == 0
    for builder in ssh_builders:
        assert leftovers(service.root / builder.provider_id, ssh_accounts[builder.pk]) == []
    # No queued lease took a freed slot, and by the audit log no more than two held a builder at once.
    assert set(Builder.objects.filter(leases__in=ssh_leases)) == set(ssh_builders)
    got = dict(events.filter(action=AuditEvent.Action.LEASE_ASSIGNED).values_list("lease_id", "created_at"))
    gone = dict(events.filter(action=AuditEvent.Action.RELEASED).values_list("lease_id", "created_at"))
    assert len(got) == 2
    assert set(gone) == set(ssh_leases.values_list("pk", flat=True))
    assert most_at_once([(at, gone[lease_id]) for lease_id, at in got.items()]) <= 2

    # The service stops as bin/run stops it: the clusters, then the local builders. Nothing is left.
    service.stop_clusters()
    assert [cluster.process.returncode for cluster in service.clusters] == [0, 0]
    assert all(_in_session(cluster.process.pid) == [] for cluster in service.clusters)
    call_command("stop_builders", stdout=io.StringIO())
    assert leftovers(service.root, accounts) == []
    assert builder_accounts(service.root) == Accounts(frozenset(), frozenset())
    assert provider.list_owned() == []
