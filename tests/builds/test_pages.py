"""Web pages of builds: projects, the new-build form, the build page, its state and logs, cancel, resubmit."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection, transaction
from django.test import Client, TestCase
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from builders.models import Lease
from builds import services, storage
from builds.models import Build, BuildChroot, Chroot, Project, SrpmPhase, State
from builds.sources import check_upload

LOGIN_URL = "/accounts/login/"
PROJECTS_URL = "/projects/"
NEW_PROJECT_URL = "/projects/new/"
PROJECT_URL = "/projects/alice/hello/"
NEW_BUILD_URL = "/projects/alice/hello/build/"
# Seeded by a migration, like all the chroots of current Fedora and EPEL releases.
CHROOTS = ["epel-9-aarch64", "fedora-42-x86_64", "fedora-rawhide-x86_64"]
# The lead of a binary RPM: magic, format 3.0, type 0 (binary), then the header magic.
BINARY_RPM = b"\xed\xab\xee\xdb\x03\x00\x00\x00" + bytes(88) + b"\x8e\xad\xe8\x01" + bytes(64)


def build_url(build_id: int, action: str = "") -> str:
    return f"/builds/{build_id}/{action}"


@pytest.fixture(autouse=True)
def storage_dir(settings, tmp_path) -> Path:
    settings.COPRSSH_STORAGE_DIR = tmp_path / "storage"
    settings.COPRSSH_ALLOW_LOCAL_SOURCES = False
    return tmp_path / "storage"


@pytest.fixture
def chroots(db) -> list[Chroot]:
    return list(Chroot.objects.filter(name__in=CHROOTS))


@pytest.fixture
def project(user, chroots) -> Project:
    return services.create_project(
        owner=user, name="hello", chroots=["fedora-42-x86_64", "fedora-rawhide-x86_64"], description="Hi."
    )


@pytest.fixture
def logged_in_client(client, user) -> Client:
    client.force_login(user)
    return client


@pytest.fixture
def other_client(other_user) -> Client:
    client = Client()
    client.force_login(other_user)
    return client


def spec_upload(demo_spec: Path, name: str = "hello-coprssh.spec") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, demo_spec.read_bytes(), content_type="text/plain")


@pytest.fixture
def submit(project, user, demo_spec):
    """Submit a build of the demo spec to alice/hello, as the API would."""

    def make(**overrides) -> Build:
        upload = spec_upload(demo_spec)
        fields = {"project": project, "submitter": user, "chroots": None, "source": check_upload(upload)}
        fields.update(overrides)
        # As after a real commit: backend.log is written once the build exists for good.
        with TestCase.captureOnCommitCallbacks(execute=True):
            return services.submit_build(upload=upload, **fields)

    return make


def stored_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def set_states(build: Build, srpm: str, chroots: dict[str, str] | None = None) -> None:
    """Move a build's phases by hand (no builder runs in these tests) and derive its state."""
    now = timezone.now()
    SrpmPhase.objects.filter(build=build).update(state=srpm, started_at=now, ended_at=now)
    for name, state in (chroots or {}).items():
        BuildChroot.objects.filter(build=build, chroot__name=name).update(
            state=state, started_at=now, ended_at=now, status_reason=f"{state} here"
        )
    if srpm != State.SUCCEEDED:
        BuildChroot.objects.filter(build=build, state=State.PENDING).update(state=State.SKIPPED)
    with transaction.atomic():
        services.update_build_state(build.pk)


# --- who may see what -----------------------------------------------------------------


@pytest.mark.django_db
def test_public_pages_render_for_anonymous_users(client, submit):
    build = submit()

    for url in [PROJECTS_URL, PROJECT_URL, build_url(build.pk), build_url(build.pk, "state.json")]:
        assert client.get(url).status_code == 200, url


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("get", NEW_PROJECT_URL),
        ("post", NEW_PROJECT_URL),
        ("get", NEW_BUILD_URL),
        ("post", NEW_BUILD_URL),
        ("post", "cancel/"),
        ("get", "resubmit/"),
        ("post", "resubmit/"),
    ],
)
def test_pages_that_change_things_send_anonymous_users_to_log_in(client, submit, method, url):
    build = submit()
    if not url.startswith("/"):
        url = build_url(build.pk, url)

    response = getattr(client, method)(url)

    assert response.status_code == 302
    assert response["Location"].startswith(f"{LOGIN_URL}?next=")
    assert Build.objects.count() == 1
    assert Project.objects.count() == 1


@pytest.mark.django_db
def test_another_user_cannot_build_cancel_or_resubmit_in_my_project(other_client, submit, demo_spec):
    running, done = submit(), submit()
    set_states(done, State.FAILED)

    assert other_client.get(NEW_BUILD_URL).status_code == 403
    upload = spec_upload(demo_spec)
    assert (
        other_client.post(NEW_BUILD_URL, {"source_type": "upload", "source_file": upload}).status_code == 403
    )
    assert other_client.post(build_url(running.pk, "cancel/")).status_code == 403
    assert other_client.get(build_url(done.pk, "resubmit/")).status_code == 403
    assert other_client.post(build_url(done.pk, "resubmit/"), {"chroots": CHROOTS[1:]}).status_code == 403

    assert Build.objects.count() == 2
    running.refresh_from_db()
    assert running.state == State.PENDING


@pytest.mark.django_db
def test_another_user_sees_no_build_buttons(other_client, submit):
    build = submit()

    project_page = other_client.get(PROJECT_URL).content.decode()
    build_page = other_client.get(build_url(build.pk)).content.decode()

    assert NEW_BUILD_URL not in project_page
    assert "/cancel/" not in build_page
    assert "/resubmit/" not in build_page


# --- projects -------------------------------------------------------------------------


@pytest.mark.django_db
def test_project_list_shows_projects_newest_first_with_their_last_build(client, other_user, submit):
    build = submit()
    services.create_project(owner=other_user, name="newer", chroots=["epel-9-aarch64"])

    content = client.get(PROJECTS_URL).content.decode()

    assert content.index("newer") < content.index(">hello<")
    assert "bob" in content
    assert "fedora-rawhide-x86_64" in content
    assert f'href="/builds/{build.pk}/"' in content
    assert "state-pending" in content
    assert "no builds yet" in content
    assert NEW_PROJECT_URL not in content


@pytest.mark.django_db
def test_project_list_offers_a_new_project_to_logged_in_users(logged_in_client, chroots):
    assert NEW_PROJECT_URL in logged_in_client.get(PROJECTS_URL).content.decode()


@pytest.mark.django_db
def test_new_project_form_groups_active_chroots_by_os_version(logged_in_client, chroots):
    Chroot.objects.create(name="fedora-39-x86_64", os="fedora", version="39", arch="x86_64", active=False)

    content = logged_in_client.get(NEW_PROJECT_URL).content.decode()

    assert re.search(
        r'class="group-name"[^>]*>fedora-42</span>\s*<label class="check"><input[^>]+fedora-42-aarch64',
        content,
    )
    assert re.search(r'class="group-name"[^>]*>epel-9</span>', content)
    assert "fedora-39" not in content


@pytest.mark.django_db
def test_new_project_form_creates_the_project(logged_in_client, user, chroots):
    response = logged_in_client.post(
        NEW_PROJECT_URL,
        {"name": "tools", "description": "Small tools.", "chroots": ["fedora-42-x86_64", "epel-9-aarch64"]},
        follow=True,
    )

    assert response.redirect_chain == [("/projects/alice/tools/", 302)]
    project = Project.objects.get(owner=user, name="tools")
    assert sorted(project.chroots.values_list("name", flat=True)) == ["epel-9-aarch64", "fedora-42-x86_64"]
    assert "Small tools." in response.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("data", "shown"),
    [
        ({"name": "hello", "chroots": ["fedora-42-x86_64"]}, "You already have a project named hello."),
        ({"name": "-bad", "chroots": ["fedora-42-x86_64"]}, "A project name has 1 to 100 characters"),
        ({"name": "a/b", "chroots": ["fedora-42-x86_64"]}, "A project name has 1 to 100 characters"),
        ({"name": "tools"}, "Choose at least one chroot."),
        ({"name": "tools", "chroots": ["fedora-1-x86_64"]}, "Select a valid choice."),
    ],
    ids=["taken", "dash", "slash", "no-chroot", "unknown-chroot"],
)
def test_new_project_form_shows_why_it_is_refused(logged_in_client, project, data, shown):
    response = logged_in_client.post(NEW_PROJECT_URL, data)

    assert response.status_code == 400
    assert shown in response.content.decode()
    assert Project.objects.count() == 1


@pytest.mark.django_db
def test_project_page_lists_builds_with_their_chroots(client, submit):
    build = submit()
    set_states(
        build, State.SUCCEEDED, {"fedora-42-x86_64": State.FAILED, "fedora-rawhide-x86_64": State.SUCCEEDED}
    )
    Build.objects.filter(pk=build.pk).update(package_name="hello-coprssh", package_version="1.0-1")

    content = client.get(PROJECT_URL).content.decode()

    assert "Hi." in content
    assert f'<a href="/builds/{build.pk}/">#{build.pk}</a>' in content
    assert "hello-coprssh" in content
    assert "1.0-1" in content
    assert re.search(r"fedora-42-x86_64 <span class=\"state state-failed\"", content)
    assert "alice" in content
    assert "UTC" in content


@pytest.mark.django_db
def test_project_page_shows_the_new_build_button_to_the_owner(logged_in_client, project):
    assert NEW_BUILD_URL in logged_in_client.get(PROJECT_URL).content.decode()


def _make_builds(project: Project, user, count: int) -> None:
    chroots = list(project.chroots.all())
    for _ in range(count):
        build = Build.objects.create(project=project, submitter=user, source_type="upload")
        SrpmPhase.objects.create(build=build)
        BuildChroot.objects.bulk_create(BuildChroot(build=build, chroot=c) for c in chroots)


@pytest.mark.django_db
def test_project_page_queries_do_not_grow_with_builds(client, project, user):
    _make_builds(project, user, 1)
    with CaptureQueriesContext(connection) as one:
        assert client.get(PROJECT_URL).status_code == 200
    _make_builds(project, user, 29)
    with CaptureQueriesContext(connection) as thirty:
        response = client.get(PROJECT_URL)

    assert response.content.decode().count('href="/builds/') == 30
    assert len(thirty) == len(one)


@pytest.mark.django_db
def test_project_page_shows_fifty_builds_a_page(client, project, user):
    _make_builds(project, user, 51)
    newest = Build.objects.order_by("-pk").first().pk

    first = client.get(PROJECT_URL).content.decode()
    second = client.get(PROJECT_URL + "?page=2").content.decode()

    assert first.count('href="/builds/') == 50
    assert f'href="/builds/{newest}/"' in first
    assert second.count('href="/builds/') == 1
    assert "Page 2 of 2" in second


@pytest.mark.django_db
def test_project_list_queries_do_not_grow_with_projects(client, user, chroots):
    services.create_project(owner=user, name="p0", chroots=CHROOTS)
    with CaptureQueriesContext(connection) as one:
        client.get(PROJECTS_URL)
    for n in range(1, 10):
        services.create_project(owner=user, name=f"p{n}", chroots=CHROOTS)
    with CaptureQueriesContext(connection) as ten:
        client.get(PROJECTS_URL)

    assert len(ten) == len(one)


@pytest.mark.django_db
def test_unknown_project_is_404(client, project):
    assert client.get("/projects/alice/nope/").status_code == 404
    assert client.get("/projects/nobody/hello/").status_code == 404


# --- submitting a build ---------------------------------------------------------------


@pytest.mark.django_db
def test_new_build_form_checks_all_of_the_project_chroots(logged_in_client, project):
    content = logged_in_client.get(NEW_BUILD_URL).content.decode()

    for name in ("fedora-42-x86_64", "fedora-rawhide-x86_64"):
        assert re.search(rf'<input type="checkbox" name="chroots" value="{name}"[^>]* checked>', content)
    assert "epel-9-aarch64" not in content
    assert 'value="upload"' in content
    assert 'value="scm"' in content
    assert 'value="url"' in content
    assert "coprssh/build.js" in content


@pytest.mark.django_db
def test_new_build_form_submits_an_uploaded_spec(logged_in_client, project, demo_spec, storage_dir):
    response = logged_in_client.post(
        NEW_BUILD_URL,
        {"source_type": "upload", "source_file": spec_upload(demo_spec), "chroots": ["fedora-42-x86_64"]},
    )

    build = Build.objects.get()
    assert response.status_code == 302
    assert response["Location"] == build_url(build.pk)
    assert build.source_type == "upload"
    assert build.source_filename == "hello-coprssh.spec"
    assert storage.path(build.source_file).read_bytes() == demo_spec.read_bytes()
    assert storage.path(build.source_file).is_relative_to(storage_dir.resolve())
    assert build.srpm.lease is not None
    assert build.srpm.lease.state == Lease.State.WAITING
    assert list(build.build_chroots.values_list("chroot__name", flat=True)) == ["fedora-42-x86_64"]


@pytest.mark.django_db
def test_new_build_form_submits_an_uploaded_source_rpm(logged_in_client, project, demo_srpm):
    upload = SimpleUploadedFile(demo_srpm.name, demo_srpm.read_bytes())

    response = logged_in_client.post(
        NEW_BUILD_URL, {"source_type": "upload", "source_file": upload, "chroots": ["fedora-42-x86_64"]}
    )

    assert response.status_code == 302
    build = Build.objects.get()
    assert build.source_filename == demo_srpm.name
    assert storage.path(build.source_file).read_bytes() == demo_srpm.read_bytes()


@pytest.mark.django_db
def test_new_build_form_submits_a_git_repository(logged_in_client, project, settings, storage_dir):
    settings.COPRSSH_ALLOW_LOCAL_SOURCES = True

    response = logged_in_client.post(
        NEW_BUILD_URL,
        {
            "source_type": "scm",
            "clone_url": "http://127.0.0.1/hello.git",
            "committish": "v1.0",
            "spec": "packaging/hello.spec",
            "chroots": ["fedora-42-x86_64", "fedora-rawhide-x86_64"],
        },
    )

    build = Build.objects.get()
    assert response["Location"] == build_url(build.pk)
    assert (build.source_type, build.clone_url, build.committish, build.spec) == (
        "scm",
        "http://127.0.0.1/hello.git",
        "v1.0",
        "packaging/hello.spec",
    )
    assert build.source_file == ""
    assert build.srpm.lease is not None
    assert build.build_chroots.count() == 2


@pytest.mark.django_db
def test_new_build_form_submits_a_source_rpm_url(logged_in_client, project, settings):
    settings.COPRSSH_ALLOW_LOCAL_SOURCES = True
    url = "http://127.0.0.1:8080/pub/hello-1.0-1.src.rpm"

    response = logged_in_client.post(
        NEW_BUILD_URL, {"source_type": "url", "url": url, "chroots": ["fedora-42-x86_64"]}
    )

    build = Build.objects.get()
    assert response["Location"] == build_url(build.pk)
    assert (build.source_type, build.url, build.source_filename) == ("url", url, "hello-1.0-1.src.rpm")
    assert build.srpm.lease is not None


@pytest.mark.django_db
def test_new_build_form_uses_only_the_chosen_source(logged_in_client, project, settings, demo_spec):
    """Without JavaScript every part of the form is sent; `source_type` decides."""
    settings.COPRSSH_ALLOW_LOCAL_SOURCES = True

    response = logged_in_client.post(
        NEW_BUILD_URL,
        {
            "source_type": "url",
            "source_file": spec_upload(demo_spec),
            "clone_url": "ext::sh -c touch% /tmp/pwned",
            "url": "http://127.0.0.1/hello-1.0-1.src.rpm",
            "chroots": ["fedora-42-x86_64"],
        },
    )

    assert response.status_code == 302
    build = Build.objects.get()
    assert (build.source_type, build.source_file, build.clone_url) == ("url", "", "")


def _hostile(demo_spec: Path) -> dict[str, tuple[dict, str, str]]:
    spec = demo_spec.read_bytes()
    chroot = ["fedora-42-x86_64"]
    return {
        "binary-rpm": (
            {"source_type": "upload", "source_file": SimpleUploadedFile("hello.src.rpm", BINARY_RPM)},
            "source_file",
            "is a binary RPM, not a source RPM",
        ),
        "rpm-as-spec": (
            {"source_type": "upload", "source_file": SimpleUploadedFile("hello.spec", BINARY_RPM)},
            "source_file",
            "is an RPM package, not a spec file",
        ),
        "dotfile": (
            {"source_type": "upload", "source_file": SimpleUploadedFile(".bashrc.spec", spec)},
            "source_file",
            "must not start with a dot or a dash",
        ),
        "dash": (
            {"source_type": "upload", "source_file": SimpleUploadedFile("-rf.spec", spec)},
            "source_file",
            "must not start with a dot or a dash",
        ),
        "not-a-spec": (
            {"source_type": "upload", "source_file": SimpleUploadedFile("hello.sh", spec)},
            "source_file",
            "must end in .spec or .src.rpm",
        ),
        "no-file": ({"source_type": "upload"}, "source_file", "Choose a .spec or .src.rpm file."),
        "ext-url": (
            {"source_type": "scm", "clone_url": "ext::sh%20-c%20touch%25%20/tmp/pwned", "spec": "x.spec"},
            "clone_url",
            "must start with http:// or https://",
        ),
        "file-url": (
            {"source_type": "scm", "clone_url": "file:///etc", "spec": "x.spec"},
            "clone_url",
            "must start with http:// or https://",
        ),
        "spec-traversal": (
            {"source_type": "scm", "clone_url": "http://93.184.216.34/x.git", "spec": "../../etc/x.spec"},
            "spec",
            "must not contain",
        ),
        "committish-option": (
            {
                "source_type": "scm",
                "clone_url": "http://93.184.216.34/x.git",
                "committish": "--upload-pack=touch",
                "spec": "x.spec",
            },
            "committish",
            "must not start with a dash",
        ),
        "loopback-url": (
            {"source_type": "url", "url": "http://127.0.0.1/hello-1.0-1.src.rpm"},
            "url",
            "is a loopback address",
        ),
        "metadata-url": (
            {"source_type": "url", "url": "http://169.254.169.254/hello-1.0-1.src.rpm"},
            "url",
            "is a link-local address",
        ),
        "no-chroot": (
            {"source_type": "upload", "source_file": SimpleUploadedFile("hello.spec", spec), "chroots": []},
            "chroots",
            "Choose at least one chroot.",
        ),
        "other-projects-chroot": (
            {
                "source_type": "upload",
                "source_file": SimpleUploadedFile("hello.spec", spec),
                "chroots": ["epel-9-aarch64"],
            },
            "chroots",
            "Select a valid choice. epel-9-aarch64 is not one of the available choices.",
        ),
        "no-source-type": (
            {"source_type": "svn", "chroots": chroot},
            "source_type",
            "Select a valid choice.",
        ),
    }


HOSTILE = [
    "binary-rpm",
    "rpm-as-spec",
    "dotfile",
    "dash",
    "not-a-spec",
    "no-file",
    "ext-url",
    "file-url",
    "spec-traversal",
    "committish-option",
    "loopback-url",
    "metadata-url",
    "no-chroot",
    "other-projects-chroot",
    "no-source-type",
]


@pytest.mark.django_db
@pytest.mark.parametrize("case", HOSTILE)
def test_new_build_form_refuses_hostile_input_and_stores_nothing(
    logged_in_client, project, demo_spec, storage_dir, case
):
    data, field, shown = _hostile(demo_spec)[case]
    data.setdefault("chroots", ["fedora-42-x86_64"])

    response = logged_in_client.post(NEW_BUILD_URL, data)

    assert response.status_code == 400
    assert shown in response.context["form"].errors[field][0]
    assert shown.replace("'", "&#x27;") in response.content.decode()
    assert Build.objects.count() == 0
    assert Lease.objects.count() == 0
    assert stored_files(storage_dir) == []


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["../../../evil.spec", "..\\..\\evil.spec", "/etc/cron.d/evil.spec"])
def test_new_build_form_never_stores_outside_the_storage_dir(
    logged_in_client, project, demo_spec, storage_dir, name
):
    """Django keeps only the base name of an uploaded file; whatever is stored stays in its folder."""
    boundary = "coprssh-boundary"
    body = (
        (
            f"--{boundary}\r\n"
            'Content-Disposition: form-data; name="source_type"\r\n\r\nupload\r\n'
            f"--{boundary}\r\n"
            'Content-Disposition: form-data; name="chroots"\r\n\r\nfedora-42-x86_64\r\n'
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="source_file"; filename="{name}"\r\n'
            "Content-Type: text/plain\r\n\r\n"
        ).encode()
        + demo_spec.read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )

    logged_in_client.post(NEW_BUILD_URL, body, content_type=f"multipart/form-data; boundary={boundary}")

    for build in Build.objects.all():
        assert build.source_filename == "evil.spec"
        expected = storage_dir.resolve() / build.srpm.storage_dir / "source" / "evil.spec"
        assert storage.path(build.source_file) == expected
    outside = [p for p in storage_dir.parent.rglob("evil.spec") if storage_dir not in p.parents]
    assert outside == []


@pytest.mark.django_db
def test_new_build_form_refuses_an_inactive_chroot(logged_in_client, project, demo_spec):
    Chroot.objects.filter(name="fedora-42-x86_64").update(active=False)

    content = logged_in_client.get(NEW_BUILD_URL).content.decode()
    response = logged_in_client.post(
        NEW_BUILD_URL,
        {"source_type": "upload", "source_file": spec_upload(demo_spec), "chroots": ["fedora-42-x86_64"]},
    )

    assert "fedora-42-x86_64" not in content
    assert response.status_code == 400
    assert Build.objects.count() == 0


@pytest.mark.django_db
def test_new_build_form_escapes_what_was_typed(logged_in_client, project):
    response = logged_in_client.post(
        NEW_BUILD_URL, {"source_type": "url", "url": '"><script>alert(1)</script>'}
    )

    assert response.status_code == 400
    assert b"<script>alert(1)" not in response.content
    assert b"&lt;script&gt;alert(1)" in response.content


# --- the build page -------------------------------------------------------------------


@pytest.mark.django_db
def test_build_page_shows_the_build_and_a_section_per_phase(client, submit):
    build = submit()

    content = client.get(build_url(build.pk)).content.decode()

    assert f"Build #{build.pk}" in content
    assert 'href="/projects/alice/hello/"' in content
    assert "<code>hello-coprssh.spec</code>" in content
    assert re.search(r"Submitted</dt><dd>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC</dd>", content)
    assert 'data-phase="srpm"' in content
    assert 'data-phase="fedora-42-x86_64"' in content
    assert 'data-phase="fedora-rawhide-x86_64"' in content
    assert f'data-state-url="/builds/{build.pk}/state.json"' in content


@pytest.mark.django_db
def test_build_page_links_the_raw_logs_and_the_results(client, submit):
    build = submit()
    chroot = build.build_chroots.get(chroot__name="fedora-42-x86_64")
    folder = storage.ensure_dir(chroot.storage_dir)
    (folder / "hello-coprssh-1.0-1.noarch.rpm").write_bytes(b"rpm" * 100)
    (folder / storage.LIVE_LOG).write_text("building\n")
    (folder / ".hidden").write_text("not a result")
    srpm_folder = storage.ensure_dir(build.srpm.storage_dir)
    (srpm_folder / "hello-coprssh-1.0-1.src.rpm").write_bytes(b"srpm")

    content = client.get(build_url(build.pk)).content.decode()

    for key in ("srpm", "fedora-42-x86_64", "fedora-rawhide-x86_64"):
        assert f'href="/builds/{build.pk}/logs/{key}/backend.log"' in content
        assert f'href="/builds/{build.pk}/logs/{key}/builder-live.log"' in content
    assert f'href="/builds/{build.pk}/results/fedora-42-x86_64/hello-coprssh-1.0-1.noarch.rpm"' in content
    assert f'href="/builds/{build.pk}/results/srpm/hello-coprssh-1.0-1.src.rpm"' in content
    assert "results/fedora-42-x86_64/builder-live.log" not in content
    assert ".hidden" not in content
    download = client.get(f"/builds/{build.pk}/results/fedora-42-x86_64/hello-coprssh-1.0-1.noarch.rpm")
    assert b"".join(download.streaming_content) == b"rpm" * 100


@pytest.mark.django_db
def test_build_page_never_puts_log_contents_into_the_page(client, submit):
    build = submit()
    folder = storage.ensure_dir(build.srpm.storage_dir)
    (folder / storage.LIVE_LOG).write_text("<script>alert('from the build')</script>\nmarker-1234\n")
    storage.backend_log(build.srpm.storage_dir, "<img src=x onerror=alert(1)>")

    content = client.get(build_url(build.pk)).content.decode()

    assert "<script>alert" not in content
    assert "marker-1234" not in content
    assert "onerror" not in content


@pytest.mark.django_db
def test_build_page_shows_the_status_reason_and_times(client, submit):
    build = submit()
    set_states(build, State.SUCCEEDED, {"fedora-42-x86_64": State.FAILED})

    content = client.get(build_url(build.pk)).content.decode()

    assert "failed here" in content
    assert re.search(r'data-field="ended">\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC<', content)
    assert 'data-field="duration">0 s<' in content


@pytest.mark.django_db
def test_unknown_build_is_404(client, db):
    assert client.get(build_url(999)).status_code == 404
    assert client.get(build_url(999, "state.json")).status_code == 404


@pytest.mark.django_db
def test_state_json_has_the_build_and_each_phase(client, submit):
    build = submit()
    set_states(
        build, State.SUCCEEDED, {"fedora-42-x86_64": State.FAILED, "fedora-rawhide-x86_64": State.SUCCEEDED}
    )
    chroot = build.build_chroots.get(chroot__name="fedora-rawhide-x86_64")
    folder = storage.ensure_dir(chroot.storage_dir)
    (folder / "hello.noarch.rpm").write_bytes(b"x" * 10)
    (folder / storage.LIVE_LOG).write_bytes(b"y" * 7)

    response = client.get(build_url(build.pk, "state.json"))

    assert response["Content-Type"] == "application/json"
    data = response.json()
    assert data["id"] == build.pk
    assert data["state"] == "failed"
    assert data["finished"] is True
    assert [p["key"] for p in data["phases"]] == ["srpm", "fedora-42-x86_64", "fedora-rawhide-x86_64"]
    srpm, failed, succeeded = data["phases"]
    assert (srpm["state"], srpm["finished"]) == ("succeeded", True)
    assert (failed["state"], failed["status_reason"], failed["finished"]) == ("failed", "failed here", True)
    assert failed["ended_at"].endswith(" UTC")
    assert succeeded["results"] == [
        {
            "name": "hello.noarch.rpm",
            "size": 10,
            "url": f"/builds/{build.pk}/results/fedora-rawhide-x86_64/hello.noarch.rpm",
        }
    ]
    assert succeeded["log_sizes"]["builder-live.log"] == 7


@pytest.mark.django_db
def test_state_json_of_a_new_build_is_unfinished(client, submit):
    build = submit()

    data = client.get(build_url(build.pk, "state.json")).json()

    assert (data["state"], data["finished"]) == ("pending", False)
    assert all(p["state"] == "pending" and p["finished"] is False for p in data["phases"])
    assert data["phases"][0]["log_sizes"]["backend.log"] > 0  # "waiting for a builder"


@pytest.mark.django_db
def test_raw_log_is_plain_text_and_honours_the_offset(client, submit):
    build = submit()
    folder = storage.ensure_dir(build.srpm.storage_dir)
    (folder / storage.LIVE_LOG).write_bytes(b"<script>alert(1)</script>\nsecond line\n")
    url = f"/builds/{build.pk}/logs/srpm/builder-live.log"

    whole = client.get(url)
    rest = client.get(url + "?offset=26")

    assert whole["Content-Type"] == "text/plain; charset=utf-8"
    assert whole["X-Content-Type-Options"] == "nosniff"
    assert whole.content == b"<script>alert(1)</script>\nsecond line\n"
    assert whole["X-Log-Size"] == "38"
    assert rest.content == b"second line\n"
    assert rest["X-Log-Size"] == "38"
    assert client.get(url + "?offset=-1").status_code == 400


# --- cancel ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_cancel_stops_a_pending_build(logged_in_client, submit):
    build = submit()

    response = logged_in_client.post(build_url(build.pk, "cancel/"), follow=True)

    assert response.redirect_chain == [(build_url(build.pk), 302)]
    assert f"Build #{build.pk} canceled." in response.content.decode()
    build.refresh_from_db()
    assert build.state == State.CANCELED
    assert build.srpm.lease.state == Lease.State.ENDED
    assert set(build.build_chroots.values_list("state", flat=True)) == {State.CANCELED}


@pytest.mark.django_db
def test_cancel_button_shows_only_while_the_build_runs(logged_in_client, submit):
    build = submit()
    running = logged_in_client.get(build_url(build.pk)).content.decode()
    set_states(
        build,
        State.SUCCEEDED,
        {"fedora-42-x86_64": State.SUCCEEDED, "fedora-rawhide-x86_64": State.SUCCEEDED},
    )
    finished = logged_in_client.get(build_url(build.pk)).content.decode()

    assert re.search(r'action="/builds/\d+/cancel/" data-show="running">', running)
    assert re.search(r'action="/builds/\d+/cancel/" data-show="running" hidden>', finished)
    assert re.search(r'data-show="finished">Resubmit', finished)


@pytest.mark.django_db
def test_cancel_of_a_finished_build_says_why_not(logged_in_client, submit):
    build = submit()
    set_states(build, State.FAILED)

    response = logged_in_client.post(build_url(build.pk, "cancel/"), follow=True)

    assert f"Build #{build.pk} has already finished (failed)." in response.content.decode()
    build.refresh_from_db()
    assert build.state == State.FAILED


@pytest.mark.django_db
def test_cancel_refuses_get(logged_in_client, submit):
    assert logged_in_client.get(build_url(submit().pk, "cancel/")).status_code == 405


# --- resubmit -------------------------------------------------------------------------


def _checked(content: str) -> set[str]:
    return set(re.findall(r'<input type="checkbox" name="chroots" value="([^"]+)"[^>]* checked>', content))


@pytest.mark.django_db
def test_resubmit_form_preselects_the_failed_chroots(logged_in_client, submit):
    build = submit()
    set_states(
        build, State.SUCCEEDED, {"fedora-42-x86_64": State.FAILED, "fedora-rawhide-x86_64": State.SUCCEEDED}
    )

    content = logged_in_client.get(build_url(build.pk, "resubmit/")).content.decode()

    assert _checked(content) == {"fedora-42-x86_64"}
    assert 'value="fedora-rawhide-x86_64"' in content


@pytest.mark.django_db
def test_resubmit_form_preselects_every_chroot_when_none_failed(logged_in_client, submit):
    build = submit()
    set_states(build, State.FAILED)  # the SRPM phase failed: the chroots were never built

    content = logged_in_client.get(build_url(build.pk, "resubmit/")).content.decode()

    assert _checked(content) == {"fedora-42-x86_64", "fedora-rawhide-x86_64"}


@pytest.mark.django_db
def test_resubmit_creates_a_new_build_pointing_back(logged_in_client, submit):
    build = submit()
    set_states(
        build, State.SUCCEEDED, {"fedora-42-x86_64": State.FAILED, "fedora-rawhide-x86_64": State.SUCCEEDED}
    )

    response = logged_in_client.post(
        build_url(build.pk, "resubmit/"), {"chroots": ["fedora-42-x86_64"]}, follow=True
    )

    new = Build.objects.get(resubmitted_from=build)
    assert response.redirect_chain == [(build_url(new.pk), 302)]
    assert list(new.build_chroots.values_list("chroot__name", flat=True)) == ["fedora-42-x86_64"]
    assert storage.path(new.source_file).read_bytes() == storage.path(build.source_file).read_bytes()
    assert new.srpm.lease is not None
    content = response.content.decode()
    assert f'Resubmitted from</dt><dd><a href="/builds/{build.pk}/">#{build.pk}</a>' in content
    old_page = logged_in_client.get(build_url(build.pk)).content.decode()
    assert f'Resubmitted as</dt><dd><a href="/builds/{new.pk}/">#{new.pk}</a>' in old_page


@pytest.mark.django_db
def test_resubmit_of_a_running_build_shows_the_service_error(logged_in_client, submit):
    build = submit()

    response = logged_in_client.post(build_url(build.pk, "resubmit/"), {"chroots": ["fedora-42-x86_64"]})

    assert response.status_code == 400
    assert (
        f"Build #{build.pk} is still pending; cancel it or wait until it ends." in response.content.decode()
    )
    assert Build.objects.count() == 1


@pytest.mark.django_db
def test_resubmit_needs_a_chroot(logged_in_client, submit):
    build = submit()
    set_states(build, State.FAILED)

    response = logged_in_client.post(build_url(build.pk, "resubmit/"), {"chroots": []})

    assert response.status_code == 400
    assert "Choose at least one chroot." in response.content.decode()
    assert Build.objects.count() == 1
