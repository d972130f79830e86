"""Issue #10, finding 4: where and how to log in to an SSH builder is for its owner and staff only.

Build pages, state.json, the builds API and backend.log are public; anonymous visitors and other
users see that a phase has an SSH builder, its state and its expiry, never its host, port, login
user, ssh command, host key or the keys (and their comments) that may log in.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from builders import services as builders
from builders.models import Builder, Lease
from builders.providers import generate_host_key
from builders.services.access import Access, host_key_fingerprint
from builds import runner, services, storage
from builds.models import Build, BuildChroot
from builds.services import phases
from keys.parser import parse_keys
from tests.builders.factories import make_builder, make_pool
from tests.builds.test_api_ssh import failed_build

pytestmark = pytest.mark.django_db

CHROOTS = ["fedora-43-x86_64"]
IPV4 = "198.51.100.23"
IPV6 = "2001:db8::23"
PORT = 48222
COMMAND = f"ssh -p {PORT} root@{IPV4}"
COMMENT = "alice-private-laptop-comment"


@dataclass(frozen=True)
class Key:
    public: str
    fingerprint: str


def keygen(directory: Path, comment: str = COMMENT) -> Key:
    path = directory / "laptop"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
    )
    listed = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", f"{path}.pub"], check=True, capture_output=True, text=True
    )
    return Key(Path(f"{path}.pub").read_text().strip(), listed.stdout.split()[1])


def make_ssh_build(user: Any, key: Key, capture: Any) -> Build:
    """An SSH resubmission of a failed chroot, waiting for its builder."""
    project = services.create_project(owner=user, name="hello", chroots=CHROOTS)
    old = failed_build(project, user)
    with capture(execute=True):
        return services.resubmit_with_ssh(build=old, user=user, keys=parse_keys(key.public).keys)


def give_builder(lease: Lease) -> Builder:
    """A fresh builder for a waiting lease, assigned as the tick assigns it."""
    builder = make_builder(
        pool=make_pool(architectures=[lease.arch]),
        state=Builder.State.LEASED,
        sandbox=lease.sandbox,
        single_use=True,
        ipv4=IPV4,
        ipv6=IPV6,
        port=PORT,
        host_key=generate_host_key().public_line,
    )
    Lease.objects.filter(pk=lease.pk).update(
        state=Lease.State.ASSIGNED, builder=builder, assigned_at=timezone.now()
    )
    return builder


@pytest.fixture(scope="session")
def key(tmp_path_factory) -> Key:
    return keygen(tmp_path_factory.mktemp("privacy-keys"))


@pytest.fixture(autouse=True)
def storage_dir(settings, tmp_path) -> Path:
    settings.COPRSSH_STORAGE_DIR = tmp_path / "storage"
    return settings.COPRSSH_STORAGE_DIR


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_user("operator", password="operator-password-1", is_staff=True)


@pytest.fixture
def ssh_build(user, key, django_capture_on_commit_callbacks) -> Build:
    return make_ssh_build(user, key, django_capture_on_commit_callbacks)


@pytest.fixture
def ready(ssh_build) -> Lease:
    """The SSH build's builder is up and its lease active, as the tick and the phase task leave it."""
    lease = ssh_build.build_chroots.get().lease
    give_builder(lease)
    builders.start_lease(lease_id=lease.pk)
    Lease.objects.filter(pk=lease.pk).update(access_ready_at=timezone.now())  # the keys are deployed
    return Lease.objects.get(pk=lease.pk)


def web_client(who: Any) -> Client:
    client = Client()
    if who is not None:
        client.force_login(who)
    return client


def api(who: Any) -> APIClient:
    client = APIClient()
    if who is not None:
        client.force_authenticate(who)
    return client


def secrets_in(text: str, lease: Lease, key: Key) -> list[str]:
    """Which connection details of `lease` appear in `text`."""
    details = {
        "host": IPV4,
        "ipv6": IPV6,
        "port": str(PORT),
        "command": "ssh -p",
        "login": "root@",
        "key comment": COMMENT,
        "key fingerprint": key.fingerprint,
        "host key": host_key_fingerprint(lease.builder.host_key),
        "host key blob": lease.builder.host_key.split()[1],
    }
    return [name for name, value in details.items() if value in text]


ALL = ["host", "ipv6", "port", "command", "login", "key comment", "key fingerprint", "host key"]


# --- the build page and state.json ---------------------------------------------------------------


@pytest.mark.parametrize("who", ["anonymous", "other"])
def test_build_page_hides_the_connection_details_from_others(ssh_build, ready, key, other_user, who):
    viewer = other_user if who == "other" else None

    content = web_client(viewer).get(f"/builds/{ssh_build.pk}/").content.decode()

    assert secrets_in(content, ready, key) == []
    assert '<span class="state state-ready" data-ssh-field="state">ready</span>' in content
    assert "how to log in is shown to them only" in content
    assert "for 1 key" in content  # that SSH is allowed, and for how many keys


@pytest.mark.parametrize("who", ["owner", "staff"])
def test_build_page_shows_the_connection_details_to_the_owner_and_staff(
    ssh_build, ready, key, user, staff, who
):
    content = web_client(user if who == "owner" else staff).get(f"/builds/{ssh_build.pk}/").content.decode()

    # The page also gives the owner known_hosts lines, which carry the host key itself.
    assert secrets_in(content, ready, key) == [*ALL, "host key blob"]
    assert f'<code data-ssh-field="ssh_command">{COMMAND}</code>' in content


@pytest.mark.parametrize("who", ["anonymous", "other"])
def test_state_json_hides_the_connection_details_from_others(ssh_build, ready, key, other_user, who):
    viewer = other_user if who == "other" else None

    response = web_client(viewer).get(f"/builds/{ssh_build.pk}/state.json")

    assert secrets_in(response.content.decode(), ready, key) == []
    ssh = response.json()["phases"][1]["ssh"]
    assert (ssh["state"], ssh["details"]) == ("ready", False)
    assert ssh["expires_at"] is not None
    for name in ("ssh_command", "host", "port", "user", "ipv4", "ipv6", "host_key_fingerprint"):
        assert ssh[name] is None
    assert ssh["key_fingerprints"] == []


@pytest.mark.parametrize("who", ["owner", "staff"])
def test_state_json_shows_the_connection_details_to_the_owner_and_staff(
    ssh_build, ready, key, user, staff, who
):
    data = web_client(user if who == "owner" else staff).get(f"/builds/{ssh_build.pk}/state.json").json()

    ssh = data["phases"][1]["ssh"]
    assert (ssh["details"], ssh["ssh_command"], ssh["port"], ssh["user"]) == (True, COMMAND, PORT, "root")
    assert ssh["key_fingerprints"] == [key.fingerprint]


# --- the API ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["anonymous", "other"])
def test_builds_api_hides_the_connection_details_from_others(ssh_build, ready, key, other_user, who):
    client = api(other_user if who == "other" else None)

    detail = client.get(f"/api/v1/builds/{ssh_build.pk}/")
    listed = client.get("/api/v1/builds/")

    for response in (detail, listed):
        assert response.status_code == 200
        assert secrets_in(response.content.decode(), ready, key) == []
    [chroot] = detail.json()["chroots"]
    assert chroot["ssh_builder"]["state"] == "ready"
    assert chroot["ssh_builder"]["ssh_command"] is None


@pytest.mark.parametrize("who", ["owner", "staff"])
def test_builds_api_shows_the_command_to_the_owner_and_staff(ssh_build, ready, user, staff, who):
    client = api(user if who == "owner" else staff)

    detail = client.get(f"/api/v1/builds/{ssh_build.pk}/").json()
    listed = client.get("/api/v1/builds/").json()["results"]

    assert detail["chroots"][0]["ssh_builder"]["ssh_command"] == COMMAND
    [mine] = [build for build in listed if build["id"] == ssh_build.pk]
    assert mine["chroots"][0]["ssh_builder"]["ssh_command"] == COMMAND


def test_ssh_builders_api_lists_only_the_callers_own(ssh_build, ready, key, user, other_user, staff):
    for someone in (other_user, staff):
        listed = api(someone).get("/api/v1/ssh-builders/")
        assert (listed.status_code, listed.json()) == (200, [])
        assert api(someone).get(f"/api/v1/ssh-builders/{ready.pk}/").status_code == 404
    assert APIClient().get("/api/v1/ssh-builders/").status_code in (401, 403)

    [mine] = api(user).get("/api/v1/ssh-builders/").json()

    assert (mine["ssh_command"], mine["key_fingerprints"]) == (COMMAND, [key.fingerprint])


# --- backend.log -----------------------------------------------------------------------------------


def test_backend_log_of_an_ssh_build_says_access_was_set_up_but_not_where(
    ssh_build, key, monkeypatch, settings
):
    phase = ssh_build.build_chroots.select_related("lease").get()
    lease_id = phase.lease_id
    builder = give_builder(phase.lease)

    def deploy(*, lease_id: int, keys: list, info: dict, via: Any) -> Access:
        lease = Lease.objects.get(pk=lease_id)
        return Access(
            user="root",
            host=IPV4,
            port=PORT,
            ipv4=IPV4,
            ipv6=IPV6,
            ssh_command=COMMAND,
            host_key=builder.host_key,
            host_key_fingerprint=host_key_fingerprint(builder.host_key),
            key_fingerprints=[k.fingerprint for k in keys],
            expires_at=lease.expires_at,
            tool="copr-builder",
        )

    # No builder runs here: the network calls stand in, the services around them are real.
    monkeypatch.setattr(builders, "deploy_ssh_access", deploy)
    monkeypatch.setattr(runner, "new_workdir", lambda builder, label: f"/srv/jobs/{label}-0123")
    monkeypatch.setattr(runner, "start", lambda builder, **kwargs: None)

    phases.phase_ready(lease_id=lease_id)

    log = (storage.path(phase.storage_dir) / storage.BACKEND_LOG).read_text()
    lease = Lease.objects.select_related("builder").get(pk=lease_id)
    assert secrets_in(log, lease, key) == []
    assert (
        "SSH access was set up for the owner; connection details are on the build page for the owner." in log
    )
    assert "The builder is kept until" in log
    srpm_log = (storage.path(ssh_build.srpm.storage_dir) / storage.BACKEND_LOG).read_text()
    assert f"with SSH access by {ssh_build.submitter.get_username()} for 1 key." in srpm_log
    assert secrets_in(srpm_log, lease, key) == []
    assert BuildChroot.objects.get(pk=phase.pk).state == "running"
