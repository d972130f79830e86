"""Accounts that belong to no app: the health check, the demo_data command, the signed-in user."""

from __future__ import annotations

import platform
import re
import shutil
import subprocess
from io import StringIO
from pathlib import Path

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied
from django.core.management import call_command
from rest_framework.authtoken.models import Token

from builds import storage
from builds.models import Build, Chroot, Project, State
from builds.services import create_project
from coprssh.users import signed_in_user

PASSWORD_RE = re.compile(r"^(\w+): created, .*, password: (\S+)$", re.MULTILINE)


@pytest.fixture
def storage_dir(settings, tmp_path) -> Path:
    settings.COPRSSH_STORAGE_DIR = tmp_path / "storage"
    return settings.COPRSSH_STORAGE_DIR


def run_demo_data() -> str:
    out = StringIO()
    call_command("demo_data", stdout=out, no_color=True)
    return out.getvalue()


@pytest.mark.django_db
def test_healthz_answers_ok_in_json(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_healthz_refuses_post(client):
    assert client.post("/healthz").status_code == 405


@pytest.mark.django_db
def test_demo_data_creates_the_operator_and_demo_accounts():
    output = run_demo_data()

    users = get_user_model().objects
    operator, demo = users.get(username="operator"), users.get(username="demo")
    assert (operator.is_superuser, operator.is_staff) == (True, True)
    assert (demo.is_superuser, demo.is_staff) == (False, False)
    passwords = dict(PASSWORD_RE.findall(output))
    assert set(passwords) == {"operator", "demo"}
    assert operator.check_password(passwords["operator"])
    assert demo.check_password(passwords["demo"])
    assert passwords["operator"] != passwords["demo"]
    assert Token.objects.filter(user__in=[operator, demo]).count() == 2


@pytest.mark.django_db
def test_demo_data_prints_each_password_once():
    output = run_demo_data()

    for password in dict(PASSWORD_RE.findall(output)).values():
        assert output.count(password) == 1


@pytest.mark.django_db
def test_demo_data_twice_creates_nothing_and_shows_no_password():
    first = run_demo_data()
    users = {u.username: u.password for u in get_user_model().objects.all()}
    tokens = set(Token.objects.values_list("key", flat=True))

    second = run_demo_data()

    assert {u.username: u.password for u in get_user_model().objects.all()} == users
    assert set(Token.objects.values_list("key", flat=True)) == tokens
    assert "password:" not in second
    for password in dict(PASSWORD_RE.findall(first)).values():
        assert password not in second
    assert "operator: exists, password unchanged" in second
    assert "demo: exists, password unchanged" in second


@pytest.mark.django_db
def test_demo_data_leaves_an_existing_account_alone(django_user_model):
    django_user_model.objects.create_user("demo", password="my-own-password-1")

    output = run_demo_data()

    demo = django_user_model.objects.get(username="demo")
    assert demo.check_password("my-own-password-1")
    assert "demo: exists, password unchanged" in output
    assert set(dict(PASSWORD_RE.findall(output))) == {"operator"}


DEMO_SPECS = Path(__file__).resolve().parent.parent / "builds" / "demo"
ARCH = platform.machine()


def demo_builds() -> dict[str, Build]:
    """The demo user's builds by project name."""
    builds = Build.objects.filter(project__owner__username="demo").select_related("project")
    return {build.project.name: build for build in builds}


@pytest.mark.django_db
def test_demo_data_submits_a_sample_build_and_one_whose_check_fails(storage_dir):
    output = run_demo_data()

    builds = demo_builds()
    assert set(builds) == {"hello-coprssh", "failing-check"}
    hello, failing = builds["hello-coprssh"], builds["failing-check"]
    # The sample first: on a fresh demo the failed build is the next one.
    assert failing.pk == hello.pk + 1
    for build, chroots in (
        (hello, [f"epel-9-{ARCH}", f"fedora-rawhide-{ARCH}"]),
        # One chroot only: resubmitting it with SSH takes one SSH builder.
        (failing, [f"fedora-rawhide-{ARCH}"]),
    ):
        spec = DEMO_SPECS / f"{build.project.name}.spec"
        assert build.submitter.username == "demo"
        assert build.state == State.PENDING
        assert build.source_filename == spec.name
        assert storage.path(build.source_file).read_bytes() == spec.read_bytes()
        assert [bc.chroot.name for bc in build.build_chroots.select_related("chroot")] == chroots
        assert sorted(build.project.chroots.values_list("name", flat=True)) == chroots
    assert "%check fails" in failing.project.description
    assert f"project demo/hello-coprssh: created, build #{hello.pk} submitted (hello-coprssh.spec" in output
    assert (
        f"project demo/failing-check: created, build #{failing.pk} submitted (failing-check.spec, "
        "whose %check fails: resubmit the build with SSH to debug it)"
    ) in output


def test_the_failing_demo_spec_fails_in_check_with_a_message_to_debug(tmp_path):
    # The same spec on the build farm: tests/builds/test_demo_builds.py.
    if shutil.which("rpmbuild") is None:
        pytest.skip("rpmbuild is not installed")
    result = subprocess.run(
        ["rpmbuild", "-bb", "--define", f"_topdir {tmp_path}", str(DEMO_SPECS / "failing-check.spec")],
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 1
    log = result.stdout + result.stderr
    assert "FAIL: greets-the-world: expected 'Hello, world!', got 'Hello, world'" in log
    assert "1 of 2 tests failed" in log
    assert "(%check)" in log
    assert "Executing(%install)" in log  # it built and installed first


@pytest.mark.django_db
def test_demo_data_twice_submits_no_second_build(storage_dir):
    run_demo_data()
    first = {name: build.pk for name, build in demo_builds().items()}

    second = run_demo_data()

    assert {name: build.pk for name, build in demo_builds().items()} == first
    assert Build.objects.count() == 2
    assert Project.objects.count() == 2
    assert "project demo/hello-coprssh: exists" in second
    assert "project demo/failing-check: exists" in second
    assert "submitted" not in second


@pytest.mark.django_db
def test_demo_data_adds_the_failing_project_next_to_an_existing_sample(storage_dir):
    # A demo made before the failing build existed gets it, and keeps its own projects as they are.
    demo = get_user_model().objects.create_user("demo", password="my-own-password-1")
    create_project(owner=demo, name="hello-coprssh", chroots=[f"fedora-rawhide-{ARCH}"])

    output = run_demo_data()

    assert "project demo/hello-coprssh: exists" in output
    assert set(demo_builds()) == {"failing-check"}
    assert list(Project.objects.get(name="hello-coprssh").chroots.values_list("name", flat=True)) == [
        f"fedora-rawhide-{ARCH}"
    ]


@pytest.mark.django_db
def test_demo_data_without_a_chroot_for_the_machine_skips_the_projects(storage_dir):
    Chroot.objects.filter(arch=ARCH).delete()

    output = run_demo_data()

    assert not Project.objects.exists()
    assert f"no chroot for {ARCH}; skipping project demo/failing-check" in output


# --- the login rate limit (issue #10) -----------------------------------------------------------

LOGIN_URL = "/accounts/login/"


def log_in(client, username: str, password: str, address: str = "203.0.113.5"):
    return client.post(LOGIN_URL, {"username": username, "password": password}, REMOTE_ADDR=address)


def logged_in(client) -> bool:
    return "_auth_user_id" in client.session


@pytest.fixture
def three_failures(settings):
    settings.COPRSSH_LOGIN_FAILURES = 3
    settings.COPRSSH_LOGIN_WINDOW = 900


@pytest.mark.django_db
def test_login_refuses_a_user_name_after_too_many_failures_even_with_the_right_password(
    client, user, three_failures
):
    tries = [log_in(client, "alice", "wrong", address=f"203.0.113.{n}").status_code for n in range(3)]
    refused = log_in(client, "alice", "alice-password-1", address="198.51.100.7")

    assert tries == [200, 200, 200]
    assert refused.status_code == 429
    assert "Too many failed logins for this user name or from your address. Wait 15 minutes" in (
        refused.content.decode()
    )
    assert not logged_in(client)


@pytest.mark.django_db
def test_login_refuses_an_address_after_too_many_failures_for_any_names(
    client, user, other_user, three_failures
):
    for name in ("mallory", "trent", "bob"):
        log_in(client, name, "guess")

    assert log_in(client, "alice", "alice-password-1").status_code == 429
    assert not logged_in(client)
    # From elsewhere alice still logs in.
    assert log_in(client, "alice", "alice-password-1", address="198.51.100.7").status_code == 302
    assert logged_in(client)


@pytest.mark.django_db
def test_login_counts_user_names_without_case(client, user, three_failures):
    for n, name in enumerate(("alice", "ALICE", "Alice ")):
        log_in(client, name, "wrong", address=f"198.51.100.{n}")

    assert log_in(client, "alice", "alice-password-1", address="192.0.2.1").status_code == 429


@pytest.mark.django_db
def test_a_successful_login_clears_the_names_failures(client, user, three_failures):
    for n in range(2):
        log_in(client, "alice", "wrong", address=f"198.51.100.{n}")
    assert log_in(client, "alice", "alice-password-1", address="198.51.100.9").status_code == 302
    client.logout()

    for n in range(2):
        log_in(client, "alice", "wrong", address=f"192.0.2.{n}")

    assert log_in(client, "alice", "alice-password-1", address="192.0.2.9").status_code == 302


@pytest.mark.django_db
def test_the_admin_login_is_refused_too_while_a_name_is_locked(client, django_user_model, three_failures):
    django_user_model.objects.create_superuser("root", password="root-password-1")
    for n in range(3):
        log_in(client, "root", "wrong", address=f"198.51.100.{n}")

    response = client.post(
        "/admin/login/", {"username": "root", "password": "root-password-1"}, REMOTE_ADDR="192.0.2.50"
    )

    assert response.status_code == 200  # the admin's form, with its error
    assert not logged_in(client)


@pytest.mark.django_db
def test_login_failures_expire_with_the_window(client, user, settings, three_failures):
    with time_machine.travel("2026-01-01 12:00:00 +0000", tick=False):
        for n in range(3):
            log_in(client, "alice", "wrong", address=f"198.51.100.{n}")
        assert log_in(client, "alice", "alice-password-1", address="192.0.2.9").status_code == 429
    with time_machine.travel("2026-01-01 12:16:00 +0000", tick=False):
        assert log_in(client, "alice", "alice-password-1", address="192.0.2.9").status_code == 302


@pytest.mark.django_db
def test_signed_in_user_is_the_requests_user(rf, user):
    request = rf.get("/")
    request.user = user

    assert signed_in_user(request) == user


def test_signed_in_user_refuses_an_anonymous_request(rf):
    # Only a view that forgot its login check could get here: it acts for nobody.
    request = rf.get("/")
    request.user = AnonymousUser()

    with pytest.raises(PermissionDenied):
        signed_in_user(request)
