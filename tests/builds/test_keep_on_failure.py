"""Keep the builder when a build fails (issue 13): no resubmit round trip to debug a failed build.

Everything is real: the farm's local sshd builders (tests/builds/flow.py), rpmbuild, the agents
reporting to a live server, and the OpenSSH client logging in with a fresh key.
"""

from __future__ import annotations

import re
import shlex
from datetime import timedelta
from pathlib import Path

import pytest
from django.core import mail
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from rest_framework.test import APIClient

from builders import services as builders
from builders.admin_key import admin_key
from builders.models import AuditEvent, Builder, Lease, QuotaOverride
from builders.providers.local import LocalProvider
from builders.services.machines import machine_of
from builds.models import Build, BuildChroot, SshMail, State
from builds.services import submit_build
from builds.sources import check_upload
from builds.ssh_view import ssh_builder_of_phase
from keys.parser import parse_keys
from tests.builders.factories import make_ssh_lease
from tests.builds.flow import *  # noqa: F403 - the fixtures
from tests.builds.flow import CHROOTS, HELLO_SPEC, SPECS, make_project, read_log, stored
from tests.builds.test_ssh_walk import Key, known_hosts, new_key, ssh

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user("alice", email="alice@example.org", password="pw-alice-1")


@pytest.fixture
def key(tmp_path: Path) -> Key:
    return new_key(tmp_path, "id_ed25519")


def submit_keeping(project, user, path: Path, key: Key) -> Build:
    """Submit an uploaded spec with "keep the builder for SSH if this build fails"."""
    upload = SimpleUploadedFile(path.name, path.read_bytes())
    return submit_build(
        project=project,
        submitter=user,
        chroots=None,
        source=check_upload(upload),
        upload=upload,
        keep_for_ssh=parse_keys(key.line).keys,
    )


def builders_of(build: Build) -> list[Builder]:
    leases = [build.srpm.lease_id, *build.build_chroots.values_list("lease_id", flat=True)]
    return list(Builder.objects.filter(leases__in=leases).distinct())


def storage_files(directory: str) -> list[str]:
    return sorted(p.name for p in stored(directory).rglob("*") if p.is_file())


def authorized_keys(farm, builder: Builder) -> str:
    return Path(LocalProvider(farm.root).authorized_keys_path(machine_of(builder))).read_text()


# --- a chroot fails ------------------------------------------------------------------------------


def test_a_failed_check_keeps_its_builder_for_ssh_without_a_second_build(farm, alice, key, tmp_path):
    project = make_project(alice, chroots=[CHROOTS[0]])

    build = farm.finish(submit_keeping(project, alice, SPECS / "check-fails.spec", key))

    assert (build.state, build.ssh, build.ssh_on_failure) == (State.FAILED, False, True)
    assert Build.objects.count() == 1  # no second build
    [phase] = build.build_chroots.select_related("chroot", "lease__builder")
    assert phase.state == State.FAILED
    assert phase.not_kept_reason == ""
    assert "check: expected 2, got 3" in read_log(phase.storage_dir, "builder-live.log")
    lease = Lease.objects.select_related("builder").get(pk=phase.lease_id)
    assert (lease.ssh, lease.state) == (True, Lease.State.ACTIVE)
    # An hour from the failure, the cap 48 hours from it.
    assert abs(lease.expires_at - (phase.ended_at + timedelta(hours=1))) < timedelta(seconds=5)
    assert abs(lease.max_expires_at - (phase.ended_at + timedelta(hours=48))) < timedelta(seconds=5)
    builder = lease.builder
    assert builder.single_use
    assert builder.sandbox == lease.sandbox != build.sandbox
    actions = list(AuditEvent.objects.filter(lease=lease).order_by("pk").values_list("action", flat=True))
    assert actions[-2:] == ["kept-for-ssh", "keys-deployed"]
    # Whoever sees the phase failed (a watching CLI, the page) sees its SSH builder too: the keys
    # were on it before the end was recorded; and the agent's report token is dead.
    deployed = AuditEvent.objects.get(lease=lease, action="keys-deployed")
    assert deployed.created_at <= phase.ended_at
    assert phase.token_hash == ""

    # The key deployed as for any SSH builder: the service's options and comment only.
    lines = authorized_keys(farm, builder).splitlines()
    assert lines[0] == admin_key().public_line.strip()
    assert re.fullmatch(
        rf'no-agent-forwarding,expiry-time="\d{{14}}Z" ssh-ed25519 {re.escape(key.blob)} lease-{lease.pk}',
        lines[1],
    )
    assert len(lines) == 2

    # A real ssh client logs in and finds the failed build's tree where it was left.
    view = ssh_builder_of_phase(phase, viewer=alice)
    assert view is not None
    assert view.state == "ready"
    hosts = known_hosts(tmp_path, view, builder)
    listing = ssh(
        key, view, hosts, f"ls {shlex.quote(phase.remote_dir)} {shlex.quote(phase.remote_dir)}/rpmbuild"
    )
    assert listing.returncode == 0, listing.stderr
    assert "check-fails-1.0-1.src.rpm" in listing.stdout.split()
    assert "BUILD" in listing.stdout.split()
    live = ssh(key, view, hosts, f"cat {shlex.quote(phase.remote_dir)}/builder-live.log")
    assert "check: expected 2, got 3" in live.stdout
    assert ssh(key, view, hosts, "copr-builder help").returncode == 0

    # Nothing of the failed chroot is stored but its logs; the SRPM phase published as usual.
    assert storage_files(phase.storage_dir) == ["backend.log", "builder-live.log"]
    assert not list(stored(project.owner.username).rglob("check-fails-1.0-1.noarch.rpm"))
    assert build.srpm.state == State.SUCCEEDED
    backend = read_log(phase.storage_dir, "backend.log")
    assert "The build failed: its builder is kept for SSH access, as asked when it was submitted." in backend
    assert "SSH access was set up for the owner; connection details are on the build page" in backend
    assert re.search(r"kept for debugging until \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+", backend)
    # backend.log is public: nothing says where the builder is or which keys reach it.
    assert f":{view.port}" not in backend
    assert key.blob not in backend
    assert view.key_fingerprints[0] not in backend

    # The page and the API show the SSH builder; the owner got the ready mail.
    page = Client()
    page.force_login(alice)
    html = page.get(f"/builds/{build.pk}/").content.decode()
    assert view.ssh_command in html
    assert "its builder was kept for debugging over SSH" in html
    api = APIClient()
    api.force_authenticate(alice)
    link = api.get(f"/api/v1/builds/{build.pk}/").json()["chroots"][0]["ssh_builder"]
    assert (link["id"], link["state"], link["ssh_command"]) == (lease.pk, "ready", view.ssh_command)
    assert SshMail.objects.get(lease=lease).status == SshMail.Status.SENT
    [ready] = mail.outbox
    assert ready.to == ["alice@example.org"]
    assert view.ssh_command in ready.body

    # Released, the builder is terminated and never serves anything again.
    builders.release_lease(lease_id=lease.pk, via=builders.Via(user=alice, source="web"), owner=alice)
    farm.run(lambda: Builder.objects.get(pk=builder.pk).state == Builder.State.TERMINATED, timeout=15)
    again = farm.finish(submit_keeping(project, alice, HELLO_SPEC, key))
    assert again.state == State.SUCCEEDED
    assert builder.pk not in {b.pk for b in builders_of(again)}


# --- the build succeeds ----------------------------------------------------------------------------


def test_a_successful_build_publishes_deploys_no_key_and_its_builders_are_reused(farm, alice, key):
    project = make_project(alice, chroots=[CHROOTS[0]])

    build = farm.finish(submit_keeping(project, alice, HELLO_SPEC, key))

    assert build.state == State.SUCCEEDED
    [phase] = build.build_chroots.all()
    assert any(
        name.endswith(".noarch.rpm") or name.endswith(".rpm") for name in storage_files(phase.storage_dir)
    )
    used = builders_of(build)
    assert used
    for builder in used:
        # Only the service's own key, on every builder the build used.
        assert authorized_keys(farm, builder).splitlines() == [admin_key().public_line.strip()]
        assert (builder.state, builder.single_use, builder.sandbox) == (
            Builder.State.READY,
            False,
            build.sandbox,
        )
    assert not Lease.objects.filter(ssh=True).exists()
    assert not AuditEvent.objects.filter(action__in=["keys-deployed", "kept-for-ssh"]).exists()
    assert SshMail.objects.count() == 0
    assert mail.outbox == []
    api = APIClient()
    api.force_authenticate(alice)
    body = api.get(f"/api/v1/builds/{build.pk}/").json()
    assert body["ssh_on_failure"] is True
    assert body["chroots"][0]["ssh_builder"] is None

    # The next build of the same sandbox is served by the same builders.
    second = farm.finish(submit_keeping(project, alice, HELLO_SPEC, key))
    assert second.state == State.SUCCEEDED
    assert {b.pk for b in builders_of(second)} <= {b.pk for b in used}
    assert Builder.objects.get(pk=builders_of(second)[0].pk).reuse_count >= 1


# --- at quota ----------------------------------------------------------------------------------------


def test_at_quota_the_failed_builder_is_not_kept_and_the_page_says_why(farm, alice, key):
    QuotaOverride.objects.create(user=alice, max_ssh_builders=1)
    holder = make_ssh_lease(owner=alice, purpose="build #99 fedora-43-x86_64")
    project = make_project(alice, chroots=[CHROOTS[0]])

    build = farm.finish(submit_keeping(project, alice, SPECS / "check-fails.spec", key))

    [phase] = build.build_chroots.all()
    assert phase.state == State.FAILED
    lease = Lease.objects.get(pk=phase.lease_id)
    assert (lease.ssh, lease.state, lease.end_reason) == (
        False,
        Lease.State.ENDED,
        Lease.EndReason.BUILD_FINISHED,
    )
    # Nobody had access to it: it went back to its sandbox, with only the service's key.
    builder = Builder.objects.get(pk=lease.builder_id)
    assert (builder.state, builder.single_use) == (Builder.State.READY, False)
    assert authorized_keys(farm, builder).splitlines() == [admin_key().public_line.strip()]
    reason = phase.not_kept_reason
    assert reason.startswith(
        "The builder was not kept for SSH: you are at your SSH quota (1 of 1 SSH builders in use"
    )
    assert f"build #99 fedora-43-x86_64 (SSH builder #{holder.pk})" in reason
    backend = read_log(phase.storage_dir, "backend.log")
    assert reason.endswith(f"(SSH builder #{holder.pk}))")
    assert f"{reason}. Release one of them, or resubmit the build and allow SSH: that build waits" in backend
    assert AuditEvent.objects.filter(lease=lease, action="keep-refused").exists()

    page = Client()
    page.force_login(alice)
    html = page.get(f"/builds/{build.pk}/").content.decode()
    assert "you are at your SSH quota" in html
    assert f'href="/builds/{build.pk}/resubmit-ssh/">Resubmit and allow SSH</a>' in html
    api = APIClient()
    api.force_authenticate(alice)
    body = api.get(f"/api/v1/builds/{build.pk}/").json()
    assert body["chroots"][0]["not_kept_reason"] == reason
    assert body["chroots"][0]["ssh_builder"] is None


# --- the SRPM phase fails -------------------------------------------------------------------------


def test_a_failed_srpm_phase_keeps_its_builder_with_the_sources_in_place(farm, alice, key, tmp_path):
    project = make_project(alice, chroots=[CHROOTS[0]])

    build = farm.finish(submit_keeping(project, alice, SPECS / "broken.spec", key))

    srpm = build.srpm
    assert (build.state, srpm.state) == (State.FAILED, State.FAILED)
    assert [bc.state for bc in BuildChroot.objects.filter(build=build)] == [State.SKIPPED]
    lease = Lease.objects.select_related("builder").get(pk=srpm.lease_id)
    assert (lease.ssh, lease.state) == (True, Lease.State.ACTIVE)
    assert lease.builder.single_use
    # The spec came back before anyone could log in; nothing else did.
    assert storage_files(srpm.storage_dir) == ["backend.log", "broken.spec", "builder-live.log"]
    view = ssh_builder_of_phase(srpm, viewer=alice)
    assert (view.chroot, view.state) == ("srpm", "ready")
    hosts = known_hosts(tmp_path, view, lease.builder)
    listing = ssh(key, view, hosts, f"ls {shlex.quote(srpm.remote_dir)}")
    assert listing.returncode == 0, listing.stderr
    assert "broken.spec" in listing.stdout.split()
    rerun = ssh(key, view, hosts, f"cd {shlex.quote(srpm.remote_dir)} && python3 coprssh_agent.py run .")
    assert rerun.returncode == 1
    assert (
        "Unclosed %if" in ssh(key, view, hosts, f"cat {shlex.quote(srpm.remote_dir)}/builder-live.log").stdout
    )
