"""REST API v1: /api/v1/projects/ and /api/v1/projects/{owner}/{name}/, and the API root's links."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from builds import services
from builds.models import Project

pytestmark = pytest.mark.django_db

PROJECTS_URL = "/api/v1/projects/"
PROJECT_FIELDS = {"id", "owner", "name", "full_name", "description", "chroots", "created"}


def client_for(user: Any) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


@pytest.fixture
def api(user) -> APIClient:
    return client_for(user)


@pytest.fixture
def anon() -> APIClient:
    return APIClient()


# --- create ------------------------------------------------------------------------------


def test_create_a_project_returns_201_with_it(api, user):
    response = api.post(
        PROJECTS_URL,
        {"name": "hello", "chroots": ["fedora-rawhide-x86_64", "epel-10-aarch64"], "description": "Hi"},
        format="json",
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == PROJECT_FIELDS
    assert (body["owner"], body["name"], body["full_name"]) == ("alice", "hello", "alice/hello")
    assert body["description"] == "Hi"
    assert body["chroots"] == ["epel-10-aarch64", "fedora-rawhide-x86_64"]
    project = Project.objects.get(pk=body["id"])
    assert project.owner == user


def test_create_a_project_without_a_description(api):
    response = api.post(PROJECTS_URL, {"name": "hello", "chroots": ["fedora-43-x86_64"]}, format="json")

    assert response.status_code == 201, response.content
    assert response.json()["description"] == ""


def test_two_users_may_have_projects_of_the_same_name(api, other_user):
    services.create_project(owner=other_user, name="hello", chroots=["fedora-43-x86_64"])

    response = api.post(PROJECTS_URL, {"name": "hello", "chroots": ["fedora-43-x86_64"]}, format="json")

    assert response.status_code == 201, response.content
    assert response.json()["full_name"] == "alice/hello"


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"chroots": ["fedora-43-x86_64"]}, "name", "required"),
        ({"name": "-hello", "chroots": ["fedora-43-x86_64"]}, "name", "letters, digits"),
        ({"name": "a/b", "chroots": ["fedora-43-x86_64"]}, "name", "letters, digits"),
        ({"name": "x" * 101, "chroots": ["fedora-43-x86_64"]}, "name", "no more than 100 characters"),
        ({"name": "hello"}, "chroots", "required"),
        ({"name": "hello", "chroots": []}, "chroots", "Choose at least one chroot"),
        ({"name": "hello", "chroots": "fedora-43-x86_64"}, "chroots", "Expected a list"),
        ({"name": "hello", "chroots": ["fedora-99-x86_64"]}, "chroots", "Unknown or inactive chroots"),
        (
            {"name": "hello", "chroots": [f"fedora-{n}-x86_64" for n in range(101)]},
            "chroots",
            "no more than 100",
        ),
        (
            {"name": "hello", "chroots": ["fedora-43-x86_64"], "description": "x" * 5001},
            "description",
            "no more than 5000 characters",
        ),
        (
            {"name": "hello", "chroots": ["fedora-43-x86_64"], "description": None},
            "description",
            "may not be null",
        ),
    ],
)
def test_create_refuses_bad_input_by_field(api, data, field, message):
    response = api.post(PROJECTS_URL, data, format="json")

    assert response.status_code == 400, response.content
    assert message in response.json()[field][0]
    assert Project.objects.count() == 0


def test_create_refuses_a_name_i_already_use(api, user):
    services.create_project(owner=user, name="hello", chroots=["fedora-43-x86_64"])

    response = api.post(PROJECTS_URL, {"name": "hello", "chroots": ["fedora-42-x86_64"]}, format="json")

    assert response.status_code == 400
    assert response.json()["name"] == ["You already have a project named hello."]
    assert Project.objects.count() == 1


def test_create_refuses_a_body_that_is_not_json(api):
    response = api.post(PROJECTS_URL, "{name: hello", content_type="application/json")

    assert response.status_code == 400
    assert "JSON parse error" in response.json()["detail"]
    assert Project.objects.count() == 0


def test_anonymous_cannot_create_a_project(anon):
    response = anon.post(PROJECTS_URL, {"name": "hello", "chroots": ["fedora-43-x86_64"]}, format="json")

    assert response.status_code == 401
    assert Project.objects.count() == 0


# --- read: public --------------------------------------------------------------------------


def test_anyone_can_list_projects_and_filter_by_owner(anon, user, other_user):
    services.create_project(owner=user, name="zeta", chroots=["fedora-43-x86_64"])
    services.create_project(owner=user, name="alpha", chroots=["fedora-43-x86_64", "epel-9-x86_64"])
    services.create_project(owner=other_user, name="hello", chroots=["fedora-43-x86_64"])

    everything = anon.get(PROJECTS_URL)
    alices = anon.get(PROJECTS_URL, {"owner": "alice"})
    nobodys = anon.get(PROJECTS_URL, {"owner": "nobody"})

    assert everything.status_code == 200
    assert [p["full_name"] for p in everything.json()["results"]] == [
        "alice/alpha",
        "alice/zeta",
        "bob/hello",
    ]
    assert everything.json()["count"] == 3
    assert [p["full_name"] for p in alices.json()["results"]] == ["alice/alpha", "alice/zeta"]
    assert alices.json()["results"][0]["chroots"] == ["epel-9-x86_64", "fedora-43-x86_64"]
    assert nobodys.json() == {"count": 0, "next": None, "previous": None, "results": []}


def test_project_list_pages_with_limit_and_offset(anon, user):
    for name in ["a", "b", "c"]:
        services.create_project(owner=user, name=name, chroots=["fedora-43-x86_64"])

    page = anon.get(PROJECTS_URL, {"limit": 1, "offset": 1}).json()

    assert page["count"] == 3
    assert [p["name"] for p in page["results"]] == ["b"]
    assert page["next"] is not None
    assert page["previous"] is not None


def test_anyone_can_read_a_project(anon, user):
    project = services.create_project(owner=user, name="hello.world", chroots=["fedora-43-x86_64"])

    response = anon.get(f"{PROJECTS_URL}alice/hello.world/")

    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == PROJECT_FIELDS
    assert body["id"] == project.pk
    assert body["chroots"] == ["fedora-43-x86_64"]


def test_an_unknown_project_is_404(anon, user):
    services.create_project(owner=user, name="hello", chroots=["fedora-43-x86_64"])

    assert anon.get(f"{PROJECTS_URL}alice/nope/").status_code == 404
    assert anon.get(f"{PROJECTS_URL}bob/hello/").status_code == 404


def test_the_api_root_links_to_projects_and_builds(anon):
    body = anon.get("/api/v1/").json()

    assert body["projects"] == "http://testserver/api/v1/projects/"
    assert body["builds"] == "http://testserver/api/v1/builds/"
