"""Logins read from the gateway's log: one shape of line counts, reads are bounded and pick up where they
stopped (across a rotation or a truncation), and each login becomes one audit event per lease its key served.

The lines are the gateway command's own format (sshd's message after the time it arrived); the real
sshd writes them in tests/builders/test_gateway.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from builders.gateway import logins, sshd
from builders.models import AuditEvent, Builder, GatewayLogCursor, Lease, LeaseKey, SshRoute
from builders.services import record_gateway_logins
from tests.builders.factories import make_builder, make_lease, make_pool

pytestmark = pytest.mark.django_db

FP = "SHA256:" + "A" * 43
OTHER_FP = "SHA256:" + "B" * 43


def accepted(at: datetime, *, user: str = "coprssh-gw", address: str = "203.0.113.9", fp: str = FP) -> str:
    stamp = at.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    return f"{stamp} Accepted publickey for {user} from {address} port 51234 ssh2: ED25519 {fp}"


# --- one line --------------------------------------------------------------------------------


def test_parse_line_reads_an_accepted_login():
    at = datetime(2026, 5, 1, 12, 4, 5, 123456, tzinfo=UTC)

    login = logins.parse_line(accepted(at, address="2001:DB8::9") + "\r\n")

    assert login == logins.Login(
        at=at, user="coprssh-gw", address="2001:db8::9", port=51234, label="ED25519", fingerprint=FP
    )


@pytest.mark.parametrize(
    "line",
    [
        # sshd's other lines, including those that carry what a client sent
        "2026-05-01T12:04:05.000001Z Invalid user Accepted publickey for coprssh-gw from 203.0.113.9 port 1 ssh2: ED25519 "
        + FP,
        "2026-05-01T12:04:05.000001Z Accepted key ED25519 "
        + FP
        + " found at /usr/bin/cat /x/authorized_keys:1",
        "2026-05-01T12:04:05.000001Z Postponed publickey for coprssh-gw from 203.0.113.9 port 1 ssh2 [preauth]",
        # the shape, with a part that is not what it claims
        "2026-05-01T12:04:05Z Accepted publickey for coprssh-gw from evil.example port 1 ssh2: ED25519 " + FP,
        "2026-05-01T12:04:05Z Accepted publickey for coprssh-gw from 999.1.1.1 port 1 ssh2: ED25519 " + FP,
        "2026-05-01T12:04:05Z Accepted publickey for coprssh-gw from 203.0.113.9 port 99999 ssh2: ED25519 "
        + FP,
        "2026-05-01T12:04:05Z Accepted publickey for coprssh-gw from 203.0.113.9 port 1 ssh2: ED25519 SHA256:short",
        "2026-05-01T12:04:05Z Accepted publickey for coprssh-gw from 203.0.113.9 port 1 ssh2: ED25519 "
        + FP
        + " x",
        "2026-13-01T12:04:05Z Accepted publickey for coprssh-gw from 203.0.113.9 port 1 ssh2: ED25519 " + FP,
        "Accepted publickey for coprssh-gw from 203.0.113.9 port 1 ssh2: ED25519 " + FP,  # no time
        "x" * 10_000,
        "",
    ],
)
def test_parse_line_ignores_every_other_line(line):
    assert logins.parse_line(line) is None


# --- reading the log -------------------------------------------------------------------------


def test_read_new_returns_whole_lines_and_where_it_stopped(tmp_path):
    log, old = tmp_path / "sshd.log", tmp_path / "sshd.log.1"
    log.write_text("one\ntwo\nthr")

    first = logins.read_new(log, old, logins.Position())
    same = logins.read_new(log, old, first.position)
    with log.open("a") as handle:
        handle.write("ee\nfour\n")
    second = logins.read_new(log, old, first.position)

    assert first.lines == ["one", "two"]
    assert same.lines == []
    assert same.position == first.position
    assert second.lines == ["three", "four"]
    assert second.position.offset == log.stat().st_size


def test_read_new_stops_at_its_cap_and_steps_over_a_line_longer_than_a_read(tmp_path):
    log, old = tmp_path / "sshd.log", tmp_path / "sshd.log.1"
    log.write_text("a" * 10 + "\n" + "b" * 100 + "\nc\n")

    reads = []
    position = logins.Position()
    for _ in range(20):
        batch = logins.read_new(log, old, position, cap=32)
        reads.append(batch.lines)
        position = batch.position
        if position.offset == log.stat().st_size:
            break

    # The long line is skipped whole, its end included.
    assert [line for lines in reads for line in lines] == ["a" * 10, "c"]
    assert all(len("\n".join(lines)) <= 32 for lines in reads)


def test_read_new_finishes_a_rotated_log_then_starts_the_new_one(tmp_path):
    log, old = tmp_path / "sshd.log", tmp_path / "sshd.log.1"
    log.write_text("one\n")
    first = logins.read_new(log, old, logins.Position())
    with log.open("a") as handle:
        handle.write("two\n")
    log.rename(old)  # as the gateway command rotates it
    log.write_text("three\n")

    second = logins.read_new(log, old, first.position)
    third = logins.read_new(log, old, second.position)

    assert (first.lines, second.lines, third.lines) == (["one"], ["two"], ["three"])


def test_read_new_starts_again_from_a_truncated_or_replaced_log(tmp_path):
    log, old = tmp_path / "sshd.log", tmp_path / "sshd.log.1"
    log.write_text("one\ntwo\n")
    first = logins.read_new(log, old, logins.Position())
    log.write_text("new\n")  # truncated in place (logrotate's copytruncate)

    again = logins.read_new(log, old, first.position)

    assert again.lines == ["new"]


def test_read_new_does_not_follow_a_symlink(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("not a log\n")
    log, old = tmp_path / "sshd.log", tmp_path / "sshd.log.1"
    log.symlink_to(secret)

    assert logins.read_new(log, old, logins.Position()).lines == []


# --- the audit log ---------------------------------------------------------------------------


@pytest.fixture
def gateway_log(settings, tmp_path):
    settings.COPRSSH_GATEWAY_HOST = "gw.example.org"
    settings.COPRSSH_GATEWAY_USER = "coprssh-gw"
    settings.COPRSSH_GATEWAY_DIR = tmp_path / "gateway"
    files = sshd.files_in(settings.COPRSSH_GATEWAY_DIR)
    sshd.make_dir(files)
    return files


def write(files: sshd.GatewayFiles, *lines: str) -> None:
    with files.log.open("a") as handle:
        handle.writelines(f"{line}\n" for line in lines)


def lease_with_key(owner, fingerprint: str, *, route: str = SshRoute.GATEWAY, started: datetime) -> Lease:
    builder = make_builder(make_pool(ssh_route=route), state=Builder.State.LEASED, single_use=True)
    lease = make_lease(owner=owner, ssh=True, state=Lease.State.ACTIVE, builder=builder, started_at=started)
    LeaseKey.objects.create(lease=lease, key_type="ssh-ed25519", data="AAAA", fingerprint=fingerprint)
    return lease


def test_each_login_is_recorded_once_for_each_lease_its_key_served_then(gateway_log, user, other_user):
    now = timezone.now()
    first = lease_with_key(user, FP, started=now - timedelta(hours=2))
    second = lease_with_key(user, FP, started=now - timedelta(minutes=30))
    ended = lease_with_key(user, FP, started=now - timedelta(hours=3))
    Lease.objects.filter(pk=ended.pk).update(
        state=Lease.State.ENDED, ended_at=now - timedelta(hours=1, minutes=30)
    )
    direct = lease_with_key(user, FP, route=SshRoute.DIRECT, started=now - timedelta(hours=3))
    bob = lease_with_key(other_user, OTHER_FP, started=now - timedelta(hours=3))
    early, late = now - timedelta(hours=1), now - timedelta(minutes=5)
    write(
        gateway_log,
        accepted(early),
        "2026-05-01T12:04:05Z Received disconnect from 203.0.113.9 port 51234:11: disconnected by user",
        accepted(late, address="2001:db8::9"),
        accepted(late, user="someone-else"),  # not the gateway's account: not a gateway login
    )

    recorded = record_gateway_logins()
    again = record_gateway_logins()

    events = AuditEvent.objects.filter(action=AuditEvent.Action.GATEWAY_LOGIN)
    seen = sorted((event.lease_id, event.created_at, event.remote_addr) for event in events)
    assert recorded == 3
    assert again == 0
    assert seen == sorted(
        [
            (first.pk, early, "203.0.113.9"),  # the second lease had not started at `early`
            (first.pk, late, "2001:db8::9"),
            (second.pk, late, "2001:db8::9"),
        ]
    )
    assert {event.source for event in events} == {"gateway"}
    assert all(FP in event.detail for event in events)
    assert not events.filter(lease__in=[ended, direct, bob]).exists()


def test_a_later_read_takes_only_the_new_lines(gateway_log, user):
    lease = lease_with_key(user, FP, started=timezone.now() - timedelta(hours=1))
    write(gateway_log, accepted(timezone.now() - timedelta(minutes=2)))
    assert record_gateway_logins() == 1
    write(gateway_log, accepted(timezone.now() - timedelta(minutes=1)))

    assert record_gateway_logins() == 1
    assert AuditEvent.objects.filter(action=AuditEvent.Action.GATEWAY_LOGIN, lease=lease).count() == 2
    assert GatewayLogCursor.objects.get().offset == gateway_log.log.stat().st_size


def test_a_huge_log_is_read_a_bounded_piece_per_pass(gateway_log, user):
    lease_with_key(user, FP, started=timezone.now() - timedelta(hours=1))
    at = timezone.now() - timedelta(minutes=1)
    write(gateway_log, *[accepted(at)] * 2000)  # about 250 KiB
    size = gateway_log.log.stat().st_size

    first = record_gateway_logins(cap=16 * 1024, passes=2)

    offset = GatewayLogCursor.objects.get().offset
    assert 0 < first < 2000
    assert offset <= 32 * 1024 < size
    while GatewayLogCursor.objects.get().offset < size:
        record_gateway_logins(cap=16 * 1024, passes=4)
    assert AuditEvent.objects.filter(action=AuditEvent.Action.GATEWAY_LOGIN).count() == 2000


def test_no_gateway_no_reading(settings, tmp_path):
    settings.COPRSSH_GATEWAY_HOST = ""
    settings.COPRSSH_GATEWAY_DIR = tmp_path / "gateway"

    assert record_gateway_logins() == 0
    assert not GatewayLogCursor.objects.exists()
