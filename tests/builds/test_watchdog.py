"""The builds tick's watchdog (issue 11): an agent that falls silent gets its builder checked once
over SSH; a killed agent and a dead builder end as DESIGN says; an agent that cannot reach the
service, or a pool whose builders never can, still gets its build finished.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
from pathlib import Path

import pytest

from builders.models import Builder, Lease, Pool
from builders.providers.local import LocalProvider
from builds import tasks
from builds.models import BuildChroot, State
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

pytestmark = pytest.mark.slow


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user("alice")


def _chroot(build) -> BuildChroot:
    return BuildChroot.objects.select_related("lease").get(build=build)


def _closed_port_url() -> str:
    """An http URL on loopback where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_a_killed_agent_is_found_by_the_watchdog_and_its_phase_fails(farm, alice, settings):
    project = make_project(alice, chroots=[CHROOTS[0]])
    build = submit_file(project, alice, SPECS / "slow.spec")
    bc = farm.run_until_running(_chroot(build))
    assert wait_for(lambda: "slow: building" in read_log(bc.storage_dir, "builder-live.log"), timeout=10)
    for pid in processes_in(bc.remote_dir):  # the agent and the build it runs, as a crash would
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: not processes_in(bc.remote_dir), timeout=5)
    builder_id = Lease.objects.get(pk=bc.lease_id).builder_id

    # Not yet silent for long: the tick leaves it alone.
    tasks.tick()
    farm.run()
    assert BuildChroot.objects.get(pk=bc.pk).state == State.RUNNING
    settings.COPRSSH_AGENT_SILENCE = 0
    farm.run(lambda: BuildChroot.objects.get(pk=bc.pk).is_finished, timeout=20, builds_tick=True)

    bc.refresh_from_db()
    assert bc.state == State.FAILED
    assert bc.status_reason == "the build agent on the builder stopped without reporting an end"
    assert Lease.objects.get(pk=bc.lease_id).end_reason == Lease.EndReason.FAILED
    farm.run(lambda: Builder.objects.get(pk=builder_id).state == Builder.State.TERMINATED, timeout=20)


def test_a_dead_builder_is_found_by_the_watchdog_and_its_phase_fails(farm, alice, settings, monkeypatch):
    from datetime import timedelta

    from builds.services import reports

    settings.COPRSSH_BUILDER_IO_TIMEOUT = 2
    settings.COPRSSH_BUILDER_CALL_DEADLINE = 4
    project = make_project(alice, chroots=[CHROOTS[0]])
    build = submit_file(project, alice, SPECS / "slow.spec")
    bc = farm.run_until_running(_chroot(build))
    builder = Lease.objects.select_related("builder").get(pk=bc.lease_id).builder
    LocalProvider(farm.root).delete(builder.provider_id)  # the machine dies, and its agent with it
    settings.COPRSSH_AGENT_SILENCE = 0

    farm.run(lambda: BuildChroot.objects.get(pk=bc.pk).unreachable_since is not None, builds_tick=True)
    assert BuildChroot.objects.get(pk=bc.pk).state == State.RUNNING  # one failed look is not enough
    monkeypatch.setattr(reports, "UNREACHABLE_LIMIT", timedelta(0))
    farm.run(lambda: BuildChroot.objects.get(pk=bc.pk).is_finished, timeout=20, builds_tick=True)

    bc.refresh_from_db()
    assert bc.state == State.FAILED
    assert "stopped answering" in bc.status_reason
    assert Lease.objects.get(pk=bc.lease_id).end_reason == Lease.EndReason.FAILED


def test_an_agent_that_cannot_reach_the_service_is_checked_and_its_build_still_finishes(
    farm, alice, settings
):
    settings.COPRSSH_PUBLIC_URL = _closed_port_url()
    settings.COPRSSH_AGENT_SILENCE = 0
    project = make_project(alice, chroots=[CHROOTS[0]])
    build = submit_file(project, alice, SPECS / "two-lines.spec")
    bc = _chroot(build)

    def running() -> bool:
        bc.refresh_from_db()
        return bc.state == State.RUNNING

    farm.run(running, builds_tick=True)  # the SRPM phase finished through the tick's checks
    started_alive = bc.alive_at
    # A check finds the agent alive and working: the phase keeps running, trusted a while longer.
    farm.run(lambda: BuildChroot.objects.get(pk=bc.pk).alive_at != started_alive, builds_tick=True)
    assert BuildChroot.objects.get(pk=bc.pk).state == State.RUNNING
    farm.run(lambda: BuildChroot.objects.get(pk=bc.pk).is_finished, timeout=30, builds_tick=True)

    bc.refresh_from_db()
    assert bc.state == State.SUCCEEDED
    # Read over SSH by the checks instead of pushed, the log is still whole.
    assert (stored(bc.storage_dir) / "builder-live.log").read_bytes() == (
        Path(bc.remote_dir) / "builder-live.log"
    ).read_bytes()


def test_a_pool_whose_builders_cannot_reach_the_service_is_checked_every_tick(farm, alice, settings):
    Pool.objects.filter(pk=farm.pool.pk).update(reaches_service=False)
    settings.COPRSSH_PUBLIC_URL = _closed_port_url()  # and it would not help if they tried
    project = make_project(alice, chroots=[CHROOTS[0]])

    build = submit_file(project, alice, HELLO_SPEC)
    farm.run(lambda: build.__class__.objects.get(pk=build.pk).is_finished, timeout=60, builds_tick=True)

    build.refresh_from_db()
    assert build.state == State.SUCCEEDED
    bc = _chroot(build)
    assert (bc.reports, bc.token_hash) == (False, "")
    assert "hello-coprssh-1.0-1.noarch.rpm" in os.listdir(stored(bc.storage_dir))
