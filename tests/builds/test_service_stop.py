"""Stopping the service stops its local builders mid-build: no sshd, agent or build survives. Ref: #8

The farm (tests/builds/flow.py) runs a real build on a real local builder; then the service stops
as bin/run stops it after Ctrl-C (`manage.py stop_builders`, the cluster being gone). The process
list (tests/leaks.py) must hold nothing of the pool's builders before the farm's own teardown, whose
safety net would otherwise hide a leak.
"""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from builders.models import Builder, Lease
from tests.builds.flow import *  # noqa: F403 - the fixtures
from tests.builds.flow import CHROOTS, SPECS, make_project, processes_in, read_log, submit_file, wait_for
from tests.leaks import Accounts, builder_accounts, processes_of

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_stopping_the_service_mid_build_leaves_no_process_of_its_builders(farm, django_user_model):
    alice = django_user_model.objects.create_user("alice")
    build = submit_file(make_project(alice, chroots=[CHROOTS[0]]), alice, SPECS / "slow.spec")
    [bc] = build.build_chroots.all()
    farm.run_until_running(bc)
    farm.run(lambda: "slow: building for a minute" in read_log(bc.storage_dir, "builder-live.log"))
    assert wait_for(lambda: bool(processes_in(bc.remote_dir)))
    accounts = builder_accounts(farm.root)
    assert len(processes_of(farm.root, accounts=accounts)) >= 2  # sshd, the agent, the build

    out = io.StringIO()
    call_command("stop_builders", stdout=out)

    assert processes_of(farm.root, accounts=accounts) == []
    assert not processes_in(bc.remote_dir)
    assert builder_accounts(farm.root) == Accounts(frozenset(), frozenset())
    lease = Lease.objects.get(pk=bc.lease_id)
    assert (lease.state, lease.end_reason) == (Lease.State.ENDED, Lease.EndReason.TERMINATED)
    assert set(Builder.objects.values_list("state", flat=True)) == {Builder.State.TERMINATED}
    assert f"lease {lease.pk} ended, machine deleted" in out.getvalue()
