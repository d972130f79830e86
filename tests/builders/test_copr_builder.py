"""copr-builder, run as the builder runs it: a subprocess, its lease file, and a real HTTP service."""

from __future__ import annotations

import ast
import atexit
import functools
import io
import json
import os
import pty
import re
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from builders import copr_builder

TOKEN = "lt_9f8e7d6c5b4a39281706f5e4d3c2b1a0"


def iso(moment: datetime) -> str:
    return moment.isoformat()


def utc_text(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC"


@dataclass
class Call:
    method: str
    path: str
    authorization: str | None
    body: Any


@dataclass
class FakeLeaseAPI:
    """The three lease-token endpoints of the coprssh API, with the lease they act on."""

    expires_at: datetime
    max_expires_at: datetime
    state: str = "active"
    token: str = TOKEN
    # After release, the real service may stop accepting the token; this plays that.
    reject_after_release: bool = False
    calls: list[Call] = field(default_factory=list)
    url: str = ""

    def lease(self) -> dict[str, Any]:
        return {
            "id": 12,
            "state": self.state,
            "expires_at": iso(self.expires_at),
            "max_expires_at": iso(self.max_expires_at),
            "build": 34,
            "chroot": "fedora-rawhide-x86_64",
            "owner": "alice",
        }

    def answer(self, call: Call) -> tuple[int, dict[str, Any]]:
        if call.authorization != f"LeaseToken {self.token}":
            return 401, {"detail": "Invalid lease token."}
        if self.state != "active" and self.reject_after_release:
            return 401, {"detail": "Invalid lease token."}
        if (call.method, call.path) == ("GET", "/api/v1/lease/"):
            return 200, self.lease()
        if (call.method, call.path) == ("POST", "/api/v1/lease/prolong/"):
            hours = call.body["hours"]
            if self.state != "active":
                return 409, {"detail": "Lease #12 is ended; only an active lease can be prolonged."}
            if self.expires_at + timedelta(hours=hours) > self.max_expires_at:
                room = self.max_expires_at - self.expires_at
                message = (
                    f"Cannot prolong by {hours} h: this builder may live until "
                    f"{utc_text(self.max_expires_at)} at the latest "
                    f"(at most {room // timedelta(hours=1)} h {room.seconds // 60 % 60} min more)."
                )
                return 400, {"detail": message, "code": "invalid", "hours": [message]}
            self.expires_at += timedelta(hours=hours)
            return 200, self.lease()
        if (call.method, call.path) == ("POST", "/api/v1/lease/release/"):
            self.state = "ended"
            return 200, self.lease()
        return 404, {"detail": "Not found."}

    def posts(self) -> list[Call]:
        return [call for call in self.calls if call.method == "POST"]


class Handler(BaseHTTPRequestHandler):
    server: ThreadingHTTPServer

    def handle_call(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        api: FakeLeaseAPI = self.server.api  # type: ignore[attr-defined]
        call = Call(method, self.path, self.headers.get("Authorization"), json.loads(raw) if raw else None)
        api.calls.append(call)
        status, body = api.answer(call)
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self.handle_call("GET")

    def do_POST(self) -> None:
        self.handle_call("POST")

    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve(api: FakeLeaseAPI, handler: type[BaseHTTPRequestHandler] = Handler) -> Iterator[FakeLeaseAPI]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.api = api  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    api.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def fresh_lease_api(cls: type[FakeLeaseAPI] = FakeLeaseAPI) -> FakeLeaseAPI:
    """A lease that expires in an hour, and may be prolonged by two more."""
    now = datetime.now(UTC).replace(microsecond=0)
    return cls(expires_at=now + timedelta(hours=1), max_expires_at=now + timedelta(hours=3))


@pytest.fixture
def api() -> Iterator[FakeLeaseAPI]:
    yield from serve(fresh_lease_api())


def lease_data(api_url: str, **overrides: Any) -> dict[str, Any]:
    """The lease file as the service writes it: expiring in an hour, capped two hours later."""
    now = datetime.now(UTC).replace(microsecond=0)
    workdir = "/var/tmp/coprssh-jobs/34-fedora-rawhide-x86_64-ab12"
    data = {
        "api_url": api_url,
        "token": TOKEN,
        "lease_id": 12,
        "build_id": 34,
        "chroot": "fedora-rawhide-x86_64",
        "owner": "alice",
        "project": "alice/hello",
        "expires_at": iso(now + timedelta(hours=1)),
        "max_expires_at": iso(now + timedelta(hours=3)),
        "workdir": workdir,
        "rerun": f"cd {workdir} && rpmbuild --rebuild hello-1.0-1.src.rpm",
        "results": f"{workdir}/results",
    }
    data.update(overrides)
    return data


def write_lease(directory: Path, data: dict[str, Any]) -> Path:
    path = directory / "lease.json"
    path.write_text(json.dumps(data))
    path.chmod(0o600)
    return path


@pytest.fixture
def lease_file(tmp_path: Path, api: FakeLeaseAPI) -> Path:
    return write_lease(tmp_path, lease_data(api.url))


@pytest.fixture
def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@functools.cache
def tool() -> Path:
    """copr-builder as deploy uploads it: one executable file (removed when the tests end)."""
    directory = Path(tempfile.mkdtemp(prefix="copr-builder-"))
    atexit.register(shutil.rmtree, directory, True)
    path = directory / "copr-builder"
    path.write_bytes(copr_builder.executable())
    path.chmod(0o755)
    return path


def archived_sources() -> dict[str, str]:
    """The Python files inside the executable, by their name in the archive."""
    with zipfile.ZipFile(io.BytesIO(copr_builder.executable())) as archive:
        return {name: archive.read(name).decode() for name in archive.namelist() if name.endswith(".py")}


def run(
    state_dir: Path | None, *args: str, tz: str = "UTC", stdin: Any = subprocess.DEVNULL
) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if "proxy" not in key.lower()}
    env["TZ"] = tz
    env.pop("COPRSSH_STATE_DIR", None)
    if state_dir is not None:
        env["COPRSSH_STATE_DIR"] = str(state_dir)
    result = subprocess.run(
        [sys.executable, str(tool()), *args],
        env=env,
        stdin=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )
    # Whatever happens, the lease token is never shown, and nothing ends in a traceback.
    assert TOKEN not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return result


def saved(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def test_the_tool_is_one_file_that_python3_runs_by_itself() -> None:
    assert copr_builder.executable().startswith(b"#!/usr/bin/env python3\n")
    # Run as the builder runs it: by its name, through the shebang, no interpreter given.
    result = subprocess.run([str(tool()), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: copr-builder")


def test_the_archive_holds_every_module_of_the_tool_and_nothing_else() -> None:
    sources = Path(copr_builder.__file__).parent / "tool"
    expected = {f"tool/{path.name}" for path in sources.glob("*.py")}
    assert len(expected) > 3  # the glob still finds the modules
    assert set(archived_sources()) == {"__main__.py", *expected}


def test_the_tool_imports_only_the_standard_library_and_itself() -> None:
    # It runs on the builder, where nothing of the service is installed.
    outside = set()
    for name, text in archived_sources().items():
        for node in ast.walk(ast.parse(text, filename=name)):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                modules = [node.module or ""]
            else:
                continue
            top = {module.split(".")[0] for module in modules}
            outside |= {f"{name}: {module}" for module in top - sys.stdlib_module_names - {"tool"}}
    assert outside == set()


def test_help_says_what_the_machine_is_the_rules_and_the_expiry(lease_file: Path, api: FakeLeaseAPI) -> None:
    expires = datetime.fromisoformat(saved(lease_file)["expires_at"])
    cap = datetime.fromisoformat(saved(lease_file)["max_expires_at"])

    result = run(lease_file.parent, "help")

    assert result.returncode == 0
    out = result.stdout
    assert "lent to alice for build #34" in out
    assert "chroot fedora-rawhide-x86_64" in out
    assert "project alice/hello" in out
    assert "yours alone" in out
    assert "deleted" in out
    assert "Nothing built here is ever published" in out
    assert "only the spec file and the logs" in out
    assert "rpmbuild --rebuild hello-1.0-1.src.rpm" in out
    assert "/var/tmp/coprssh-jobs/34-fedora-rawhide-x86_64-ab12/results" in out
    assert re.search(rf"{utc_text(expires)} \(in 5\d min\)", out)
    assert f"cannot go past {utc_text(cap)}" in out
    for command in ("show", "prolong [--hours N]", "release [--yes]"):
        assert f"copr-builder {command}" in out
    assert api.calls == []  # help works without the service


def test_no_arguments_prints_help(lease_file: Path) -> None:
    assert run(lease_file.parent).stdout == run(lease_file.parent, "help").stdout


def test_times_are_shown_in_the_machines_zone_with_the_zone(lease_file: Path) -> None:
    # A POSIX TZ string needs no tzdata: Central European Time, one hour ahead of UTC (no DST in November).
    data = saved(lease_file)
    data["expires_at"] = "2026-11-25T20:00:00Z"
    lease_file.write_text(json.dumps(data))

    result = run(lease_file.parent, "help", tz="CET-1")

    assert "2026-11-25 21:00:00 CET +0100" in result.stdout


def test_show_asks_the_service_for_the_current_expiry(lease_file: Path, api: FakeLeaseAPI) -> None:
    api.expires_at += timedelta(hours=1, minutes=30)  # prolonged on the web page meanwhile

    result = run(lease_file.parent, "show")

    assert result.returncode == 0
    assert api.calls == [Call("GET", "/api/v1/lease/", f"LeaseToken {TOKEN}", None)]
    assert "#34" in result.stdout
    assert "fedora-rawhide-x86_64" in result.stdout
    assert "alice" in result.stdout
    assert "#12, active" in result.stdout
    assert f"Expires:   {utc_text(api.expires_at)} (in 2 h 29 min)" in result.stdout or (
        f"Expires:   {utc_text(api.expires_at)} (in 2 h 30 min)" in result.stdout
    )
    assert f"Cap:       {utc_text(api.max_expires_at)}" in result.stdout
    # The local copy follows, so `help` agrees afterwards.
    assert saved(lease_file)["expires_at"] == iso(api.expires_at)
    assert stat.S_IMODE(lease_file.stat().st_mode) == 0o600


def test_show_falls_back_to_saved_values_when_the_service_is_down(
    tmp_path: Path, closed_port_url: str
) -> None:
    data = lease_data(closed_port_url)
    write_lease(tmp_path, data)

    result = run(tmp_path, "show")

    assert result.returncode == 0
    assert f"Expires:   {utc_text(datetime.fromisoformat(data['expires_at']))}" in result.stdout
    assert f"cannot reach the coprssh service at {closed_port_url}" in result.stderr
    assert "may be stale" in result.stderr


@pytest.mark.parametrize(("args", "hours"), [((), 1), (("--hours", "2"), 2)])
def test_prolong_sends_the_hours_and_saves_the_new_expiry(
    lease_file: Path, api: FakeLeaseAPI, args: tuple[str, ...], hours: int
) -> None:
    new_expiry = api.expires_at + timedelta(hours=hours)

    result = run(lease_file.parent, "prolong", *args)

    assert result.returncode == 0, result.stderr
    assert api.posts() == [Call("POST", "/api/v1/lease/prolong/", f"LeaseToken {TOKEN}", {"hours": hours})]
    assert api.expires_at == new_expiry
    assert f"Prolonged by {hours} h" in result.stdout
    assert f"{utc_text(new_expiry)} (in {hours} h " in result.stdout
    data = saved(lease_file)
    assert data["expires_at"] == iso(new_expiry)
    assert data["token"] == TOKEN
    assert data["rerun"].endswith("rpmbuild --rebuild hello-1.0-1.src.rpm")
    assert stat.S_IMODE(lease_file.stat().st_mode) == 0o600
    assert [p.name for p in lease_file.parent.iterdir()] == ["lease.json"]  # no temporary file left


def test_prolong_past_the_cap_prints_the_services_reason(lease_file: Path, api: FakeLeaseAPI) -> None:
    before = lease_file.read_text()

    result = run(lease_file.parent, "prolong", "--hours", "5")

    assert result.returncode == 1
    assert (
        f"Cannot prolong by 5 h: this builder may live until {utc_text(api.max_expires_at)} at the latest"
        in result.stderr
    )
    assert lease_file.read_text() == before


@pytest.mark.parametrize("hours", ["0", "49", "two"])
def test_prolong_refuses_hours_outside_1_to_48_without_asking_the_service(
    lease_file: Path, api: FakeLeaseAPI, hours: str
) -> None:
    result = run(lease_file.parent, "prolong", "--hours", hours)

    assert result.returncode == 2
    assert "from 1 to 48" in result.stderr
    assert api.calls == []


def test_prolong_of_an_ended_lease_is_refused(lease_file: Path, api: FakeLeaseAPI) -> None:
    api.state = "ended"

    result = run(lease_file.parent, "prolong")

    assert result.returncode == 1
    assert "this lease has ended or the token is not valid" in result.stderr


def test_release_without_yes_and_without_a_terminal_refuses(lease_file: Path, api: FakeLeaseAPI) -> None:
    result = run(lease_file.parent, "release")

    assert result.returncode == 1
    assert "--yes" in result.stderr
    assert api.calls == []


def test_release_yes_ends_the_lease_once(lease_file: Path, api: FakeLeaseAPI) -> None:
    result = run(lease_file.parent, "release", "--yes")

    assert result.returncode == 0
    assert api.posts() == [Call("POST", "/api/v1/lease/release/", f"LeaseToken {TOKEN}", None)]
    assert "deleted within a couple of minutes" in result.stdout
    assert api.state == "ended"


@pytest.mark.parametrize("reject_after_release", [False, True])
def test_release_twice_is_harmless(lease_file: Path, api: FakeLeaseAPI, reject_after_release: bool) -> None:
    api.reject_after_release = reject_after_release
    assert run(lease_file.parent, "release", "--yes").returncode == 0

    again = run(lease_file.parent, "release", "--yes")

    assert again.returncode == 0
    assert "deleted within a couple of minutes" in again.stdout


@pytest.mark.parametrize(
    ("answer", "released"), [("yes\n", True), ("y\n", True), ("no\n", False), ("\n", False)]
)
def test_release_on_a_terminal_asks_first(
    lease_file: Path, api: FakeLeaseAPI, answer: str, released: bool
) -> None:
    main, secondary = pty.openpty()
    try:
        os.write(main, answer.encode())
        result = run(lease_file.parent, "release", stdin=secondary)
    finally:
        os.close(secondary)
        os.close(main)

    assert "[y/N]" in result.stdout
    assert (result.returncode == 0) is released
    assert len(api.posts()) == (1 if released else 0)


@pytest.mark.parametrize("args", [("show",), ("prolong",), ("release", "--yes")])
def test_a_wrong_token_is_reported_plainly(tmp_path: Path, api: FakeLeaseAPI, args: tuple[str, ...]) -> None:
    write_lease(tmp_path, lease_data(api.url, token="lt_not-the-right-one"))

    result = run(tmp_path, *args)

    assert result.returncode == 1
    assert "this lease has ended or the token is not valid" in result.stderr
    assert api.state == "active"
    assert "lt_not-the-right-one" not in result.stdout + result.stderr


@pytest.mark.parametrize("args", [("prolong",), ("prolong", "--hours", "3"), ("release", "--yes")])
def test_an_unreachable_service_exits_2(tmp_path: Path, closed_port_url: str, args: tuple[str, ...]) -> None:
    write_lease(tmp_path, lease_data(closed_port_url))

    result = run(tmp_path, *args)

    assert result.returncode == 2
    assert f"cannot reach the coprssh service at {closed_port_url}: " in result.stderr


def test_an_unexpected_answer_exits_2(lease_file: Path, api: FakeLeaseAPI) -> None:
    lease_file.write_text(json.dumps(lease_data(api.url + "/wrong-prefix")))

    result = run(lease_file.parent, "prolong")

    assert result.returncode == 2
    assert "unexpected answer from the coprssh service" in result.stderr
    assert "HTTP 404" in result.stderr


class RedirectHandler(Handler):
    def handle_call(self, method: str) -> None:
        api: FakeLeaseAPI = self.server.api  # type: ignore[attr-defined]
        api.calls.append(Call(method, self.path, self.headers.get("Authorization"), None))
        self.send_response(302)
        self.send_header("Location", "http://127.0.0.1:1/elsewhere/")
        self.send_header("Content-Length", "0")
        self.end_headers()


def test_a_redirect_is_not_followed_with_the_token(tmp_path: Path) -> None:
    for api in serve(fresh_lease_api(), RedirectHandler):
        write_lease(tmp_path, lease_data(api.url))

        result = run(tmp_path, "prolong")

        assert result.returncode == 2
        assert "redirected to http://127.0.0.1:1/elsewhere/" in result.stderr
        assert len(api.calls) == 1


class EchoingLeaseAPI(FakeLeaseAPI):
    """A service that puts the caller's token into its error message."""

    def answer(self, call: Call) -> tuple[int, dict[str, Any]]:
        return 400, {"detail": f"token {TOKEN} may not do that"}


def test_the_token_is_not_shown_even_if_the_service_repeats_it(tmp_path: Path) -> None:
    for api in serve(fresh_lease_api(EchoingLeaseAPI)):
        write_lease(tmp_path, lease_data(api.url))

        result = run(tmp_path, "prolong")  # run() checks that the token is absent

        assert result.returncode == 1
        assert "token [lease token] may not do that" in result.stderr


def test_times_the_service_has_not_set_yet_are_shown_as_unknown(tmp_path: Path, closed_port_url: str) -> None:
    write_lease(tmp_path, lease_data(closed_port_url, expires_at=None, max_expires_at=None))

    result = run(tmp_path, "show")

    assert result.returncode == 0
    assert "Expires:   unknown" in result.stdout
    assert "Cap:       unknown" in result.stdout


def test_missing_lease_file_exits_2(tmp_path: Path) -> None:
    result = run(tmp_path, "show")

    assert result.returncode == 2
    assert f"there is no lease file at {tmp_path / 'lease.json'}" in result.stderr


def test_without_coprssh_state_dir_the_lease_file_is_in_etc() -> None:
    if Path("/etc/coprssh/lease.json").exists():
        pytest.skip("this machine has a real lease file")

    result = run(None, "help")

    assert result.returncode == 2
    assert "/etc/coprssh/lease.json" in result.stderr


@pytest.mark.parametrize(
    ("content", "complaint"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "does not hold a JSON object"),
        (json.dumps(lease_data("ftp://example.org")), "api_url"),
        (json.dumps(lease_data("http://127.0.0.1:1", token="")), "token"),
        (json.dumps(lease_data("http://127.0.0.1:1", expires_at="tomorrow")), "expires_at"),
        (json.dumps(lease_data("http://127.0.0.1:1", expires_at="2026-11-25T20:00:00")), "expires_at"),
    ],
)
@pytest.mark.parametrize("command", ["help", "show", "prolong", "release"])
def test_a_damaged_lease_file_is_explained(
    tmp_path: Path, content: str, complaint: str, command: str
) -> None:
    write_lease(tmp_path, {}).write_text(content)

    result = run(tmp_path, command)

    assert result.returncode == 2
    assert "lease file" in result.stderr
    assert "is damaged" in result.stderr
    assert complaint in result.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_lease_file_is_explained(lease_file: Path) -> None:
    lease_file.chmod(0)

    result = run(lease_file.parent, "show")

    assert result.returncode == 2
    assert "permission denied" in result.stderr


def test_every_lease_field_copr_builder_shows_is_one_that_lease_info_carries():
    # copr-builder runs on the builder and cannot import LeaseInfo: the lease file's keys are the contract.
    from dataclasses import fields as fields_of

    from builders.services import LeaseInfo

    shown = set(re.findall(r"""field\(["']([a-z_]+)["']\)""", "".join(archived_sources().values())))
    written_by_deploy = {"lease_id", "owner"}
    assert shown - written_by_deploy == {f.name for f in fields_of(LeaseInfo)}
