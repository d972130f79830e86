"""Bad input through /api_3/: each is a JSON `error` message and nothing is stored.

Sent as python-copr sends an upload: multipart with a `pkgs` file part (`application/x-rpm`
whatever the file) and the options in a `json` part that is itself a file named "json".
"""

from __future__ import annotations

import base64
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.authtoken.models import Token

from builds.models import Build, Project
from builds.services import create_project
from tests.copr_api.conftest import CHROOTS, HELLO_SPEC, stored_files

UPLOAD = "/api_3/build/create/upload"


@pytest.fixture
def project(user, chroots) -> Project:
    return create_project(owner=user, name="hello", chroots=[CHROOTS[0]])


@pytest.fixture
def auth(user) -> dict[str, str]:
    key = Token.objects.create(user=user).key
    return {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(f"alice:{key}".encode()).decode()}


def options(**overrides) -> SimpleUploadedFile:
    data = {"ownername": "alice", "projectname": "hello", "chroots": None, **overrides}
    return SimpleUploadedFile("json", json.dumps(data).encode(), "application/json")


def package(name: str = HELLO_SPEC.name, content: bytes | None = None) -> SimpleUploadedFile:
    return SimpleUploadedFile(
        name, HELLO_SPEC.read_bytes() if content is None else content, "application/x-rpm"
    )


def refused(response, status: int, message: str, settings) -> None:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    assert message in response.json()["error"]
    assert not Build.objects.exists()
    assert stored_files(settings.COPRSSH_STORAGE_DIR) == []


def test_an_upload_without_its_json_part_is_refused(client, project, auth, settings):
    response = client.post(UPLOAD, {"pkgs": package()}, **auth)
    refused(response, 400, 'The upload has no "json" part', settings)


def test_an_upload_to_an_unknown_project_is_not_found(client, project, auth, settings):
    response = client.post(UPLOAD, {"json": options(projectname="nope"), "pkgs": package()}, **auth)
    refused(response, 404, "Project alice/nope does not exist.", settings)


def test_a_chroot_the_project_lacks_is_refused(client, project, auth, settings):
    response = client.post(UPLOAD, {"json": options(chroots=[CHROOTS[1]]), "pkgs": package()}, **auth)
    refused(response, 400, f"Not chroots of alice/hello: '{CHROOTS[1]}'.", settings)
    check = client.post(
        "/api_3/build/check-before-build",
        {"ownername": "alice", "projectname": "hello", "chroots": [CHROOTS[1]]},
        content_type="application/json",
        **auth,
    )
    refused(check, 400, "Not chroots of alice/hello", settings)


def test_an_oversized_upload_is_refused(client, project, auth, settings):
    settings.COPRSSH_MAX_SPEC_BYTES = 1024
    big = HELLO_SPEC.read_bytes() + b"\n# padding\n" * 200
    response = client.post(UPLOAD, {"json": options(), "pkgs": package(content=big)}, **auth)
    refused(response, 400, "is larger than 1 KiB", settings)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("notes.txt", b"Name: x\n", "must end in .spec or .src.rpm"),
        ("hello.spec", b"just some text\n", "is not a spec file: it has no Name: tag"),
        ("hello.src.rpm", b"not an rpm at all" * 10, "is not an RPM package"),
    ],
)
def test_a_file_that_is_no_spec_or_srpm_is_refused(client, project, auth, settings, name, content, message):
    response = client.post(UPLOAD, {"json": options(), "pkgs": package(name, content)}, **auth)
    refused(response, 400, message, settings)


def test_an_upload_without_a_file_or_with_broken_options_is_refused(client, project, auth, settings):
    refused(client.post(UPLOAD, {"json": options()}, **auth), 400, 'no "pkgs" part', settings)
    broken = SimpleUploadedFile("json", b"{not json", "application/json")
    refused(client.post(UPLOAD, {"json": broken, "pkgs": package()}, **auth), 400, "not valid JSON", settings)
    batch = options(after_build_id=3)
    refused(client.post(UPLOAD, {"json": batch, "pkgs": package()}, **auth), 400, "build batches", settings)


def test_writes_without_credentials_are_refused_with_403(client, project, settings):
    response = client.post(UPLOAD, {"json": options(), "pkgs": package()})
    refused(response, 403, "This needs API authentication", settings)
    wrong = {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(b"alice:nope").decode()}
    refused(
        client.post(UPLOAD, {"json": options(), "pkgs": package()}, **wrong), 403, "Login invalid", settings
    )


def test_unknown_endpoints_and_bad_parameters_answer_json(client, db):
    assert client.get("/api_3/project/search?query=x").json()["error"].startswith("coprssh does not offer")
    assert client.get("/api_3/build/list?ownername=alice").json() == {
        "error": "Missing argument projectname."
    }
    response = client.get("/api_3/project/list?limit=ten")
    assert response.status_code == 400
    assert response.json() == {"error": "limit must be a whole number."}


def test_a_body_over_the_upload_limit_is_refused_unread_as_json(client, project, auth, settings):
    settings.COPRSSH_MAX_SRPM_BYTES = 1024
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    big = package("hello.src.rpm", b"\xed\xab\xee\xdb" + b"x" * 4096)
    response = client.post(UPLOAD, {"json": options(), "pkgs": big}, **auth)
    refused(response, 413, "The request is too large", settings)
