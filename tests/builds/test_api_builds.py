"""REST API v1: /api/v1/builds/ (submit, list, read), /cancel/ and /resubmit/."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import TestCase
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from builders.models import Lease
from builds import services, storage
from builds.models import Build, BuildChroot, SrpmPhase, State
from builds.sources import check_upload
from tests.builds.conftest import DEMO_SPEC

pytestmark = pytest.mark.django_db

BUILDS_URL = "/api/v1/builds/"
CHROOTS = ["epel-10-aarch64", "fedora-43-x86_64", "fedora-rawhide-x86_64"]
PUBLIC_V4 = "93.184.216.34"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00"
BUILD_FIELDS = {
    "id",
    "project",
    "state",
    "source_state",
    "source_type",
    "source_filename",
    "clone_url",
    "committish",
    "spec",
    "url",
    "package_name",
    "package_version",
    "submitter",
    "ssh",
    "ssh_on_failure",
    "resubmitted_from",
    "created",
    "started",
    "ended",
    "chroots",
    "srpm",
}
PHASE_FIELDS = {
    "state",
    "status_reason",
    "not_kept_reason",
    "started",
    "ended",
    "logs",
    "results",
    "ssh_builder",
}
CHROOT_FIELDS = {"name", *PHASE_FIELDS}
SRPM_FIELDS = PHASE_FIELDS


def detail_url(build_id: int) -> str:
    return f"/api/v1/builds/{build_id}/"


def cancel_url(build_id: int) -> str:
    return f"/api/v1/builds/{build_id}/cancel/"


def resubmit_url(build_id: int) -> str:
    return f"/api/v1/builds/{build_id}/resubmit/"


def client_for(user: Any) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def spec_upload(name: str = "hello-coprssh.spec", content: bytes | None = None) -> SimpleUploadedFile:
    data = DEMO_SPEC.read_bytes() if content is None else content
    return SimpleUploadedFile(name, data, content_type="application/octet-stream")


class FakeResolver:
    """Stands in for DNS: known names map to public addresses; nothing else resolves."""

    names = {"git.example.org": [PUBLIC_V4], "download.example.org": [PUBLIC_V4], "localhost": ["127.0.0.1"]}

    def getaddrinfo(self, host: str, port: int, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        if host not in self.names:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port)) for address in self.names[host]]


@pytest.fixture(autouse=True)
def storage_dir(settings, tmp_path, monkeypatch) -> Path:
    """Builds store under tmp_path; no test makes a real DNS query."""
    settings.COPRSSH_STORAGE_DIR = tmp_path / "storage"
    settings.COPRSSH_ALLOW_LOCAL_SOURCES = False
    monkeypatch.setattr(socket, "getaddrinfo", FakeResolver().getaddrinfo)
    return settings.COPRSSH_STORAGE_DIR


@pytest.fixture
def api(user) -> APIClient:
    return client_for(user)


@pytest.fixture
def other_api(other_user) -> APIClient:
    return client_for(other_user)


@pytest.fixture
def anon() -> APIClient:
    return APIClient()


@pytest.fixture
def project(user):
    return services.create_project(owner=user, name="hello", chroots=CHROOTS, description="Hello world")


def make_build(project: Any, user: Any, chroots: list[str] | None = None) -> Build:
    upload = spec_upload()
    # As after a real commit: backend.log is written once the build exists for good.
    with TestCase.captureOnCommitCallbacks(execute=True):
        return services.submit_build(
            project=project, submitter=user, chroots=chroots, source=check_upload(upload), upload=upload
        )


def finished_build(project: Any, user: Any, **kwargs: Any) -> Build:
    build = make_build(project, user, **kwargs)
    return services.cancel_build(build_id=build.pk, user=user)


def snapshot(storage_dir: Path) -> tuple[Any, ...]:
    """What a refused request must leave as it was: rows, leases and files."""
    files = sorted(str(p) for p in storage_dir.rglob("*")) if storage_dir.exists() else []
    return (
        Build.objects.count(),
        SrpmPhase.objects.count(),
        BuildChroot.objects.count(),
        Lease.objects.count(),
        files,
    )


# --- submit: happy paths ------------------------------------------------------------------


def test_submit_a_spec_upload_returns_201_with_the_build(api, project, user, storage_dir):
    response = api.post(
        BUILDS_URL, {"project": "alice/hello", "source_file": spec_upload()}, format="multipart"
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == BUILD_FIELDS
    assert body["project"] == "alice/hello"
    assert body["submitter"] == "alice"
    assert (body["state"], body["source_state"], body["source_type"]) == ("pending", "pending", "upload")
    assert body["ssh"] is False
    assert body["resubmitted_from"] is None
    assert [c["name"] for c in body["chroots"]] == CHROOTS
    build = Build.objects.get(pk=body["id"])
    stored = storage.path(build.source_file)
    assert stored.read_bytes() == DEMO_SPEC.read_bytes()
    assert stored.is_relative_to(storage_dir.resolve())
    assert build.srpm.lease.owner == user


def test_submit_for_some_chroots_as_repeated_form_fields(api, project):
    response = api.post(
        BUILDS_URL,
        {"project": "alice/hello", "chroots": ["fedora-43-x86_64"], "source_file": spec_upload()},
        format="multipart",
    )

    assert response.status_code == 201, response.content
    assert [c["name"] for c in response.json()["chroots"]] == ["fedora-43-x86_64"]


def test_submit_a_source_rpm_upload(api, project, demo_srpm):
    upload = SimpleUploadedFile(demo_srpm.name, demo_srpm.read_bytes())

    response = api.post(
        BUILDS_URL,
        {"project": "alice/hello", "source_type": "upload", "source_file": upload},
        format="multipart",
    )

    assert response.status_code == 201, response.content
    build = Build.objects.get(pk=response.json()["id"])
    assert build.source_filename == demo_srpm.name
    assert storage.path(build.source_file).read_bytes() == demo_srpm.read_bytes()


def test_submit_a_git_repository(api, project):
    response = api.post(
        BUILDS_URL,
        {
            "project": "alice/hello",
            "chroots": ["fedora-rawhide-x86_64"],
            "source_type": "scm",
            "clone_url": "https://git.example.org/hello.git",
            "committish": "v1.0",
            "spec": "dist/hello.spec",
        },
        format="json",
    )

    assert response.status_code == 201, response.content
    assert response.json()["source_type"] == "scm"
    build = Build.objects.get(pk=response.json()["id"])
    assert (build.clone_url, build.committish, build.spec) == (
        "https://git.example.org/hello.git",
        "v1.0",
        "dist/hello.spec",
    )
    assert build.source_file == ""


def test_submit_a_source_rpm_url(api, project):
    url = "https://download.example.org/pub/hello-1.0-1.src.rpm"

    response = api.post(
        BUILDS_URL, {"project": "alice/hello", "source_type": "url", "url": url}, format="json"
    )

    assert response.status_code == 201, response.content
    build = Build.objects.get(pk=response.json()["id"])
    assert (build.source_type, build.url, build.source_filename) == ("url", url, "hello-1.0-1.src.rpm")


def test_an_admin_may_build_in_anyones_project(project, django_user_model):
    admin = django_user_model.objects.create_superuser("root", password="root-password-1")

    response = client_for(admin).post(
        BUILDS_URL, {"project": "alice/hello", "source_file": spec_upload()}, format="multipart"
    )

    assert response.status_code == 201, response.content
    assert response.json()["submitter"] == "root"


# --- submit: refused input stores nothing and leases nothing ---------------------------------


def refused(client: APIClient, storage_dir: Path, data: Any, **kwargs: Any) -> dict[str, Any]:
    before = snapshot(storage_dir)
    response = client.post(BUILDS_URL, data, **kwargs)
    assert response.status_code == 400, response.content
    assert snapshot(storage_dir) == before
    return response.json()


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"project": "alice/hello"}, "source_type", "Give one source"),
        ({"project": "alice/hello", "source_type": "upload"}, "source_file", "required"),
        ({"project": "alice/hello", "source_type": "scm", "spec": "a.spec"}, "clone_url", "required"),
        (
            {"project": "alice/hello", "source_type": "scm", "clone_url": "https://git.example.org/x"},
            "spec",
            "required",
        ),
        ({"project": "alice/hello", "source_type": "url"}, "url", "required"),
        ({"project": "alice/hello", "source_type": "svn", "url": "x"}, "source_type", "not a valid choice"),
        ({"project": "alice/hello", "url": "https://download.example.org/a.src.rpm"}, "source_type", "one"),
        (
            {
                "project": "alice/hello",
                "source_type": "url",
                "url": "https://download.example.org/a.src.rpm",
                "clone_url": "https://git.example.org/x.git",
            },
            "clone_url",
            "Give one source",
        ),
        (
            {
                "project": "alice/hello",
                "source_type": "scm",
                "clone_url": "https://git.example.org/x.git",
                "spec": "x.spec",
                "url": "https://download.example.org/a.src.rpm",
            },
            "url",
            "Give one source",
        ),
        ({"source_type": "url", "url": "https://download.example.org/a.src.rpm"}, "project", "required"),
        (
            {"project": "hello", "source_type": "url", "url": "https://download.example.org/a.src.rpm"},
            "project",
            "owner/name",
        ),
        (
            {
                "project": "alice/hello/x",
                "source_type": "url",
                "url": "https://download.example.org/a.src.rpm",
            },
            "project",
            "owner/name",
        ),
        (
            {
                "project": ["alice/hello"],
                "source_type": "url",
                "url": "https://download.example.org/a.src.rpm",
            },
            "project",
            "Not a valid string",
        ),
        (
            {
                "project": "alice/hello",
                "chroots": "fedora-rawhide-x86_64",
                "source_type": "url",
                "url": "https://download.example.org/a.src.rpm",
            },
            "chroots",
            "Expected a list",
        ),
        (
            {
                "project": "alice/hello",
                "chroots": [],
                "source_type": "url",
                "url": "https://download.example.org/a.src.rpm",
            },
            "chroots",
            "may not be empty",
        ),
        (
            {
                "project": "alice/hello",
                "chroots": [{"name": "fedora-rawhide-x86_64"}],
                "source_type": "url",
                "url": "https://download.example.org/a.src.rpm",
            },
            "chroots",
            "Not a valid string",
        ),
        (
            {
                "project": "alice/hello",
                "chroots": ["fedora-99-x86_64"],
                "source_type": "url",
                "url": "https://download.example.org/a.src.rpm",
            },
            "chroots",
            "Unknown or inactive chroots: 'fedora-99-x86_64'",
        ),
        (
            {
                "project": "alice/hello",
                "chroots": ["fedora-42-x86_64"],
                "source_type": "url",
                "url": "https://download.example.org/a.src.rpm",
            },
            "chroots",
            "Not chroots of alice/hello: fedora-42-x86_64",
        ),
        (
            {"project": "alice/hello", "source_type": "url", "url": "http://127.0.0.1/hello-1.0-1.src.rpm"},
            "url",
            "loopback",
        ),
        (
            {"project": "alice/hello", "source_type": "url", "url": "http://localhost/hello-1.0-1.src.rpm"},
            "url",
            "loopback",
        ),
        (
            {"project": "alice/hello", "source_type": "url", "url": "http://169.254.169.254/x.src.rpm"},
            "url",
            "link-local",
        ),
        (
            {"project": "alice/hello", "source_type": "url", "url": "file:///etc/passwd.src.rpm"},
            "url",
            "http://",
        ),
        (
            {"project": "alice/hello", "source_type": "url", "url": "https://download.example.org/a.rpm"},
            "url",
            ".src.rpm",
        ),
        (
            {"project": "alice/hello", "source_type": "url", "url": "https://nowhere.invalid/a.src.rpm"},
            "url",
            "does not resolve",
        ),
        (
            {
                "project": "alice/hello",
                "source_type": "scm",
                "clone_url": "ext::sh -c touch% /tmp/pwned",
                "spec": "x.spec",
            },
            "clone_url",
            "must not contain spaces",
        ),
        (
            {
                "project": "alice/hello",
                "source_type": "scm",
                "clone_url": "ext::sh%20-c%20id",
                "spec": "x.spec",
            },
            "clone_url",
            "must start with http:// or https://",
        ),
        (
            {
                "project": "alice/hello",
                "source_type": "scm",
                "clone_url": "--upload-pack=touch /tmp/pwned",
                "spec": "x.spec",
            },
            "clone_url",
            "must not start with a dash",
        ),
        (
            {
                "project": "alice/hello",
                "source_type": "scm",
                "clone_url": "https://u:pw@git.example.org/x.git",
                "spec": "x.spec",
            },
            "clone_url",
            "user name or password",
        ),
        (
            {
                "project": "alice/hello",
                "source_type": "scm",
                "clone_url": "https://git.example.org/x.git",
                "committish": "--output=/tmp/x",
                "spec": "x.spec",
            },
            "committish",
            "must not start with a dash",
        ),
        (
            {
                "project": "alice/hello",
                "source_type": "scm",
                "clone_url": "https://git.example.org/x.git",
                "spec": "../../x.spec",
            },
            "spec",
            "must not contain '..'",
        ),
        (
            {
                "project": "alice/hello",
                "source_type": "url",
                "url": "https://download.example.org/" + "a" * 1000,
            },
            "url",
            "no more than 1000 characters",
        ),
    ],
)
def test_submit_refuses_bad_json_input_by_field_and_stores_nothing(
    api, project, storage_dir, data, field, message
):
    body = refused(api, storage_dir, data, format="json")

    assert field in body, body
    # A list field's item errors come keyed by index: {"chroots": {"0": ["Not a valid string."]}}.
    assert message in str(body[field]), body


def test_submit_refuses_a_body_that_is_not_json(api, project, storage_dir):
    body = refused(api, storage_dir, '{"project": "alice/hello", ', content_type="application/json")

    assert "JSON parse error" in body["detail"]


def test_submit_refuses_a_json_list(api, project, storage_dir):
    body = refused(api, storage_dir, ["alice/hello"], format="json")

    assert "Expected a dictionary" in body["non_field_errors"][0]


def test_submit_refuses_a_file_given_as_a_json_string(api, project, storage_dir):
    body = refused(api, storage_dir, {"project": "alice/hello", "source_file": "Name: x\n"}, format="json")

    assert "source_file" in body


def test_submit_refuses_an_upload_with_a_second_source(api, project, storage_dir):
    data = {
        "project": "alice/hello",
        "source_file": spec_upload(),
        "url": "https://download.example.org/a.src.rpm",
    }

    body = refused(api, storage_dir, data, format="multipart")

    assert body["url"] == ['Give one source: source_type "upload" does not take url.']


def test_submit_refuses_an_upload_sent_with_source_type_scm(api, project, storage_dir):
    data = {
        "project": "alice/hello",
        "source_type": "scm",
        "source_file": spec_upload(),
        "clone_url": "https://git.example.org/x.git",
        "spec": "x.spec",
    }

    body = refused(api, storage_dir, data, format="multipart")

    assert body["source_file"] == ['Give one source: source_type "scm" does not take source_file.']


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        (".hidden.spec", None, "must not start with a dot or a dash"),
        ("-rf.spec", None, "must not start with a dot or a dash"),
        ("caf\u00e9.spec", None, "must be ASCII"),
        ("hello.sh", None, "must end in .spec or .src.rpm"),
        ("picture.spec", PNG, "binary file, not a spec file"),
        ("empty.spec", b"", "is empty"),
        ("notes.spec", b"just some text\n", "no Name: tag"),
        ("latin1.spec", b"Name: caf\xe9\n", "not UTF-8"),
        ("hello.src.rpm", b"Name: hello\n", "not an RPM package"),
    ],
)
def test_submit_refuses_hostile_uploads_and_stores_nothing(api, project, storage_dir, name, content, message):
    data = {"project": "alice/hello", "source_file": spec_upload(name, content)}

    body = refused(api, storage_dir, data, format="multipart")

    assert message in body["source_file"][0], body


@pytest.mark.parametrize("name", ["hello.src.rpm", "hello.spec"])
def test_submit_refuses_a_binary_rpm_and_stores_nothing(api, project, storage_dir, demo_binary_rpm, name):
    data = {"project": "alice/hello", "source_file": SimpleUploadedFile(name, demo_binary_rpm.read_bytes())}

    body = refused(api, storage_dir, data, format="multipart")

    assert "RPM" in body["source_file"][0]
    assert "binary RPM" in body["source_file"][0] or "not a spec file" in body["source_file"][0]


def test_submit_refuses_a_spec_over_the_size_limit(api, project, storage_dir, settings):
    settings.COPRSSH_MAX_SPEC_BYTES = 1024
    big = DEMO_SPEC.read_bytes() + b"# padding\n" * 200

    body = refused(api, storage_dir, {"project": "alice/hello", "source_file": spec_upload(content=big)})

    assert body["source_file"] == ["The file hello-coprssh.spec is larger than 1 KiB."]


def raw_multipart(filename: str, content: bytes) -> tuple[bytes, str]:
    """A multipart body with `filename` exactly as given (test clients keep only the base name)."""
    boundary = "coprssh-boundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="project"\r\n\r\nalice/hello\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="source_file"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


@pytest.mark.parametrize("filename", ["../../../escape.spec", "..\\..\\escape.spec", "/tmp/escape.spec"])
def test_submit_keeps_an_uploaded_path_inside_the_builds_own_folder(
    api, project, storage_dir, tmp_path, filename
):
    # Django's multipart parser keeps only the base name before any of our code sees it.
    body, content_type = raw_multipart(filename, DEMO_SPEC.read_bytes())

    response = api.generic("POST", BUILDS_URL, body, content_type=content_type)

    assert response.status_code == 201, response.content
    build = Build.objects.get(pk=response.json()["id"])
    assert build.source_filename == "escape.spec"
    stored = storage.path(build.source_file)
    assert stored.parent == storage.path(f"{build.srpm.storage_dir}/source")
    assert list(tmp_path.rglob("escape.spec")) == [stored]


@pytest.mark.parametrize("filename", ["..", "."])
def test_submit_refuses_an_upload_whose_name_is_only_dots(api, project, storage_dir, filename):
    body, content_type = raw_multipart(filename, DEMO_SPEC.read_bytes())
    before = snapshot(storage_dir)

    response = api.generic("POST", BUILDS_URL, body, content_type=content_type)

    assert response.status_code == 400, response.content
    assert "source_type" in response.json()
    assert snapshot(storage_dir) == before


def test_submit_to_an_unknown_project_is_404_and_stores_nothing(api, project, storage_dir):
    before = snapshot(storage_dir)

    response = api.post(BUILDS_URL, {"project": "alice/nope", "source_file": spec_upload()})

    assert response.status_code == 404, response.content
    assert response.json()["project"] == ["No project alice/nope."]
    assert snapshot(storage_dir) == before


# --- submit: who may --------------------------------------------------------------------------


def test_another_user_cannot_build_in_my_project(other_api, project, storage_dir):
    before = snapshot(storage_dir)

    response = other_api.post(BUILDS_URL, {"project": "alice/hello", "source_file": spec_upload()})

    assert response.status_code == 403, response.content
    assert response.json()["detail"] == "Only the owner of alice/hello can build in it."
    assert snapshot(storage_dir) == before


def test_another_user_is_refused_before_their_url_is_resolved(other_api, project, storage_dir, monkeypatch):
    asked: list[str] = []
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, *args, **kwargs: asked.append(host) or [])
    data = {"project": "alice/hello", "source_type": "url", "url": "https://download.example.org/a.src.rpm"}

    response = other_api.post(BUILDS_URL, data, format="json")

    assert response.status_code == 403
    assert asked == []


def test_anonymous_cannot_submit(anon, project, storage_dir):
    before = snapshot(storage_dir)

    response = anon.post(BUILDS_URL, {"project": "alice/hello", "source_file": spec_upload()})

    assert response.status_code == 401
    assert snapshot(storage_dir) == before


def test_a_bad_token_cannot_submit(project, storage_dir):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")

    response = client.post(BUILDS_URL, {"project": "alice/hello", "source_file": spec_upload()})

    assert response.status_code == 401
    assert Build.objects.count() == 0


# --- read: public ----------------------------------------------------------------------------


def test_anyone_can_read_a_build_with_absolute_links_to_logs_and_results(anon, project, user):
    build = make_build(project, user)
    fedora = build.build_chroots.get(chroot__name="fedora-rawhide-x86_64")
    folder = storage.ensure_dir(fedora.storage_dir)
    (folder / "hello-coprssh-1.0-1.fc44.noarch.rpm").write_bytes(b"rpm")
    (folder / ".upload-x.part").write_bytes(b"half")
    (folder / storage.LIVE_LOG).write_text("compiling\n")

    response = anon.get(detail_url(build.pk))

    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == BUILD_FIELDS
    assert set(body["srpm"]) == SRPM_FIELDS
    assert all(set(chroot) == CHROOT_FIELDS for chroot in body["chroots"])
    base = f"http://testserver/builds/{build.pk}"
    assert body["srpm"]["logs"] == {
        "backend": f"{base}/logs/srpm/backend.log",
        "builder_live": f"{base}/logs/srpm/builder-live.log",
    }
    chroot = next(c for c in body["chroots"] if c["name"] == "fedora-rawhide-x86_64")
    assert chroot["logs"]["builder_live"] == f"{base}/logs/fedora-rawhide-x86_64/builder-live.log"
    assert chroot["results"] == [f"{base}/results/fedora-rawhide-x86_64/hello-coprssh-1.0-1.fc44.noarch.rpm"]
    assert chroot["ssh_builder"] is None
    assert body["srpm"]["ssh_builder"] is None
    assert (chroot["state"], chroot["status_reason"], chroot["started"]) == ("pending", "", None)
    assert all(c["results"] == [] for c in body["chroots"] if c is not chroot)
    # The links work for anyone, and logs are plain text.
    backend = anon.get(body["srpm"]["logs"]["backend"])
    assert backend.status_code == 200
    assert backend["Content-Type"] == "text/plain; charset=utf-8"
    assert b"submitted by alice" in backend.content
    live = anon.get(chroot["logs"]["builder_live"])
    assert live.content == b"compiling\n"
    assert anon.get(chroot["results"][0]).status_code == 200


def test_srpm_results_list_the_srpm_phase_files_but_not_the_source_folder(anon, project, user):
    build = make_build(project, user)
    folder = storage.ensure_dir(build.srpm.storage_dir)
    (folder / "hello-coprssh-1.0-1.src.rpm").write_bytes(b"srpm")
    (folder / "hello-coprssh.spec").write_bytes(b"Name: hello-coprssh\n")

    body = anon.get(detail_url(build.pk)).json()

    assert body["srpm"]["results"] == [
        f"http://testserver/builds/{build.pk}/results/srpm/hello-coprssh-1.0-1.src.rpm",
        f"http://testserver/builds/{build.pk}/results/srpm/hello-coprssh.spec",
    ]


def test_an_unknown_build_is_404(anon):
    response = anon.get(detail_url(99999))

    assert response.status_code == 404
    assert response.json()["detail"] == "No such build."


def test_anyone_can_list_builds_newest_first_and_by_project(anon, project, user, other_user):
    theirs = services.create_project(owner=other_user, name="hello", chroots=["fedora-43-x86_64"])
    first = make_build(project, user)
    second = make_build(project, user, chroots=["fedora-43-x86_64"])
    other = make_build(theirs, other_user)

    everything = anon.get(BUILDS_URL).json()
    mine = anon.get(BUILDS_URL, {"project": "alice/hello"}).json()
    bobs = anon.get(BUILDS_URL, {"project": "bob/hello"}).json()

    assert [b["id"] for b in everything["results"]] == [other.pk, second.pk, first.pk]
    assert everything["count"] == 3
    assert [b["id"] for b in mine["results"]] == [second.pk, first.pk]
    assert [b["id"] for b in bobs["results"]] == [other.pk]
    assert bobs["results"][0]["project"] == "bob/hello"
    assert set(mine["results"][0]) == BUILD_FIELDS


def test_build_list_pages_with_limit_and_offset(anon, project, user):
    builds = [make_build(project, user, chroots=["fedora-43-x86_64"]) for _ in range(3)]

    page = anon.get(BUILDS_URL, {"limit": 2, "offset": 1}).json()

    assert page["count"] == 3
    assert [b["id"] for b in page["results"]] == [builds[1].pk, builds[0].pk]
    assert page["previous"] is not None
    assert page["next"] is None


def test_build_list_of_an_unknown_project_is_404_and_a_bad_name_400(anon, project):
    assert anon.get(BUILDS_URL, {"project": "alice/nope"}).status_code == 404
    bad = anon.get(BUILDS_URL, {"project": "alice"})
    assert bad.status_code == 400
    assert bad.json() == {"project": ['Write the project as "owner/name".']}


# --- cancel ----------------------------------------------------------------------------------


def test_cancel_my_build(api, project, user):
    build = make_build(project, user)

    response = api.post(cancel_url(build.pk))

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["state"], body["source_state"]) == ("canceled", "canceled")
    assert body["ended"] is not None
    assert {c["state"] for c in body["chroots"]} == {"canceled"}
    assert {c["status_reason"] for c in body["chroots"]} == {"canceled by alice"}
    assert Lease.objects.get(pk=build.srpm.lease_id).state == Lease.State.ENDED


def test_cancel_a_finished_build_is_409(api, project, user):
    build = finished_build(project, user)

    response = api.post(cancel_url(build.pk))

    assert response.status_code == 409
    assert response.json()["detail"] == f"Build #{build.pk} has already finished (canceled)."


def test_another_user_cannot_cancel_my_build(other_api, project, user):
    build = make_build(project, user)

    response = other_api.post(cancel_url(build.pk))

    assert response.status_code == 403
    build.refresh_from_db()
    assert build.state == State.PENDING
    assert Lease.objects.get(pk=build.srpm.lease_id).state == Lease.State.WAITING


def test_anonymous_cannot_cancel(anon, project, user):
    build = make_build(project, user)

    assert anon.post(cancel_url(build.pk)).status_code == 401
    build.refresh_from_db()
    assert build.state == State.PENDING


def test_cancel_an_unknown_build_is_404(api):
    assert api.post(cancel_url(99999)).status_code == 404


# --- resubmit ----------------------------------------------------------------------------------


def test_resubmit_my_finished_build_to_the_same_chroots(api, project, user):
    old = finished_build(project, user, chroots=["fedora-43-x86_64", "epel-10-aarch64"])

    response = api.post(resubmit_url(old.pk), {}, format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["id"] != old.pk
    assert body["resubmitted_from"] == old.pk
    assert body["state"] == "pending"
    assert [c["name"] for c in body["chroots"]] == ["epel-10-aarch64", "fedora-43-x86_64"]
    new = Build.objects.get(pk=body["id"])
    assert storage.path(new.source_file).read_bytes() == DEMO_SPEC.read_bytes()


def test_resubmit_to_some_chroots(api, project, user):
    old = finished_build(project, user)

    response = api.post(resubmit_url(old.pk), {"chroots": ["fedora-rawhide-x86_64"]}, format="json")

    assert response.status_code == 201, response.content
    assert [c["name"] for c in response.json()["chroots"]] == ["fedora-rawhide-x86_64"]


def test_resubmit_a_running_build_is_409(api, project, user, storage_dir):
    build = make_build(project, user)
    before = snapshot(storage_dir)

    response = api.post(resubmit_url(build.pk), {}, format="json")

    assert response.status_code == 409
    assert "cancel it or wait" in response.json()["detail"]
    assert snapshot(storage_dir) == before


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"ssh_public_keys": "ssh-ed25519 AAAA me@laptop"}, "ssh_public_keys", "Not accepted: line 1"),
        ({"ssh_public_keys": "x" * (128 * 1024 + 1)}, "ssh_public_keys", "no more than 131072 characters"),
        ({"use_saved_keys": True}, "use_saved_keys", "You have no saved keys"),
        ({"chroots": "fedora-43-x86_64"}, "chroots", "Expected a list"),
        ({"chroots": []}, "chroots", "may not be empty"),
        ({"chroots": ["fedora-42-x86_64"]}, "chroots", "Not chroots of alice/hello"),
        ({"chroots": ["nope"]}, "chroots", "Unknown or inactive chroots"),
    ],
)
def test_resubmit_refuses_bad_input_and_stores_nothing(api, project, user, storage_dir, data, field, message):
    old = finished_build(project, user)
    before = snapshot(storage_dir)

    response = api.post(resubmit_url(old.pk), data, format="json")

    assert response.status_code == 400, response.content
    assert message in response.json()[field][0]
    assert snapshot(storage_dir) == before


def test_resubmit_with_blank_ssh_keys_is_a_plain_resubmission(api, project, user):
    old = finished_build(project, user)

    response = api.post(
        resubmit_url(old.pk), {"ssh_public_keys": "  \n", "use_saved_keys": False}, format="json"
    )

    assert response.status_code == 201, response.content
    assert response.json()["ssh"] is False


def test_another_user_cannot_resubmit_my_build(other_api, project, user, storage_dir):
    old = finished_build(project, user)
    before = snapshot(storage_dir)

    response = other_api.post(resubmit_url(old.pk), {}, format="json")

    assert response.status_code == 403
    assert snapshot(storage_dir) == before


def test_anonymous_cannot_resubmit(anon, project, user):
    old = finished_build(project, user)

    assert anon.post(resubmit_url(old.pk), {}, format="json").status_code == 401
    assert Build.objects.count() == 1


def test_resubmit_an_unknown_build_is_404(api):
    assert api.post(resubmit_url(99999), {}, format="json").status_code == 404


def test_resubmit_when_the_stored_source_is_gone_is_409(api, project, user):
    old = finished_build(project, user)
    storage.path(old.source_file).unlink()

    response = api.post(resubmit_url(old.pk), {}, format="json")

    assert response.status_code == 409
    assert "no longer stored" in response.json()["detail"]
