"""The demo's builds on the real machine: what a newcomer sees after `bin/run`.

`demo_data` submits the sample build and one whose `%check` fails; `farm` (tests/builds/flow.py)
runs them on local sshd builders with the agent and rpmbuild, as the demo's task cluster does.
"""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command

from builds.models import Build, Chroot, State
from tests.builds.flow import *  # noqa: F403 - the fixtures
from tests.builds.flow import ARCH, read_log

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_the_demo_has_a_build_that_succeeds_and_one_that_fails_in_check(farm):
    # Seeded by a migration, but a transactional test before this one flushed them.
    Chroot.objects.get_or_create(name=f"epel-9-{ARCH}", defaults={"os": "epel", "version": "9", "arch": ARCH})
    call_command("demo_data", stdout=StringIO())
    hello = Build.objects.get(project__name="hello-coprssh")
    failing = Build.objects.get(project__name="failing-check")

    hello, failing = farm.finish(hello, timeout=60), farm.finish(failing, timeout=60)

    assert hello.state == State.SUCCEEDED
    assert failing.state == State.FAILED
    assert failing.srpm.state == State.SUCCEEDED
    [phase] = failing.build_chroots.select_related("chroot")
    assert (phase.chroot.name, phase.state) == (f"fedora-rawhide-{ARCH}", State.FAILED)
    assert "rpmbuild failed with exit code 1" in phase.status_reason
    live = read_log(phase.storage_dir, "builder-live.log")
    assert "PASS: greets-a-name" in live
    assert "FAIL: greets-the-world: expected 'Hello, world!', got 'Hello, world'" in live
    assert "(%check)" in live
