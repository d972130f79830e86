"""The builds tick: silent agents are checked, lost reports collected, phases whose lease ended fail cleanly."""

from __future__ import annotations

import io
import json
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.utils import timezone
from django_q.models import Schedule

from builders import services as builders
from builders.models import Builder, Lease, Pool
from builds import services, tasks
from builds.models import BuildChroot, SrpmPhase, State
from builds.sources import check_upload

pytestmark = pytest.mark.django_db


@pytest.fixture
def build(settings, tmp_path, user, demo_spec):
    settings.COPRSSH_STORAGE_DIR = tmp_path / "storage"
    Pool.objects.create(
        name="p", architectures=[settings.COPRSSH_SRPM_ARCH, "x86_64", "aarch64"], warm_builders=0
    )
    project = services.create_project(
        owner=user, name="tick", chroots=["fedora-rawhide-x86_64", "epel-9-x86_64"]
    )
    upload = SimpleUploadedFile(demo_spec.name, demo_spec.read_bytes())
    return services.submit_build(
        project=project, submitter=user, chroots=None, source=check_upload(upload), upload=upload
    )


def test_migration_schedules_the_builds_tick_every_minute():
    schedule = Schedule.objects.get(name=tasks.BUILDS_TICK_NAME)
    assert schedule.func == tasks.BUILDS_TICK_FUNC
    assert schedule.minutes == 1


def _running(build, **fields):
    SrpmPhase.objects.filter(build=build).update(state=State.RUNNING, **fields)


def _ago(seconds: float):
    return timezone.now() - timedelta(seconds=seconds)


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"alive_at": None}, id="never-heard-from"),
        pytest.param({"alive_at": "silent"}, id="silent-past-the-limit"),
        pytest.param({"alive_at": "recent", "reported_state": "failed"}, id="reported-but-not-collected"),
        pytest.param({"alive_at": "recent", "reports": False}, id="pool-without-reports"),
        pytest.param({"alive_at": "silent", "watch_until": "lapsed"}, id="claim-lapsed"),
    ],
)
def test_tick_queues_a_check_for_a_running_phase_that_needs_one(build, settings, queued, fields):
    settings.COPRSSH_AGENT_SILENCE = 90
    when = {"silent": _ago(91), "recent": _ago(5), "lapsed": _ago(1)}
    _running(build, **{name: when.get(value, value) for name, value in fields.items()})
    queued.take()
    summary = queued.call(tasks.tick)
    assert summary["checked"] == [build.srpm.pk]
    assert queued.tasks.count(("builds.tasks.check_phase", ("srpm", build.srpm.pk))) == 1


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"alive_at": "recent"}, id="agent-reported-lately"),
        pytest.param({"alive_at": "silent", "watch_until": "claimed"}, id="a-check-holds-it"),
        pytest.param({"reported_state": "failed", "watch_until": "claimed"}, id="being-collected"),
    ],
)
def test_tick_leaves_a_running_phase_that_needs_no_check(build, settings, queued, fields):
    settings.COPRSSH_AGENT_SILENCE = 90
    when = {"silent": _ago(91), "recent": _ago(5), "claimed": _ago(-60)}
    _running(build, **{name: when.get(value, value) for name, value in fields.items()})
    queued.take()
    assert queued.call(tasks.tick)["checked"] == []
    assert queued.tasks == []


def test_tick_fails_a_pending_phase_whose_lease_ended(build):
    builders.release_lease(lease_id=build.srpm.lease_id, via=builders.TASK, reason=Lease.EndReason.FAILED)
    summary = tasks.tick()
    build.refresh_from_db()
    srpm = SrpmPhase.objects.get(build=build)
    assert summary["failed"] == [srpm.pk]
    assert srpm.state == State.FAILED
    assert "lease ended" in srpm.status_reason
    assert build.state == State.FAILED
    assert set(BuildChroot.objects.filter(build=build).values_list("state", flat=True)) == {State.SKIPPED}


def test_tick_restarts_a_phase_whose_worker_died_while_starting_it(build, queued):
    """Ref: #8 (bench/faults.py deploy-kill) — a cluster killed while deploying SSH keys left the
    phase STARTING for good: the redelivered phase_ready saw it was no longer pending."""
    srpm = build.srpm
    SrpmPhase.objects.filter(pk=srpm.pk).update(
        state=State.STARTING, watch_until=timezone.now() - timedelta(seconds=1)
    )
    summary = queued.call(tasks.tick)
    assert summary["restarted"] == [srpm.pk]
    srpm.refresh_from_db()
    assert (srpm.state, srpm.watch_until) == (State.PENDING, None)
    assert ("builds.tasks.phase_ready", (srpm.lease_id,)) in queued.tasks
    # A second tick finds nothing more to do.
    assert queued.call(tasks.tick)["restarted"] == []


def test_tick_leaves_a_phase_that_is_still_being_started(build, django_capture_on_commit_callbacks):
    SrpmPhase.objects.filter(pk=build.srpm.pk).update(
        state=State.STARTING, watch_until=timezone.now() + timedelta(seconds=60)
    )
    with django_capture_on_commit_callbacks(execute=False):
        assert tasks.tick()["restarted"] == []
    assert SrpmPhase.objects.get(pk=build.srpm.pk).state == State.STARTING


def test_manage_py_tick_runs_the_builders_tick_and_the_builds_tick(build, queued):
    # For the builders tick: a lease that waits for a builder. For the builds tick: a phase whose lease ended.
    builders.request_lease(owner=build.submitter, arch="aarch64", sandbox="other")
    builders.release_lease(lease_id=build.srpm.lease_id, via=builders.TASK, reason=Lease.EndReason.FAILED)
    queued.take()
    out = io.StringIO()

    queued.call(call_command, "tick", stdout=out)

    printed = json.loads(out.getvalue())
    assert set(printed) == {"coprssh-tick", "coprssh-builds-tick"}
    [started] = Builder.objects.filter(state=Builder.State.PROVISIONING)
    assert printed["coprssh-tick"]["started"] == [started.pk]
    assert ("builders.tasks.provision_builder", (started.pk,)) in queued.take()
    assert printed["coprssh-builds-tick"]["failed"] == [build.srpm.pk]
    assert SrpmPhase.objects.get(build=build).state == State.FAILED
