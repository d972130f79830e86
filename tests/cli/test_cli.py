"""The `coprssh` command-line client, run as a real process against a live server.

No builder runs here: a submitted build stays pending, and the watch tests move its
phases themselves (writing the live log into storage, changing states through the ORM
and `update_build_state`) while `coprssh watch` follows them over HTTP.
"""

from __future__ import annotations

import json
import signal
import socket
import stat
from pathlib import Path

import pytest
from django.db import transaction
from rest_framework.authtoken.models import Token

from builders.models import AuditEvent
from builds import services, storage
from builds.models import Build, BuildChroot, SrpmPhase, State
from tests.cli.conftest import CHROOTS, clean_env

pytestmark = pytest.mark.django_db(transaction=True)


def move(phase: SrpmPhase | BuildChroot, state: str) -> None:
    """Move a phase to `state` and derive the build's state, as the phase services do."""
    with transaction.atomic():
        type(phase).objects.filter(pk=phase.pk).update(state=state)
        services.update_build_state(phase.build_id)


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def config_file(home: Path) -> Path:
    return home / ".config" / "coprssh" / "config.ini"


# --- login and configuration -------------------------------------------------------------


def test_login_writes_a_private_config_that_later_commands_use(cli, live_server, token, home, chroots):
    env = clean_env(home)  # neither URL nor token in the environment

    result = cli("login", "--url", live_server.url, "--token", token, env=env)

    assert result.returncode == 0, result.stderr
    assert "as alice" in result.stdout
    assert token not in result.stdout + result.stderr
    path = config_file(home)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    text = path.read_text()
    assert f"url = {live_server.url}" in text
    assert f"token = {token}" in text

    created = cli("create-project", "from-config", "--chroot", CHROOTS[0], env=env)
    assert created.returncode == 0, created.stderr
    assert "Created project alice/from-config" in created.stdout
    whoami = cli("whoami", env=env)
    assert whoami.stdout.strip() == f"alice at {live_server.url}"


def test_login_reads_the_token_from_standard_input(cli, live_server, token, home):
    result = cli("login", "--url", f"{live_server.url}/api/v1/", env=clean_env(home), input=f"{token}\n")

    assert result.returncode == 0, result.stderr
    assert f"token = {token}" in config_file(home).read_text()
    assert f"url = {live_server.url}\n" in config_file(home).read_text()


def test_login_again_keeps_the_saved_server_and_replaces_the_token(cli, live_server, token, home, other_user):
    cli.ok("login", "--url", live_server.url, "--token", token)
    bob = Token.objects.create(user=other_user).key

    result = cli("login", "--token", bob, env=clean_env(home))

    assert result.returncode == 0, result.stderr
    assert f"Logged in to {live_server.url} as bob." in result.stdout
    assert token not in config_file(home).read_text()
    assert stat.S_IMODE(config_file(home).stat().st_mode) == 0o600


def test_login_with_a_wrong_token_writes_nothing(cli, live_server, home):
    result = cli("login", "--url", live_server.url, "--token", "not-a-real-token", env=clean_env(home))

    assert result.returncode == 2
    assert "Invalid token" in result.stderr
    assert "not-a-real-token" not in result.stdout + result.stderr
    assert not config_file(home).exists()


def test_commands_without_a_config_say_how_to_log_in(cli, home):
    result = cli("status", "1", env=clean_env(home))

    assert result.returncode == 2
    assert "no server configured" in result.stderr
    assert "coprssh login" in result.stderr
    assert "Traceback" not in result.stderr


def test_environment_wins_over_the_config_file(cli, live_server, token, home, chroots):
    cli.ok("login", "--url", f"http://127.0.0.1:{closed_port()}", "--token", token, "--no-verify")

    result = cli("create-project", "from-env", "--chroot", CHROOTS[0])  # COPRSSH_URL is the live server

    assert result.returncode == 0, result.stderr


# --- projects and builds -----------------------------------------------------------------


def test_create_project(cli, chroots):
    result = cli.ok(
        "create-project", "hello", "--chroot", CHROOTS[0], "--chroot", CHROOTS[1], "--description", "Hi."
    )

    assert result.stdout.strip() == f"Created project alice/hello ({', '.join(sorted(CHROOTS))})."
    project = json.loads(cli.ok("--json", "create-project", "second", "--chroot", CHROOTS[0]).stdout)
    assert project["full_name"] == "alice/second"
    assert project["chroots"] == [CHROOTS[0]]


def test_create_project_twice_shows_the_servers_message(cli, project):
    result = cli("create-project", "hello", "--chroot", CHROOTS[0])

    assert result.returncode == 2
    assert "You already have a project named hello." in result.stderr
    assert result.stderr.count("You already have a project named hello.") == 1


def test_build_from_a_spec_file_is_stored_and_pending(cli, submit, spec, user):
    build_id = submit()

    build = Build.objects.get(pk=build_id)
    assert build.submitter == user
    assert build.project.full_name == "alice/hello"
    assert build.source_filename == "hello-coprssh.spec"
    assert storage.path(build.source_file).read_bytes() == spec.read_bytes()
    assert build.srpm.lease is not None  # it waits for a builder
    status = cli.ok("status", str(build_id)).stdout
    assert f"Build #{build_id} in alice/hello: pending" in status
    assert "submitted: " in status
    for name in ["srpm", *CHROOTS]:
        assert f"/builds/{build_id}/logs/{name}/builder-live.log" in status


def test_build_prints_its_id_last_so_watch_can_follow(cli, project, spec):
    result = cli.ok("build", "alice/hello", str(spec), "--chroot", CHROOTS[1])

    lines = result.stdout.splitlines()
    assert lines[-1].isdigit()
    assert f"Submitted build #{lines[-1]} to alice/hello ({CHROOTS[1]}): pending." in lines
    build = Build.objects.get(pk=int(lines[-1]))
    assert [bc.chroot.name for bc in build.build_chroots.all()] == [CHROOTS[1]]


def test_json_output_is_the_apis(cli, project, spec):
    built = json.loads(cli.ok("build", "hello", str(spec), "--json").stdout)
    status = json.loads(cli.ok("--json", "status", str(built["id"])).stdout)

    assert built["id"] == status["id"]
    assert status["state"] == "pending"
    assert status["project"] == "alice/hello"
    assert sorted(c["name"] for c in status["chroots"]) == sorted(CHROOTS)
    assert status["srpm"]["logs"]["builder_live"].endswith(
        f"/builds/{built['id']}/logs/srpm/builder-live.log"
    )


def test_list_builds_shows_the_projects_builds_newest_first(cli, submit):
    first, second = submit(), submit("--chroot", CHROOTS[0])

    table = cli.ok("list-builds", "alice/hello").stdout.splitlines()

    assert table[0].split() == ["ID", "STATE", "SOURCE", "CHROOTS", "SUBMITTED"]
    # Until the SRPM phase names the package, the source is shown by its file name.
    assert table[1].split()[:4] == [str(second), "pending", "hello-coprssh.spec", CHROOTS[0]]
    assert table[2].split()[:3] == [str(first), "pending", "hello-coprssh.spec"]
    assert ", ".join(sorted(CHROOTS)) in table[2]
    listed = json.loads(cli.ok("list-builds", "hello", "--json").stdout)
    assert [b["id"] for b in listed] == [second, first]
    assert json.loads(cli.ok("list-builds", "hello", "--json", "--limit", "1").stdout)[0]["id"] == second


def test_cancel_then_resubmit(cli, submit):
    build_id = submit()

    canceled = cli.ok("cancel", f"#{build_id}")
    assert canceled.stdout.strip() == f"Build #{build_id}: canceled."
    # The lease its SRPM phase waited with ends, in the audit log as asked for from the CLI.
    lease_id = SrpmPhase.objects.get(build_id=build_id).lease_id
    released = AuditEvent.objects.get(lease_id=lease_id, action=AuditEvent.Action.RELEASED)
    assert (released.source, released.actor.username) == ("cli", "alice")
    assert json.loads(cli.ok("status", str(build_id), "--json").stdout)["state"] == "canceled"
    again = cli("cancel", str(build_id))
    assert again.returncode == 2
    assert f"Build #{build_id} has already finished (canceled)." in again.stderr

    new = json.loads(cli.ok("resubmit", str(build_id), "--chroot", CHROOTS[0], "--json").stdout)
    assert new["id"] != build_id
    assert new["resubmitted_from"] == build_id
    assert [c["name"] for c in new["chroots"]] == [CHROOTS[0]]
    human = cli.ok("resubmit", str(build_id)).stdout.splitlines()
    assert human[0].startswith(f"Resubmitted build #{build_id} as build #{human[-1]} ")
    assert Build.objects.get(pk=int(human[-1])).resubmitted_from_id == build_id


def test_resubmit_refuses_to_send_a_private_key(cli, submit, tmp_path):
    private = tmp_path / "id_ed25519"
    private.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n")

    result = cli("resubmit", "1", "--ssh-key-file", str(private))

    assert result.returncode == 2
    assert "is a private key" in result.stderr
    assert "b3BlbnNzaC1rZXktdjEAAAAA" not in result.stderr


# --- errors ------------------------------------------------------------------------------


def test_unknown_project_is_refused_with_the_servers_message(cli, chroots, spec):
    result = cli("build", "alice/nothing-here", str(spec))

    assert result.returncode == 2
    assert result.stderr.strip() == "coprssh: error: No project alice/nothing-here."


def test_binary_file_is_refused_with_the_servers_message(cli, project, tmp_path):
    binary = tmp_path / "hello.spec"
    binary.write_bytes(b"Name: hello\n\x00\x01\x02\xff")

    result = cli("build", "hello", str(binary))

    assert result.returncode == 2
    assert "The file hello.spec is a binary file, not a spec file." in result.stderr
    assert not Build.objects.exists()


def test_missing_file_is_refused_before_sending(cli, project, tmp_path):
    result = cli("build", "hello", str(tmp_path / "nowhere.spec"))

    assert result.returncode == 2
    assert "cannot read" in result.stderr
    assert "No such file or directory" in result.stderr


def test_two_sources_are_a_usage_error(cli, project, spec):
    result = cli("build", "hello", str(spec), "--url", "https://example.org/hello.src.rpm")

    assert result.returncode == 2
    assert "exactly one source" in result.stderr


def test_without_a_token_writes_are_refused_as_unauthenticated(cli, live_server, home, project, spec):
    env = clean_env(home, COPRSSH_URL=live_server.url)

    create = cli("create-project", "anonymous", "--chroot", CHROOTS[0], env=env)
    build = cli("build", "hello", str(spec), env=env)  # whose "hello"? nobody is logged in

    for result in (create, build):
        assert result.returncode == 2
        assert "authentication" in result.stderr.lower()
        assert "coprssh login" in result.stderr
        assert "Traceback" not in result.stderr


def test_a_refused_token_is_never_printed(cli, live_server, home, project):
    env = clean_env(home, COPRSSH_URL=live_server.url, COPRSSH_TOKEN="0123456789abcdef-secret")

    result = cli("list-builds", "hello", env=env)

    assert result.returncode == 2
    assert "Invalid token." in result.stderr
    assert "the API token was refused" in result.stderr
    assert "0123456789abcdef-secret" not in result.stdout + result.stderr


def test_server_down_exits_3_saying_it_cannot_reach_it(cli, home):
    url = f"http://127.0.0.1:{closed_port()}"

    result = cli("status", "1", env=clean_env(home, COPRSSH_URL=url, COPRSSH_TOKEN="x"))

    assert result.returncode == 3
    assert result.stderr.strip() == f"coprssh: error: cannot reach {url}: connection refused"


def test_unknown_build_is_a_404(cli):
    result = cli("status", "999999")

    assert result.returncode == 2
    assert "No such build." in result.stderr


# --- watch -------------------------------------------------------------------------------


def test_watch_follows_the_live_logs_until_the_build_succeeds(cli, submit, watching):
    build_id = submit("--chroot", CHROOTS[0])
    build = Build.objects.get(pk=build_id)
    srpm, chroot = build.srpm, build.build_chroots.get()
    watch = watching(cli, "watch", str(build_id), "--interval", "0.1")
    watch.wait_for(f"=== Build #{build_id} in alice/hello: pending")

    # Each step waits until watch has shown the one before, as a real build is slower than this.
    move(srpm, State.RUNNING)
    watch.wait_for("--- srpm: running")
    offset = storage.write_at(srpm.storage_dir, storage.LIVE_LOG, 0, b"Executing(%prep)\n")
    watch.wait_for("[srpm] Executing(%prep)")
    storage.write_at(srpm.storage_dir, storage.LIVE_LOG, offset, b"Wrote: hello-coprssh-1.0-1.src.rpm\n")
    move(srpm, State.SUCCEEDED)
    move(chroot, State.RUNNING)
    watch.wait_for(f"--- {CHROOTS[0]}: running")
    offset = storage.write_at(
        chroot.storage_dir, storage.LIVE_LOG, 0, b"rpmbuild --rebuild\n\x1b]0;owned\x07"
    )
    watch.wait_for(f"[{CHROOTS[0]}] rpmbuild --rebuild")
    # The last line has no newline: it is shown once complete, or when its phase ends.
    storage.write_at(chroot.storage_dir, storage.LIVE_LOG, offset, b"Succeeded.")
    move(chroot, State.SUCCEEDED)

    code, output, errors = watch.finish()
    assert code == 0, errors
    assert output.splitlines() == [
        f"=== Build #{build_id} in alice/hello: pending",
        "--- srpm: pending",
        f"--- {CHROOTS[0]}: pending",
        f"=== Build #{build_id}: running",
        "--- srpm: running",
        "[srpm] Executing(%prep)",
        "[srpm] Wrote: hello-coprssh-1.0-1.src.rpm",
        "--- srpm: succeeded",
        f"--- {CHROOTS[0]}: running",
        f"[{CHROOTS[0]}] rpmbuild --rebuild",
        # A build's output cannot drive the terminal of whoever watches it.
        f"[{CHROOTS[0]}] ^[]0;owned^GSucceeded.",
        f"--- {CHROOTS[0]}: succeeded",
        f"=== Build #{build_id}: succeeded",
    ]


def test_watch_exits_1_when_the_build_fails(cli, submit, watching):
    build_id = submit()
    srpm = Build.objects.get(pk=build_id).srpm
    watch = watching(cli, "watch", str(build_id), "--interval", "0.1")
    watch.wait_for(f"=== Build #{build_id} in alice/hello: pending")

    storage.write_at(srpm.storage_dir, storage.LIVE_LOG, 0, b"error: line 3: Unknown tag: Nme:\n")
    move(srpm, State.RUNNING)
    watch.wait_for("[srpm] error: line 3: Unknown tag: Nme:")
    move(srpm, State.FAILED)

    code, output, _errors = watch.finish()
    assert code == 1
    assert "--- srpm: failed" in output
    assert f"=== Build #{build_id}: failed" in output
    assert f"coprssh resubmit {build_id}" in output


def test_watch_exits_1_for_a_canceled_build_and_shows_the_backend_log(cli, submit):
    build_id = submit()
    cli.ok("cancel", str(build_id))

    result = cli("watch", str(build_id), "--backend-log", "--json")

    assert result.returncode == 1
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert {"event": "build", "id": build_id, "state": "canceled"} in events
    backend = [e["line"] for e in events if e["event"] == "log" and e["log"] == "backend.log"]
    assert any("Canceled by alice." in line for line in backend)
    assert events[-1]["event"] == "finished"
    assert events[-1]["build"]["state"] == "canceled"


def test_watch_shows_a_log_longer_than_one_answer_whole(cli, submit):
    build_id = submit()
    srpm = Build.objects.get(pk=build_id).srpm
    # The server answers at most 4 MiB at a time.
    lines = [f"line {number:07d}" for number in range(400_000)]
    storage.write_at(srpm.storage_dir, storage.LIVE_LOG, 0, "".join(f"{line}\n" for line in lines).encode())
    move(srpm, State.FAILED)

    result = cli("watch", str(build_id))

    assert result.returncode == 1
    shown = [
        line.removeprefix("[srpm] ") for line in result.stdout.splitlines() if line.startswith("[srpm] ")
    ]
    assert shown == lines


def test_build_with_watch_follows_the_new_build(cli, project, spec, watching):
    watch = watching(cli, "build", "hello", str(spec), "--chroot", CHROOTS[0], "--watch", "--interval", "0.1")
    line = watch.wait_for("Submitted build #")
    build = Build.objects.get(pk=int(line.split("#")[1].split()[0]))
    watch.wait_for(f"=== Build #{build.pk} in alice/hello: pending")

    move(build.srpm, State.SUCCEEDED)
    move(build.build_chroots.get(), State.FAILED)

    code, output, _errors = watch.finish()
    assert code == 1
    assert f"=== Build #{build.pk}: failed" in output


def test_ctrl_c_stops_watching_cleanly(cli, submit, watching):
    build_id = submit()
    watch = watching(cli, "watch", str(build_id), "--interval", "0.1")
    watch.wait_for(f"=== Build #{build_id} in alice/hello: pending")

    watch.process.send_signal(signal.SIGINT)

    code, _output, errors = watch.finish()
    assert code == 130
    assert f"stopped watching build #{build_id}" in errors
    assert "Traceback" not in errors
    assert Build.objects.get(pk=build_id).state == State.PENDING
