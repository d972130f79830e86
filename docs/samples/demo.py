"""A demo service for the samples, started as a user starts it, and a shell that talks to it.

`bin/run` runs on a data dir and ports of its own, with a stand-in for GitHub's and FAS's key
servers on loopback (every account is unknown there). Commands run in bash as a user types them,
with `coprssh` and an `ssh` that reads the walk's own config on PATH, in a home of their own.
"""

from __future__ import annotations

import json
import os
import re
import select
import shlex
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[2]
PYTHON = ROOT / ".venv" / "bin" / "python"
START_TIMEOUT = 180.0
T = TypeVar("T")


class WalkError(RuntimeError):
    """The demo did not do what the walk expects; the message says what, and where to look."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(what: str, check: Callable[[], T | None], timeout: float = 90.0, every: float = 0.5) -> T:
    """The first true value `check` returns; WalkError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise WalkError(f"gave up waiting for {what} after {timeout:.0f} s")
        time.sleep(every)


def lines(text: str) -> str:
    """Text as a file holds it: a terminal ends its lines with carriage returns too."""
    return re.sub(r"\r+(?=\n|$)", "", text)


class KeyServer:
    """GitHub's and FAS's key endpoints on loopback, where no account exists (HTTP 404)."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
                body = b"Not Found"
                self.send_response(404)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's name)
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Demo:
    """`bin/run` on `work/data`, listening on free ports."""

    def __init__(self, work: Path, keys: KeyServer) -> None:
        self.work = work
        self.data = work / "data"
        self.log = work / "run.log"
        self.port = free_port()
        self.gateway_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.keys = keys
        self.process: subprocess.Popen[bytes] | None = None
        self.token = ""

    def env(self) -> dict[str, str]:
        env = {name: value for name, value in os.environ.items() if not name.startswith("COPRSSH_")}
        env.pop("DATABASE_URL", None)  # the demo's own SQLite database in its data dir
        env.update(
            DEBUG="1",
            TZ="UTC",
            COPRSSH_DATA_DIR=str(self.data),
            COPRSSH_BIND=f"127.0.0.1:{self.port}",
            COPRSSH_PUBLIC_URL=self.url,
            COPRSSH_GATEWAY_PORT=str(self.gateway_port),
            COPRSSH_STOP_GRACE="5",
            COPRSSH_GITHUB_KEYS_URL=f"{self.keys.url}/gh/{{user}}.keys",
            COPRSSH_FAS_KEYS_URL=f"{self.keys.url}/fas/{{user}}/",
        )
        return env

    def start(self) -> None:
        self.data.mkdir(parents=True)
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                ["bin/run"],
                cwd=ROOT,
                env=self.env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for("the demo's web site", self._answers, timeout=START_TIMEOUT, every=1)
        printed = self.manage("drf_create_token", "demo")
        token = re.search(r"\b[0-9a-f]{40}\b", printed)
        if token is None:
            raise WalkError(f"no token in what drf_create_token printed: {printed!r}")
        self.token = token.group(0)
        wait_for(
            "the demo build #1", lambda: self.api("GET", "builds/1/")["state"] == "succeeded", timeout=120
        )

    def _answers(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise WalkError(f"bin/run exited early; see {self.log}")
        try:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=5) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def manage(self, *args: str) -> str:
        """Run a manage.py command against the demo's database; what it printed."""
        done = subprocess.run(
            [str(PYTHON), "manage.py", *args],
            cwd=ROOT,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode:
            raise WalkError(f"manage.py {shlex.join(args)} failed:\n{done.stderr}")
        return done.stdout

    def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """A call to /api/v1/ as the demo user; the decoded answer."""
        request = urllib.request.Request(
            f"{self.url}/api/v1/{path}",
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Token {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.load(response)
        except urllib.error.HTTPError as exc:
            raise WalkError(f"{method} {path}: HTTP {exc.code}: {exc.read()[:500]!r}") from None

    def stop(self) -> None:
        """SIGTERM, which bin/run takes as Ctrl-C: it stops what it started, the builders too.

        (Not SIGINT: a shell that starts this script in the background makes it ignore SIGINT,
        and bin/run would inherit that.)
        """
        if self.process is None or self.process.poll() is not None:
            return
        os.kill(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


class Shell:
    """Commands as the demo user types them, in a home of their own."""

    def __init__(self, work: Path, demo: Demo) -> None:
        self.demo = demo
        self.home = work / "home"
        self.cwd = work / "files"
        self.bin = work / "bin"
        for folder in (self.home / ".ssh", self.cwd, self.bin):
            folder.mkdir(parents=True, exist_ok=True)
        # ssh finds its config in the account's home as the system knows it, not in $HOME: this
        # ssh reads $HOME's, so that the walk uses its own keys and known hosts.
        wrapper = self.bin / "ssh"
        wrapper.write_text('#!/bin/sh\nexec /usr/bin/ssh -F "$HOME/.ssh/walk_config" "$@"\n')
        wrapper.chmod(0o755)

    def add_identity(self, home: Path, comment: str) -> None:
        """A key pair in `home`, and an ssh config that uses it and `home`'s known hosts."""
        ssh = home / ".ssh"
        ssh.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(ssh / "id_ed25519")],
            check=True,
        )
        (ssh / "config").touch()
        (ssh / "known_hosts").touch()
        (ssh / "walk_config").write_text(
            f"IdentityFile {ssh}/id_ed25519\n"
            "IdentitiesOnly yes\n"
            f"UserKnownHostsFile {ssh}/known_hosts\n"
            "StrictHostKeyChecking yes\n"
            "BatchMode yes\n"
            f"Include {ssh}/config\n"
        )

    def env(self, home: Path | None = None) -> dict[str, str]:
        return {
            "HOME": str(home or self.home),
            "PATH": f"{self.bin}:{ROOT / '.venv' / 'bin'}:/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8",
            "TZ": "UTC",
            "PYTHONUNBUFFERED": "1",
            "TOKEN": self.demo.token,
        }

    def run(
        self, command: str, *, timeout: float = 120, home: Path | None = None, tty: bool = False
    ) -> tuple[int, str]:
        """Run `command` in bash; its exit status and what it printed (stdout and stderr together).

        With `tty`, on a terminal of its own, as ssh runs when a user types it.
        """
        if tty:
            return self._on_terminal(command, timeout=timeout, home=home)
        done = subprocess.run(
            ["bash", "-c", command],
            cwd=self.cwd,
            env=self.env(home),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
        )
        return done.returncode, lines(done.stdout)

    def _on_terminal(self, command: str, *, timeout: float, home: Path | None) -> tuple[int, str]:
        leader, follower = os.openpty()
        process = subprocess.Popen(
            ["bash", "-c", command],
            cwd=self.cwd,
            env=self.env(home),
            stdin=follower,
            stdout=follower,
            stderr=follower,
            start_new_session=True,
        )
        os.close(follower)
        printed = b""
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                ready, _, _ = select.select([leader], [], [], 1.0)
                if not ready:
                    if process.poll() is not None:
                        break
                    continue
                try:
                    chunk = os.read(leader, 4096)
                except OSError:  # EIO: every end of the terminal is closed
                    break
                if not chunk:
                    break
                printed += chunk
            else:
                process.kill()
                raise WalkError(f"{command!r} ran longer than {timeout:.0f} s")
        finally:
            os.close(leader)
        return process.wait(timeout=30), lines(printed.decode(errors="replace"))

    def typed(self, command: str, *, shown: str | None = None, prompt: str = "$", **kwargs: Any) -> str:
        """`command` as typed at a prompt, and what it printed."""
        _, out = self.run(command, **kwargs)
        return f"{prompt} {shown or command}\n{out}"

    def answered(self, command: str, *, question: str, answer: str, shown: str, prompt: str = "#") -> str:
        """Run `command` on a terminal (`ssh -tt`), and type `answer` once it asks `question`."""
        process = subprocess.Popen(
            ["bash", "-c", command],
            cwd=self.cwd,
            env=self.env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        assert process.stdin is not None
        assert process.stdout is not None
        printed = b""
        deadline = time.monotonic() + 60
        while question.encode() not in printed:
            chunk = os.read(process.stdout.fileno(), 4096)
            if not chunk or time.monotonic() > deadline:
                process.kill()
                raise WalkError(f"{shown!r} did not ask {question!r}; it printed {printed!r}")
            printed += chunk
        process.stdin.write(answer.encode())
        process.stdin.close()
        printed += process.stdout.read()
        process.wait(timeout=60)
        return f"{prompt} {shown}\n{lines(printed.decode(errors='replace'))}"
