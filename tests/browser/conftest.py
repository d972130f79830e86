"""The browser suite: a real Chromium (Debian's, driven by Playwright) against a real demo.

The service is what a new user starts: `bin/run` with its own data dir and ports, its demo data,
task cluster, SSH gateway and local builders, in a session of its own. GitHub's and FAS's key
endpoints are the only stand-ins (tests/fakes.py's loopback server). Tests reach the service only
as a user does, through the browser (and, to set up users, through `manage.py` like an operator).

Every test here is marked `browser`: `TEST_DATABASES=sqlite bin/test -m browser` runs them alone.
They run in the SQLite pass of bin/test, the demo's own database; with
COPRSSH_BROWSER_ON_POSTGRES=1 the PostgreSQL pass runs them too, each service on a database of its
own made for it.

Screenshots of the main pages go to COPRSSH_SCREENSHOTS (default: the session's temporary
directory); `bin/screenshots` points it at docs/images/, where the docs show them.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import KeyServer, serving_keys
from tests.leaks import remove_leftovers

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("COPRSSH_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
START_TIMEOUT = 180.0
STOP_TIMEOUT = 90.0
# How long Playwright waits for an element or a navigation before failing the test.
UI_TIMEOUT_MS = 20_000
# The size of every page and screenshot.
VIEWPORT = {"width": 1280, "height": 860}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    browser_items = [item for item in items if here in Path(str(item.path)).parents]
    for item in browser_items:
        item.add_marker(pytest.mark.browser)
        item.add_marker(pytest.mark.slow)
    on_postgres = bool(os.environ.get("DATABASE_URL"))
    if on_postgres and os.environ.get("COPRSSH_BROWSER_ON_POSTGRES") != "1" and browser_items:
        # One pass is enough for pages; the demo's own database is SQLite.
        config.hook.pytest_deselected(items=browser_items)
        items[:] = [item for item in items if item not in browser_items]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return bool(response.status == 200)
    except (OSError, http.client.HTTPException):  # not up yet, or something else on that port
        return False


@dataclass
class Service:
    """A running demo: its address, data dir, environment and the accounts' passwords."""

    process: subprocess.Popen[bytes]
    url: str
    data: Path
    env: dict[str, str]
    log: Path
    gateway_port: int
    passwords: dict[str, str] = field(default_factory=dict)

    def text(self, tail: int = 8000) -> str:
        return self.log.read_text(errors="replace")[-tail:]

    def manage(self, *args: str, stdin: str | None = None, timeout: float = 60) -> str:
        """Run a manage.py command on the service's database, as an operator would; its output."""
        done = subprocess.run(
            [str(ROOT / ".venv/bin/python"), "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert done.returncode == 0, f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def shell(self, code: str) -> str:
        """Run Python in `manage.py shell` on the service's database; what it prints."""
        return self.manage("shell", "--no-imports", "-c", code)

    def new_user(self, prefix: str) -> tuple[str, str]:
        """A fresh account (its own SSH quota, projects and keys): (user name, password)."""
        name = f"{prefix}{secrets.token_hex(3)}"
        password = secrets.token_urlsafe(12)
        self.shell(
            "from django.contrib.auth import get_user_model\n"
            f"get_user_model().objects.create_user({name!r}, {name + '@localhost'!r}, {password!r})\n"
        )
        return name, password


def _postgres_database(env: dict[str, str]) -> Iterator[str | None]:
    """With DATABASE_URL set, a database of the service's own on that server, dropped afterwards."""
    url = os.environ.get("DATABASE_URL")
    if not url:
        yield None
        return
    import psycopg

    name = f"coprssh_browser_{secrets.token_hex(4)}"
    base, _, _ = url.rpartition("/")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def keys_online() -> Iterator[KeyServer]:
    """GitHub's and FAS's key endpoints, served on loopback for the whole session."""
    with serving_keys() as server:
        yield server


@pytest.fixture(scope="session")
def service(tmp_path_factory: pytest.TempPathFactory, keys_online: KeyServer) -> Iterator[Service]:
    """`bin/run` as a user starts it, on its own data dir and ports; stopped with Ctrl-C at the end."""
    root = tmp_path_factory.mktemp("demo")
    data = root / "data"
    data.mkdir()
    port = _free_port()
    gateway_port = _free_port()
    env = {name: value for name, value in os.environ.items() if not name.startswith("COPRSSH_")}
    env.pop("DATABASE_URL", None)
    env.update(
        COPRSSH_DATA_DIR=str(data),
        COPRSSH_BIND=f"127.0.0.1:{port}",
        COPRSSH_STOP_GRACE="5",
        COPRSSH_GATEWAY_PORT=str(gateway_port),
        COPRSSH_GITHUB_KEYS_URL=keys_online.github_url,
        COPRSSH_FAS_KEYS_URL=keys_online.fas_url,
        # The demo's mails go to the cluster's console: the test log shows them.
        PYTHONUNBUFFERED="1",
    )
    databases = contextlib.contextmanager(_postgres_database)(env)
    with databases as database_url:
        if database_url:
            env["DATABASE_URL"] = database_url
        # What `manage.py` sees when a test runs one on this service (bin/run sets these itself).
        manage_env = dict(env, DEBUG="1", COPRSSH_PUBLIC_URL=f"http://127.0.0.1:{port}")
        log = root / "bin-run.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                ["bin/run"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        running = Service(
            process=process,
            url=f"http://127.0.0.1:{port}",
            data=data,
            env=manage_env,
            log=log,
            gateway_port=gateway_port,
        )
        try:
            _wait_until_up(running)
            yield running
        finally:
            _stop(running)


def _wait_until_up(service: Service) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            pytest.fail(f"bin/run exited early:\n{service.text()}")
        text = service.text(200_000)
        for name, password in re.findall(r"^(\w+): created, .*password: (\S+)$", text, re.MULTILINE):
            service.passwords[name] = password
        if {"demo", "operator"} <= service.passwords.keys() and _answers(f"{service.url}/accounts/login/"):
            return
        time.sleep(0.5)
    pytest.fail(f"the demo did not answer within {START_TIMEOUT} s:\n{service.text()}")


def _stop(service: Service) -> None:
    """Ctrl-C, as the terminal sends it; then make sure nothing of the demo is left running."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(service.process.pid, signal.SIGINT)
    try:
        service.process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(service.process.pid, signal.SIGKILL)
        service.process.wait(timeout=10)
    remove_leftovers(service.data)


# --- Playwright: the system's Chromium, no download ---------------------------------------


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: install Debian's `chromium` (or set COPRSSH_CHROMIUM)")
    args = ["--disable-dev-shm-usage"]
    if os.geteuid() == 0:
        args.append("--no-sandbox")  # Chromium's own sandbox refuses to run as root
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": args}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args: dict[str, Any], service: Service) -> dict[str, Any]:
    return {
        **browser_context_args,
        "base_url": service.url,
        "viewport": VIEWPORT,
        "locale": "en-US",
        "timezone_id": "UTC",
        "permissions": ["clipboard-read", "clipboard-write"],
    }


@dataclass
class Console:
    """What the page logged as an error, and every response that failed (4xx/5xx).

    A test that provokes an error on purpose (a refused form answers 400) lists it in `expected`
    (regular expressions); anything else fails the test when it ends.
    """

    errors: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    expected: list[str] = field(default_factory=list)

    def unexpected(self) -> list[str]:
        seen = self.errors + self.failed
        return [line for line in seen if not any(re.search(p, line) for p in self.expected)]


@pytest.fixture
def console(page: Any) -> Iterator[Console]:
    """Errors seen while the test runs: no page may log one or load anything that fails."""
    seen = Console()
    page.set_default_timeout(UI_TIMEOUT_MS)
    page.on("console", lambda message: message.type == "error" and seen.errors.append(message.text))
    page.on("pageerror", lambda error: seen.errors.append(str(error)))
    page.on(
        "response",
        lambda response: response.status >= 400 and seen.failed.append(f"{response.status} {response.url}"),
    )
    yield seen
    assert seen.unexpected() == [], "the browser saw errors"


def log_in(page: Any, username: str, password: str) -> None:
    page.goto("/accounts/login/")
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name=re.compile("log in", re.IGNORECASE)).click()
    page.wait_for_load_state()
    assert "/accounts/login/" not in page.url, f"login as {username} failed: {page.content()[:2000]}"


@pytest.fixture
def as_new_user(page: Any, service: Service, console: Console) -> tuple[str, str]:
    """The page, logged in as a brand-new user; (user name, password)."""
    account = service.new_user("user")
    log_in(page, *account)
    return account


@pytest.fixture
def as_demo(page: Any, service: Service, console: Console) -> str:
    log_in(page, "demo", service.passwords["demo"])
    return "demo"


@pytest.fixture
def as_operator(page: Any, service: Service, console: Console) -> str:
    log_in(page, "operator", service.passwords["operator"])
    return "operator"


SCREENSHOTS = os.environ.get("COPRSSH_SCREENSHOTS")


@pytest.fixture(scope="session")
def screenshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = Path(SCREENSHOTS) if SCREENSHOTS else tmp_path_factory.mktemp("screenshots")
    target.mkdir(parents=True, exist_ok=True)
    return target


@pytest.fixture
def screenshot(page: Any, screenshot_dir: Path):
    """screenshot(name): the page as it is now, to `<dir>/<name>.png` (a PNG that is not empty)."""

    def take(name: str, *, full_page: bool = False) -> Path:
        assert re.fullmatch(r"[a-z0-9-]+", name), name
        target = screenshot_dir / f"{name}.png"
        page.screenshot(path=str(target), full_page=full_page, animations="disabled", caret="hide")
        assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        return target

    return take


def ssh_keygen(directory: Path, key_type: str, comment: str) -> str:
    """A new key pair from the real ssh-keygen; its public line."""
    path = directory / f"{key_type}-{secrets.token_hex(3)}"
    bits = ["-b", "1024"] if key_type == "dsa" else []
    subprocess.run(
        ["ssh-keygen", "-q", "-t", key_type, *bits, "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return Path(f"{path}.pub").read_text().strip()


# --- SSH builders (tests/browser/test_ssh*.py) ----------------------------------------------
# The demo's pool has room for four builders, shared by every test of the session.


@pytest.fixture
def ssh_user(as_new_user: tuple[str, str], service: Service) -> Iterator[tuple[str, str]]:
    """`as_new_user`, whose SSH builders are all released when the test ends, whatever happened."""
    yield as_new_user
    from tests.browser.ssh_steps import release_ssh_builders

    release_ssh_builders(service, as_new_user[0])


# --- Builds shared by several tests (pages, accessibility) ---------------------------------


@dataclass(frozen=True)
class SubmittedBuild:
    """A build submitted for a fresh user: its owner (user name, password) and its id."""

    owner: tuple[str, str]
    build_id: int


@pytest.fixture(scope="session")
def failed_build(service: Service) -> SubmittedBuild:
    """tests/builds/specs/check-fails.spec (its %check fails) submitted in a project of its own.

    Submitted through the build services, once for the session; a test waits for the failure on
    the build page, where the first one to look waits for it and the others find it there.
    """
    from tests.browser.flows import CHROOT, SPECS

    owner = service.new_user("failing")
    build_id = service.shell(
        "from django.contrib.auth import get_user_model\n"
        "from django.core.files.uploadedfile import SimpleUploadedFile\n"
        "from builds.services import create_project, submit_build\n"
        "from builds.sources import check_upload\n"
        f"owner = get_user_model().objects.get(username={owner[0]!r})\n"
        f"project = create_project(owner=owner, name='check-fails', chroots=[{CHROOT!r}])\n"
        f"spec = open({str(SPECS / 'check-fails.spec')!r}, 'rb').read()\n"
        "upload = SimpleUploadedFile('check-fails.spec', spec, content_type='text/plain')\n"
        "build = submit_build(project=project, submitter=owner, chroots=None, source=check_upload(upload), upload=upload)\n"
        "print(build.pk)\n"
    )
    return SubmittedBuild(owner=owner, build_id=int(build_id.strip()))
