"""python-copr (the `copr` library) against a live coprssh: the reads scripts use, and its errors."""

from __future__ import annotations

import pytest
from copr.v3 import Client, CoprAuthException, CoprNoResultException, CoprRequestException
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction

from builds import storage
from builds.models import Build, BuildChroot, SrpmPhase, State
from builds.services import create_project, submit_build, update_build_state
from builds.sources import check_upload
from tests.copr_api.conftest import CHROOTS, HELLO_SPEC, write_config

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def client(copr_config, chroots) -> Client:
    return Client.create_from_config_file(str(copr_config))


@pytest.fixture
def build(user, chroots) -> Build:
    project = create_project(owner=user, name="hello", chroots=chroots, description="Says hello.")
    upload = SimpleUploadedFile(HELLO_SPEC.name, HELLO_SPEC.read_bytes())
    return submit_build(
        project=project, submitter=user, chroots=None, source=check_upload(upload), upload=upload
    )


def move(phases, state: str) -> None:
    """Move phases to `state` and derive the build's state, as the phase services do."""
    with transaction.atomic():
        build_ids = set(phases.values_list("build_id", flat=True))
        phases.update(state=state)
        for build_id in build_ids:
            update_build_state(build_id)


def test_auth_check_names_the_user(client, user):
    assert client.base_proxy.auth_check().name == "alice"
    assert client.base_proxy.home().version == 3


def test_build_proxy_get_shows_the_build_in_coprs_terms(client, build, live_server):
    got = client.build_proxy.get(build.pk)
    assert (got.id, got.state, got.ownername, got.projectname) == (build.pk, "pending", "alice", "hello")
    assert got.submitter == "alice"
    assert got.repo_url == f"{live_server.url}/results/alice/hello/"
    assert sorted(got.chroots) == sorted(CHROOTS)
    assert got.submitted_on == int(build.created_at.timestamp())
    assert got.started_on is None
    assert got.source_package == {"name": None, "version": None, "url": None}
    assert got.ssh is False


def test_states_follow_the_phases_as_copr_names_them(client, build):
    chroots = client.build_chroot_proxy.get_list(build.pk)
    # Copr's chroots wait for the source build.
    assert {c.state for c in chroots} == {"waiting"}
    move(SrpmPhase.objects.filter(build=build), State.RUNNING)
    assert client.build_proxy.get(build.pk).state == "running"
    move(SrpmPhase.objects.filter(build=build), State.SUCCEEDED)
    first, second = BuildChroot.objects.filter(build=build).order_by("chroot__name")
    move(BuildChroot.objects.filter(pk=first.pk), State.STARTING)
    assert client.build_proxy.get(build.pk).state == "starting"
    assert client.build_chroot_proxy.get(build.pk, second.chroot.name).state == "pending"


def test_project_and_build_lists_and_chroots(client, build, live_server):
    project = client.project_proxy.get("alice", "hello")
    assert (project.full_name, project.description, project.storage) == (
        "alice/hello",
        "Says hello.",
        "backend",
    )
    assert project.additional_repos == []
    projects = client.project_proxy.get_list("alice")
    assert [p.name for p in projects] == ["hello"]
    assert projects.meta == {"limit": 100, "offset": 0, "order": "id", "order_type": "DESC"}
    builds = client.build_proxy.get_list("alice", "hello", pagination={"limit": 10, "offset": 0})
    assert [b.id for b in builds] == [build.pk]
    assert client.build_proxy.get_list("alice", "hello", status="succeeded") == []
    assert [b.id for b in client.build_proxy.get_list("alice", "hello", status="pending")] == [build.pk]
    chroots = client.build_chroot_proxy.get_list(build.pk)
    assert sorted(c.name for c in chroots) == sorted(CHROOTS)
    for chroot in chroots:
        assert chroot.result_url == f"{live_server.url}/results/alice/hello/{chroot.name}/{build.pk:08d}/"


def test_built_packages_reads_each_rpms_header(client, build, demo_rpm):
    build_chroot = build.build_chroots.select_related("chroot").first()
    target = storage.ensure_dir(build_chroot.storage_dir) / demo_rpm.name
    target.write_bytes(demo_rpm.read_bytes())
    packages = client.build_proxy.get_built_packages(build.pk)
    (nevra,) = packages[build_chroot.chroot.name]["packages"]
    assert nevra["name"] == "hello-coprssh"
    assert nevra["arch"] == "noarch"
    assert demo_rpm.name == f"{nevra['name']}-{nevra['version']}-{nevra['release']}.noarch.rpm"


def test_errors_are_the_librarys_exceptions(client, build, user, live_server, tmp_path):
    with pytest.raises(CoprNoResultException, match="Build 999999 does not exist"):
        client.build_proxy.get(999999)
    with pytest.raises(CoprRequestException, match="Missing argument projectname"):
        client.build_proxy.get_list("alice", None)
    wrong = Client.create_from_config_file(
        str(write_config(tmp_path / "wrong", live_server.url, "alice", "x"))
    )
    with pytest.raises(CoprAuthException, match="Login invalid or expired"):
        wrong.base_proxy.auth_check()
    with pytest.raises(CoprAuthException):
        wrong.build_proxy.cancel(build.pk)
    build.refresh_from_db()
    assert build.state == State.PENDING
