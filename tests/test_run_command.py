"""Ctrl-C on `bin/run` stops every process it started, the demo's local builders included. Ref: #8

The demo runs for real, as a user starts it: bin/run in a session of its own (a terminal), with its
own data dir and port, on SQLite; Ctrl-C is a SIGINT to its process group, as the terminal sends.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from builders.providers.sandbox import has_ssh_banner
from tests.leaks import Accounts, builder_accounts, processes_of, remove_leftovers

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 120.0
# The cluster gets COPRSSH_STOP_GRACE (here 10 s) for its tasks, then the builders are stopped.
STOP_TIMEOUT = 90.0

pytestmark = pytest.mark.slow


@dataclass
class Demo:
    process: subprocess.Popen[bytes]
    data: Path
    url: str
    log: Path
    gateway_port: int

    def text(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]


@pytest.fixture
def data_dir(tmp_path: Path):
    data = tmp_path / "data"
    yield data
    # Safety net only (the test asserts there is nothing to do): a failed run must not leak either.
    remove_leftovers(data)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _start(data: Path, *, grace: int = 10) -> Demo:
    port = _free_port()
    env = {name: value for name, value in os.environ.items() if not name.startswith("COPRSSH_")}
    env.pop("DATABASE_URL", None)  # the demo's own SQLite database in its data dir
    gateway_port = _free_port()
    env.update(
        COPRSSH_DATA_DIR=str(data),
        COPRSSH_BIND=f"127.0.0.1:{port}",
        COPRSSH_STOP_GRACE=str(grace),
        COPRSSH_GATEWAY_PORT=str(gateway_port),
    )
    data.mkdir(parents=True, exist_ok=True)
    log = data.parent / f"run-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["bin/run"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    return Demo(
        process=process, data=data, url=f"http://127.0.0.1:{port}/", log=log, gateway_port=gateway_port
    )


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _builder_sshds(data: Path) -> set[int]:
    """Builder ids of the local builders whose sshd runs (the sandbox is named coprssh-<pool>-<id>)."""
    ids = set()
    for found in processes_of(data):
        sshd = re.search(r"^\d+: sshd.*/coprssh-local-(\d+)/sshd_config", found)
        if sshd:
            ids.add(int(sshd.group(1)))
    return ids


def _wait_until_up(demo: Demo, *, besides: set[int] = frozenset()) -> set[int]:
    """Wait until the page answers and a builder other than `besides` runs its sshd; its ids."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        assert demo.process.poll() is None, f"bin/run exited early:\n{demo.text()}"
        running = _builder_sshds(demo.data) - besides
        if running and _answers(demo.url):
            return running
        time.sleep(1)
    pytest.fail(f"no page and builder within {START_TIMEOUT} s:\n{demo.text()}")


def _ctrl_c(demo: Demo, *, timeout: float = STOP_TIMEOUT) -> None:
    os.killpg(demo.process.pid, signal.SIGINT)
    try:
        demo.process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"bin/run still runs {timeout} s after Ctrl-C:\n{demo.text()}")
    assert demo.process.returncode == 0, demo.text()


def _assert_nothing_left(demo: Demo, accounts: Accounts) -> None:
    """No process of the demo is left: none names its data dir, runs as (or names the home of) one of
    its builders' accounts, or belongs to bin/run's session; no builder account is left either."""
    # What bin/run stopped is gone when it exits; allow the kernel a moment to tear it down.
    deadline = time.monotonic() + 3
    while (left := processes_of(demo.data, accounts=accounts, session=demo.process.pid)) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.1)
    assert left == [], demo.text()
    assert builder_accounts(demo.data) == Accounts(frozenset(), frozenset())


def _rows(data: Path, query: str) -> list[tuple]:
    with contextlib.closing(sqlite3.connect(data / "coprssh.sqlite3", timeout=30)) as db:
        return db.execute(query).fetchall()


def _shell(demo: Demo, code: str) -> str:
    """Run Python in `manage.py shell` against the demo's database; what it printed."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("COPRSSH_")}
    env.pop("DATABASE_URL", None)
    env["COPRSSH_DATA_DIR"] = str(demo.data)
    out = subprocess.run(
        [".venv/bin/python", "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return out.stdout


def _request_lease(demo: Demo) -> int:
    """A lease for the demo user, as a build would ask for one; the running cluster assigns it."""
    printed = _shell(
        demo,
        "import platform; from django.contrib.auth import get_user_model; "
        "from builders.services import request_lease; "
        "owner = get_user_model().objects.get(username='demo'); "
        "print(request_lease(owner=owner, arch=platform.machine(), sandbox='stop-test').pk)",
    )
    return int(printed.split()[-1])


def _needs_sshd_and_rpmbuild() -> None:
    if not Path("/usr/sbin/sshd").exists() or shutil.which("rpmbuild") is None:
        pytest.skip("needs OpenSSH's sshd and rpmbuild (bin/system-packages installs them)")


def test_ctrl_c_on_bin_run_stops_everything_and_the_next_start_has_fresh_builders(data_dir):
    _needs_sshd_and_rpmbuild()
    demo = _start(data_dir)
    first = _wait_until_up(demo)
    lease_id = _request_lease(demo)
    deadline = time.monotonic() + 60
    while not _rows(
        data_dir, f"select 1 from builders_lease where id = {lease_id} and builder_id is not null"
    ):
        assert time.monotonic() < deadline, f"lease {lease_id} got no builder:\n{demo.text()}"
        time.sleep(0.5)

    # bin/run starts the SSH gateway too; Ctrl-C stops it with the rest (its sshd names the data dir).
    assert has_ssh_banner("127.0.0.1", demo.gateway_port, timeout=5.0), demo.text()
    accounts = builder_accounts(data_dir)
    _ctrl_c(demo)

    _assert_nothing_left(demo, accounts)
    [(state, reason, builder_id)] = _rows(
        data_dir, f"select state, end_reason, builder_id from builders_lease where id = {lease_id}"
    )
    assert (state, reason) == ("ended", "terminated")
    # Leases still waiting for a builder (the demo build's next phase, say) wait for the next start.
    assert (
        _rows(data_dir, "select id from builders_lease where state != 'ended' and builder_id is not null")
        == []
    )
    assert (
        _rows(data_dir, "select id from builders_builder where state not in ('terminated', 'failed')") == []
    )
    shutdown = _rows(data_dir, "select builder_id from builders_auditevent where source = 'shutdown'")
    assert (builder_id,) in shutdown
    # The demo's builds run meanwhile, so a builder of the first start may have been ended by the
    # service (its build over) just before or during the stop, by a path of its own; what matters is
    # that every one of them has ended, whoever ended it.
    ended = {
        row[0]
        for row in _rows(data_dir, "select id from builders_builder where state in ('terminated', 'failed')")
    }
    assert first <= ended, (first, ended)

    # The next start brings the pool's warm builder back, a new one.
    again = _start(data_dir)
    fresh = _wait_until_up(again, besides=first | {builder_id})
    assert min(fresh) > max(first | {builder_id})

    accounts = builder_accounts(data_dir)
    _ctrl_c(again)

    _assert_nothing_left(again, accounts)


def test_second_ctrl_c_kills_the_servers_at_once_and_still_stops_the_builders(data_dir):
    _needs_sshd_and_rpmbuild()
    demo = _start(data_dir, grace=25)
    _wait_until_up(demo)
    # A task that waits for a process it put in a process group of its own: out of reach of a kill of
    # the cluster's process group, still in the cluster's session.
    _shell(
        demo,
        "from django_q.tasks import async_task; async_task('subprocess.run', ['sleep', '300'], process_group=0)",
    )
    deadline = time.monotonic() + 60
    while "processing" not in demo.text() or "'subprocess.run'" not in demo.text():
        assert time.monotonic() < deadline, f"no worker took the task:\n{demo.text()}"
        time.sleep(0.5)
    assert any(" sleep 300" in found for found in processes_of(data_dir))
    accounts = builder_accounts(data_dir)
    os.killpg(demo.process.pid, signal.SIGINT)
    time.sleep(2)
    started = time.monotonic()
    os.killpg(demo.process.pid, signal.SIGINT)

    # Without the second one the cluster would give its task the whole grace (25 s here): the
    # servers are gone, and bin/run on to the builders, well before that. (Stopping the builders
    # then takes as long as it takes: a few seconds per builder.)
    while "Stopping the demo's local builders" not in demo.log.read_text(errors="replace"):
        assert time.monotonic() - started < 10, demo.text()
        time.sleep(0.1)
    try:
        demo.process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"bin/run still runs {STOP_TIMEOUT} s after the second Ctrl-C:\n{demo.text()}")
    assert demo.process.returncode == 0, demo.text()
    _assert_nothing_left(demo, accounts)
    assert (
        _rows(data_dir, "select id from builders_builder where state not in ('terminated', 'failed')") == []
    )


def test_a_bad_bind_stops_bin_run_before_it_sets_anything_up(tmp_path):
    """Cheap: bin/run checks COPRSSH_BIND (coprssh/bind.py) before it migrates or starts anything."""
    _needs_sshd_and_rpmbuild()
    env = {name: value for name, value in os.environ.items() if not name.startswith("COPRSSH_")}
    env.pop("DATABASE_URL", None)
    env.update(COPRSSH_DATA_DIR=str(tmp_path / "data"), COPRSSH_BIND="0.0.0.0:http")
    result = subprocess.run(
        ["bin/run"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, start_new_session=True
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "COPRSSH_BIND must be PORT, HOST:PORT or [IPV6]:PORT" in result.stderr
    assert not (tmp_path / "data" / "coprssh.sqlite3").exists()
