"""bin/test without a PostgreSQL server: outside CI it says so and runs on SQLite only; in CI it fails.

bin/test runs for real, on one tiny test, with TEST_DATABASE_URL on a port where nothing listens.
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TINY = ["tests/test_docs.py", "-q", "-k", "test_the_readme_names_the_run_and_test_commands"]


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _bin_test(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {
        name: value
        for name, value in os.environ.items()
        if name not in ("CI", "DATABASE_URL", "TEST_DATABASES") and not name.startswith("COPRSSH_")
    }
    environ["TEST_DATABASE_URL"] = f"postgres://postgres:hunter2@127.0.0.1:{_closed_port()}/coprssh"
    environ.update(env)
    return subprocess.run(
        ["bin/test", *args], cwd=ROOT, env=environ, capture_output=True, text=True, timeout=300, check=False
    )


def test_outside_ci_it_says_postgresql_is_missing_and_runs_on_sqlite_only():
    result = _bin_test(*TINY)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "=== no PostgreSQL at postgres://postgres:***@127.0.0.1:" in result.stderr
    assert "Connection refused" in result.stderr
    assert "the tests run on SQLite only" in result.stderr
    assert "hunter2" not in result.stdout + result.stderr
    assert "=== test suite on postgres ===" not in result.stdout
    assert "=== test suite on sqlite ===" in result.stdout
    assert "1 passed" in result.stdout
    assert "All test runs passed, on SQLite only" in result.stdout


def test_outside_ci_a_failed_sqlite_run_still_fails():
    # No test selected: pytest exits 5, which bin/test counts as a failure.
    result = _bin_test("tests/test_docs.py", "-q", "-k", "no_test_has_this_name")

    assert result.returncode == 1
    assert "FAILED on: sqlite (exit 5)" in result.stderr


def test_in_ci_a_missing_postgresql_is_a_failure():
    result = _bin_test(*TINY, CI="true")

    assert result.returncode == 1
    assert "=== no PostgreSQL at postgres://postgres:***@127.0.0.1:" in result.stderr
    assert "FAILED on: postgres (not reachable; CI needs it)" in result.stderr
    # The other runs still run, so that one CI job shows everything that is wrong.
    assert "=== test suite on sqlite ===" in result.stdout
    assert "1 passed" in result.stdout
