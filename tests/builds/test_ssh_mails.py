"""E-mails to the owner of an SSH builder (issue 13): ready, and about to expire.

They go through Django's SMTP backend to a real SMTP server (aiosmtpd) on loopback, started
here. No builder runs: an active SSH lease on a builder row stands for one, as keep_for_ssh
or an SSH build leave it.
"""

from __future__ import annotations

import email
import email.policy
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
import time_machine
from aiosmtpd.controller import Controller
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import TestCase

from builders import services as builders
from builders.models import Builder, Lease
from builders.providers import generate_host_key
from builds import tasks
from builds.models import Build, BuildChroot, SshMail, State
from builds.services import announce_ready, create_project, submit_build, warn_expiring_by_mail
from builds.sources import check_upload
from coprssh.models import AccountSettings
from keys.parser import parse_keys
from tests.builders.factories import make_builder, make_lease

pytestmark = pytest.mark.django_db

DEMO_SPEC = Path(__file__).resolve().parents[2] / "builds" / "demo" / "hello-coprssh.spec"
T0 = datetime(2030, 3, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)


# --- a real SMTP server on loopback ------------------------------------------------------------


@dataclass
class Inbox:
    """What the SMTP server received: one parsed message per delivery."""

    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:  # noqa: N802 - aiosmtpd's name
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))  # type: ignore[attr-defined]
        raw = envelope.original_content or envelope.content  # type: ignore[attr-defined]
        self.messages.append(email.message_from_bytes(raw, policy=email.policy.default))  # type: ignore[arg-type]
        return "250 Message accepted for delivery"

    def body(self, index: int = -1) -> str:
        return self.messages[index].get_content().replace("\r\n", "\n")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def smtp(settings) -> Iterator[Inbox]:
    """An SMTP server on 127.0.0.1 that the service's mail settings point at."""
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = controller.port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_TIMEOUT = 5
    settings.DEFAULT_FROM_EMAIL = "coprssh <coprssh@example.org>"
    settings.COPRSSH_PUBLIC_URL = "https://coprssh.example.org"
    try:
        yield inbox
    finally:
        controller.stop()


# --- an SSH builder of a build -------------------------------------------------------------------


@pytest.fixture(scope="session")
def key_line(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("mail-keys") / "id"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "alice@laptop", "-f", str(path)], check=True
    )
    return Path(f"{path}.pub").read_text().strip()


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user("alice", email="alice@example.org")


@pytest.fixture(autouse=True)
def storage_dir(settings, tmp_path) -> Path:
    settings.COPRSSH_STORAGE_DIR = tmp_path / "storage"
    return settings.COPRSSH_STORAGE_DIR


def kept_builder(owner, key_line: str, *, expires_in: timedelta = HOUR) -> tuple[Build, Lease]:
    """A keep-on-failure build whose fedora-rawhide chroot failed and whose builder was kept."""
    project = create_project(owner=owner, name="hello", chroots=["fedora-rawhide-x86_64"])
    upload = SimpleUploadedFile("hello-coprssh.spec", DEMO_SPEC.read_bytes())
    with TestCase.captureOnCommitCallbacks(execute=True):
        build = submit_build(
            project=project,
            submitter=owner,
            chroots=None,
            source=check_upload(upload),
            upload=upload,
            keep_for_ssh=parse_keys(key_line).keys,
        )
    builder = make_builder(
        state=Builder.State.LEASED,
        ipv4="192.0.2.10",
        port=2222,
        host_key=generate_host_key().public_line,
        single_use=True,
    )
    now = datetime.now(UTC)
    lease = make_lease(
        owner=owner,
        ssh=True,
        state=Lease.State.ACTIVE,
        builder=builder,
        purpose=f"build #{build.pk} fedora-rawhide-x86_64",
        started_at=now,
        expires_at=now + expires_in,
        max_expires_at=now + 48 * HOUR,
    )
    BuildChroot.objects.filter(build=build).update(lease=lease, state=State.FAILED)
    return build, lease


def deliver(queued) -> list[str]:
    """Run the mail tasks that were queued, as a worker would; return their outcomes."""
    outcomes = [
        tasks.send_ssh_mail(*args) for name, args in queued.take() if name == "builds.tasks.send_ssh_mail"
    ]
    return outcomes


# --- the ready mail ---------------------------------------------------------------------------------


def test_the_ready_mail_reaches_the_owner_with_the_command_and_the_expiry_in_their_time_zone(
    smtp, queued, alice, key_line
):
    AccountSettings.objects.create(user=alice, time_zone="Europe/Prague")
    with time_machine.travel(T0, tick=False):
        build, lease = kept_builder(alice, key_line)
        token = builders.issue_lease_token(lease_id=lease.pk)

        queued.call(announce_ready, lease_id=lease.pk)
        assert deliver(queued) == ["sent"]

    [message] = smtp.messages
    assert smtp.envelopes == [("coprssh@example.org", ["alice@example.org"])]
    assert message["To"] == "alice@example.org"
    assert message["Subject"] == (
        f"[coprssh] SSH builder ready: build #{build.pk} of alice/hello (fedora-rawhide-x86_64)"
    )
    body = smtp.body()
    assert f"Build #{build.pk} of alice/hello (fedora-rawhide-x86_64) failed." in body
    assert "\n    ssh -p 2222 root@192.0.2.10\n" in body
    # 13:00 UTC is 14:00 in Prague (CET) on 1 March.
    assert "It expires at 2030-03-01 14:00 CET (Europe/Prague)" in body
    assert "can be prolonged until 2030-03-03 13:00 CET (Europe/Prague) at the latest" in body
    assert f"https://coprssh.example.org/builds/{build.pk}/" in body
    assert "https://coprssh.example.org/accounts/profile/" in body
    # No secret: the lease token never leaves the builder.
    assert token not in body
    assert token not in message.as_string()
    assert SshMail.objects.get(lease=lease).status == SshMail.Status.SENT


def test_without_a_time_zone_times_are_in_utc_and_say_so(smtp, queued, alice, key_line):
    with time_machine.travel(T0, tick=False):
        _build, lease = kept_builder(alice, key_line)
        queued.call(announce_ready, lease_id=lease.pk)
        deliver(queued)

    assert "It expires at 2030-03-01 13:00 UTC, and is then deleted" in smtp.body()


def test_a_redelivered_task_or_a_second_announcement_sends_one_mail(smtp, queued, alice, key_line):
    _build, lease = kept_builder(alice, key_line)
    queued.take()  # what submitting the build queued
    queued.call(announce_ready, lease_id=lease.pk)
    [(name, args)] = queued.take()
    assert name == "builds.tasks.send_ssh_mail"

    assert tasks.send_ssh_mail(*args) == "sent"
    assert tasks.send_ssh_mail(*args) == "sent"  # delivered again: nothing more is sent
    assert queued.call(announce_ready, lease_id=lease.pk) is None
    assert queued.take() == []
    assert len(smtp.messages) == 1


def test_opting_out_stops_the_mails(smtp, queued, alice, key_line):
    AccountSettings.objects.create(user=alice, email_ssh_builders=False)
    with time_machine.travel(T0, tick=False) as clock:
        _build, lease = kept_builder(alice, key_line)
        queued.call(announce_ready, lease_id=lease.pk)
        assert deliver(queued) == ["skipped"]
        clock.move_to(T0 + 55 * MINUTE)
        queued.call(warn_expiring_by_mail)
        assert deliver(queued) == ["skipped"]

    assert smtp.messages == []
    assert set(SshMail.objects.values_list("detail", flat=True)) == {"the owner turned these mails off"}


def test_an_owner_without_an_address_gets_no_mail(smtp, queued, django_user_model, key_line):
    nobody = django_user_model.objects.create_user("nomail")
    _build, lease = kept_builder(nobody, key_line)

    queued.call(announce_ready, lease_id=lease.pk)

    assert deliver(queued) == ["skipped"]
    assert smtp.messages == []


def test_a_mail_server_that_is_down_fails_the_mail_not_the_task(settings, queued, alice, key_line):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", free_port(), 2
    _build, lease = kept_builder(alice, key_line)

    queued.call(announce_ready, lease_id=lease.pk)

    assert deliver(queued) == ["failed"]
    assert "ConnectionRefusedError" in SshMail.objects.get(lease=lease).detail


# --- the warning before expiry ------------------------------------------------------------------------


def test_the_warning_comes_within_the_warning_time_once_per_expiry(smtp, queued, alice, key_line):
    AccountSettings.objects.create(user=alice, time_zone="America/New_York")
    with time_machine.travel(T0, tick=False) as clock:
        build, lease = kept_builder(alice, key_line)
        clock.move_to(T0 + 49 * MINUTE)  # 11 minutes left: not yet
        assert queued.call(warn_expiring_by_mail) == []

        clock.move_to(T0 + 51 * MINUTE)  # 9 minutes left
        assert len(queued.call(warn_expiring_by_mail)) == 1
        assert deliver(queued) == ["sent"]
        assert queued.call(warn_expiring_by_mail) == []  # the next tick: warned already

        [message] = smtp.messages
        assert message["Subject"] == (
            f"[coprssh] SSH builder expires in 9 minutes: build #{build.pk} of alice/hello (fedora-rawhide-x86_64)"
        )
        body = smtp.body()
        # 13:00 UTC is 08:00 in New York (EST) on 1 March.
        assert "expires at 2030-03-01 08:00 EST (America/New_York), in 9 minutes" in body
        assert f"coprssh prolong {lease.pk}" in body
        assert "ssh -p 2222 root@192.0.2.10" in body

        # Prolonged, it is warned again before its new expiry, and not before.
        builders.prolong_lease(lease_id=lease.pk, hours=1, via=builders.Via(user=alice, source="web"))
        clock.move_to(T0 + 100 * MINUTE)
        assert queued.call(warn_expiring_by_mail) == []
        clock.move_to(T0 + 111 * MINUTE)
        assert len(queued.call(warn_expiring_by_mail)) == 1
        assert deliver(queued) == ["sent"]

    assert len(smtp.messages) == 2
    assert "expires at 2030-03-01 09:00 EST" in smtp.body()


def test_the_builds_tick_queues_the_warnings(smtp, queued, alice, key_line):
    with time_machine.travel(T0, tick=False) as clock:
        _build, lease = kept_builder(alice, key_line)
        clock.move_to(T0 + 55 * MINUTE)

        summary = queued.call(tasks.tick)

    assert summary["mails"] == [SshMail.objects.get(lease=lease, kind="expiring").pk]
    assert deliver(queued) == ["sent"]


def test_a_warning_for_a_builder_prolonged_meanwhile_is_not_sent(smtp, queued, alice, key_line):
    with time_machine.travel(T0 + 55 * MINUTE, tick=False):
        _build, lease = kept_builder(alice, key_line, expires_in=5 * MINUTE)
        queued.call(warn_expiring_by_mail)
        builders.prolong_lease(lease_id=lease.pk, hours=1, via=builders.Via(user=alice, source="web"))

        assert deliver(queued) == ["skipped"]

    assert smtp.messages == []
    assert SshMail.objects.get(lease=lease).detail == "the SSH builder was prolonged meanwhile"


def test_a_mail_about_a_builder_released_meanwhile_is_not_sent(smtp, queued, alice, key_line):
    _build, lease = kept_builder(alice, key_line)
    queued.call(announce_ready, lease_id=lease.pk)
    queued.call(builders.release_lease, lease_id=lease.pk, via=builders.Via(user=alice, source="web"))

    assert deliver(queued) == ["skipped"]
    assert smtp.messages == []


def test_the_smtp_server_sees_nothing_for_a_build_without_ssh(smtp, queued, alice):
    # A lease of a normal build (not SSH) is never announced or warned about.
    lease = make_lease(
        owner=alice, state=Lease.State.ACTIVE, builder=make_builder(state=Builder.State.LEASED)
    )
    Lease.objects.filter(pk=lease.pk).update(expires_at=datetime.now(UTC) + 5 * MINUTE)

    assert queued.call(announce_ready, lease_id=lease.pk) is None
    assert queued.call(warn_expiring_by_mail) == []
    assert smtp.messages == []
