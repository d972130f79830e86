"""REST API v1: resubmit with SSH, /api/v1/ssh-builders/ (read, prolong, release) and /api/v1/quota/.

No builder runs here: an SSH lease waits ("provisioning") until the tests hand it a builder row
and start it with the builders services, as the tick and the phase task would.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from builders import services as builders
from builders.models import Builder, Lease, QuotaOverride, QuotaPolicy
from builders.providers import generate_host_key
from builders.services import quota as quotas
from builds import services, storage
from builds.models import Build, BuildChroot, Chroot, SrpmPhase, State
from keys.services import add_saved_key
from tests.builders.factories import make_builder, make_pool
from tests.builds.test_api_builds import client_for, finished_build, make_build, snapshot
from tests.concurrency import run_at_once

pytestmark = pytest.mark.django_db

CHROOTS = ["epel-10-aarch64", "fedora-43-x86_64", "fedora-rawhide-x86_64"]
SSH_BUILDER_FIELDS = {
    "id",
    "build",
    "chroot",
    "state",
    "queue_reason",
    "host",
    "port",
    "user",
    "ipv4",
    "ipv6",
    "ssh_command",
    "host_key_fingerprint",
    "expires_at",
    "max_expires_at",
    "key_fingerprints",
    "route",
    "direct_ssh_command",
    "gateway",
    "known_hosts",
    "ssh_config",
    "last_gateway_login",
}
LINK_FIELDS = {"id", "state", "queue_reason", "ssh_command", "expires_at", "url"}
SSH_BUILDERS_URL = "/api/v1/ssh-builders/"
QUOTA_URL = "/api/v1/quota/"


def resubmit_url(build_id: int) -> str:
    return f"/api/v1/builds/{build_id}/resubmit/"


def ssh_builder_url(lease_id: int, action: str = "") -> str:
    return f"{SSH_BUILDERS_URL}{lease_id}/" + (f"{action}/" if action else "")


# --- keys from ssh-keygen --------------------------------------------------------------------


@dataclass(frozen=True)
class Key:
    """A pair written by ssh-keygen, and the fingerprint `ssh-keygen -lf` prints for it."""

    public: str
    private: str
    fingerprint: str


def _keygen(directory: Path, name: str, key_type: str) -> Key:
    path = directory / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", key_type, "-N", "", "-C", f"{name}@test", "-f", str(path)],
        check=True,
        capture_output=True,
    )
    listed = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", f"{path}.pub"], check=True, capture_output=True, text=True
    )
    return Key(Path(f"{path}.pub").read_text().strip(), path.read_text(), listed.stdout.split()[1])


@pytest.fixture(scope="session")
def keys(tmp_path_factory) -> dict[str, Key]:
    directory = tmp_path_factory.mktemp("api-ssh-keys")
    kinds = {"laptop": "ed25519", "desk": "ed25519", "gh1": "ed25519", "gh2": "ecdsa", "saved": "ed25519"}
    kinds.update({"dsa": "dsa"}, **{f"many{n}": "ed25519" for n in range(11)})
    return {name: _keygen(directory, name, kind) for name, kind in kinds.items()}


# --- a real HTTP server standing in for GitHub -----------------------------------------------


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def storage_dir(settings, tmp_path) -> Path:
    settings.COPRSSH_STORAGE_DIR = tmp_path / "storage"
    return settings.COPRSSH_STORAGE_DIR


@pytest.fixture(autouse=True)
def _fresh_key_cache() -> Iterator[None]:
    """Fetched references are cached; no test may see another test's answers."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def api(user) -> APIClient:
    return client_for(user)


@pytest.fixture
def other_api(other_user) -> APIClient:
    return client_for(other_user)


@pytest.fixture
def project(user):
    return services.create_project(owner=user, name="hello", chroots=CHROOTS)


def failed_build(project: Any, user: Any, failed: tuple[str, ...] = ("fedora-43-x86_64",)) -> Build:
    """A finished build whose SRPM phase succeeded and whose `failed` chroots failed."""
    build = finished_build(project, user)
    srpm = build.srpm
    folder = storage.ensure_dir(srpm.storage_dir)
    (folder / "hello-coprssh-1.0-1.src.rpm").write_bytes(b"an srpm")
    (folder / "hello-coprssh.spec").write_bytes(b"Name: hello-coprssh\n")
    Build.objects.filter(pk=build.pk).update(
        state=State.FAILED,
        srpm_file=f"{srpm.storage_dir}/hello-coprssh-1.0-1.src.rpm",
        spec_file=f"{srpm.storage_dir}/hello-coprssh.spec",
        package_name="hello-coprssh",
        package_version="1.0-1",
    )
    SrpmPhase.objects.filter(pk=srpm.pk).update(state=State.SUCCEEDED, status_reason="")
    chroots = BuildChroot.objects.filter(build=build)
    chroots.update(state=State.SUCCEEDED, status_reason="")
    chroots.filter(chroot__name__in=failed).update(state=State.FAILED, status_reason="exit status 1")
    return Build.objects.get(pk=build.pk)


def srpm_failed_build(project: Any, user: Any) -> Build:
    """A finished build that failed in the SRPM phase: no SRPM, every chroot skipped."""
    build = finished_build(project, user)
    Build.objects.filter(pk=build.pk).update(state=State.FAILED)
    SrpmPhase.objects.filter(build=build).update(state=State.FAILED, status_reason="rpmbuild -bs failed")
    BuildChroot.objects.filter(build=build).update(state=State.SKIPPED, status_reason="the SRPM failed")
    return Build.objects.get(pk=build.pk)


def ssh_resubmit(client: APIClient, build: Build, **data: Any) -> Any:
    return client.post(resubmit_url(build.pk), data, format="json")


def chroot_of(body: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in body["chroots"] if c["name"] == name)


def make_ready(lease_id: int) -> Lease:
    """Give a waiting SSH lease a fresh builder, start it and mark its keys deployed, as the tick and the phase task do."""
    lease = Lease.objects.get(pk=lease_id)
    builder = make_builder(
        pool=make_pool(architectures=[lease.arch]),
        state=Builder.State.LEASED,
        sandbox=lease.sandbox,
        single_use=True,
        ipv4="127.0.0.1",
        port=2222,
        host_key=generate_host_key().public_line,
    )
    assigned = Lease.objects.filter(pk=lease_id, state=Lease.State.WAITING).update(
        state=Lease.State.ASSIGNED, builder=builder, assigned_at=timezone.now()
    )
    assert assigned == 1
    builders.start_lease(lease_id=lease_id)
    # The phase task deploys the keys next; from then on the builder is ready to log in to.
    Lease.objects.filter(pk=lease_id).update(access_ready_at=timezone.now())
    return Lease.objects.get(pk=lease_id)


def lease_row(lease_id: int) -> tuple[Any, ...]:
    lease = Lease.objects.get(pk=lease_id)
    return (lease.state, lease.expires_at, lease.max_expires_at, lease.ended_at, lease.end_reason)


# --- resubmit with SSH -----------------------------------------------------------------------


def test_resubmit_with_a_key_runs_the_failed_chroot_on_an_ssh_builder(api, project, user, keys):
    old = failed_build(project, user)
    laptop = keys["laptop"]
    key_type, blob, comment = laptop.public.split()
    # As pasted from a text area: CRLF, a comment line, tabs and extra spaces.
    text = f"# my laptop\r\n  {key_type}\t{blob}   {comment}  \r\n\r\n"

    response = ssh_resubmit(api, old, ssh_public_keys=text)

    assert response.status_code == 201, response.content
    body = response.json()
    # The SRPM phase is done already: the build runs, its chroot waits for a builder.
    assert (body["ssh"], body["resubmitted_from"], body["state"]) == (True, old.pk, "running")
    assert [c["name"] for c in body["chroots"]] == ["fedora-43-x86_64"]
    # The SRPM is reused: that phase needs no builder.
    assert (body["source_state"], body["srpm"]["ssh_builder"]) == ("succeeded", None)
    link = body["chroots"][0]["ssh_builder"]
    assert set(link) == LINK_FIELDS
    assert (link["state"], link["ssh_command"], link["expires_at"]) == ("provisioning", None, None)
    assert link["url"] == f"http://testserver{ssh_builder_url(link['id'])}"
    new = Build.objects.get(pk=body["id"])
    assert new.ssh_keys == laptop.public
    lease = Lease.objects.get(pk=link["id"])
    assert (lease.ssh, lease.owner, lease.state, lease.arch) == (True, user, Lease.State.WAITING, "x86_64")
    assert BuildChroot.objects.get(build=new).lease_id == lease.pk
    # The link leads to the SSH builder, with the keys that will log in.
    detail = api.get(link["url"]).json()
    assert set(detail) == SSH_BUILDER_FIELDS
    assert (detail["build"], detail["chroot"], detail["state"]) == (
        new.pk,
        "fedora-43-x86_64",
        "provisioning",
    )
    assert detail["key_fingerprints"] == [laptop.fingerprint]
    assert detail["host"] is detail["ssh_command"] is detail["expires_at"] is None


def test_resubmit_with_ssh_gives_each_chosen_chroot_its_own_builder(api, project, user, keys):
    old = failed_build(project, user)

    response = ssh_resubmit(
        api,
        old,
        chroots=["fedora-rawhide-x86_64", "epel-10-aarch64"],
        ssh_public_keys=f"{keys['laptop'].public}\n{keys['desk'].public}\n",
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert [c["name"] for c in body["chroots"]] == ["epel-10-aarch64", "fedora-rawhide-x86_64"]
    links = [c["ssh_builder"] for c in body["chroots"]]
    assert [link["state"] for link in links] == ["provisioning", "provisioning"]
    assert len({link["id"] for link in links}) == 2
    assert [Lease.objects.get(pk=link["id"]).arch for link in links] == ["aarch64", "x86_64"]
    assert Build.objects.get(pk=body["id"]).ssh_keys.splitlines() == [
        keys["laptop"].public,
        keys["desk"].public,
    ]


def test_resubmit_with_ssh_without_chroots_takes_every_failed_one(api, project, user, keys):
    old = failed_build(project, user, failed=("epel-10-aarch64", "fedora-rawhide-x86_64"))

    response = ssh_resubmit(api, old, ssh_public_keys=keys["laptop"].public)

    assert response.status_code == 201, response.content
    names = [c["name"] for c in response.json()["chroots"]]
    assert names == ["epel-10-aarch64", "fedora-rawhide-x86_64"]
    assert Lease.objects.filter(owner=user, ssh=True).count() == 2


def test_resubmit_with_ssh_of_a_build_where_nothing_failed_takes_only_the_first_chroot(
    api, project, user, keys
):
    # One request without chroots must not take every SSH slot of the user.
    old = failed_build(project, user, failed=())
    Build.objects.filter(pk=old.pk).update(state=State.SUCCEEDED)

    response = ssh_resubmit(api, old, ssh_public_keys=keys["laptop"].public)

    assert response.status_code == 201, response.content
    body = response.json()
    assert [c["name"] for c in body["chroots"]] == ["epel-10-aarch64"]
    assert body["chroots"][0]["ssh_builder"]["state"] == "provisioning"
    assert Lease.objects.filter(owner=user, ssh=True).count() == 1
    assert api.get(QUOTA_URL).json()["in_use"] == 1


def test_resubmit_without_ssh_and_without_chroots_still_takes_them_all(api, project, user):
    old = failed_build(project, user, failed=())
    Build.objects.filter(pk=old.pk).update(state=State.SUCCEEDED)

    response = api.post(resubmit_url(old.pk), {}, format="json")

    assert response.status_code == 201, response.content
    assert [c["name"] for c in response.json()["chroots"]] == CHROOTS


def test_over_quota_the_ssh_build_is_accepted_and_its_builder_queued_with_the_reason(
    api, project, user, keys
):
    old = failed_build(project, user)
    key = keys["laptop"].public
    first, second = (ssh_resubmit(api, old, ssh_public_keys=key).json() for _ in range(2))
    holders = [b["chroots"][0]["ssh_builder"]["id"] for b in (first, second)]

    response = ssh_resubmit(api, old, ssh_public_keys=key)

    assert response.status_code == 201, response.content
    link = response.json()["chroots"][0]["ssh_builder"]
    assert link["state"] == "queued"
    assert "2 of 2 SSH builders in use" in link["queue_reason"]
    assert all(f"#{lease_id}" in link["queue_reason"] for lease_id in holders)
    assert response.json()["chroots"][0]["status_reason"] == link["queue_reason"]
    assert api.get(link["url"]).json()["queue_reason"] == link["queue_reason"]


def test_ssh_resubmit_of_a_failed_srpm_phase_reruns_that_phase_on_an_ssh_builder(api, project, user, keys):
    old = srpm_failed_build(project, user)

    response = ssh_resubmit(api, old, ssh_public_keys=keys["laptop"].public)

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["ssh"] is True
    srpm_link = body["srpm"]["ssh_builder"]
    assert (body["srpm"]["state"], srpm_link["state"]) == ("pending", "provisioning")
    assert {c["state"] for c in body["chroots"]} == {"skipped"}
    assert all(c["ssh_builder"] is None for c in body["chroots"])
    assert [c["name"] for c in body["chroots"]] == CHROOTS
    assert Lease.objects.filter(ssh=True).count() == 1
    detail = api.get(srpm_link["url"]).json()
    assert (detail["build"], detail["chroot"]) == (body["id"], "srpm")


def _line(key: Key, prefix: str = "", suffix: str = "") -> str:
    return f"{prefix}{key.public}{suffix}"


HOSTILE = [
    # (what is sent, built from the keys; the bad line; part of its message)
    (lambda k: _line(k["laptop"], prefix='command="/bin/sh -i" '), 1, "options in front of the key"),
    (lambda k: _line(k["laptop"], prefix='no-pty,permitopen="*:*" '), 1, "options in front of the key"),
    (lambda k: f"{k['desk'].public}\n{k['laptop'].private}", 2, "this is a PRIVATE key"),
    (lambda k: k["dsa"].public, 1, "DSA keys (ssh-dss) are not accepted"),
    (
        lambda k: f"{k['desk'].public}\nssh-ed25519 {'A' * 20000} big@test",
        2,
        "a key line may have at most 8192",
    ),
    (lambda k: _line(k["laptop"], suffix="\x00"), 1, "forbidden character U+0000"),
    (
        lambda k: f"{k['desk'].public}\n" + _line(k["laptop"], prefix="\x1b[2J"),
        2,
        "forbidden character U+001B",
    ),
    (lambda k: "ssh-ed25519 not-base64!!", 1, "base64"),
]


@pytest.mark.parametrize(("make_text", "line", "message"), HOSTILE)
def test_hostile_key_lines_are_refused_line_by_line_and_nothing_is_created(
    api, project, user, keys, storage_dir, make_text, line, message
):
    old = failed_build(project, user)
    before = snapshot(storage_dir)

    response = ssh_resubmit(api, old, ssh_public_keys=make_text(keys))

    assert response.status_code == 400, response.content
    body = response.json()
    assert [error["line"] for error in body["errors"]] == [line], body
    assert message in body["errors"][0]["message"], body
    assert body["ssh_public_keys"] == [body["detail"]]
    assert f"line {line}" in body["detail"]
    assert snapshot(storage_dir) == before


def test_more_than_ten_keys_are_refused_and_nothing_is_created(api, project, user, keys, storage_dir):
    old = failed_build(project, user)
    before = snapshot(storage_dir)
    text = "\n".join(keys[f"many{n}"].public for n in range(11))

    response = ssh_resubmit(api, old, ssh_public_keys=text)

    assert response.status_code == 400, response.content
    assert "11 different keys given; at most 10" in response.json()["ssh_public_keys"][0]
    assert snapshot(storage_dir) == before


def test_keys_text_over_128_kib_is_refused(api, project, user, keys, storage_dir):
    old = failed_build(project, user)
    before = snapshot(storage_dir)
    text = (keys["laptop"].public + "\n") * (128 * 1024 // len(keys["laptop"].public) + 1)

    response = ssh_resubmit(api, old, ssh_public_keys=text)

    assert response.status_code == 400
    assert "no more than 131072 characters" in response.json()["ssh_public_keys"][0]
    assert snapshot(storage_dir) == before


def test_a_github_reference_deploys_the_keys_github_serves(api, project, user, keys, key_server):
    key_server.github("alice", keys["gh1"], keys["gh2"])
    old = failed_build(project, user)

    response = ssh_resubmit(api, old, ssh_public_keys=f"GitHub:alice\n{keys['laptop'].public}")

    assert response.status_code == 201, response.content
    assert key_server.requests == ["/gh/alice.keys"]
    new = Build.objects.get(pk=response.json()["id"])
    # Canonical lines; a fetched key's comment says where it came from.
    assert new.ssh_keys.splitlines() == [
        keys["laptop"].public,
        " ".join(keys["gh1"].public.split()[:2] + ["GitHub:alice"]),
        " ".join(keys["gh2"].public.split()[:2] + ["GitHub:alice"]),
    ]
    link = response.json()["chroots"][0]["ssh_builder"]
    assert api.get(link["url"]).json()["key_fingerprints"] == [
        keys["laptop"].fingerprint,
        keys["gh1"].fingerprint,
        keys["gh2"].fingerprint,
    ]


def test_an_unknown_github_account_is_refused_naming_the_reference(
    api, project, user, keys, key_server, storage_dir
):
    old = failed_build(project, user)
    before = snapshot(storage_dir)

    response = ssh_resubmit(api, old, ssh_public_keys=f"{keys['laptop'].public}\nGitHub:nobody")

    assert response.status_code == 400, response.content
    assert response.json()["errors"] == [{"line": 2, "message": "GitHub:nobody: no such account (HTTP 404)"}]
    assert key_server.requests == ["/gh/nobody.keys"]
    assert snapshot(storage_dir) == before


def test_use_saved_keys_deploys_the_saved_keys(api, project, user, keys):
    add_saved_key(user=user, title="office", public_key=keys["saved"].public)
    old = failed_build(project, user)

    response = ssh_resubmit(api, old, use_saved_keys=True, ssh_public_keys=keys["laptop"].public)

    assert response.status_code == 201, response.content
    stored = Build.objects.get(pk=response.json()["id"]).ssh_keys.splitlines()
    assert [line.split()[:2] for line in stored] == [
        keys["laptop"].public.split()[:2],
        keys["saved"].public.split()[:2],
    ]


def test_use_saved_keys_alone_is_enough_for_ssh(api, project, user, keys):
    add_saved_key(user=user, title="office", public_key=keys["saved"].public)
    old = failed_build(project, user)

    response = ssh_resubmit(api, old, use_saved_keys=True)

    assert response.status_code == 201, response.content
    assert response.json()["ssh"] is True
    assert response.json()["chroots"][0]["ssh_builder"]["state"] == "provisioning"


def test_use_saved_keys_without_any_saved_is_refused(api, project, user, storage_dir):
    old = failed_build(project, user)
    before = snapshot(storage_dir)

    response = ssh_resubmit(api, old, use_saved_keys=True)

    assert response.status_code == 400, response.content
    assert response.json()["use_saved_keys"] == ["You have no saved keys; add one on your profile first."]
    assert snapshot(storage_dir) == before


def test_keys_that_are_only_comments_are_refused(api, project, user, storage_dir):
    old = failed_build(project, user)
    before = snapshot(storage_dir)

    response = ssh_resubmit(api, old, ssh_public_keys="# nothing here\n")

    assert response.status_code == 400, response.content
    assert response.json()["ssh_public_keys"] == ["Give at least one public SSH key."]
    assert snapshot(storage_dir) == before


def test_ssh_resubmit_of_a_running_build_is_409(api, project, user, keys, storage_dir):
    running = finished_build(project, user)
    Build.objects.filter(pk=running.pk).update(state=State.RUNNING)
    before = snapshot(storage_dir)

    response = ssh_resubmit(api, running, ssh_public_keys=keys["laptop"].public)

    assert response.status_code == 409
    assert snapshot(storage_dir) == before


# --- who may -----------------------------------------------------------------------------------


def test_another_user_is_refused_before_any_reference_is_fetched(
    other_api, project, user, keys, key_server, storage_dir
):
    key_server.github("alice", keys["gh1"])
    old = failed_build(project, user)
    before = snapshot(storage_dir)

    response = other_api.post(
        resubmit_url(old.pk), {"ssh_public_keys": "GitHub:alice", "use_saved_keys": True}, format="json"
    )

    assert response.status_code == 403, response.content
    assert response.json()["detail"] == "Only the owner of alice/hello can build in it."
    assert key_server.requests == []
    assert snapshot(storage_dir) == before


def test_anonymous_cannot_resubmit_with_ssh_or_see_ssh_builders(project, user, keys, key_server):
    old = failed_build(project, user)
    anon = APIClient()

    assert (
        anon.post(resubmit_url(old.pk), {"ssh_public_keys": "GitHub:alice"}, format="json").status_code == 401
    )
    assert key_server.requests == []
    assert anon.get(SSH_BUILDERS_URL).status_code == 401
    assert anon.get(QUOTA_URL).status_code == 401
    assert Build.objects.count() == 1


def test_other_users_cannot_see_or_change_my_ssh_builders(api, other_api, project, user, keys):
    old = failed_build(project, user)
    lease_id = ssh_resubmit(api, old, ssh_public_keys=keys["laptop"].public).json()["chroots"][0][
        "ssh_builder"
    ]["id"]
    make_ready(lease_id)
    before = lease_row(lease_id)

    assert other_api.get(SSH_BUILDERS_URL).json() == []
    assert other_api.get(ssh_builder_url(lease_id)).status_code == 404
    assert (
        other_api.post(ssh_builder_url(lease_id, "prolong"), {"hours": 2}, format="json").status_code == 404
    )
    assert other_api.post(ssh_builder_url(lease_id, "release")).status_code == 404
    assert lease_row(lease_id) == before
    assert other_api.get(QUOTA_URL).json()["in_use"] == 0
    assert [b["id"] for b in api.get(SSH_BUILDERS_URL).json()] == [lease_id]


def test_a_builds_own_lease_is_not_an_ssh_builder(api, project, user):
    # A normal build's builder belongs to its submitter too, but it is not theirs to keep or end.
    build = make_build(project, user)
    lease_id = build.srpm.lease_id
    before = lease_row(lease_id)

    assert api.get(ssh_builder_url(lease_id)).status_code == 404
    assert api.post(ssh_builder_url(lease_id, "prolong"), {"hours": 1}, format="json").status_code == 404
    assert api.post(ssh_builder_url(lease_id, "release")).status_code == 404
    assert lease_row(lease_id) == before
    assert api.get(SSH_BUILDERS_URL).json() == []


def test_unknown_ssh_builders_are_404(api):
    assert api.get(ssh_builder_url(99999)).status_code == 404
    assert api.post(ssh_builder_url(99999, "prolong"), {}, format="json").status_code == 404
    assert api.post(ssh_builder_url(99999, "release")).status_code == 404


# --- the ssh-builders collection ----------------------------------------------------------------


def test_ssh_builders_lists_mine_newest_first_with_every_field(api, project, user, keys):
    old = failed_build(project, user, failed=("fedora-43-x86_64", "epel-10-aarch64"))
    body = ssh_resubmit(api, old, ssh_public_keys=keys["laptop"].public).json()
    ids = sorted(c["ssh_builder"]["id"] for c in body["chroots"])
    make_ready(ids[1])

    listed = api.get(SSH_BUILDERS_URL).json()

    assert [b["id"] for b in listed] == ids[::-1]
    assert all(set(b) == SSH_BUILDER_FIELDS for b in listed)
    ready, waiting = listed
    assert (ready["state"], ready["build"], ready["chroot"]) == ("ready", body["id"], "fedora-43-x86_64")
    assert (ready["host"], ready["port"], ready["user"], ready["ipv4"]) == (
        "127.0.0.1",
        2222,
        "root",
        "127.0.0.1",
    )
    assert ready["ssh_command"] == "ssh -p 2222 root@127.0.0.1"
    assert ready["host_key_fingerprint"].startswith("SHA256:")
    assert ready["expires_at"] is not None
    assert ready["max_expires_at"] is not None
    assert (waiting["state"], waiting["chroot"], waiting["host"]) == ("provisioning", "epel-10-aarch64", None)
    # The build shows the same, with the command for its owner only.
    build = api.get(f"/api/v1/builds/{body['id']}/").json()
    link = chroot_of(build, "fedora-43-x86_64")["ssh_builder"]
    assert (link["state"], link["ssh_command"]) == ("ready", "ssh -p 2222 root@127.0.0.1")
    public = APIClient().get(f"/api/v1/builds/{body['id']}/").json()
    assert chroot_of(public, "fedora-43-x86_64")["ssh_builder"]["ssh_command"] is None


def test_the_api_root_links_ssh_builders_and_quota(api):
    root = api.get("/api/v1/").json()

    assert root["ssh_builders"] == "http://testserver/api/v1/ssh-builders/"
    assert root["quota"] == "http://testserver/api/v1/quota/"


# --- prolong and release ----------------------------------------------------------------------


@pytest.fixture
def ready_lease(api, project, user, keys) -> Lease:
    old = failed_build(project, user)
    body = ssh_resubmit(api, old, ssh_public_keys=keys["laptop"].public).json()
    return make_ready(body["chroots"][0]["ssh_builder"]["id"])


def test_prolong_adds_hours_to_the_expiry(api, ready_lease):
    response = api.post(ssh_builder_url(ready_lease.pk, "prolong"), {"hours": 2}, format="json")

    assert response.status_code == 200, response.content
    lease = Lease.objects.get(pk=ready_lease.pk)
    assert lease.expires_at == ready_lease.expires_at + timedelta(hours=2)
    body = response.json()
    assert set(body) == SSH_BUILDER_FIELDS
    assert body["state"] == "ready"
    assert body["expires_at"] == api.get(ssh_builder_url(lease.pk)).json()["expires_at"]


def test_prolong_without_hours_adds_one(api, ready_lease):
    response = api.post(ssh_builder_url(ready_lease.pk, "prolong"))

    assert response.status_code == 200, response.content
    assert Lease.objects.get(pk=ready_lease.pk).expires_at == ready_lease.expires_at + timedelta(hours=1)


def test_prolong_past_the_cap_is_400_naming_the_latest_time(api, ready_lease):
    response = api.post(ssh_builder_url(ready_lease.pk, "prolong"), {"hours": 48}, format="json")

    assert response.status_code == 400, response.content
    latest = timezone.localtime(ready_lease.max_expires_at)
    assert f"may live until {latest:%Y-%m-%d %H:%M:%S %Z} at the latest" in response.json()["detail"]
    assert response.json()["hours"] == [response.json()["detail"]]
    assert Lease.objects.get(pk=ready_lease.pk).expires_at == ready_lease.expires_at


@pytest.mark.parametrize("hours", [0, 49, -1, "two", 1.5, None])
def test_prolong_refuses_hours_out_of_range(api, ready_lease, hours):
    response = api.post(ssh_builder_url(ready_lease.pk, "prolong"), {"hours": hours}, format="json")

    assert response.status_code == 400
    assert "hours" in response.json()
    assert Lease.objects.get(pk=ready_lease.pk).expires_at == ready_lease.expires_at


def test_prolong_a_queued_ssh_builder_is_409(api, project, user, keys):
    old = failed_build(project, user)
    lease_id = ssh_resubmit(api, old, ssh_public_keys=keys["laptop"].public).json()["chroots"][0][
        "ssh_builder"
    ]["id"]

    response = api.post(ssh_builder_url(lease_id, "prolong"), {"hours": 1}, format="json")

    assert response.status_code == 409
    assert Lease.objects.get(pk=lease_id).expires_at is None


def test_release_twice_is_200_both_times_and_ends_the_lease(api, ready_lease):
    first = api.post(ssh_builder_url(ready_lease.pk, "release"))
    lease = Lease.objects.get(pk=ready_lease.pk)
    second = api.post(ssh_builder_url(ready_lease.pk, "release"))

    assert (first.status_code, second.status_code) == (200, 200)
    assert first.json()["state"] == second.json()["state"] == "ended"
    assert first.json()["host"] is None
    assert (lease.state, lease.end_reason) == (Lease.State.ENDED, Lease.EndReason.RELEASED)
    assert Lease.objects.get(pk=ready_lease.pk).ended_at == lease.ended_at
    assert Builder.objects.get(pk=lease.builder_id).state == Builder.State.TERMINATING


def test_prolong_after_release_is_409(api, ready_lease):
    api.post(ssh_builder_url(ready_lease.pk, "release"))
    ended = lease_row(ready_lease.pk)

    response = api.post(ssh_builder_url(ready_lease.pk, "prolong"), {"hours": 1}, format="json")

    assert response.status_code == 409
    assert "only an active lease can be prolonged" in response.json()["detail"]
    assert lease_row(ready_lease.pk) == ended


# --- quota ------------------------------------------------------------------------------------


def test_quota_shows_the_limits_and_who_holds_the_slots(api, project, user, keys):
    assert api.get(QUOTA_URL).json() == {
        "max_ssh_builders": 2,
        "in_use": 0,
        "default_lifetime_hours": 1.0,
        "max_lifetime_hours": 48.0,
        "holders": [],
    }
    old = srpm_failed_build(project, user)
    body = ssh_resubmit(api, old, ssh_public_keys=keys["laptop"].public).json()

    quota = api.get(QUOTA_URL).json()

    assert quota["in_use"] == 1
    assert quota["holders"] == [
        {
            "id": body["srpm"]["ssh_builder"]["id"],
            "build": body["id"],
            "chroot": "srpm",
            "state": "provisioning",
        }
    ]


def test_quota_follows_a_users_override_in_fractional_hours(api, user):
    QuotaOverride.objects.create(user=user, max_ssh_builders=5, default_lifetime=timedelta(minutes=90))

    quota = api.get(QUOTA_URL).json()

    assert (quota["max_ssh_builders"], quota["default_lifetime_hours"], quota["max_lifetime_hours"]) == (
        5,
        1.5,
        48.0,
    )


# --- queries --------------------------------------------------------------------------------------


def _queries(client: APIClient, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, response.content
    return len(captured)


def test_build_reads_show_ssh_builders_in_a_constant_number_of_queries(api, project, user, keys):
    QuotaOverride.objects.create(user=user, max_ssh_builders=100)
    old = failed_build(project, user, failed=tuple(CHROOTS))
    key = keys["laptop"].public
    first = ssh_resubmit(api, old, ssh_public_keys=key, chroots=["fedora-43-x86_64"]).json()
    make_ready(first["chroots"][0]["ssh_builder"]["id"])
    anon = APIClient()
    few_list, few_detail = _queries(anon, "/api/v1/builds/"), _queries(anon, f"/api/v1/builds/{first['id']}/")

    for _ in range(5):
        body = ssh_resubmit(api, old, ssh_public_keys=key).json()
    make_ready(body["chroots"][0]["ssh_builder"]["id"])
    many_list, many_detail = (
        _queries(anon, "/api/v1/builds/"),
        _queries(anon, f"/api/v1/builds/{body['id']}/"),
    )

    page = anon.get("/api/v1/builds/").json()["results"]
    assert sum(c["ssh_builder"] is not None for b in page for c in b["chroots"]) == 1 + 5 * 3
    # The same as for builds without SSH (tests/builds/test_api_queries.py): count, builds, chroots.
    assert many_list == few_list == 3
    assert many_detail == few_detail == 2


# --- the quota under a race ---------------------------------------------------------------------


def concurrent_ssh_resubmits(django_user_model: Any, key: Key, count: int) -> tuple[Any, APIClient]:
    """`count` requests of one user at once, each resubmitting the same build with SSH."""
    # A transactional test starts from flushed tables: the migrations' rows may be gone.
    for name in CHROOTS:
        os_name, version, arch = name.split("-")
        Chroot.objects.get_or_create(name=name, defaults={"os": os_name, "version": version, "arch": arch})
    assert QuotaPolicy.get().max_ssh_builders == 2
    alice = django_user_model.objects.create_user("alice", password="alice-password-1")
    project = services.create_project(owner=alice, name="hello", chroots=CHROOTS)
    old = srpm_failed_build(project, alice)
    token = Token.objects.create(user=alice).key

    def client() -> APIClient:
        made = APIClient()  # one per thread, as separate callers would have
        made.credentials(HTTP_AUTHORIZATION=f"Token {token}")
        return made

    def resubmit() -> Any:
        return client().post(resubmit_url(old.pk), {"ssh_public_keys": key.public}, format="json")

    outcomes = run_at_once([resubmit] * count)

    assert [o for o in outcomes if isinstance(o, BaseException)] == []
    assert [o.status_code for o in outcomes] == [201] * count, [
        o.content for o in outcomes if o.status_code != 201
    ]
    return alice, client()


def by_state(ssh_builders: list[dict[str, Any]]) -> dict[str, list[int]]:
    states: dict[str, list[int]] = {}
    for ssh_builder in ssh_builders:
        states.setdefault(ssh_builder["state"], []).append(ssh_builder["id"])
    return states


@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_ssh_resubmits_get_two_slots_and_eighteen_queued(django_user_model, keys):
    alice, api = concurrent_ssh_resubmits(django_user_model, keys["laptop"], 20)

    listed = api.get(SSH_BUILDERS_URL).json()
    states = by_state(listed)
    assert {state: len(ids) for state, ids in states.items()} == {"provisioning": 2, "queued": 18}
    holders = states["provisioning"]
    reasons = [b["queue_reason"] for b in listed if b["state"] == "queued"]
    assert all("2 of 2 SSH builders in use" in reason for reason in reasons)
    assert all(f"#{holder}" in reason for reason in reasons for holder in holders)

    released = api.post(ssh_builder_url(holders[0], "release"))

    assert released.status_code == 200, released.content
    after = by_state(api.get(SSH_BUILDERS_URL).json())
    assert {state: len(ids) for state, ids in after.items()} == {"ended": 1, "provisioning": 2, "queued": 17}
    moved = set(after["provisioning"]) - set(holders)
    # The oldest queued one moves on, and only that one.
    assert moved == {min(states["queued"])}
    quota = api.get(QUOTA_URL).json()
    assert (quota["in_use"], quota["max_ssh_builders"]) == (2, 2)
    assert {h["id"] for h in quota["holders"]} == set(after["provisioning"])
    # The ones still queued name the new holders.
    still_queued = Lease.objects.filter(owner=alice, state=Lease.State.QUEUED)
    assert all(f"#{lease_id}" in lease.queue_reason for lease in still_queued for lease_id in moved)


@pytest.mark.django_db(transaction=True)
def test_control_without_the_quota_lock_concurrent_resubmits_pass_the_quota(
    django_user_model, keys, monkeypatch
):
    if connection.vendor == "sqlite":
        pytest.skip("SQLite runs write transactions one at a time (IMMEDIATE): there is no race to show")
    # What the guarded test above would see if the quota lock went away: requests that count
    # the slots at the same time all find one free.
    count = quotas.slot_holders

    def slowly(user: Any) -> list[Lease]:
        holders = count(user)
        time.sleep(0.05)
        return holders

    monkeypatch.setattr(quotas, "lock_quota", lambda user: None)
    monkeypatch.setattr(quotas, "slot_holders", slowly)

    _alice, api = concurrent_ssh_resubmits(django_user_model, keys["laptop"], 20)

    assert len(by_state(api.get(SSH_BUILDERS_URL).json()).get("provisioning", [])) > 2


# Regression: resubmit_with_ssh once created a build with no source to rerun.
def test_ssh_resubmit_of_a_failed_srpm_phase_whose_source_is_gone_is_409(api, project, user, keys):
    old = srpm_failed_build(project, user)
    storage.path(old.source_file).unlink()

    response = ssh_resubmit(api, old, ssh_public_keys=keys["laptop"].public)

    assert response.status_code == 409
    assert "no longer stored" in response.json()["detail"]
