"""`coprssh build|resubmit --ssh-on-failure`: keep a failed phase's builder (issue 13), the CLI as a real process.

No builder runs here: a failure, and the lease kept for SSH, are made through the ORM as the
phase services would leave them (tests/builds/test_keep_on_failure.py runs the real thing).
"""

from __future__ import annotations

import json

import pytest

from builders.models import Lease
from builds.models import Build, BuildChroot, State
from tests.cli.conftest import CHROOTS
from tests.cli.test_cli import move
from tests.cli.test_cli_ssh import keygen, last_line, make_ready

pytestmark = pytest.mark.django_db(transaction=True)

CHROOT = CHROOTS[0]


@pytest.fixture
def key(tmp_path):
    line, fingerprint = keygen(tmp_path / "keys" / "debug_key")
    return tmp_path / "keys" / "debug_key.pub", line, fingerprint


def fail_and_keep(build_id: int) -> int:
    """The build's SRPM phase succeeded and its chroot failed; the chroot's lease was kept for SSH."""
    build = Build.objects.get(pk=build_id)
    move(build.srpm, State.SUCCEEDED)
    phase = BuildChroot.objects.get(build=build)
    lease = Lease.objects.create(owner=build.submitter, arch="x86_64", sandbox="x", state=Lease.State.WAITING)
    BuildChroot.objects.filter(pk=phase.pk).update(lease=lease)
    make_ready(lease.pk)
    Lease.objects.filter(pk=lease.pk).update(ssh=True)
    move(phase, State.FAILED)
    return lease.pk


def test_build_with_ssh_on_failure_and_a_key_file(cli, project, spec, key):
    path, line, fingerprint = key

    result = cli.ok("build", "hello", str(spec), "--chroot", CHROOT, "--ssh-on-failure", "--key", str(path))

    build = Build.objects.get(pk=last_line(result))
    assert (build.ssh, build.ssh_on_failure) == (False, True)
    assert line.split()[1] in build.ssh_keys
    assert f"SSH keys from {path}: ssh-ed25519 {fingerprint}" in result.stdout
    assert f"If it fails, its builder is kept: log in with `coprssh ssh {build.pk}`" in result.stdout
    status = cli.ok("status", str(build.pk))
    assert "ssh: kept if a phase fails" in status.stdout


def test_ssh_on_failure_alone_offers_the_users_own_key(cli_as, project, spec, account):
    line, _fingerprint = keygen(account.home / ".ssh" / "id_ed25519")

    result = cli_as.ok("build", "hello", str(spec), "--ssh-on-failure", "--json")

    body = json.loads(result.stdout)
    assert body["ssh_on_failure"] is True
    assert line.split()[1] in Build.objects.get(pk=body["id"]).ssh_keys


def test_ssh_on_failure_without_any_key_says_how_to_give_one(cli_as, project, spec, account, home):
    keygen(home / ".ssh" / "id_ed25519")  # in $HOME only, where ssh does not look

    result = cli_as("build", "hello", str(spec), "--ssh-on-failure")

    assert result.returncode == 2
    assert "--ssh-on-failure needs a public key" in result.stderr
    assert "--key FILE" in result.stderr
    assert Build.objects.count() == 0


def test_key_options_without_ssh_on_failure_are_a_usage_error(cli, project, spec, key):
    result = cli("build", "hello", str(spec), "--key", str(key[0]))

    assert result.returncode == 2
    assert "key options go with --ssh-on-failure" in result.stderr
    assert Build.objects.count() == 0


def test_build_with_ssh_on_failure_and_a_github_account(cli, project, spec, key_server, tmp_path):
    line, fingerprint = keygen(tmp_path / "octocat_key", comment="octocat@github")
    key_server.github("octocat", body=f"{line}\n".encode())

    result = cli.ok("build", "hello", str(spec), "--ssh-on-failure", "--github", "octocat")

    build = Build.objects.get(pk=last_line(result))
    assert build.ssh_on_failure
    assert line.split()[1] in build.ssh_keys
    assert "SSH keys of GitHub:octocat" in result.stdout


def test_a_refused_key_line_is_reported_and_nothing_is_created(cli, project, spec, tmp_path):
    bad = tmp_path / "bad.pub"
    bad.write_text("ssh-dss AAAAB3NzaC1kc3MAAACBAP8= old@box\n")

    result = cli("build", "hello", str(spec), "--ssh-on-failure", "--key", str(bad))

    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "DSA keys (ssh-dss) are not accepted" in result.stderr
    assert Build.objects.count() == 0


def test_resubmit_with_ssh_on_failure(cli, submit, key):
    old = submit("--chroot", CHROOT)
    cli.ok("cancel", str(old))

    result = cli.ok("resubmit", str(old), "--ssh-on-failure", "--key", str(key[0]))

    new = Build.objects.get(pk=last_line(result))
    assert (new.ssh, new.ssh_on_failure, new.resubmitted_from_id) == (False, True, old)
    assert f"If it fails, its builder is kept: log in with `coprssh ssh {new.pk}`" in result.stdout


def test_resubmit_refuses_ssh_and_ssh_on_failure_together(cli, submit, key):
    old = submit("--chroot", CHROOT)
    cli.ok("cancel", str(old))

    result = cli("resubmit", str(old), "--ssh", "--ssh-on-failure", "--key", str(key[0]))

    assert result.returncode == 2
    assert "--ssh and --ssh-on-failure exclude each other" in result.stderr
    assert Build.objects.count() == 1


def test_ssh_logs_in_to_the_builder_kept_after_a_failure(cli, project, spec, key):
    build_id = last_line(
        cli.ok("build", "hello", str(spec), "--chroot", CHROOT, "--ssh-on-failure", "--key", str(key[0]))
    )
    lease_id = fail_and_keep(build_id)

    printed = cli.ok("ssh", str(build_id), "--print")

    assert printed.stdout.strip().splitlines()[-1] == "ssh -p 2222 root@127.0.0.1"
    assert f"SSH builder #{lease_id}" in printed.stderr


def test_ssh_to_a_keep_build_whose_builder_was_not_kept_says_why(cli, project, spec, key):
    build_id = last_line(
        cli.ok("build", "hello", str(spec), "--chroot", CHROOT, "--ssh-on-failure", "--key", str(key[0]))
    )
    build = Build.objects.get(pk=build_id)
    move(build.srpm, State.SUCCEEDED)
    phase = BuildChroot.objects.get(build=build)
    reason = "The builder was not kept for SSH: you are at your SSH quota (2 of 2 SSH builders in use)"
    BuildChroot.objects.filter(pk=phase.pk).update(not_kept_reason=reason)
    move(phase, State.FAILED)

    refused = cli("ssh", str(build_id), "--print")
    status = cli.ok("status", str(build_id))

    assert refused.returncode == 2
    assert "keeps a builder for SSH only when a phase fails, and none was kept" in refused.stderr
    assert f"coprssh resubmit {build_id} --ssh" in refused.stderr
    assert f"{CHROOT}: {reason}" in status.stdout


def test_watch_of_a_failed_keep_build_says_how_to_log_in(cli, project, spec, key, watching):
    build_id = last_line(
        cli.ok("build", "hello", str(spec), "--chroot", CHROOT, "--ssh-on-failure", "--key", str(key[0]))
    )
    watch = watching(cli, "watch", str(build_id), "--interval", "0.1")
    watch.wait_for(f"=== Build #{build_id} in alice/hello: pending")

    fail_and_keep(build_id)

    code, output, _errors = watch.finish()
    assert code == 1
    assert f"The failed builder is kept for you to debug: coprssh ssh {build_id}" in output
    assert "coprssh resubmit" not in output
