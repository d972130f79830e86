"""The SSH walk as a user makes it: resubmit with SSH, log in with OpenSSH, copr-builder, release.

Everything is real: the farm's local sshd builders (tests/builds/flow.py), rpmbuild, the `ssh`
client with a pinned host key and a fresh key, and copr-builder talking to the API over HTTP
(pytest-django's live server, which COPRSSH_PUBLIC_URL points at before the lease file is written).
"""

from __future__ import annotations

import json
import re
import shlex
import socket
import subprocess
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from builders import services as builders
from builders.models import AuditEvent, Builder, Lease
from builders.providers.local import LocalProvider
from builders.services.machines import machine_of
from builds.models import FINAL_STATES, Build, BuildChroot, SrpmPhase, State
from builds.services import cancel_build, resubmit_with_ssh
from builds.ssh_view import SshBuilderView, ssh_builder_of_phase
from keys.parser import parse_keys
from keys.services import KeyInputError, add_saved_key, resolve_keys
from tests.builds.flow import *  # noqa: F403 - the fixtures
from tests.builds.flow import (
    CHROOTS,
    SPECS,
    make_project,
    processes_in,
    read_log,
    stored,
    submit_file,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

USER_COMMENT = "alice-laptop-do-not-copy-me"


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user("alice")


@pytest.fixture
def api(live_server, settings) -> str:
    """copr-builder on the builders calls the real API: the lease file is written with this URL."""
    settings.COPRSSH_PUBLIC_URL = live_server.url
    return live_server.url


# -- keys and the OpenSSH client ----------------------------------------------------------------


@dataclass(frozen=True)
class Key:
    """A fresh ed25519 pair written by ssh-keygen."""

    path: Path
    line: str

    @property
    def blob(self) -> str:
        return self.line.split()[1]


def new_key(directory: Path, name: str, comment: str = USER_COMMENT) -> Key:
    path = directory / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return Key(path=path, line=Path(f"{path}.pub").read_text().strip())


@pytest.fixture
def key(tmp_path: Path) -> Key:
    return new_key(tmp_path, "id_ed25519")


def known_hosts(directory: Path, view: SshBuilderView, builder: Builder) -> Path:
    """A known_hosts file with only the builder's pinned host key, as the build page shows it."""
    key_type, blob = builder.host_key.split()[:2]
    path = directory / f"known_hosts-{view.id}"
    path.write_text(f"[{view.host}]:{view.port} {key_type} {blob}\n")
    return path


def ssh(
    key: Key, view: SshBuilderView, hosts: Path, command: str, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """Run `command` on the builder with the real OpenSSH client, nothing of ~/.ssh involved."""
    argv = [
        "ssh",
        "-F",
        "/dev/null",
        "-o",
        "BatchMode=yes",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        f"UserKnownHostsFile={hosts}",
        "-o",
        "GlobalKnownHostsFile=/dev/null",
        "-o",
        "ConnectTimeout=10",
        "-i",
        str(key.path),
        "-p",
        str(view.port),
        f"{view.user}@{view.host}",
        command,
    ]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def copr_builder(key: Key, view: SshBuilderView, hosts: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return ssh(key, view, hosts, '"$COPRSSH_STATE_DIR"/copr-builder ' + " ".join(map(shlex.quote, args)))


# -- a GitHub stand-in -------------------------------------------------------------------------


@pytest.fixture
def github(key_server, tmp_path: Path) -> Key:
    """`GitHub:alice` served from loopback: one fresh key, as github.com/alice.keys serves it."""
    published_key = new_key(tmp_path, "github_ed25519", comment="")
    key_server.github("alice", body=f"{published_key.line}\n".encode())
    return published_key


# -- driving the farm ----------------------------------------------------------------------------


def run_until_kept(farm, phase: SrpmPhase | BuildChroot) -> Lease:
    """Run the machine until the SSH phase has finished and its builder is kept for debugging."""
    model = type(phase)

    def kept() -> bool:
        current = model.objects.select_related("lease").get(pk=phase.pk)
        return current.state in FINAL_STATES and current.lease.state == Lease.State.ACTIVE

    farm.run(kept, timeout=30)
    # Then what finishing queued (the lease file refreshed with the new expiry).
    while any(name == "builders.tasks.refresh_lease_file" for name in farm.names()):
        farm.step()
    phase.refresh_from_db()
    return Lease.objects.select_related("builder").get(pk=phase.lease_id)


def storage_files(*directories: str) -> list[str]:
    return sorted(p.name for d in directories for p in stored(d).rglob("*") if p.is_file())


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


# -- the walk ------------------------------------------------------------------------------------


def test_ssh_walk_from_a_failed_check_to_a_released_builder(farm, alice, api, github, key, tmp_path):
    project = make_project(alice, chroots=[CHROOTS[0]])
    original = farm.finish(submit_file(project, alice, SPECS / "check-fails.spec"))
    assert original.state == State.FAILED
    [original_chroot] = original.build_chroots.all()
    before = (
        Build.objects.filter(pk=original.pk).values().get(),
        list(BuildChroot.objects.filter(build=original).values()),
        storage_files(original.srpm.storage_dir, original_chroot.storage_dir),
    )
    saved = new_key(tmp_path, "saved_ed25519")
    add_saved_key(user=alice, title="work laptop", public_key=saved.line)
    # A hostile line is refused before anything is deployed.
    with pytest.raises(KeyInputError, match="line 1"):
        resolve_keys(text=f'command="touch /tmp/pwned" {key.line}', user=alice)
    resolved = resolve_keys(text=f"{key.line}\nGitHub:alice", user=alice, use_saved_keys=True)
    assert [k.data for k in resolved.keys] == [key.blob, github.blob, saved.blob]

    ssh_build = resubmit_with_ssh(build=original, user=alice, keys=resolved.keys)

    assert (ssh_build.ssh, ssh_build.resubmitted_from_id) == (True, original.pk)
    [phase] = ssh_build.build_chroots.select_related("chroot")
    lease = run_until_kept(farm, phase)
    assert phase.state == State.FAILED
    assert "check: expected 2, got 3" in read_log(phase.storage_dir, "builder-live.log")
    builder = lease.builder
    assert builder.single_use
    assert builder.reuse_count == 0
    # The hour is counted from the end of the build, not from the start of the lease.
    assert abs(lease.expires_at - (phase.ended_at + timedelta(hours=1))) < timedelta(seconds=2)
    assert lease.max_expires_at == lease.started_at + timedelta(hours=48)

    # What the build page, the API and the CLI show.
    view = ssh_builder_of_phase(phase, viewer=alice)
    assert view is not None
    assert view.state == "ready"
    assert (view.user, view.host) == (builder.login_user, "127.0.0.1")
    assert view.ssh_command == f"ssh -p {view.port} {view.user}@127.0.0.1"
    assert view.key_fingerprints == [k.fingerprint for k in resolved.keys]
    backend = read_log(phase.storage_dir, "backend.log")
    # backend.log is public: it says that SSH access was set up, not where or for which keys.
    assert "SSH access was set up for the owner; connection details are on the build page" in backend
    assert view.ssh_command not in backend
    assert f":{view.port}" not in backend
    assert not any(fingerprint in backend for fingerprint in view.key_fingerprints)
    assert view.host_key_fingerprint not in backend
    assert re.search(r"kept for debugging until \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+", backend)
    assert "copr-builder help`" in backend

    # authorized_keys: our options, the blob, the lease comment; nothing the user wrote.
    provider = LocalProvider(farm.root)
    authorized = Path(provider.authorized_keys_path(machine_of(builder))).read_text()
    expiry = r'no-agent-forwarding,expiry-time="\d{14}Z"'
    for blob in (key.blob, github.blob, saved.blob):
        assert re.search(rf"^{expiry} ssh-ed25519 {re.escape(blob)} lease-{lease.pk}$", authorized, re.M)
    assert "command=" not in authorized
    assert USER_COMMENT not in authorized
    assert "GitHub:alice" not in authorized
    assert "work laptop" not in authorized

    hosts = known_hosts(tmp_path, view, builder)
    assert ssh(key, view, hosts, "true").returncode == 0
    stranger = new_key(tmp_path, "stranger_ed25519")
    refused = ssh(stranger, view, hosts, "true")
    assert refused.returncode == 255
    assert "Permission denied" in refused.stderr
    # The saved key logs in as well.
    assert ssh(saved, view, hosts, "true").returncode == 0
    # As the panel says, `copr-builder` is on the login's PATH.
    assert ssh(key, view, hosts, "command -v copr-builder").stdout.strip().endswith("/copr-builder")

    shown = copr_builder(key, view, hosts, "show")
    assert shown.returncode == 0, shown.stderr
    assert f"Build:     #{ssh_build.pk}" in shown.stdout
    assert f"Chroot:    {CHROOTS[0]}" in shown.stdout
    assert f"Lease:     #{lease.pk}, active" in shown.stdout
    assert re.search(r"Expires:   \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+.* \(in (59|60) min\)", shown.stdout)

    # The rerun command of the lease file (`copr-builder help` shows it) builds again, failing the same way.
    info = json.loads(ssh(key, view, hosts, 'cat "$COPRSSH_STATE_DIR"/lease.json').stdout)
    assert (info["api_url"], info["workdir"]) == (api, phase.remote_dir)
    rerun = ssh(key, view, hosts, f"{info['rerun']} ; echo exit=$?")
    assert "exit=1" in rerun.stdout
    assert (
        Path(phase.remote_dir, "builder-live.log")
        .read_text()
        .count("Failed: rpmbuild failed with exit code 1")
        == 2
    )

    expires = lease.expires_at
    prolonged = copr_builder(key, view, hosts, "prolong", "--hours", "2")
    assert prolonged.returncode == 0, prolonged.stderr
    assert "Prolonged by 2 h: this builder now expires at" in prolonged.stdout
    lease.refresh_from_db()
    assert lease.expires_at == expires + timedelta(hours=2)

    too_long = copr_builder(key, view, hosts, "prolong", "--hours", "48")
    assert too_long.returncode == 1
    assert "at the latest" in too_long.stderr
    lease.refresh_from_db()
    assert lease.expires_at == expires + timedelta(hours=2)

    released = copr_builder(key, view, hosts, "release", "--yes")
    assert released.returncode == 0, released.stderr
    assert "Released: the lease has ended" in released.stdout
    lease.refresh_from_db()
    assert (lease.state, lease.end_reason) == (Lease.State.ENDED, Lease.EndReason.RELEASED)
    events = AuditEvent.objects.filter(lease=lease, source="builder").values_list("action", flat=True)
    assert sorted(events) == ["prolong-refused", "prolonged", "released"]
    # The token died with the lease; releasing again is harmless.
    assert copr_builder(key, view, hosts, "release", "--yes").returncode == 0
    assert copr_builder(key, view, hosts, "show").returncode == 1

    assert "builders.tasks.delete_builder" in farm.names()
    farm.run(lambda: Builder.objects.get(pk=builder.pk).state == Builder.State.TERMINATED, timeout=15)
    assert wait_for(lambda: not port_open(view.port), timeout=5), "the builder's sshd still answers"
    sandbox = provider.state_dir(machine_of(builder))
    assert wait_for(lambda: not _sshd_of(sandbox), timeout=5), "the builder's sshd still runs"
    assert not Path(sandbox).exists()

    # Only logs (and the original's SRPM, reused as it was) are in the SSH build's storage.
    ssh_build.refresh_from_db()
    assert storage_files(phase.storage_dir) == ["backend.log", "builder-live.log"]
    srpm_dir = stored(ssh_build.srpm.storage_dir)
    rpms = sorted(p.name for p in srpm_dir.rglob("*.rpm"))
    assert rpms == [stored(original.srpm_file).name]
    assert (srpm_dir / rpms[0]).read_bytes() == stored(original.srpm_file).read_bytes()
    # The original build is untouched.
    after = (
        Build.objects.filter(pk=original.pk).values().get(),
        list(BuildChroot.objects.filter(build=original).values()),
        storage_files(original.srpm.storage_dir, original_chroot.storage_dir),
    )
    assert after == before


def test_ssh_build_of_a_failed_srpm_phase_has_the_sources_in_place(farm, alice, api, key, tmp_path):
    project = make_project(alice, chroots=[CHROOTS[0]])
    original = farm.finish(submit_file(project, alice, SPECS / "broken.spec"))
    assert (original.state, original.srpm.state) == (State.FAILED, State.FAILED)

    ssh_build = resubmit_with_ssh(build=original, user=alice, keys=parse_keys(key.line).keys)

    srpm = ssh_build.srpm
    lease = run_until_kept(farm, srpm)
    assert srpm.state == State.FAILED
    assert [bc.state for bc in ssh_build.build_chroots.all()] == [State.SKIPPED]
    assert "Unclosed %if" in read_log(srpm.storage_dir, "builder-live.log")
    view = ssh_builder_of_phase(srpm, viewer=alice)
    assert view is not None
    assert view.chroot == "srpm"
    hosts = known_hosts(tmp_path, view, lease.builder)

    lease_file = ssh(key, view, hosts, 'cat "$COPRSSH_STATE_DIR"/lease.json')
    assert lease_file.returncode == 0, lease_file.stderr
    info = json.loads(lease_file.stdout)
    assert (info["build_id"], info["chroot"], info["workdir"]) == (ssh_build.pk, "srpm", srpm.remote_dir)
    listing = ssh(key, view, hosts, f"ls {shlex.quote(info['workdir'])}")
    assert listing.returncode == 0, listing.stderr
    assert "broken.spec" in listing.stdout.split()

    helped = copr_builder(key, view, hosts, "help")
    assert helped.returncode == 0, helped.stderr
    assert info["rerun"] in helped.stdout
    assert info["token"] not in helped.stdout
    # The rerun command copr-builder gives runs the phase again, with the same error.
    rerun = ssh(key, view, hosts, info["rerun"])
    assert rerun.returncode == 1
    live = ssh(key, view, hosts, f"cat {shlex.quote(info['workdir'])}/builder-live.log")
    assert live.stdout.count("Unclosed %if") == 2


# -- regressions found by the walk ------------------------------------------------------------


def test_lease_file_on_the_builder_shows_the_expiry_set_when_the_build_ended(farm, alice, api, key, tmp_path):
    project = make_project(alice, chroots=[CHROOTS[0]])
    original = farm.finish(submit_file(project, alice, SPECS / "broken.spec"))
    ssh_build = resubmit_with_ssh(build=original, user=alice, keys=parse_keys(key.line).keys)
    srpm = ssh_build.srpm
    lease = run_until_kept(farm, srpm)
    view = ssh_builder_of_phase(srpm, viewer=alice)
    hosts = known_hosts(tmp_path, view, lease.builder)

    # Nothing ran `copr-builder show` yet (it would refresh the file from the API).
    info = json.loads(ssh(key, view, hosts, 'cat "$COPRSSH_STATE_DIR"/lease.json').stdout)

    assert lease.expires_at > lease.started_at + timedelta(hours=1)
    assert datetime.fromisoformat(info["expires_at"]) == lease.expires_at


def test_copr_builder_runs_by_its_name_as_the_build_page_says(farm, alice, api, key, tmp_path):
    project = make_project(alice, chroots=[CHROOTS[0]])
    original = farm.finish(submit_file(project, alice, SPECS / "broken.spec"))
    ssh_build = resubmit_with_ssh(build=original, user=alice, keys=parse_keys(key.line).keys)
    lease = run_until_kept(farm, ssh_build.srpm)
    view = ssh_builder_of_phase(ssh_build.srpm, viewer=alice)
    hosts = known_hosts(tmp_path, view, lease.builder)

    helped = ssh(key, view, hosts, "copr-builder help")

    assert helped.returncode == 0, helped.stderr
    assert f"build #{ssh_build.pk}" in helped.stdout


def test_releasing_an_ssh_builder_mid_build_stops_its_build(farm, alice, key):
    project = make_project(alice, chroots=[CHROOTS[0]])
    original = submit_file(project, alice, SPECS / "slow.spec")
    [first] = original.build_chroots.all()
    farm.run_until_running(first)
    cancel_build(build_id=original.pk, user=alice)
    original = farm.finish(original)
    ssh_build = resubmit_with_ssh(build=original, user=alice, keys=parse_keys(key.line).keys)
    [phase] = ssh_build.build_chroots.all()
    farm.run(lambda: "slow: building for a minute" in read_log(phase.storage_dir, "builder-live.log"))
    phase.refresh_from_db()
    assert processes_in(phase.remote_dir)

    lease = builders.release_lease(lease_id=phase.lease_id, via=builders.Via(user=alice, source="web"))
    farm.run(lambda: Builder.objects.get(pk=lease.builder_id).state == Builder.State.TERMINATED, timeout=15)

    assert wait_for(lambda: not processes_in(phase.remote_dir), timeout=5), (
        "the build still runs on the host after its builder was deleted"
    )


def test_deleting_an_ssh_builder_removes_its_work_directory(farm, alice, key):
    project = make_project(alice, chroots=[CHROOTS[0]])
    original = farm.finish(submit_file(project, alice, SPECS / "broken.spec"))
    ssh_build = resubmit_with_ssh(build=original, user=alice, keys=parse_keys(key.line).keys)
    srpm = ssh_build.srpm
    lease = run_until_kept(farm, srpm)
    assert Path(srpm.remote_dir, "broken.spec").is_file()

    builders.release_lease(lease_id=lease.pk, via=builders.Via(user=alice, source="web"))
    farm.run(lambda: Builder.objects.get(pk=lease.builder_id).state == Builder.State.TERMINATED, timeout=15)

    assert not Path(srpm.remote_dir).exists()


def _sshd_of(sandbox: str) -> list[int]:
    """Live processes of the builder's sshd (listener or sessions): they name its sshd_config."""
    config = f"{sandbox}/sshd_config"
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError):
            continue
        if state not in ("Z", "X") and config in cmdline:
            found.append(int(entry.name))
    return found
