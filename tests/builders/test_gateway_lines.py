"""The gateway's authorized_keys: built line by line by the service, from the active SSH leases only.

Nothing a user sends can put an option or a second key into the file: the line builder takes a
parsed key (type and decoded blob), options of a few fixed shapes and a comment naming leases,
and refuses anything else. `ssh-keygen -l` reads every line back as exactly one key.
"""

from __future__ import annotations

import base64
import subprocess
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from builders import keylines, services
from builders.checks import gateway_pools_have_a_gateway
from builders.gateway import sshd
from builders.models import Builder, Lease, LeaseKey, SshRoute
from builders.services import gateway
from keys.parser import PublicKey, parse_keys
from tests.builders.factories import make_builder, make_lease, make_pool
from tests.keys.test_parser import HOSTILE, keys  # noqa: F401 - `keys` is the corpus's fixture

pytestmark = pytest.mark.django_db

ED = PublicKey(
    "ssh-ed25519",
    base64.b64decode("AAAAC3NzaC1lZDI1NTE5AAAAIGr0Pmn2ZX5vX5ufGwLJnN9PwPf6Ln3ZfUtqOH7oCxHq"),
    256,
)
OPTIONS = ["restrict", "port-forwarding", 'permitopen="[::1]:2200"', 'expiry-time="20260501120000Z"']


# --- the line builder ------------------------------------------------------------------------


def test_key_line_is_options_type_blob_and_service_comment():
    line = keylines.key_line(OPTIONS, ED, "lease-7")

    assert (
        line
        == f'restrict,port-forwarding,permitopen="[::1]:2200",expiry-time="20260501120000Z" ssh-ed25519 {ED.data} lease-7'
    )


def test_permit_open_brackets_ipv6_and_writes_addresses_one_way():
    assert keylines.permit_open("192.0.2.5", 22) == 'permitopen="192.0.2.5:22"'
    assert keylines.permit_open("2001:DB8:0::1", 40000) == 'permitopen="[2001:db8::1]:40000"'
    assert keylines.permit_open("[::1]", 2222) == 'permitopen="[::1]:2222"'


@pytest.mark.parametrize(
    ("address", "port"),
    [
        ("builder.example.org", 22),  # a name: the forward would be resolved by the gateway
        ("*", 22),
        ('1.2.3.4:22",command="sh', 22),
        ("fe80::1%eth0", 22),
        ("192.0.2.5", 0),
        ("192.0.2.5", 65536),
        ("192.0.2.5", True),
        ("192.0.2.5", "22"),
        ("192.0.2.5\n", 22),
    ],
)
def test_permit_open_refuses_anything_but_an_address_and_a_port(address, port):
    with pytest.raises(ValueError, match="address|port|zone"):
        keylines.permit_open(address, port)


def test_expiry_time_is_utc_to_the_second():
    moment = datetime(2026, 5, 1, 14, 4, 5, tzinfo=UTC).astimezone(timezone.get_fixed_timezone(120))

    assert keylines.expiry_time(moment) == 'expiry-time="20260501140405Z"'


@pytest.mark.parametrize(
    "option",
    [
        'command="/bin/sh"',
        "agent-forwarding",
        "pty",
        'permitopen="*:*"',
        'permitopen="any:22"',
        'permitlisten="0.0.0.0:80"',
        'environment="A=B"',
        'expiry-time="20260501"',
        "restrict ssh-ed25519 AAAA",
        "restrict\nssh-ed25519",
        "",
    ],
)
def test_key_line_refuses_options_it_does_not_write(option):
    with pytest.raises(ValueError, match="not an option the service writes"):
        keylines.key_line([*OPTIONS, option], ED, "lease-7")


@pytest.mark.parametrize(
    "key",
    [
        PublicKey("ssh-dss", ED.blob, 1024),
        PublicKey("ssh-ed25519 AAAA lease-1\nssh-ed25519", ED.blob, 256),
        PublicKey('command="sh" ssh-ed25519', ED.blob, 256),
        PublicKey("ssh-ed25519", b"", 256),
    ],
)
def test_key_line_refuses_keys_the_parser_would_not_give(key):
    with pytest.raises(ValueError, match="not an accepted key type|the key has no data"):
        keylines.key_line(OPTIONS, key, "lease-7")


@pytest.mark.parametrize(
    "comment", ["alice@laptop", "lease-1 extra", "lease-1\nssh-ed25519 AAAA", "", "lease-"]
)
def test_key_line_takes_no_comment_but_lease_numbers(comment):
    with pytest.raises(ValueError, match="not a service comment"):
        keylines.key_line(OPTIONS, ED, comment)


def test_a_users_comment_never_reaches_the_line():
    hostile = PublicKey(ED.key_type, ED.blob, ED.bits, comment='x" command="/bin/sh')

    line = keylines.key_line(OPTIONS, hostile, keylines.lease_comment([3, 1, 3]))

    assert line.endswith(f"ssh-ed25519 {ED.data} lease-1,lease-3")
    assert "command" not in line


@pytest.mark.parametrize(("build", "_fragment", "_single"), HOSTILE)
def test_the_parsers_hostile_corpus_gives_no_line_with_anything_smuggled(
    keys,  # noqa: F811 - the corpus's own fixture, imported above
    build,
    _fragment,
    _single,
    tmp_path,
):
    """Each corpus line through the parser, then whatever it let through, through the line builder."""
    text = build(keys)
    parsed = parse_keys(text)
    lines = [keylines.key_line(OPTIONS, key, "lease-9") for key in parsed.keys]

    assert parsed.keys == []  # the parser refuses every line of the corpus…
    assert lines == []  # …so nothing of it reaches the gateway's file
    # And the same text cannot ride along with a good key: the file has one line per good key.
    good = parse_keys(f"{keys['ed25519'].line}\n{text}").keys
    written = [keylines.key_line(OPTIONS, key, "lease-9") for key in good]
    assert len(written) == 1
    assert_one_key_per_line(written, tmp_path)


def assert_one_key_per_line(lines: list[str], tmp_path) -> None:
    """`ssh-keygen -l` reads the file as sshd would: each line is one key with our options, nothing else."""
    path = tmp_path / "authorized_keys"
    path.write_text("".join(f"{line}\n" for line in lines))
    listed = subprocess.run(["ssh-keygen", "-l", "-f", str(path)], capture_output=True, text=True, check=True)
    assert len(listed.stdout.splitlines()) == len(lines)
    for line in lines:
        options, key_type, data, comment = line.split(" ")
        assert options.split(",")[:2] == ["restrict", "port-forwarding"]
        assert key_type in {"ssh-ed25519", "ssh-rsa"} or key_type.startswith(("ecdsa-", "sk-"))
        assert base64.b64decode(data, validate=True)
        assert comment.startswith("lease-")


# --- the file, from the leases ---------------------------------------------------------------


def keyed_lease(owner, pool, key: PublicKey, **builder_fields) -> Lease:
    builder = make_builder(pool, state=Builder.State.LEASED, single_use=True, port=2200, **builder_fields)
    lease = make_lease(owner=owner, ssh=True, state=Lease.State.ACTIVE, builder=builder)
    LeaseKey.objects.create(lease=lease, key_type=key.key_type, data=key.data, fingerprint=key.fingerprint)
    return lease


def line_key(n: int) -> PublicKey:
    blob = b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + bytes([n]) * 32
    return PublicKey("ssh-ed25519", blob, 256)


def test_gateway_lines_let_each_key_reach_its_own_leases_builder_until_it_expires(user, other_user):
    pool = make_pool(ssh_route=SshRoute.GATEWAY)
    alice = keyed_lease(user, pool, line_key(1), ipv4=None, ipv6="2001:db8::5")
    bob = keyed_lease(other_user, pool, line_key(2), ipv4="10.0.0.7", ipv6="2001:db8::7")

    lines = gateway.gateway_lines()

    expiry = keylines.expiry_time(alice.expires_at)
    assert lines == [
        f'restrict,port-forwarding,permitopen="[2001:db8::5]:2200",{expiry} ssh-ed25519 {line_key(1).data} lease-{alice.pk}',
        f'restrict,port-forwarding,permitopen="10.0.0.7:2200",permitopen="[2001:db8::7]:2200",'
        f"{keylines.expiry_time(bob.expires_at)} ssh-ed25519 {line_key(2).data} lease-{bob.pk}",
    ]


def test_a_key_on_two_leases_gets_one_line_for_both_builders(user):
    # sshd obeys the first line that matches a key: two lines would lock the key to one builder.
    pool = make_pool(ssh_route=SshRoute.BOTH)
    first = keyed_lease(user, pool, line_key(3), ipv4="10.0.0.1")
    second = keyed_lease(user, pool, line_key(3), ipv4="10.0.0.2")
    Lease.objects.filter(pk=second.pk).update(expires_at=second.expires_at + timedelta(hours=2))
    second.refresh_from_db()

    [line] = gateway.gateway_lines()

    assert 'permitopen="10.0.0.1:2200",permitopen="10.0.0.2:2200"' in line
    assert keylines.expiry_time(second.expires_at) in line
    assert line.endswith(f"lease-{first.pk},lease-{second.pk}")


def test_no_line_for_ended_expired_or_directly_reached_leases(user):
    gw_pool = make_pool(ssh_route=SshRoute.GATEWAY)
    ended = keyed_lease(user, gw_pool, line_key(4), ipv4="10.0.0.4")
    Lease.objects.filter(pk=ended.pk).update(state=Lease.State.ENDED, ended_at=timezone.now())
    late = keyed_lease(user, gw_pool, line_key(5), ipv4="10.0.0.5")
    Lease.objects.filter(pk=late.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    keyed_lease(user, make_pool(ssh_route=SshRoute.DIRECT), line_key(6), ipv4="10.0.0.6")

    assert gateway.gateway_lines() == []


def test_a_key_row_changed_by_hand_costs_only_its_own_line(user):
    pool = make_pool(ssh_route=SshRoute.GATEWAY)
    keyed_lease(user, pool, line_key(7), ipv4="10.0.0.7")
    broken = keyed_lease(user, pool, line_key(8), ipv4="10.0.0.8")
    LeaseKey.objects.filter(lease=broken).update(data='AAAA" command="/bin/sh')
    odd = keyed_lease(user, pool, line_key(9), ipv4="10.0.0.9")
    LeaseKey.objects.filter(lease=odd).update(key_type="ssh-ed25519 AAAA lease-1\nssh-rsa")

    lines = gateway.gateway_lines()

    assert len(lines) == 1
    assert line_key(7).data in lines[0]


# --- where and when the file is written ------------------------------------------------------


@pytest.fixture
def gateway_here(settings, tmp_path):
    """This host runs the gateway: configured, and its folder made (as `manage.py gateway` leaves it)."""
    settings.COPRSSH_GATEWAY_HOST = "gw.example.org"
    settings.COPRSSH_GATEWAY_DIR = tmp_path / "gateway"
    files = sshd.files_in(settings.COPRSSH_GATEWAY_DIR)
    sshd.make_dir(files)
    files.config.write_text("# made by the test\n")
    return files


def test_write_gateway_keys_does_nothing_where_no_gateway_runs(settings, tmp_path, user):
    keyed_lease(user, make_pool(ssh_route=SshRoute.GATEWAY), line_key(1), ipv4="10.0.0.1")
    settings.COPRSSH_GATEWAY_DIR = tmp_path / "gateway"

    assert services.write_gateway_keys() is None
    settings.COPRSSH_GATEWAY_HOST = "gw.example.org"
    assert services.write_gateway_keys() is None  # configured, but its folder is on another host
    assert not (tmp_path / "gateway").exists()


def test_write_gateway_keys_replaces_the_whole_file_private_to_the_service(gateway_here, user):
    lease = keyed_lease(user, make_pool(ssh_route=SshRoute.GATEWAY), line_key(1), ipv4="10.0.0.1")
    gateway_here.authorized_keys.write_text("ssh-ed25519 AAAA left-over\n")

    assert services.write_gateway_keys() == 1

    text = gateway_here.authorized_keys.read_text()
    assert text.endswith(f"lease-{lease.pk}\n")
    assert "left-over" not in text
    assert gateway_here.authorized_keys.stat().st_mode & 0o777 == 0o600


def test_release_prolong_and_expiry_write_the_file_again(gateway_here, user, queued):
    pool = make_pool(ssh_route=SshRoute.GATEWAY)
    kept = keyed_lease(user, pool, line_key(1), ipv4="10.0.0.1")
    released = keyed_lease(user, pool, line_key(2), ipv4="10.0.0.2")
    services.write_gateway_keys()
    assert line_key(2).data in gateway_here.authorized_keys.read_text()

    queued.call(services.release_lease, lease_id=released.pk, via=services.TASK)
    assert line_key(2).data not in gateway_here.authorized_keys.read_text()

    before = kept.expires_at
    queued.call(services.prolong_lease, lease_id=kept.pk, hours=2, via=services.TASK)
    assert keylines.expiry_time(before + timedelta(hours=2)) in gateway_here.authorized_keys.read_text()

    Lease.objects.filter(pk=kept.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    queued.call(services.expire_leases)
    assert gateway_here.authorized_keys.read_text() == ""


def test_check_warns_of_gateway_pools_without_a_gateway(settings):
    make_pool(name="behind", ssh_route=SshRoute.BOTH)
    make_pool(name="open", ssh_route=SshRoute.DIRECT)
    settings.COPRSSH_GATEWAY_HOST = ""

    [warning] = gateway_pools_have_a_gateway()
    settings.COPRSSH_GATEWAY_HOST = "gw.example.org"

    assert warning.id == "coprssh.W010"
    assert "Pool(s) behind are reached through the SSH gateway" in warning.msg
    assert gateway_pools_have_a_gateway() == []
