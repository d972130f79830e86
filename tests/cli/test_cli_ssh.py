"""`coprssh` and SSH builders: resubmit with SSH, wait for and log in to the builder, prolong,
release, list, quota — the CLI as a real process against the live server.

No builder runs here: an SSH build's builders stay provisioning (no pool serves their
architecture) or queued (over quota). A test that needs a ready one makes it so through the
ORM: a builder row, and the phase's lease made active on it, as the lease services would.
"""

from __future__ import annotations

import io
import json
import select
import signal
import subprocess
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import requests
from coprssh_cli import ssh as sshlib
from django.core.cache import cache
from django.utils import timezone

from builders.models import AuditEvent, Builder, Lease, QuotaPolicy
from builds import storage
from builds.models import Build, BuildChroot, SrpmPhase, State
from tests.builders.factories import make_builder
from tests.cli.conftest import CHROOTS, Cli, clean_env
from tests.cli.test_cli import closed_port, move

pytestmark = pytest.mark.django_db(transaction=True)

CHROOT = CHROOTS[0]


# --- helpers ---------------------------------------------------------------------------


def keygen(path: Path, comment: str = "alice@laptop") -> tuple[str, str]:
    """An ed25519 key pair made by the real ssh-keygen: its .pub line and `SHA256:` fingerprint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
    )
    listed = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", f"{path}.pub"], check=True, capture_output=True, text=True
    )
    return Path(f"{path}.pub").read_text().strip(), listed.stdout.split()[1]


def last_line(result: subprocess.CompletedProcess[str]) -> int:
    return int(result.stdout.splitlines()[-1])


def make_ready(
    lease_id: int, *, port: int = 2222, ipv4: str | None = "127.0.0.1", **builder: object
) -> Lease:
    """The lease active on a fresh single-use builder, with an expiry, a cap and its keys deployed."""
    lease = Lease.objects.get(pk=lease_id)
    machine = make_builder(
        state=Builder.State.LEASED, port=port, ipv4=ipv4, sandbox=lease.sandbox, single_use=True, **builder
    )
    now = timezone.now()
    Lease.objects.filter(pk=lease_id).update(
        state=Lease.State.ACTIVE,
        builder=machine,
        queue_reason="",
        assigned_at=now,
        started_at=now,
        expires_at=now + timedelta(hours=1),
        max_expires_at=now + timedelta(hours=48),
        access_ready_at=now,
    )
    return Lease.objects.get(pk=lease_id)


def api_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# --- fixtures --------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Fetched GitHub keys are cached by the server: no test sees another's."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def key(tmp_path) -> tuple[Path, str, str]:
    """A key pair outside ~/.ssh: the .pub file, its line and its fingerprint."""
    line, fingerprint = keygen(tmp_path / "keys" / "debug_key")
    return tmp_path / "keys" / "debug_key.pub", line, fingerprint


@pytest.fixture
def failed_build(submit) -> int:
    """A build whose SRPM phase succeeded and whose RPM phase for CHROOT failed."""
    build_id = submit("--chroot", CHROOT)
    build = Build.objects.get(pk=build_id)
    directory = storage.ensure_dir(build.srpm.storage_dir)
    (directory / "hello-coprssh-1.0-1.src.rpm").write_bytes(b"not really an srpm")
    (directory / "hello-coprssh.spec").write_text("Name: hello-coprssh\n")
    Build.objects.filter(pk=build_id).update(
        srpm_file=f"{build.srpm.storage_dir}/hello-coprssh-1.0-1.src.rpm",
        spec_file=f"{build.srpm.storage_dir}/hello-coprssh.spec",
        package_name="hello-coprssh",
        package_version="1.0-1",
    )
    move(build.srpm, State.SUCCEEDED)
    move(build.build_chroots.get(), State.FAILED)
    return build_id


@pytest.fixture
def ssh_build(cli, failed_build, key) -> Callable[..., int]:
    """Resubmit the failed build with SSH (the key file); return the new build's id."""

    def run(*args: str) -> int:
        return last_line(cli.ok("resubmit", str(failed_build), "--ssh", "--key", str(key[0]), *args))

    return run


def lease_of(build_id: int) -> int:
    """The SSH builder (lease) id of the build's only chroot."""
    lease_id = BuildChroot.objects.get(build_id=build_id).lease_id
    assert lease_id is not None
    return lease_id


# --- resubmit --------------------------------------------------------------------------


def test_resubmit_with_ssh_and_a_key_file(cli, failed_build, key):
    path, line, fingerprint = key

    result = cli.ok("resubmit", str(failed_build), "--ssh", "--key", str(path))

    new = Build.objects.get(pk=last_line(result))
    assert new.ssh is True
    assert new.resubmitted_from_id == failed_build
    assert line.split()[1] in new.ssh_keys
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"Resubmitted build #{failed_build} as build #{new.pk} with SSH ({CHROOT})")
    assert f"SSH keys from {path}: ssh-ed25519 {fingerprint}" in lines
    assert f"Log in once it is ready with: coprssh ssh {new.pk}" in lines
    # No pool serves the chroot's architecture here: the builder waits, and says why.
    lease_id = lease_of(new.pk)
    assert f"SSH builder #{lease_id} for {CHROOT} is provisioning: No builder pool serves x86_64" in (
        result.stdout
    )
    status = json.loads(cli.ok("status", str(new.pk), "--json").stdout)
    assert status["ssh"] is True
    assert status["chroots"][0]["ssh_builder"]["id"] == lease_id
    assert status["chroots"][0]["ssh_builder"]["state"] == "provisioning"


def test_resubmit_ssh_offers_the_key_ssh_logs_in_with_when_none_is_named(cli_as, failed_build, account, home):
    # ssh reads ~/.ssh in the home the passwd database gives, whatever $HOME says: so does coprssh.
    line, _fingerprint = keygen(account.home / ".ssh" / "id_ed25519")
    elsewhere, _ = keygen(home / ".ssh" / "id_ed25519", comment="not-this-one")

    result = cli_as.ok("resubmit", str(failed_build), "--ssh")

    new = Build.objects.get(pk=last_line(result))
    assert new.ssh is True
    assert line.split()[1] in new.ssh_keys
    assert elsewhere.split()[1] not in new.ssh_keys
    assert f"SSH keys from {account.home}/.ssh/id_ed25519.pub: " in result.stdout


def test_resubmit_ssh_without_any_key_says_how_to_give_one(cli_as, failed_build, account, home):
    keygen(home / ".ssh" / "id_ed25519")  # in $HOME only, where ssh does not look

    result = cli_as("resubmit", str(failed_build), "--ssh")

    assert result.returncode == 2
    assert f"none of {account.home}/.ssh/id_ed25519.pub, {account.home}/.ssh/id_ecdsa.pub" in result.stderr
    for option in ("--key FILE", "--github USER", "--fas USER", "--saved-keys"):
        assert option in result.stderr
    assert Build.objects.count() == 1  # nothing was sent


def test_resubmit_with_a_github_account(cli, failed_build, key_server, tmp_path):
    line, fingerprint = keygen(tmp_path / "octocat_key", comment="octocat@github")
    key_server.github("octocat", body=f"{line}\n".encode())

    result = cli.ok("resubmit", str(failed_build), "--github", "octocat")  # a key option means SSH

    new = Build.objects.get(pk=last_line(result))
    assert new.ssh is True
    assert line.split()[1] in new.ssh_keys
    assert "SSH keys of GitHub:octocat" in result.stdout
    builder = json.loads(cli.ok("ssh-builders", "--json").stdout)[0]
    assert builder["build"] == new.pk
    assert builder["key_fingerprints"] == [fingerprint]


def test_resubmit_with_an_unknown_github_account_names_it(cli, failed_build, key_server):
    result = cli("resubmit", str(failed_build), "--github", "nobody-here")

    assert result.returncode == 2
    assert "GitHub:nobody-here" in result.stderr
    assert "Traceback" not in result.stderr
    assert Build.objects.count() == 1


def test_resubmit_ssh_refuses_a_private_key_file_locally(cli, failed_build, key):
    private = key[0].with_suffix("")

    result = cli("resubmit", str(failed_build), "--ssh", "--key", str(private))

    assert result.returncode == 2
    assert f"{private} is a private key; give the public one ({private}.pub)" in result.stderr
    secret = private.read_text().splitlines()[1]
    assert secret not in result.stdout + result.stderr
    assert Build.objects.count() == 1


def test_resubmit_without_ssh_still_works(cli, failed_build):
    result = cli.ok("resubmit", str(failed_build))

    new = Build.objects.get(pk=last_line(result))
    assert new.ssh is False
    assert "coprssh ssh" not in result.stdout


# --- ssh-builders, ssh ----------------------------------------------------------------


def test_ssh_builders_lists_the_waiting_builder(cli, ssh_build):
    build_id = ssh_build()
    lease_id = lease_of(build_id)

    table = cli.ok("ssh-builders").stdout.splitlines()

    assert table[0].split() == ["ID", "BUILD", "CHROOT", "STATE", "EXPIRES", "COMMAND"]
    assert table[1].split() == [str(lease_id), f"#{build_id}", CHROOT, "provisioning"]
    assert table[3].startswith(f"#{lease_id} provisioning: No builder pool serves x86_64")
    listed = json.loads(cli.ok("ssh-builders", "--json").stdout)
    assert [(b["id"], b["build"], b["chroot"], b["state"]) for b in listed] == [
        (lease_id, build_id, CHROOT, "provisioning")
    ]


def test_ssh_print_gives_the_command_of_a_ready_builder(cli, ssh_build, tmp_path):
    build_id = ssh_build()
    host_key, host_fingerprint = keygen(tmp_path / "host_key", comment="root@builder")
    lease = make_ready(lease_of(build_id), port=2222, host_key=host_key)

    result = cli("ssh", str(build_id), "--print")

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["ssh -p 2222 root@127.0.0.1"]
    assert f"SSH builder #{lease.pk} for {CHROOT} of build #{build_id} is ready until " in result.stderr
    assert f"Its host key is {host_fingerprint}" in result.stderr
    # What follows `--` goes to ssh, after the destination (options or a remote command).
    extra = cli.ok(
        "ssh", f"#{build_id}", "--print", "--chroot", CHROOT, "--", "-L", "8080:localhost:80", "uptime"
    )
    assert extra.stdout.strip() == "ssh -p 2222 root@127.0.0.1 -L 8080:localhost:80 uptime"
    data = json.loads(cli.ok("ssh", str(build_id), "--print", "--json").stdout)
    assert data["argv"] == ["ssh", "-p", "2222", "root@127.0.0.1"]
    assert data["ssh_builder"]["id"] == lease.pk
    table = cli.ok("ssh-builders").stdout.splitlines()
    assert table[1].split()[:4] == [str(lease.pk), f"#{build_id}", CHROOT, "ready"]
    assert table[1].endswith("ssh -p 2222 root@127.0.0.1")
    assert "(in 59 min)" in table[1] or "(in 1 h)" in table[1]


def test_ssh_runs_the_real_ssh_in_its_place(cli, ssh_build, tmp_path):
    """Without --print the CLI becomes ssh (exec): same process, ssh's output and exit code."""
    build_id = ssh_build()
    make_ready(lease_of(build_id), port=2222)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "ssh"
    fake.write_text('#!/bin/sh\necho "ssh pid $$ args: $*"\nexit 7\n')
    fake.chmod(0o755)
    env = dict(cli.env, PATH=f"{bin_dir}:{cli.env['PATH']}")

    process = subprocess.Popen(
        cli.command("ssh", str(build_id), "--", "uptime"),
        env=env,
        cwd=cli.cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, errors = process.communicate(timeout=60)

    assert process.returncode == 7, errors
    assert out.strip() == f"ssh pid {process.pid} args: -p 2222 root@127.0.0.1 uptime"
    assert "is ready until" in errors


def test_waiting_on_a_terminal_turns_a_spinner_then_says_ready():
    """The progress of `coprssh ssh` on a terminal: a line per change, a spinner line in between."""
    answers = iter(
        [
            {"id": 5, "chroot": CHROOT, "state": "queued", "queue_reason": "2 of 2 SSH builders in use"},
            {"id": 5, "chroot": CHROOT, "state": "provisioning", "queue_reason": ""},
            {"id": 5, "chroot": CHROOT, "state": "ready", "host": "192.0.2.5", "port": 22, "user": "root"},
        ]
    )

    class FakeClient:
        def get(self, path: str) -> dict[str, object]:
            assert path == "ssh-builders/5/"
            return next(answers)

    out = io.StringIO()
    progress = sshlib.Progress(out=out, tty=True)

    builder = sshlib.wait_until_ready(
        FakeClient(), 5, timeout=60, interval=0.3, progress=progress, sleep=lambda _seconds: None
    )

    assert builder["host"] == "192.0.2.5"
    text = out.getvalue()
    assert f"coprssh: SSH builder #5 for {CHROOT}: queued — 2 of 2 SSH builders in use\n" in text
    assert f"coprssh: SSH builder #5 for {CHROOT}: provisioning\n" in text
    assert "\r\x1b[K| still queued, waiting 0:00" in text
    assert text.endswith("\r\x1b[K")  # the spinner line is cleared before ssh takes the terminal
    assert sshlib.ssh_argv(builder, ["-v"]) == ["ssh", "-p", "22", "root@192.0.2.5", "-v"]


def test_ssh_print_keeps_an_ipv6_address_bare(cli, ssh_build):
    build_id = ssh_build()
    make_ready(lease_of(build_id), port=22, ipv4=None, ipv6="2001:db8::7")

    result = cli.ok("ssh", str(build_id), "--print")

    assert result.stdout.strip() == "ssh -p 22 root@2001:db8::7"


def test_ssh_waits_and_gives_up_showing_why_the_builder_is_queued(cli, failed_build, key, submit):
    QuotaPolicy.objects.update_or_create(pk=1, defaults={"max_ssh_builders": 1})
    first = last_line(cli.ok("resubmit", str(failed_build), "--key", str(key[0])))
    second = cli.ok("resubmit", str(failed_build), "--key", str(key[0]))
    queued = last_line(second)
    reason = f"1 of 1 SSH builders in use: build #{first} {CHROOT} (SSH builder #{lease_of(first)})"
    # resubmit says the new builder is queued, and why, before the id.
    assert f"SSH builder #{lease_of(queued)} for {CHROOT} is queued: {reason}" in second.stdout

    result = cli("ssh", str(queued), "--print", "--timeout", "1", "--interval", "0.2")

    assert result.returncode == 1
    assert result.stdout == ""
    assert f"SSH builder #{lease_of(queued)} for {CHROOT}: queued — {reason}" in result.stderr
    assert f"SSH builder #{lease_of(queued)} is still queued after 1 s: {reason}" in result.stderr


def test_ctrl_c_stops_waiting_and_keeps_the_builder(cli, ssh_build, watching):
    build_id = ssh_build()
    lease_id = lease_of(build_id)
    waiting = watching(cli, "ssh", str(build_id), "--interval", "0.2")
    # It says what it waits for (on stderr: stdout is left to ssh) before it is interrupted.
    readable, _, _ = select.select([waiting.process.stderr], [], [], 30)
    assert readable, "ssh never said what it waits for"
    assert "provisioning" in waiting.process.stderr.readline()

    waiting.process.send_signal(signal.SIGINT)

    code, output, errors = waiting.finish()
    assert code == 130
    assert output == ""
    assert f"stopped waiting; SSH builder #{lease_id} keeps its place" in errors
    assert f"coprssh release {lease_id}" in errors
    assert "Traceback" not in errors
    assert Lease.objects.get(pk=lease_id).state == Lease.State.WAITING


def test_ssh_to_a_build_without_ssh_or_whose_builder_ended(cli, failed_build, ssh_build):
    plain = cli("ssh", str(failed_build), "--print")
    assert plain.returncode == 2
    assert f"Build #{failed_build} was built without SSH access" in plain.stderr
    assert f"coprssh resubmit {failed_build} --ssh" in plain.stderr

    build_id = ssh_build()
    cli.ok("release", str(lease_of(build_id)), "--yes")
    ended = cli("ssh", str(build_id), "--print", "--timeout", "5")
    assert ended.returncode == 1
    assert f"SSH builder #{lease_of(build_id)} has ended." in ended.stderr


def test_ssh_finds_the_builder_of_a_rerun_srpm_phase(cli, submit, key):
    build_id = submit("--chroot", CHROOT)
    cli.ok("cancel", str(build_id))  # the SRPM phase never succeeded: it runs again, with SSH
    new = last_line(cli.ok("resubmit", str(build_id), "--key", str(key[0])))
    lease = make_ready(SrpmPhase.objects.get(build_id=new).lease_id, port=2200)

    result = cli.ok("ssh", str(new), "--print", "--chroot", "srpm")

    assert result.stdout.strip() == "ssh -p 2200 root@127.0.0.1"
    assert f"SSH builder #{lease.pk} for srpm of build #{new}" in result.stderr


# --- prolong, release, quota ----------------------------------------------------------


def test_prolong_adds_hours_up_to_the_cap(cli, ssh_build):
    build_id = ssh_build()
    lease = make_ready(lease_of(build_id))

    result = cli.ok("prolong", str(lease.pk), "--hours", "2")

    assert result.stdout.startswith(f"SSH builder #{lease.pk} now expires at ")
    assert "at the latest" in result.stdout
    shown = json.loads(cli.ok("ssh-builders", "--json").stdout)[0]
    assert api_time(shown["expires_at"]) == lease.expires_at + timedelta(hours=2)
    # The build's builder, named by the build.
    by_build = json.loads(cli.ok("prolong", f"build:{build_id}", "--json").stdout)
    assert api_time(by_build["expires_at"]) == lease.expires_at + timedelta(hours=3)
    assert cli.ok("prolong", "--build", str(build_id), "--chroot", CHROOT).returncode == 0

    refused = cli("prolong", str(lease.pk), "--hours", "48")

    assert refused.returncode == 2
    assert "at the latest" in refused.stderr
    assert refused.stderr.count("at the latest") == 1
    assert Lease.objects.get(pk=lease.pk).expires_at == lease.expires_at + timedelta(hours=4)


def test_prolong_refuses_unknown_and_waiting_builders(cli, ssh_build):
    build_id = ssh_build()

    unknown = cli("prolong", "999999")
    waiting = cli("prolong", f"build:{build_id}")

    assert unknown.returncode == 2
    assert "No such SSH builder." in unknown.stderr
    assert waiting.returncode == 2
    assert "only an active lease can be prolonged" in waiting.stderr
    assert cli("prolong", "nonsense").returncode == 2


def test_release_twice_both_succeed(cli, ssh_build):
    build_id = ssh_build()
    lease = make_ready(lease_of(build_id))

    unconfirmed = cli("release", str(lease.pk))  # not a terminal, and no --yes
    assert unconfirmed.returncode == 2
    assert "confirm with --yes" in unconfirmed.stderr
    assert Lease.objects.get(pk=lease.pk).state == Lease.State.ACTIVE

    first = cli.ok("release", str(lease.pk), "--yes")
    second = cli.ok("release", f"build:{build_id}", "--yes")

    assert first.stdout.strip() == f"Released SSH builder #{lease.pk}."
    assert second.stdout.strip() == f"SSH builder #{lease.pk} has already ended."
    assert Lease.objects.get(pk=lease.pk).state == Lease.State.ENDED
    assert cli.ok("ssh-builders").stdout.strip() == "No SSH builders in use (--all shows ended ones)."
    everything = cli.ok("ssh-builders", "--all").stdout.splitlines()
    assert everything[1].split()[:4] == [str(lease.pk), f"#{build_id}", CHROOT, "ended"]


def test_audit_log_names_the_cli_as_the_source_of_its_calls(cli, ssh_build, live_server, token):
    build_id = ssh_build()
    lease = make_ready(lease_of(build_id))

    cli.ok("prolong", str(lease.pk))
    # The same call from any other client (curl, a script) is the API's.
    other = requests.post(
        f"{live_server.url}/api/v1/ssh-builders/{lease.pk}/prolong/",
        headers={"Authorization": f"Token {token}", "User-Agent": "curl/8.5.0"},
        timeout=30,
    )
    assert other.status_code == 200, other.text
    cli.ok("release", str(lease.pk), "--yes")

    events = AuditEvent.objects.filter(lease_id=lease.pk).order_by("created_at", "id")
    asked = [(e.action, e.source) for e in events if e.actor_id is not None]
    assert asked == [
        ("lease-requested", "cli"),
        ("prolonged", "cli"),
        ("prolonged", "api"),
        ("released", "cli"),
    ]
    assert {e.remote_addr for e in events if e.source == "cli"} == {"127.0.0.1"}


def test_quota_shows_what_is_in_use(cli, ssh_build):
    assert cli.ok("quota").stdout.splitlines()[0] == "SSH builders: 0 of 2 in use."
    build_id = ssh_build()
    lease_id = lease_of(build_id)

    result = cli.ok("quota")

    assert result.stdout.splitlines()[0] == (
        f"SSH builders: 1 of 2 in use: #{lease_id} (build #{build_id} {CHROOT}, provisioning)."
    )
    assert result.stdout.splitlines()[1] == (
        "Each is kept 1 h after its build ends; `coprssh prolong` adds hours, up to 48 h from when it became ready."
    )
    data = json.loads(cli.ok("quota", "--json").stdout)
    assert data["in_use"] == 1
    assert data["max_ssh_builders"] == 2
    assert [holder["id"] for holder in data["holders"]] == [lease_id]


def test_ssh_commands_exit_3_when_the_server_is_down(cli: Cli, home):
    env = clean_env(home, COPRSSH_URL=f"http://127.0.0.1:{closed_port()}", COPRSSH_TOKEN="x")

    for args in (["ssh-builders"], ["quota"], ["prolong", "1"], ["release", "1", "--yes"], ["ssh", "1"]):
        result = cli(*args, env=env)
        assert result.returncode == 3, args
        assert "connection refused" in result.stderr
