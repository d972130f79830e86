"""A build from submission to results on the real machine: local sshd builders, the agent, rpmbuild.

`farm` (tests/builds/flow.py) plays the django-q worker in-process; everything else is real:
leases, builders provisioned as sshd processes, SSH and SFTP, the agent and rpmbuild.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from builders.models import Builder, Lease, Pool
from builders.providers.local import LocalProvider
from builds import runner
from builds.models import Build, BuildChroot, State
from builds.services import cancel_build, resubmit_build, submit_build
from builds.sources import check_scm, check_url
from tests.builds.flow import *  # noqa: F403 - the fixtures
from tests.builds.flow import (
    CHROOTS,
    HELLO_SPEC,
    SPECS,
    make_project,
    processes_in,
    read_log,
    stored,
    submit_file,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user("alice")


@pytest.fixture
def bob(django_user_model):
    return django_user_model.objects.create_user("bob")


def _chroots(build: Build) -> list[BuildChroot]:
    return list(build.build_chroots.select_related("chroot", "lease__builder").order_by("chroot__name"))


def test_hello_spec_builds_for_two_chroots(farm, alice):
    project = make_project(alice)
    build = submit_file(project, alice, HELLO_SPEC)

    build = farm.finish(build)

    assert build.state == State.SUCCEEDED
    assert build.created_at <= build.started_at <= build.ended_at
    srpm = build.srpm
    assert srpm.state == State.SUCCEEDED
    assert (build.package_name, build.package_version) == ("hello-coprssh", "1.0-1")
    assert stored(build.srpm_file).name == "hello-coprssh-1.0-1.src.rpm"
    assert stored(build.srpm_file).stat().st_size > 0
    assert stored(build.spec_file).read_bytes() == HELLO_SPEC.read_bytes()
    story = read_log(srpm.storage_dir, "backend.log")
    assert f"Build #{build.pk} of alice/hello submitted by alice" in story
    assert story.index("submitted by alice") < story.index(" assigned; ") < story.index("Finished: succeeded")
    assert "Wrote:" in read_log(srpm.storage_dir, "builder-live.log")
    chroots = _chroots(build)
    assert sorted(bc.chroot.name for bc in chroots) == sorted(CHROOTS)
    for bc in chroots:
        assert bc.state == State.SUCCEEDED, bc.status_reason
        rpm = stored(bc.storage_dir) / "hello-coprssh-1.0-1.noarch.rpm"
        assert rpm.is_file()
        assert rpm.stat().st_size > 0
        live = read_log(bc.storage_dir, "builder-live.log")
        assert "rpmbuild --rebuild --nodeps" in live
        assert "Succeeded." in live
        backend = read_log(bc.storage_dir, "backend.log")
        assert "Waiting for a builder" in backend
        builder = bc.lease.builder
        assert f"Builder {builder} ({builder.host}:{builder.port}) assigned" in backend
        assert "Finished: succeeded; kept hello-coprssh-1.0-1.noarch.rpm." in backend
        assert bc.lease.state == Lease.State.ENDED
        assert bc.lease.end_reason == Lease.EndReason.BUILD_FINISHED


def test_failing_check_fails_the_chroot_and_shows_the_line_in_its_live_log(farm, alice):
    project = make_project(alice, chroots=[CHROOTS[0]])

    build = farm.finish(submit_file(project, alice, SPECS / "check-fails.spec"))

    assert build.state == State.FAILED
    assert build.srpm.state == State.SUCCEEDED
    [bc] = _chroots(build)
    assert bc.state == State.FAILED
    assert "rpmbuild failed with exit code 1" in bc.status_reason
    assert "check: expected 2, got 3" in read_log(bc.storage_dir, "builder-live.log")
    assert "Finished: failed" in read_log(bc.storage_dir, "backend.log")
    assert not list(stored(bc.storage_dir).glob("*.rpm"))
    # A failed build says nothing bad about the builder: it goes back to its sandbox.
    assert bc.lease.end_reason == Lease.EndReason.BUILD_FINISHED


def test_broken_spec_fails_in_the_srpm_phase_and_skips_every_chroot(farm, alice):
    project = make_project(alice)

    build = farm.finish(submit_file(project, alice, SPECS / "broken.spec"))

    assert build.state == State.FAILED
    srpm = build.srpm
    assert srpm.state == State.FAILED
    assert "Unclosed %if" in read_log(srpm.storage_dir, "builder-live.log")
    assert "Finished: failed" in read_log(srpm.storage_dir, "backend.log")
    assert (build.srpm_file, build.package_name) == ("", "")
    chroots = _chroots(build)
    assert [bc.state for bc in chroots] == [State.SKIPPED, State.SKIPPED]
    assert [bc.lease_id for bc in chroots] == [None, None]
    assert list(Lease.objects.filter(owner=alice).values_list("pk", flat=True)) == [srpm.lease_id]


def test_build_that_failed_in_the_srpm_phase_can_be_resubmitted(farm, alice):
    project = make_project(alice, chroots=[CHROOTS[0]])
    failed = farm.finish(submit_file(project, alice, SPECS / "broken.spec"))

    again = farm.finish(resubmit_build(build=failed, user=alice))

    assert again.resubmitted_from_id == failed.pk
    assert again.source_file != failed.source_file
    assert stored(again.source_file).read_bytes() == (SPECS / "broken.spec").read_bytes()
    assert (again.state, again.srpm.state) == (State.FAILED, State.FAILED)
    assert "Unclosed %if" in read_log(again.srpm.storage_dir, "builder-live.log")


# Regression: the agent was once launched as `cd W && setsid … &`; under bash that backgrounds a
# subshell holding the SSH channel open until the build ends, so starting waited for the build.
def test_starting_a_phase_does_not_wait_for_its_build(farm, alice):
    project = make_project(alice, chroots=[CHROOTS[0]])
    build = submit_file(project, alice, SPECS / "two-lines.spec")
    [bc] = _chroots(build)

    farm.run_until_running(bc)

    started = farm.done.index(("builds.tasks.phase_ready", (bc.lease_id,)))
    assert farm.seconds[started] < 2.0, f"phase_ready took {farm.seconds[started]} s"
    assert processes_in(bc.remote_dir), "the build is already over"


def test_cancel_stops_the_running_build_on_its_builder(farm, alice):
    project = make_project(alice, chroots=[CHROOTS[0]])
    build = submit_file(project, alice, SPECS / "slow.spec")
    [bc] = _chroots(build)
    farm.run_until_running(bc)
    # Mid-build: the live log shows %build started, and its `sleep 60` runs on the builder.
    farm.run(lambda: "slow: building for a minute" in read_log(bc.storage_dir, "builder-live.log"))
    assert wait_for(lambda: any(_is_sleep(pid) for pid in processes_in(bc.remote_dir)))

    build = cancel_build(build_id=build.pk, user=alice)

    assert build.state == State.CANCELED
    assert "builds.tasks.stop_phase" in farm.names()
    build = farm.finish(build)
    bc.refresh_from_db()
    assert bc.state == State.CANCELED
    assert bc.status_reason == "canceled by alice"
    assert build.state == State.CANCELED
    assert wait_for(lambda: not processes_in(bc.remote_dir)), "the build still runs on the builder"
    lease = Lease.objects.get(pk=bc.lease_id)
    assert (lease.state, lease.end_reason) == (Lease.State.ENDED, Lease.EndReason.CANCELED)
    backend = read_log(bc.storage_dir, "backend.log")
    assert backend.index("Canceled by alice.") < backend.index("Stopped on the builder.")
    assert not list(stored(bc.storage_dir).glob("*.rpm"))


def _is_sleep(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:2] == [b"sleep", b"60"]
    except OSError:
        return False


def test_cancel_while_the_phase_starts_stops_its_build(farm, alice, monkeypatch):
    """The user cancels while phase_ready uploads the agent (the phase is STARTING).

    Regression: stop_phase once ran before the agent's folder was known and stopped nothing,
    while phase_ready started the agent anyway. Now phase_ready sees the cancel once the agent
    is up and stops it itself.
    """
    project = make_project(alice, chroots=[CHROOTS[0]])
    build = submit_file(project, alice, SPECS / "two-lines.spec")
    start = runner.start

    def cancel_then_start(builder, *, workdir, job, files):
        if job["phase"] == "rpm":
            cancel_build(build_id=build.pk, user=alice)
        start(builder, workdir=workdir, job=job, files=files)

    monkeypatch.setattr(runner, "start", cancel_then_start)

    build = farm.finish(build)

    assert build.state == State.CANCELED
    [bc] = _chroots(build)
    assert bc.state == State.CANCELED
    workdir = farm.workdirs[-1]
    assert f"-{CHROOTS[0]}-" in workdir
    assert wait_for(lambda: not processes_in(workdir), timeout=1), "the build runs on after its cancel"
    assert not (Path(workdir) / "success").exists(), "the build ran to its end after its cancel"
    assert "The build is running" not in read_log(bc.storage_dir, "backend.log")


def test_same_sandbox_reuses_its_builder_and_another_user_never_gets_it(farm, alice, bob):
    project = make_project(alice, chroots=[CHROOTS[0]])
    first = farm.finish(submit_file(project, alice, HELLO_SPEC))
    second = farm.finish(submit_file(project, alice, HELLO_SPEC))
    theirs = farm.finish(submit_file(make_project(bob), bob, HELLO_SPEC, chroots=[CHROOTS[0]]))

    assert [first.state, second.state, theirs.state] == [State.SUCCEEDED] * 3
    used = {build.pk: _builders(build) for build in (first, second, theirs)}
    assert used[second.pk] == used[first.pk]
    [alices] = used[first.pk]
    alices.refresh_from_db()
    # Four phases (two SRPM, two chroot) ran on it, and it is kept ready for the sandbox.
    assert alices.reuse_count == 4
    assert (alices.state, alices.sandbox) == ("ready", "alice/hello--alice")
    assert not used[theirs.pk] & used[first.pk]
    assert {builder.sandbox for builder in used[theirs.pk]} == {"bob/hello--bob"}


def test_full_pool_retires_an_idle_builder_of_another_sandbox_instead_of_lending_it(farm, alice, bob):
    Pool.objects.filter(pk=farm.pool.pk).update(max_builders=1)
    alices = farm.finish(submit_file(make_project(alice), alice, HELLO_SPEC, chroots=[CHROOTS[0]]))
    [kept] = _builders(alices)

    theirs = farm.finish(submit_file(make_project(bob), bob, HELLO_SPEC, chroots=[CHROOTS[0]]))

    assert theirs.state == State.SUCCEEDED
    [fresh] = _builders(theirs)
    assert fresh.pk != kept.pk
    assert fresh.sandbox == "bob/hello--bob"
    kept.refresh_from_db()
    assert kept.state == Builder.State.TERMINATED
    assert not LocalProvider(farm.root).is_alive(kept.provider_id)


def _builders(build: Build) -> set:
    phases = [build.srpm, *build.build_chroots.all()]
    return {Lease.objects.select_related("builder").get(pk=phase.lease_id).builder for phase in phases}


def test_uploaded_srpm_builds(farm, alice, hello_srpm):
    project = make_project(alice, chroots=[CHROOTS[0]])

    build = farm.finish(submit_file(project, alice, hello_srpm))

    assert build.state == State.SUCCEEDED
    assert build.source_filename == hello_srpm.name
    assert stored(build.srpm_file).read_bytes() == hello_srpm.read_bytes()
    assert stored(build.spec_file).read_bytes() == HELLO_SPEC.read_bytes()
    [bc] = _chroots(build)
    assert (stored(bc.storage_dir) / "hello-coprssh-1.0-1.noarch.rpm").is_file()


def test_git_repository_builds(farm, alice, http_root, settings, tmp_path):
    settings.COPRSSH_ALLOW_LOCAL_SOURCES = True
    work = tmp_path / "work"
    (work / "pkg").mkdir(parents=True)
    shutil.copy(HELLO_SPEC, work / "pkg" / "hello-coprssh.spec")
    git = ["git", "-c", "user.name=Alice", "-c", "user.email=alice@example.com"]
    subprocess.run([*git, "init", "--quiet", "-b", "main", str(work)], check=True)
    subprocess.run([*git, "-C", str(work), "add", "."], check=True)
    subprocess.run([*git, "-C", str(work), "commit", "--quiet", "-m", "hello"], check=True)
    bare = http_root.dir / "hello.git"
    subprocess.run([*git, "clone", "--quiet", "--bare", str(work), str(bare)], check=True)
    subprocess.run([*git, "-C", str(bare), "update-server-info"], check=True)
    source = check_scm(
        clone_url=f"{http_root.url}/hello.git", committish="main", spec="pkg/hello-coprssh.spec"
    )
    project = make_project(alice, chroots=[CHROOTS[0]])

    build = farm.finish(submit_build(project=project, submitter=alice, chroots=None, source=source))

    assert build.state == State.SUCCEEDED
    assert "git clone" in read_log(build.srpm.storage_dir, "builder-live.log")
    assert stored(build.spec_file).read_bytes() == HELLO_SPEC.read_bytes()
    assert stored(build.srpm_file).name == "hello-coprssh-1.0-1.src.rpm"
    [bc] = _chroots(build)
    assert (stored(bc.storage_dir) / "hello-coprssh-1.0-1.noarch.rpm").is_file()


def test_srpm_url_builds(farm, alice, http_root, hello_srpm, settings):
    settings.COPRSSH_ALLOW_LOCAL_SOURCES = True
    shutil.copy(hello_srpm, http_root.dir / hello_srpm.name)
    source = check_url(url=f"{http_root.url}/{hello_srpm.name}")
    project = make_project(alice, chroots=[CHROOTS[0]])

    build = farm.finish(submit_build(project=project, submitter=alice, chroots=None, source=source))

    assert build.state == State.SUCCEEDED
    assert f"Downloaded {hello_srpm.stat().st_size} bytes" in read_log(
        build.srpm.storage_dir, "builder-live.log"
    )
    assert stored(build.srpm_file).read_bytes() == hello_srpm.read_bytes()
    [bc] = _chroots(build)
    assert (stored(bc.storage_dir) / "hello-coprssh-1.0-1.noarch.rpm").is_file()


def test_live_log_is_streamed_while_the_build_runs(farm, alice):
    """The agent pushes its log: it arrives while the build runs, and no task runs meanwhile."""
    project = make_project(alice, chroots=[CHROOTS[0]])
    build = submit_file(project, alice, SPECS / "two-lines.spec")
    [bc] = _chroots(build)
    farm.run_until_running(bc)
    ran = len(farm.done)

    assert wait_for(
        lambda: "two-lines: first line" in read_log(bc.storage_dir, "builder-live.log"), timeout=10
    )

    assert "two-lines: last line" not in read_log(bc.storage_dir, "builder-live.log")
    bc.refresh_from_db()
    assert bc.state == State.RUNNING
    # Nothing waits on the running build: no task ran or is queued for it.
    assert (len(farm.done), farm.names()) == (ran, [])
    build = farm.finish(build)
    assert build.state == State.SUCCEEDED
    # One task of the builds app, queued by the agent's end report, collected the results.
    assert [task for task in farm.done[ran:] if task[0].startswith("builds.")] == [
        ("builds.tasks.check_phase", ("rpm", bc.pk))
    ]
    live = read_log(bc.storage_dir, "builder-live.log")
    assert live.index("two-lines: first line") < live.index("two-lines: last line")
    # What the service stored is byte for byte what the build printed on the builder.
    bc.refresh_from_db()
    assert (stored(bc.storage_dir) / "builder-live.log").read_bytes() == (
        Path(bc.remote_dir) / "builder-live.log"
    ).read_bytes()
    assert bc.log_size == len(live.encode())


def test_phase_whose_builder_is_gone_fails_after_the_build_timeout(farm, alice, settings):
    """A builder that stops answering while its lease is active (a crashed VM) fails its phase
    once the build's time limit has passed, instead of being waited on until the lease expires.
    """
    project = make_project(alice, chroots=[CHROOTS[0]])
    build = submit_file(project, alice, HELLO_SPEC)
    [bc] = _chroots(build)
    farm.run_until_running(bc)
    builder = Lease.objects.select_related("builder").get(pk=bc.lease_id).builder
    LocalProvider(farm.root).delete(builder.provider_id)  # the machine dies; its rows know nothing
    settings.COPRSSH_BUILD_TIMEOUT = 1
    settings.COPRSSH_AGENT_SILENCE = 0  # the agent died with it: the tick checks at once
    time.sleep(1.5)

    farm.run(lambda: BuildChroot.objects.get(pk=bc.pk).is_finished, timeout=10, builds_tick=True)

    bc.refresh_from_db()
    assert bc.state == State.FAILED


def test_phase_whose_builder_stops_answering_sftp_costs_a_bounded_time_then_fails(
    farm, alice, settings, monkeypatch
):
    """Ref: #10 — a builder that accepts SSH but never answers SFTP held a worker until the task timeout."""
    from datetime import timedelta

    from builds.services import check_phase, reports
    from tests.builders.test_hostile_builder import silence_sftp

    settings.COPRSSH_BUILDER_IO_TIMEOUT = 2
    settings.COPRSSH_BUILDER_CALL_DEADLINE = 4
    project = make_project(alice, chroots=[CHROOTS[0]])
    build = submit_file(project, alice, SPECS / "slow.spec")
    [bc] = _chroots(build)
    farm.run_until_running(bc)
    builder = Lease.objects.select_related("builder").get(pk=bc.lease_id).builder
    silence_sftp(LocalProvider(farm.root), builder.provider_id)
    BuildChroot.objects.filter(pk=bc.pk).update(alive_at=None)  # silent: the tick's check is due

    started = time.monotonic()
    check_phase(kind="rpm", phase_id=bc.pk)
    assert time.monotonic() - started < settings.COPRSSH_BUILDER_CALL_DEADLINE + 2
    bc.refresh_from_db()
    assert bc.state == State.RUNNING
    assert bc.unreachable_since is not None
    assert bc.watch_until is None  # the claim is given back for the next tick

    # Past the unreachable limit, the next check fails the phase by the existing rules.
    monkeypatch.setattr(reports, "UNREACHABLE_LIMIT", timedelta(0))
    check_phase(kind="rpm", phase_id=bc.pk)
    bc.refresh_from_db()
    assert bc.state == State.FAILED
    assert "stopped answering" in bc.status_reason
    assert Lease.objects.get(pk=bc.lease_id).end_reason == Lease.EndReason.FAILED
    farm.run(lambda: not farm.tasks, timeout=20)


@pytest.mark.skipif(
    os.geteuid() != 0, reason="local builders are isolated only when the service runs as root"
)
def test_a_spec_cannot_read_the_services_secrets_on_a_local_builder(farm, alice, settings, tmp_path):
    """Ref: #10 — rpmbuild expands %(…) in a spec: any build could read the admin key, the database
    and SECRET_KEY when local builders ran as the service's own account."""
    from django.db import connection

    targets = [str(settings.COPRSSH_ADMIN_KEY_FILE), f"/proc/{os.getpid()}/environ", str(tmp_path)]
    if connection.vendor == "sqlite":
        targets.append(str(connection.settings_dict["NAME"]))
    from builders.admin_key import admin_key

    admin_key()  # the key file exists, so a refusal is about permissions
    probes = "\n".join(
        # A folder is read by listing it, a file by reading it.
        f'if {{ test -d "{path}" && ls "{path}" || cat "{path}"; }} > /dev/null 2>&1; then echo "READABLE {path}";'
        f' else echo "refused {path}"; fi'
        for path in targets
    )
    spec = tmp_path / "probe.spec"
    spec.write_text(
        "Name: probe\nVersion: 1\nRelease: 1\nSummary: probe\nLicense: MIT\nBuildArch: noarch\n"
        f"%global stolen %(cat {targets[0]} 2>/dev/null | head -c 64 | base64 -w0)\n"
        "%description\nprobe\n%build\n"
        f"{probes}\n"
        'echo "spec-time: [%{stolen}]"\n'
        "%install\nmkdir -p %{buildroot}\n%files\n"
    )
    project = make_project(alice, chroots=[CHROOTS[0]])
    build = farm.finish(submit_file(project, alice, spec))

    [bc] = _chroots(build)
    live = read_log(bc.storage_dir, "builder-live.log")
    assert build.state == State.SUCCEEDED, live
    for path in targets:
        assert f"refused {path}" in live
    assert "READABLE" not in live
    assert "spec-time: []" in live
    assert settings.SECRET_KEY not in live
