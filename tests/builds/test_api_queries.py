"""The build and project API reads in a fixed number of queries, however many builds and chroots (DESIGN §5)."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from builds import services, storage
from builds.models import Build
from builds.sources import check_upload
from tests.builds.conftest import DEMO_SPEC

pytestmark = pytest.mark.django_db

CHROOTS = ["epel-10-aarch64", "fedora-43-x86_64", "fedora-rawhide-x86_64"]
ALL_CHROOTS = [
    f"{os}-{version}-{arch}"
    for os, version in [
        ("fedora", "rawhide"),
        ("fedora", "43"),
        ("fedora", "42"),
        ("epel", "10"),
        ("epel", "9"),
    ]
    for arch in ["x86_64", "aarch64", "ppc64le", "s390x"]
]


@pytest.fixture(autouse=True)
def storage_dir(settings, tmp_path):
    settings.COPRSSH_STORAGE_DIR = tmp_path / "storage"
    return settings.COPRSSH_STORAGE_DIR


@pytest.fixture
def anon() -> APIClient:
    return APIClient()


@pytest.fixture
def api(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


@pytest.fixture
def project(user):
    return services.create_project(owner=user, name="hello", chroots=ALL_CHROOTS)


def make_builds(project: Any, user: Any, count: int, chroots: list[str] = CHROOTS) -> list[Build]:
    builds = []
    for _ in range(count):
        upload = SimpleUploadedFile("hello-coprssh.spec", DEMO_SPEC.read_bytes())
        build = services.submit_build(
            project=project, submitter=user, chroots=chroots, source=check_upload(upload), upload=upload
        )
        # A result in each chroot, so the answer lists files too.
        for build_chroot in build.build_chroots.select_related("chroot"):
            (storage.ensure_dir(build_chroot.storage_dir) / "hello-coprssh-1.0-1.noarch.rpm").write_bytes(
                b"x"
            )
        builds.append(build)
    return builds


def queries(client: APIClient, url: str, params: dict[str, Any] | None = None) -> tuple[int, Any]:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url, params or {})
    assert response.status_code == 200, response.content
    return len(captured), response.json()


@pytest.mark.parametrize("params", [{}, {"project": "alice/hello"}])
def test_build_list_queries_do_not_grow_with_builds_and_chroots(anon, project, user, params):
    make_builds(project, user, 1)
    few, page = queries(anon, "/api/v1/builds/", params)
    assert len(page["results"]) == 1

    make_builds(project, user, 49)
    many, page = queries(anon, "/api/v1/builds/", params)

    assert len(page["results"]) == 50
    assert all(len(build["chroots"]) == 3 for build in page["results"])
    assert all(len(c["results"]) == 1 for build in page["results"] for c in build["chroots"])
    assert many == few
    # count, builds (with project, owner, submitter, srpm), their chroots; plus the project filter.
    assert few == 3 + ("project" in params)


def test_build_detail_queries_do_not_grow_with_chroots(anon, project, user):
    (small,) = make_builds(project, user, 1, chroots=["fedora-43-x86_64"])
    (large,) = make_builds(project, user, 1, chroots=ALL_CHROOTS)

    few, one = queries(anon, f"/api/v1/builds/{small.pk}/")
    many, other = queries(anon, f"/api/v1/builds/{large.pk}/")

    assert (len(one["chroots"]), len(other["chroots"])) == (1, 20)
    assert many == few == 2


def test_build_detail_queries_do_not_grow_with_builds(anon, project, user):
    (first,) = make_builds(project, user, 1)
    few, _ = queries(anon, f"/api/v1/builds/{first.pk}/")

    make_builds(project, user, 49)
    many, _ = queries(anon, f"/api/v1/builds/{first.pk}/")

    assert many == few


def test_an_authenticated_read_costs_one_query_more(anon, api, project, user):
    make_builds(project, user, 2)

    anonymous, _ = queries(anon, "/api/v1/builds/")
    with_token, _ = queries(api, "/api/v1/builds/")

    assert with_token == anonymous + 1


def test_project_list_queries_do_not_grow_with_projects(anon, user, other_user):
    services.create_project(owner=user, name="p0", chroots=CHROOTS)
    few, page = queries(anon, "/api/v1/projects/")
    assert page["count"] == 1

    for n in range(1, 30):
        services.create_project(owner=user if n % 2 else other_user, name=f"p{n}", chroots=ALL_CHROOTS)
    many, page = queries(anon, "/api/v1/projects/")

    assert page["count"] == 30
    assert many == few == 3
