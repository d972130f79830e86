"""copr-cli on builds that really run: watch-build of a failing build, download-build of RPMs.

The builds run on a real local pool (tests/builds/flow.py `farm`: sshd builders, the agent,
rpmbuild). copr-cli submits through the live server, whose services queue their tasks into the
farm; the test thread then plays the task worker (`farm.finish`) until the build is over, and
runs copr-cli again on the result. Nothing is marked finished by hand.
"""

from __future__ import annotations

import shutil

import pytest

from builds import storage
from builds.models import Build, State
from builds.services import create_project
from tests.builds.flow import CHROOTS, SPECS

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def project(farm, user):
    return create_project(owner=user, name="hello", chroots=CHROOTS)


def submitted(result) -> Build:
    assert result.returncode == 0, result.stderr
    build_id = int(result.stdout.split("Created builds:")[1].split()[0])
    return Build.objects.get(pk=build_id)


def test_watch_build_of_a_failing_build_exits_4(copr, farm, project):
    build = submitted(copr("build", "--nowait", "-r", CHROOTS[0], "hello", str(SPECS / "check-fails.spec")))
    assert farm.finish(build, timeout=60).state == State.FAILED

    watched = copr("watch-build", str(build.pk))
    assert watched.returncode == 4, watched.stderr
    assert f"Build {build.pk}: failed" in watched.stdout
    assert f"Build(s) {build.pk} failed." in watched.stderr
    assert copr.ok("status", str(build.pk)).stdout.strip() == "failed"


def test_download_build_fetches_the_rpms_of_each_chroot(copr, farm, project, hello_srpm, tmp_path):
    if shutil.which("wget") is None:
        pytest.skip("copr-cli download-build runs wget, which is not installed (bin/system-packages)")
    build = submitted(copr("build", "--nowait", "-r", CHROOTS[0], "hello", str(hello_srpm)))
    assert farm.finish(build, timeout=60).state == State.SUCCEEDED

    dest = tmp_path / "downloaded"
    copr.ok("download-build", str(build.pk), "--dest", str(dest))
    got = sorted(p.name for p in (dest / CHROOTS[0]).iterdir())
    rpms = [name for name in got if name.endswith(".rpm")]
    assert rpms, got
    assert all(name.startswith("hello-coprssh-") and name.endswith(".noarch.rpm") for name in rpms)
    assert "backend.log" in got
    stored = storage.path(build.build_chroots.get().storage_dir)
    for name in rpms:
        assert (dest / CHROOTS[0] / name).read_bytes() == (stored / name).read_bytes()
