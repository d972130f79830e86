"""Fixtures of the CLI tests: a live server on the test database, and the CLI run as a real process.

The CLI is a separate program that knows nothing of Django: each test runs it with
`python -m coprssh_cli` in a subprocess, with a clean environment and HOME in tmp_path,
against pytest-django's `live_server` (a thread of this process serving the test database).
Tests that use it need `@pytest.mark.django_db(transaction=True)`, so the server thread
sees what the test wrote.
"""

from __future__ import annotations

import os
import pwd
import queue
import secrets
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from rest_framework.authtoken.models import Token

from builds.models import Chroot
from builds.services import create_project

REPO = Path(__file__).resolve().parents[2]
CLI_DIR = REPO / "cli"
HELLO_SPEC = REPO / "builds" / "demo" / "hello-coprssh.spec"
CHROOTS = ["fedora-rawhide-x86_64", "epel-9-x86_64"]
TIMEOUT = 60


def clean_env(home: Path, **values: str) -> dict[str, str]:
    """An environment with nothing from the developer's shell but PATH: no config, token or proxy."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8"}
    env["PYTHONPATH"] = str(CLI_DIR)
    env.update(values)
    return env


# Run the client with another real uid, the effective one unchanged: getuid() (whose passwd entry
# names the home ssh reads ~/.ssh from) is that account's, while files are read as before.
AS_REAL_UID = (
    "import os, runpy, sys; os.setresuid(int(sys.argv.pop(1)), -1, -1); "
    "runpy.run_module('coprssh_cli', run_name='__main__', alter_sys=True)"
)


@dataclass
class Cli:
    """Runs `coprssh` as a subprocess; `env` holds what every run gets (server, token, HOME).

    With `real_uid`, the process's real uid is that one (root only).
    """

    env: dict[str, str]
    cwd: Path
    real_uid: int | None = None

    def command(self, *args: str) -> list[str]:
        if self.real_uid is not None:
            return [sys.executable, "-c", AS_REAL_UID, str(self.real_uid), *args]
        return [sys.executable, "-m", "coprssh_cli", *args]

    def __call__(
        self, *args: str, env: dict[str, str] | None = None, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*args),
            env=self.env if env is None else env,
            cwd=self.cwd,
            input=input,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )

    def ok(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run and insist on exit code 0."""
        result = self(*args)
        assert result.returncode == 0, f"{args}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
        return result

    def start(self, *args: str) -> Running:
        """Start a long-running command (watch), reading its output as it comes."""
        process = subprocess.Popen(
            self.command(*args),
            env=self.env,
            cwd=self.cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        return Running(process)


@dataclass
class Running:
    """A CLI process whose standard output is collected line by line by a thread."""

    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    _queue: queue.Queue[str | None] = field(default_factory=queue.Queue)

    def __post_init__(self) -> None:
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, text: str, timeout: float = 30) -> str:
        """The first line (seen so far or coming) that contains `text`."""
        for line in self.lines:
            if text in line:
                return line
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            if line is None:
                break
            self.lines.append(line)
            if text in line:
                return line
        raise AssertionError(f"{text!r} never came; output so far:\n" + "\n".join(self.lines))

    def finish(self, timeout: float = 30) -> tuple[int, str, str]:
        """Wait for the exit; return the code, the whole output and the errors."""
        code = self.process.wait(timeout=timeout)
        while (line := self._queue.get(timeout=5)) is not None:
            self.lines.append(line)
        assert self.process.stderr is not None
        return code, "\n".join(self.lines), self.process.stderr.read()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture(autouse=True)
def _storage(settings, tmp_path):
    """Logs and sources of the builds of a test go to its own folder."""
    settings.COPRSSH_STORAGE_DIR = tmp_path / "storage"


@pytest.fixture
def chroots(db):
    """The chroots the tests build for (a transactional test empties the table the migration filled)."""
    for name in CHROOTS:
        os_name, version, arch = name.split("-")
        Chroot.objects.get_or_create(name=name, defaults={"os": os_name, "version": version, "arch": arch})
    return CHROOTS


@pytest.fixture
def token(user) -> str:
    """alice's API token."""
    return Token.objects.create(user=user).key


@pytest.fixture
def home(tmp_path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    return home


@pytest.fixture
def cli(live_server, token, home, tmp_path) -> Cli:
    """`coprssh` as alice, with the server and token in the environment."""
    return Cli(env=clean_env(home, COPRSSH_URL=live_server.url, COPRSSH_TOKEN=token), cwd=tmp_path)


@dataclass(frozen=True)
class Account:
    """A real account of the host, with `home` as its home in the passwd database."""

    name: str
    uid: int
    home: Path


@pytest.fixture
def account(tmp_path) -> Iterator[Account]:
    """A fresh account of the host (useradd, so root only), removed afterwards."""
    if os.geteuid() != 0:
        pytest.skip("needs root, to create an account")
    name = f"coprssh-t{secrets.token_hex(4)}"
    home = tmp_path / "passwd-home"
    home.mkdir()
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--home-dir", str(home), "--shell", "/usr/sbin/nologin"]
        + ["--user-group", "--comment", "coprssh CLI test", name],
        check=True,
        capture_output=True,
    )
    try:
        yield Account(name=name, uid=pwd.getpwnam(name).pw_uid, home=home)
    finally:
        subprocess.run(["userdel", name], check=False, capture_output=True)


@pytest.fixture
def cli_as(cli, account) -> Cli:
    """`coprssh` as alice, run with `account` as its real uid; $HOME is still the `home` fixture."""
    return Cli(env=cli.env, cwd=cli.cwd, real_uid=account.uid)


@pytest.fixture
def project(user, chroots):
    """alice/hello, building for both test chroots."""
    return create_project(owner=user, name="hello", chroots=chroots, description="Says hello.")


@pytest.fixture
def spec(tmp_path) -> Path:
    """The demo spec, as a file a user would upload."""
    target = tmp_path / "hello-coprssh.spec"
    shutil.copyfile(HELLO_SPEC, target)
    return target


@pytest.fixture
def submit(cli, project, spec) -> Callable[..., int]:
    """Submit the demo spec to alice/hello with the CLI; return the new build's id (its last line)."""

    def run(*args: str) -> int:
        result = cli.ok("build", "hello", str(spec), *args)
        return int(result.stdout.splitlines()[-1])

    return run


@pytest.fixture
def watching():
    """Start `coprssh watch` processes that are killed after the test whatever happens."""
    started: list[Running] = []

    def start(cli: Cli, *args: str) -> Running:
        running = cli.start(*args)
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()
