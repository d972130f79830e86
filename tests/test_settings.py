"""Settings come from the environment, refuse bad values, and are safe in production."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from coprssh import settings as project_settings
from coprssh.env import env_choice

ROOT = Path(__file__).resolve().parent.parent


# Read by the settings, and set by the tests below when they need them; never the shell's.
_SETTINGS = {"DEBUG", "SECRET_KEY", "DATABASE_URL", "ALLOWED_HOSTS", "REDIS_URL", "LOG_LEVEL"}


def _manage(*args: str, env: dict[str, str], data_dir: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in _SETTINGS and not k.startswith("COPRSSH_")}
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
def test_deploy_check_needs_only_a_secret_key_and_allowed_hosts(tmp_path):
    """docs/configuration.md: DEBUG off (the default), SECRET_KEY and ALLOWED_HOSTS make it clean."""
    env = {"SECRET_KEY": secrets.token_urlsafe(50), "ALLOWED_HOSTS": "coprssh.example.org"}
    result = _manage("check", "--deploy", "--fail-level", "WARNING", env=env, data_dir=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    # security.W021 (HSTS preload) is silenced: preloading is the domain owner's choice.
    assert "System check identified no issues (1 silenced)." in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize(
    ("unset", "reported"), [("SECRET_KEY", "coprssh.E001"), ("ALLOWED_HOSTS", "security.W020")]
)
def test_deploy_check_names_what_is_missing(tmp_path, unset, reported):
    env = {"SECRET_KEY": secrets.token_urlsafe(50), "ALLOWED_HOSTS": "coprssh.example.org"}
    del env[unset]
    result = _manage("check", "--deploy", "--fail-level", "WARNING", env=env, data_dir=tmp_path)
    assert result.returncode != 0
    assert reported in result.stderr
    assert unset in result.stderr


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


@pytest.mark.parametrize(("raw", "expected"), [("debug", "DEBUG"), (" Warning ", "WARNING"), ("", "INFO")])
def test_env_choice_reads_any_case(monkeypatch, raw, expected):
    monkeypatch.setenv("COPRSSH_TEST_LEVEL", raw)
    assert env_choice("COPRSSH_TEST_LEVEL", "INFO", ["DEBUG", "INFO", "WARNING"]) == expected


def test_a_bad_log_level_is_named_with_the_accepted_values(tmp_path):
    result = _settings(DEBUG="1", COPRSSH_DATA_DIR=str(tmp_path), LOG_LEVEL="bogus")
    assert result.returncode != 0
    assert (
        "ImproperlyConfigured: LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL; got 'bogus'"
        in result.stderr
    )


@pytest.mark.slow
def test_log_level_takes_effect(tmp_path):
    code = "import logging; print(logging.getLevelName(logging.getLogger().level))"
    result = _manage("shell", "-c", code, env={"DEBUG": "1", "LOG_LEVEL": "warning"}, data_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == "WARNING"


def _settings(**env: str) -> subprocess.CompletedProcess[str]:
    """Import the settings alone, in a process of their own with `env`; print ALLOWED_HOSTS."""
    clean = {k: v for k, v in os.environ.items() if k not in _SETTINGS and not k.startswith("COPRSSH_")}
    clean.update(env)
    code = "import coprssh.settings as s; print(','.join(s.ALLOWED_HOSTS))"
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=60
    )


def _allowed_hosts(tmp_path: Path, **env: str) -> list[str]:
    result = _settings(COPRSSH_DATA_DIR=str(tmp_path), **env)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().split(",")


def test_development_answers_at_the_public_urls_host_besides_localhost(tmp_path):
    """bin/run bound to 0.0.0.0 sets COPRSSH_PUBLIC_URL to this machine's address; the site answers there."""
    assert _allowed_hosts(tmp_path, DEBUG="1", COPRSSH_PUBLIC_URL="http://192.0.2.7:8000") == [
        "localhost",
        "127.0.0.1",
        "[::1]",
        "192.0.2.7",
    ]
    assert _allowed_hosts(tmp_path, DEBUG="1", COPRSSH_PUBLIC_URL="http://[2001:DB8::7]:8000")[-1] == (
        "[2001:db8::7]"
    )
    assert _allowed_hosts(tmp_path, DEBUG="1", COPRSSH_PUBLIC_URL="http://localhost:8000") == [
        "localhost",
        "127.0.0.1",
        "[::1]",
    ]
    assert _allowed_hosts(tmp_path, DEBUG="1") == ["localhost", "127.0.0.1", "[::1]"]


def test_production_answers_only_to_allowed_hosts(tmp_path):
    env = {"DEBUG": "0", "COPRSSH_PUBLIC_URL": "https://coprssh.example.org"}
    assert _allowed_hosts(tmp_path, **env) == [""]
    assert _allowed_hosts(tmp_path, **env, ALLOWED_HOSTS="a.example.org, b.example.org") == [
        "a.example.org",
        "b.example.org",
    ]


@pytest.mark.parametrize(
    "url", ["0.0.0.0:8000", "ftp://coprssh.example.org", "http://", "http://[::1:8000", "http://h:port"]
)
def test_a_public_url_that_is_no_http_url_is_named_in_the_error(tmp_path, url):
    result = _settings(DEBUG="1", COPRSSH_DATA_DIR=str(tmp_path), COPRSSH_PUBLIC_URL=url)
    assert result.returncode != 0
    assert "COPRSSH_PUBLIC_URL must be an http:// or https:// URL with a host" in result.stderr


def _redis_answers(host: str = "127.0.0.1", port: int = 6379) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2) as connection:
            connection.sendall(b"PING\r\n")
            return connection.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@pytest.mark.slow
def test_redis_url_shares_the_cache_between_processes(tmp_path):
    """docs/configuration.md: REDIS_URL shares the cache; the redis package is installed for it."""
    if not _redis_answers():
        pytest.skip("no Redis answers on 127.0.0.1:6379")
    key = f"test-shared-{secrets.token_hex(8)}"
    setter = f"from django.core.cache import cache; cache.set({key!r}, 'shared', 60); print('set')"
    getter = (
        f"from django.core.cache import cache; print(cache.get({key!r}, 'absent')); cache.delete({key!r})"
    )
    shared = {"DEBUG": "1", "REDIS_URL": "redis://127.0.0.1:6379/0"}

    wrote = _manage("shell", "-c", setter, env=shared, data_dir=tmp_path)
    assert wrote.returncode == 0, wrote.stderr
    read = _manage("shell", "-c", getter, env=shared, data_dir=tmp_path)
    assert read.returncode == 0, read.stderr
    assert read.stdout.split()[-1] == "shared"


@pytest.mark.slow
def test_without_redis_url_each_process_has_its_own_cache(tmp_path):
    key = f"test-local-{secrets.token_hex(8)}"
    setter = (
        f"from django.core.cache import cache; cache.set({key!r}, 'shared', 60); print(cache.get({key!r}))"
    )
    getter = f"from django.core.cache import cache; print(cache.get({key!r}, 'absent'))"
    wrote = _manage("shell", "-c", setter, env={"DEBUG": "1"}, data_dir=tmp_path)
    assert wrote.stdout.split()[-1] == "shared", wrote.stderr
    read = _manage("shell", "-c", getter, env={"DEBUG": "1"}, data_dir=tmp_path)
    assert read.stdout.split()[-1] == "absent", read.stderr
