"""Issue #10, finding 5: the builder agent checks every redirect of a source before following it.

The service checks a source's host at submission (tests/builds/test_sources.py); the agent runs
the same rule when it fetches, on the host and on each redirect, and hands git the URL the
redirects end at with git's own redirects off. These tests run the real agent in-process against
a real HTTP server on loopback (allowed here, as COPRSSH_ALLOW_LOCAL_SOURCES allows it in tests).
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from builds.agent.coprssh_agent import Agent, PhaseFailed

DEMO_SPEC = Path(__file__).resolve().parents[2] / "builds" / "demo" / "hello-coprssh.spec"
LOCAL_ONLY = {"allow_local": True, "allow_private": False}


@dataclass
class Server:
    url: str
    root: Path
    redirects: dict[str, str]  # path prefix → Location prefix
    git_redirects: dict[str, str]  # the same, only for requests git itself makes


@pytest.fixture
def server(tmp_path) -> Iterator[Server]:
    root = tmp_path / "www"
    root.mkdir()
    redirects: dict[str, str] = {}
    git_redirects: dict[str, str] = {}

    class Handler(SimpleHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
            by_git = self.headers.get("User-Agent", "").startswith("git/")
            for prefix, target in [*redirects.items(), *(git_redirects.items() if by_git else [])]:
                if self.path.startswith(prefix):
                    self.send_response(302)
                    self.send_header("Location", target + self.path[len(prefix) :])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
            super().do_GET()

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield Server(f"http://127.0.0.1:{httpd.server_address[1]}", root, redirects, git_redirects)
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def agent(workdir: Path, source: dict, fetch: dict | None = None) -> Agent:
    workdir.mkdir(exist_ok=True)
    job = {"phase": "srpm", "source": source, "timeout": 120, "fetch": fetch or LOCAL_ONLY}
    (workdir / "job.json").write_text(json.dumps(job))
    return Agent(str(workdir))


def live_log(workdir: Path) -> str:
    return (workdir / "builder-live.log").read_text()


def status(workdir: Path) -> dict:
    return json.loads((workdir / "status.json").read_text())


# --- SRPM downloads ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("location", "message"),
    [
        ("http://10.1.2.3/x.src.rpm", "is a private address (10.1.2.3)"),
        ("http://172.16.5.4/x.src.rpm", "is a private address (172.16.5.4)"),
        ("http://192.168.1.1/x.src.rpm", "is a private address (192.168.1.1)"),
        ("http://100.64.0.9/x.src.rpm", "is a private address (100.64.0.9)"),
        ("http://[fd00::9]/x.src.rpm", "is a private address (fd00::9)"),
        ("http://198.18.0.1/x.src.rpm", "is a benchmarking address (198.18.0.1)"),
        ("http://224.0.0.251/x.src.rpm", "is a multicast address (224.0.0.251)"),
        ("ftp://ftp.example.org/x.src.rpm", "only http and https URLs can be fetched"),
    ],
)
def test_a_download_redirected_to_a_refused_host_is_not_followed(server, tmp_path, location, message):
    server.redirects["/x.src.rpm"] = location
    work = agent(tmp_path / "work", {"type": "url", "file": "x.src.rpm", "url": f"{server.url}/x.src.rpm"})

    with pytest.raises(PhaseFailed) as caught:
        work.download(f"{server.url}/x.src.rpm", str(tmp_path / "x.src.rpm"), 1024)

    assert message in str(caught.value)
    assert str(caught.value).startswith("refused to fetch")
    assert not (tmp_path / "x.src.rpm").exists()


def test_a_download_to_loopback_is_refused_without_the_local_setting(server, tmp_path):
    (server.root / "x.src.rpm").write_bytes(b"srpm")
    work = agent(tmp_path / "work", {}, fetch={"allow_local": False, "allow_private": False})

    with pytest.raises(PhaseFailed) as caught:
        work.download(f"{server.url}/x.src.rpm", str(tmp_path / "x.src.rpm"), 1024)

    assert "is a loopback address (127.0.0.1)" in str(caught.value)


def test_a_download_follows_a_redirect_to_an_allowed_host(server, tmp_path):
    (server.root / "real.src.rpm").write_bytes(b"the srpm")
    server.redirects["/x.src.rpm"] = f"{server.url}/real.src.rpm"
    work = agent(tmp_path / "work", {})

    work.download(f"{server.url}/x.src.rpm", str(tmp_path / "x.src.rpm"), 1024)

    assert (tmp_path / "x.src.rpm").read_bytes() == b"the srpm"
    assert f"Redirected to {server.url}/real.src.rpm" in live_log(tmp_path / "work")


def test_a_download_stops_after_five_redirects(server, tmp_path):
    server.redirects["/loop"] = f"{server.url}/loop/"
    work = agent(tmp_path / "work", {})

    with pytest.raises(PhaseFailed) as caught:
        work.download(f"{server.url}/loop", str(tmp_path / "x.src.rpm"), 1024)

    assert "more than 5 redirects" in str(caught.value)
    assert live_log(tmp_path / "work").count("Redirected to") == 5


def test_a_url_phase_redirected_to_a_private_host_fails_saying_why(server, tmp_path):
    server.redirects["/x.src.rpm"] = "http://10.0.0.1/x.src.rpm"
    work = tmp_path / "work"
    agent(work, {"type": "url", "file": "x.src.rpm", "url": f"{server.url}/x.src.rpm"})

    assert Agent(str(work)).main() == 1

    reported = status(work)
    assert reported["state"] == "failed"
    assert "is a private address (10.0.0.1)" in reported["reason"]


# --- git repositories ---------------------------------------------------------------------------


@pytest.fixture
def repository(server, tmp_path) -> str:
    """A git repository with the demo spec, served by dumb HTTP at /new.git."""
    if shutil.which("rpmbuild") is None:
        pytest.skip("rpmbuild is not installed")
    git = ["git", "-c", "user.name=Alice", "-c", "user.email=alice@example.com"]
    work = tmp_path / "checkout"
    (work / "pkg").mkdir(parents=True)
    shutil.copy(DEMO_SPEC, work / "pkg" / "hello-coprssh.spec")
    subprocess.run([*git, "init", "--quiet", "-b", "main", str(work)], check=True)
    subprocess.run([*git, "-C", str(work), "add", "."], check=True)
    subprocess.run([*git, "-C", str(work), "commit", "--quiet", "-m", "hello"], check=True)
    bare = server.root / "new.git"
    subprocess.run([*git, "clone", "--quiet", "--bare", str(work), str(bare)], check=True)
    subprocess.run([*git, "-C", str(bare), "update-server-info"], check=True)
    return f"{server.url}/new.git"


def scm(url: str) -> dict:
    return {"type": "scm", "clone_url": url, "committish": "main", "spec": "pkg/hello-coprssh.spec"}


def test_a_repository_redirected_to_an_allowed_host_is_cloned_from_where_it_leads(
    server, repository, tmp_path
):
    server.redirects["/old.git"] = repository
    work = tmp_path / "work"
    agent(work, scm(f"{server.url}/old.git"))

    assert Agent(str(work)).main() == 0, live_log(work)

    log = live_log(work)
    assert f"The repository is at {repository}" in log
    assert "git clone --quiet --config http.followRedirects=false" in log
    assert sorted(p.name for p in (work / "results").iterdir()) == [
        "hello-coprssh-1.0-1.src.rpm",
        "hello-coprssh.spec",
    ]


@pytest.mark.parametrize(
    "location",
    ["http://10.9.8.7/evil.git", "http://[fc00::7]/evil.git", "http://192.168.0.7/evil.git"],
)
def test_a_repository_redirected_to_a_private_host_is_not_cloned(server, repository, tmp_path, location):
    server.redirects["/evil.git"] = location
    work = tmp_path / "work"
    agent(work, scm(f"{server.url}/evil.git"))

    assert Agent(str(work)).main() == 1

    reported = status(work)
    assert reported["state"] == "failed"
    assert "is a private address" in reported["reason"]
    assert "git clone" not in live_log(work)
    assert not (work / "src" / ".git").exists()


def test_git_follows_no_redirect_of_its_own(server, repository, tmp_path):
    # A server that redirects git (and not the agent's probe) elsewhere: git must not follow,
    # as by default it would for the first request.
    (server.root / "other.git").symlink_to(server.root / "new.git")
    server.git_redirects["/new.git/info/refs"] = f"{server.url}/other.git/info/refs"
    work = tmp_path / "work"
    agent(work, scm(repository))

    assert Agent(str(work)).main() == 1

    assert "git failed" in status(work)["reason"]
    assert not (work / "results" / "hello-coprssh.spec").exists()


def test_control_git_alone_follows_that_redirect(server, repository, tmp_path):
    (server.root / "other.git").symlink_to(server.root / "new.git")
    server.git_redirects["/new.git/info/refs"] = f"{server.url}/other.git/info/refs"

    cloned = subprocess.run(
        ["git", "clone", "--quiet", "--", repository, str(tmp_path / "plain")], capture_output=True, text=True
    )

    assert cloned.returncode == 0, cloned.stderr
    assert (tmp_path / "plain" / "pkg" / "hello-coprssh.spec").is_file()
