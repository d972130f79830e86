"""The unmodified copr-cli against a live coprssh: projects, builds, status, cancel, auth.

No builder runs here: submitted builds stay pending (a build that must finish is in
test_copr_cli_builds.py, which runs a real local pool).
"""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from builds.models import Build, Project
from builds.services import create_project, submit_build
from builds.sources import check_upload
from copr_api import base
from tests.copr_api.conftest import CHROOTS, HELLO_SPEC, write_config

pytestmark = pytest.mark.django_db(transaction=True)

PUBLIC_HOST = "140.82.112.3"  # a public address literal: the source check needs no DNS


def submit_spec(project: Project, user) -> Build:
    upload = SimpleUploadedFile(HELLO_SPEC.name, HELLO_SPEC.read_bytes())
    return submit_build(
        project=project, submitter=user, chroots=None, source=check_upload(upload), upload=upload
    )


def test_create_then_list_and_get_show_the_project(copr, user, live_server):
    created = copr.ok(
        "create", "hello", "--chroot", CHROOTS[0], "--chroot", CHROOTS[1], "--description", "Hi"
    )
    # copr-cli prints Copr's web address of the project; it leads to our project page.
    assert f"{live_server.url}/coprs/alice/hello/" in created.stdout
    project = Project.objects.get(owner=user, name="hello")
    assert sorted(c.name for c in project.chroots.all()) == sorted(CHROOTS)

    listed = copr.ok("list")
    assert "Name: hello" in listed.stdout
    assert "Description: Hi" in listed.stdout
    assert f"{CHROOTS[0]}: {live_server.url}/results/alice/hello/{CHROOTS[0]}/" in listed.stdout
    assert copr.ok("get", "alice/hello").stdout == listed.stdout


def test_create_refuses_an_unknown_chroot_with_the_services_message(copr, user):
    result = copr("create", "hello", "--chroot", "fedora-1-mips")
    assert result.returncode == 1
    assert "Unknown or inactive chroots: 'fedora-1-mips'" in result.stderr
    assert not Project.objects.exists()


def test_build_uploads_a_spec_and_an_srpm_and_status_shows_them_pending(
    copr, user, chroots, tmp_path, hello_srpm
):
    create_project(owner=user, name="hello", chroots=chroots)
    spec = copr.ok("build", "--nowait", "hello", str(HELLO_SPEC))
    srpm = copr.ok("build", "--nowait", "-r", CHROOTS[1], "hello", str(hello_srpm))

    first, second = Build.objects.order_by("pk")
    assert f"Created builds: {first.pk}\n" in spec.stdout
    assert f"Created builds: {second.pk}\n" in srpm.stdout
    assert (first.source_filename, second.source_filename) == (HELLO_SPEC.name, hello_srpm.name)
    assert sorted(first.build_chroots.values_list("chroot__name", flat=True)) == sorted(CHROOTS)
    assert list(second.build_chroots.values_list("chroot__name", flat=True)) == [CHROOTS[1]]
    assert copr.ok("status", str(second.pk)).stdout.strip() == "pending"


def test_build_from_a_url_and_buildscm_submit_checked_sources(copr, user, chroots):
    create_project(owner=user, name="hello", chroots=chroots)
    url = f"https://{PUBLIC_HOST}/pub/hello-1.0-1.src.rpm"
    from_url_output = copr.ok("build", "--nowait", "hello", url).stdout
    scm = copr.ok(
        "buildscm", "--nowait", "hello", "--clone-url", f"https://{PUBLIC_HOST}/me/hello.git",
        "--commit", "v1.0", "--subdir", "packaging", "--spec", "hello.spec",
    )  # fmt: skip
    from_url, from_git = Build.objects.order_by("pk")
    assert f"Created builds: {from_url.pk}\n" in from_url_output
    assert f"Created builds: {from_git.pk}\n" in scm.stdout
    assert (from_url.source_type, from_url.url, from_url.source_filename) == (
        "url",
        url,
        "hello-1.0-1.src.rpm",
    )
    assert (from_git.clone_url, from_git.committish, from_git.spec) == (
        f"https://{PUBLIC_HOST}/me/hello.git",
        "v1.0",
        "packaging/hello.spec",
    )


def test_buildscm_refuses_a_private_clone_url(copr, user, chroots):
    create_project(owner=user, name="hello", chroots=chroots)
    result = copr(
        "buildscm", "--nowait", "hello", "--clone-url", "http://127.0.0.1/x.git", "--spec", "x.spec"
    )
    assert result.returncode == 1
    assert "builds can only fetch from public hosts" in result.stderr
    assert not Build.objects.exists()


def test_list_builds_pages_through_every_build(copr, user, chroots, monkeypatch):
    project = create_project(owner=user, name="hello", chroots=chroots)
    builds = [submit_spec(project, user) for _ in range(5)]
    # Pages of 2: copr-cli asks for 1000 at a time and follows meta.limit until a page is empty.
    monkeypatch.setattr(base, "MAX_LIMIT", 2)
    result = copr.ok("list-builds", "hello")
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert [int(row[0]) for row in rows] == sorted((b.pk for b in builds), reverse=True)
    assert {row[2] for row in rows} == {"pending"}


def test_cancel_cancels_and_watch_build_exits_4(copr, user, chroots):
    build = submit_spec(create_project(owner=user, name="hello", chroots=chroots), user)
    assert copr.ok("cancel", str(build.pk)).stdout.strip() == "canceled"
    build.refresh_from_db()
    assert build.state == "canceled"
    watched = copr("watch-build", str(build.pk))
    assert watched.returncode == 4
    assert f"Build(s) {build.pk} canceled." in watched.stderr
    again = copr("cancel", str(build.pk))
    assert again.returncode == 1
    assert "has already finished (canceled)" in again.stderr


def test_a_wrong_token_is_the_clients_auth_error_and_creates_nothing(copr, user, live_server, tmp_path):
    wrong = write_config(tmp_path / "wrong", live_server.url, "alice", "0" * 40)
    result = copr("create", "hello", "--chroot", CHROOTS[0], config=wrong)
    assert result.returncode == 7
    assert "Operation requires API authentication" in result.stderr
    assert "Login invalid or expired" in result.stderr
    assert not Project.objects.exists()
    unknown = write_config(tmp_path / "unknown", live_server.url, "mallory", "0" * 40)
    assert copr("create", "hello", "--chroot", CHROOTS[0], config=unknown).returncode == 7
    assert not Project.objects.exists()


def test_another_users_project_is_refused(copr, user, other_user, chroots):
    create_project(owner=other_user, name="theirs", chroots=chroots)
    build = copr("build", "--nowait", "bob/theirs", str(HELLO_SPEC))
    assert build.returncode == 7
    assert "User alice is not allowed to build in bob/theirs" in build.stderr
    create = copr("create", "bob/mine", "--chroot", CHROOTS[0])
    assert create.returncode == 7
    assert "You can create projects of your own only" in create.stderr
    assert not Build.objects.exists()
    assert list(Project.objects.values_list("name", flat=True)) == ["theirs"]


def test_unknown_build_and_project_are_not_found(copr):
    status = copr("status", "999")
    assert status.returncode == 1
    assert "Build 999 does not exist." in status.stderr
    get = copr("get", "alice/nope")
    assert get.returncode == 1
    assert "Project alice/nope does not exist." in get.stderr
