"""REST API v1: `ssh_on_failure` with keys on POST /api/v1/builds/ and on resubmit (issue 13).

The keys are checked at submission exactly as for SSH resubmits (the same corpus of bad lines);
nothing is deployed until a phase fails (tests/builds/test_keep_on_failure.py runs that part).
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
from rest_framework.test import APIClient

from builds import services
from builds.models import Build
from keys.services import add_saved_key
from tests.builds.test_api_builds import (
    BUILDS_URL,
    CHROOTS,
    FakeResolver,
    client_for,
    finished_build,
    snapshot,
    spec_upload,
)
from tests.builds.test_api_ssh import HOSTILE, Key, _keygen, resubmit_url

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="session")
def keys(tmp_path_factory) -> dict[str, Key]:
    directory = tmp_path_factory.mktemp("keep-keys")
    kinds = {"laptop": "ed25519", "gh1": "ed25519", "saved": "ed25519", "desk": "ed25519", "dsa": "dsa"}
    kinds.update({f"many{n}": "ed25519" for n in range(11)})
    return {name: _keygen(directory, name, kind) for name, kind in kinds.items()}


class Resolver(FakeResolver):
    """git.example.org is public; 127.0.0.1 is the stand-in key server's address."""

    names = {**FakeResolver.names, "127.0.0.1": ["127.0.0.1"]}


@pytest.fixture(autouse=True)
def storage_dir(settings, tmp_path, monkeypatch) -> Path:
    """Builds store under tmp_path; no test makes a real DNS query."""
    settings.COPRSSH_STORAGE_DIR = tmp_path / "storage"
    settings.COPRSSH_ALLOW_LOCAL_SOURCES = False
    monkeypatch.setattr(socket, "getaddrinfo", Resolver().getaddrinfo)
    return settings.COPRSSH_STORAGE_DIR


@pytest.fixture
def project(user):
    return services.create_project(owner=user, name="hello", chroots=CHROOTS)


@pytest.fixture
def api(user) -> APIClient:
    return client_for(user)


@pytest.fixture
def other_api(other_user) -> APIClient:
    return client_for(other_user)


def submit(client: APIClient, **fields: Any) -> Any:
    """A build of an uploaded spec, as the CLI sends it (multipart)."""
    return client.post(BUILDS_URL, {"project": "alice/hello", "source_file": spec_upload(), **fields})


def scm(client: APIClient, **fields: Any) -> Any:
    body = {"project": "alice/hello", "source_type": "scm", "clone_url": "https://git.example.org/x.git"}
    return client.post(BUILDS_URL, {**body, "spec": "x.spec", **fields}, format="json")


# --- accepted -----------------------------------------------------------------------------


def test_a_build_keeping_its_builder_on_failure_stores_the_keys_and_deploys_nothing(api, project, keys):
    response = submit(api, ssh_on_failure="true", ssh_public_keys=keys["laptop"].public)

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["ssh"], body["ssh_on_failure"]) == (False, True)
    # A normal build: its phases have no SSH builder, and nothing is said about keeping yet.
    assert body["srpm"]["ssh_builder"] is None
    assert all(c["ssh_builder"] is None and c["not_kept_reason"] == "" for c in body["chroots"])
    build = Build.objects.get(pk=body["id"])
    assert build.ssh_keys == keys["laptop"].public
    assert not build.srpm.lease.ssh


def test_json_sources_take_the_keep_fields_with_references_and_saved_keys(
    api, project, user, keys, key_server
):
    key_server.github("alice", keys["gh1"])
    add_saved_key(user=user, title="office", public_key=keys["saved"].public)

    response = scm(api, ssh_on_failure=True, ssh_public_keys="GitHub:alice", use_saved_keys=True)

    assert response.status_code == 201, response.content
    lines = Build.objects.get(pk=response.json()["id"]).ssh_keys.splitlines()
    assert [line.split()[1] for line in lines] == [
        keys["gh1"].public.split()[1],
        keys["saved"].public.split()[1],
    ]
    assert key_server.requests == ["/gh/alice.keys"]


def test_saved_keys_alone_are_enough(api, project, user, keys):
    add_saved_key(user=user, title="office", public_key=keys["saved"].public)

    response = scm(api, ssh_on_failure=True, use_saved_keys=True)

    assert response.status_code == 201, response.content
    assert response.json()["ssh_on_failure"] is True


def test_without_ssh_on_failure_a_build_is_normal(api, project):
    response = submit(api)

    assert response.status_code == 201, response.content
    assert response.json()["ssh_on_failure"] is False
    assert Build.objects.get().ssh_keys == ""


def test_a_resubmit_may_keep_its_builder_on_failure(api, project, user, keys):
    old = finished_build(project, user)

    response = api.post(
        resubmit_url(old.pk),
        {"ssh_on_failure": True, "ssh_public_keys": keys["laptop"].public},
        format="json",
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["ssh"], body["ssh_on_failure"], body["resubmitted_from"]) == (False, True, old.pk)
    assert body["srpm"]["ssh_builder"] is None
    assert Build.objects.get(pk=body["id"]).ssh_keys == keys["laptop"].public


# --- refused ------------------------------------------------------------------------------


def test_keys_without_ssh_on_failure_are_refused_on_submit(api, project, keys, storage_dir):
    before = snapshot(storage_dir)

    response = scm(api, ssh_public_keys=keys["laptop"].public)

    assert response.status_code == 400, response.content
    assert "Keys go with ssh_on_failure: true" in response.json()["ssh_on_failure"][0]
    assert snapshot(storage_dir) == before


@pytest.mark.parametrize("send", [submit, scm])
def test_ssh_on_failure_without_keys_is_refused(api, project, storage_dir, send):
    before = snapshot(storage_dir)

    response = send(api, ssh_on_failure=True)

    assert response.status_code == 400, response.content
    assert response.json()["ssh_public_keys"] == ["Give at least one public SSH key to keep the builder for."]
    assert snapshot(storage_dir) == before


@pytest.mark.parametrize(("make_text", "line", "message"), HOSTILE)
def test_hostile_key_lines_are_refused_line_by_line_and_nothing_is_created(
    api, project, keys, storage_dir, make_text, line, message
):
    before = snapshot(storage_dir)

    response = scm(api, ssh_on_failure=True, ssh_public_keys=make_text(keys))

    assert response.status_code == 400, response.content
    body = response.json()
    assert [error["line"] for error in body["errors"]] == [line], body
    assert message in body["errors"][0]["message"], body
    assert snapshot(storage_dir) == before


@pytest.mark.parametrize(("make_text", "line", "message"), HOSTILE[:3])
def test_hostile_key_lines_are_refused_on_a_keep_resubmit(
    api, project, user, keys, storage_dir, make_text, line, message
):
    old = finished_build(project, user)
    before = snapshot(storage_dir)

    response = api.post(
        resubmit_url(old.pk), {"ssh_on_failure": True, "ssh_public_keys": make_text(keys)}, format="json"
    )

    assert response.status_code == 400, response.content
    assert [error["line"] for error in response.json()["errors"]] == [line]
    assert snapshot(storage_dir) == before


def test_more_than_ten_keys_and_oversized_text_are_refused(api, project, keys, storage_dir):
    before = snapshot(storage_dir)
    many = "\n".join(keys[f"many{n}"].public for n in range(11))
    huge = (keys["laptop"].public + "\n") * (128 * 1024 // len(keys["laptop"].public) + 1)

    too_many = scm(api, ssh_on_failure=True, ssh_public_keys=many)
    too_long = scm(api, ssh_on_failure=True, ssh_public_keys=huge)

    assert too_many.status_code == 400
    assert "11 different keys given; at most 10" in too_many.json()["ssh_public_keys"][0]
    assert too_long.status_code == 400
    assert "no more than 131072 characters" in too_long.json()["ssh_public_keys"][0]
    assert snapshot(storage_dir) == before


@pytest.mark.parametrize("value", ["maybe", 2, [True], {"on": 1}])
def test_ssh_on_failure_must_be_a_boolean(api, project, keys, storage_dir, value):
    before = snapshot(storage_dir)

    response = scm(api, ssh_on_failure=value, ssh_public_keys=keys["laptop"].public)

    assert response.status_code == 400, response.content
    assert "ssh_on_failure" in response.json()
    assert snapshot(storage_dir) == before


def test_an_unknown_github_account_is_refused_naming_the_reference(
    api, project, keys, key_server, storage_dir
):
    before = snapshot(storage_dir)

    response = scm(api, ssh_on_failure=True, ssh_public_keys="GitHub:nobody")

    assert response.status_code == 400, response.content
    assert response.json()["errors"] == [{"line": 1, "message": "GitHub:nobody: no such account (HTTP 404)"}]
    assert snapshot(storage_dir) == before


# --- who may ------------------------------------------------------------------------------


def test_another_user_is_refused_before_any_reference_is_fetched(
    other_api, project, keys, key_server, storage_dir
):
    key_server.github("alice", keys["gh1"])
    before = snapshot(storage_dir)

    response = scm(other_api, ssh_on_failure=True, ssh_public_keys="GitHub:alice")

    assert response.status_code == 403, response.content
    assert key_server.requests == []
    assert snapshot(storage_dir) == before


def test_another_users_build_cannot_be_resubmitted_keeping_its_builder(
    other_api, project, user, keys, key_server, storage_dir
):
    key_server.github("alice", keys["gh1"])
    old = finished_build(project, user)
    before = snapshot(storage_dir)

    response = other_api.post(
        resubmit_url(old.pk), {"ssh_on_failure": True, "ssh_public_keys": "GitHub:alice"}, format="json"
    )

    assert response.status_code == 403, response.content
    assert response.json()["detail"] == "Only the owner of alice/hello can build in it."
    assert key_server.requests == []
    assert snapshot(storage_dir) == before


def test_anonymous_cannot_submit_keeping_a_builder(project, keys, key_server):
    response = scm(APIClient(), ssh_on_failure=True, ssh_public_keys="GitHub:alice")

    assert response.status_code == 401
    assert key_server.requests == []
    assert Build.objects.count() == 0
