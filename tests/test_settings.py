"""Settings come from the environment, refuse bad values, and are safe in production."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from coprssh import settings as project_settings

ROOT = Path(__file__).resolve().parent.parent


def _manage(*args: str, env: dict[str, str], data_dir: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "SECRET_KEY", "DATABASE_URL"}}
    clean.update(env)
    clean["COPRSSH_DATA_DIR"] = str(data_dir)
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=120
    )


def _production_env() -> dict[str, str]:
    return {
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "coprssh.example.org",
        "COPRSSH_PUBLIC_URL": "https://coprssh.example.org",
    }


@pytest.mark.slow
def test_deploy_check_is_clean_with_production_settings(tmp_path):
    result = _manage("check", "--deploy", "--fail-level", "WARNING", env=_production_env(), data_dir=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.slow
def test_production_refuses_to_start_without_secret_key(tmp_path):
    env = _production_env()
    del env["SECRET_KEY"]
    result = _manage("check", "--deploy", env=env, data_dir=tmp_path)
    assert result.returncode != 0
    assert "SECRET_KEY (or SECRET_KEY_FILE) must be set" in result.stderr


@pytest.mark.slow
def test_the_wsgi_server_refuses_to_start_without_secret_key(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "SECRET_KEY", "DATABASE_URL"}}
    env.update(_production_env(), COPRSSH_DATA_DIR=str(tmp_path))
    del env["SECRET_KEY"]
    result = subprocess.run(
        [sys.executable, "-c", "import coprssh.wsgi"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "SECRET_KEY (or SECRET_KEY_FILE) must be set" in result.stderr


@pytest.mark.slow
def test_commands_that_sign_nothing_run_without_secret_key(tmp_path):
    env = _production_env()
    del env["SECRET_KEY"]
    result = _manage("makemigrations", "--check", "--dry-run", env=env, data_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "No changes detected" in result.stdout
    # The steps of docs/deploy.md before the servers start.
    for command in (["migrate", "--noinput"], ["collectstatic", "--noinput"]):
        result = _manage(*command, env={**env, "STATIC_ROOT": str(tmp_path / "static")}, data_dir=tmp_path)
        assert result.returncode == 0, result.stderr
    assert (tmp_path / "static" / "staticfiles.json").exists()


@pytest.mark.slow
def test_the_task_cluster_refuses_to_start_without_secret_key(tmp_path):
    """django-q2 signs each task with the key: a cluster without it could run none."""
    env = _production_env()
    del env["SECRET_KEY"]
    result = _manage("qcluster", "--run-once", env=env, data_dir=tmp_path)
    assert result.returncode == 1
    assert "SECRET_KEY (or SECRET_KEY_FILE) must be set" in result.stderr
    assert "signature of every task" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_secret_key_can_come_from_a_file(tmp_path):
    key_file = tmp_path / "secret"
    key_file.write_text(secrets.token_urlsafe(50) + "\n")
    env = _production_env()
    del env["SECRET_KEY"]
    env["SECRET_KEY_FILE"] = str(key_file)
    result = _manage("check", "--deploy", "--fail-level", "WARNING", env=env, data_dir=tmp_path)
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_a_bad_database_url_is_named_in_the_error(tmp_path):
    env = _production_env() | {"DATABASE_URL": "nosuchdb://x"}
    result = _manage("check", env=env, data_dir=tmp_path)
    assert result.returncode != 0
    assert "DATABASE_URL is not a valid database URL" in result.stderr


@pytest.mark.parametrize(
    ("raw", "expected"), [("1", True), ("yes", True), ("On", True), ("0", False), ("", False)]
)
def test_env_bool_reads_common_spellings(monkeypatch, raw, expected):
    monkeypatch.setenv("COPRSSH_TEST_FLAG", raw)
    assert project_settings.env_bool("COPRSSH_TEST_FLAG") is expected


def test_env_bool_refuses_anything_else(monkeypatch):
    monkeypatch.setenv("COPRSSH_TEST_FLAG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="COPRSSH_TEST_FLAG must be one of"):
        project_settings.env_bool("COPRSSH_TEST_FLAG")


@pytest.mark.parametrize("raw", ["ten", "1.5", "0x10", "9" * 30 + "x"])
def test_env_int_refuses_non_integers(monkeypatch, raw):
    monkeypatch.setenv("COPRSSH_TEST_INT", raw)
    with pytest.raises(ImproperlyConfigured, match="COPRSSH_TEST_INT must be an integer"):
        project_settings.env_int("COPRSSH_TEST_INT", 1)


def test_env_int_enforces_bounds(monkeypatch):
    monkeypatch.setenv("COPRSSH_TEST_INT", "1024")
    assert project_settings.env_int("COPRSSH_TEST_INT", 1, minimum=1, maximum=2048) == 1024
    with pytest.raises(ImproperlyConfigured, match="at most 100"):
        project_settings.env_int("COPRSSH_TEST_INT", 1, maximum=100)
    with pytest.raises(ImproperlyConfigured, match="at least 2048"):
        project_settings.env_int("COPRSSH_TEST_INT", 1, minimum=2048)


def test_env_secret_names_an_unreadable_file(monkeypatch, tmp_path):
    monkeypatch.setenv("COPRSSH_TEST_SECRET_FILE", str(tmp_path / "missing"))
    with pytest.raises(ImproperlyConfigured, match="COPRSSH_TEST_SECRET_FILE: cannot read"):
        project_settings.env_secret("COPRSSH_TEST_SECRET")


def test_sqlite_default_waits_for_writers_instead_of_failing():
    options = project_settings._SQLITE_OPTIONS
    assert options["transaction_mode"] == "IMMEDIATE"
    assert options["timeout"] >= 5
    assert "journal_mode=WAL" in options["init_command"]
