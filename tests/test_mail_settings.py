"""E-mail settings from the environment: EMAIL_URL, the EMAIL_* variables, and the defaults (issue 13)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from coprssh.mailconfig import BACKENDS, SMTP, MailSettings, parse_email_url

ROOT = Path(__file__).resolve().parent.parent
SHOWN = ["EMAIL_BACKEND", "EMAIL_HOST", "EMAIL_PORT", "EMAIL_HOST_USER", "EMAIL_HOST_PASSWORD"]
SHOWN += ["EMAIL_USE_TLS", "EMAIL_USE_SSL", "EMAIL_TIMEOUT", "DEFAULT_FROM_EMAIL"]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://mail.example.org", MailSettings(backend=SMTP, host="mail.example.org", port=25)),
        (
            "smtp+tls://bob%40example.org:p%3Ass@mail.example.org",
            MailSettings(
                backend=SMTP,
                host="mail.example.org",
                port=587,
                user="bob@example.org",
                password="p:ss",
                use_tls=True,
            ),
        ),
        (
            "submission://mail.example.org:2525",
            MailSettings(backend=SMTP, host="mail.example.org", port=2525, use_tls=True),
        ),
        (
            "smtps://u:p@[2001:db8::1]",
            MailSettings(backend=SMTP, host="2001:db8::1", port=465, user="u", password="p", use_ssl=True),
        ),
        (
            "SMTP+SSL://mail.example.org?timeout=30",
            MailSettings(backend=SMTP, host="mail.example.org", port=465, use_ssl=True, timeout=30),
        ),
        ("console://", MailSettings(backend=BACKENDS["console"])),
        (
            "file:///var/lib/coprssh/mails",
            MailSettings(backend=BACKENDS["file"], file_path="/var/lib/coprssh/mails"),
        ),
        ("locmem://", MailSettings(backend=BACKENDS["locmem"])),
        ("dummy://", MailSettings(backend=BACKENDS["dummy"])),
    ],
)
def test_email_urls_give_djangos_settings(url, expected):
    assert parse_email_url(url) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mail.example.org", r"unknown scheme \(none\)"),
        ("http://mail.example.org", "unknown scheme http://"),
        ("smtp://", "smtp:// needs a host"),
        ("smtp://u:secret-pw@mail.example.org:99999", "valid port"),
        ("smtp://u:secret-pw@mail.example.org:twenty", "valid port"),
        ("smtp://mail.example.org/path", "takes no path"),
        ("smtp://mail.example.org?timeout=0", "timeout must be a whole number of seconds from 1 to 300"),
        ("smtp://mail.example.org?timeout=1e3", "timeout must be"),
        ("smtp://mail.example.org?tls=yes", "unknown option 'tls'"),
        ("file://relative/dir", "absolute folder"),
        ("smtp://u:secret-pw@mail.example.org\n:25", "control character"),
        ("smtp://u:secret pw@mail.example.org", "space"),
    ],
)
def test_bad_email_urls_say_what_is_wrong_without_the_password(url, message):
    with pytest.raises(ValueError, match=message) as refused:
        parse_email_url(url)

    assert "secret-pw" not in str(refused.value)


def settings_with(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Django's mail settings as a process started with `env` reads them (JSON on stdout)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("EMAIL_", "DEFAULT_FROM"))}
    clean.update({"DEBUG": "0", "SECRET_KEY": "x" * 50, "COPRSSH_DATA_DIR": str(tmp_path)}, **env)
    clean.pop("DATABASE_URL", None)
    code = (
        "import json, django; django.setup(); from django.conf import settings; "
        f"print(json.dumps({{name: getattr(settings, name) for name in {SHOWN!r}}}))"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "coprssh.settings"},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.slow
def test_email_url_sets_the_backend_and_server(tmp_path):
    result = settings_with(tmp_path, EMAIL_URL="smtp+tls://bob:pw@mail.example.org:2525", EMAIL_TIMEOUT="7")

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "EMAIL_BACKEND": SMTP,
        "EMAIL_HOST": "mail.example.org",
        "EMAIL_PORT": 2525,
        "EMAIL_HOST_USER": "bob",
        "EMAIL_HOST_PASSWORD": "pw",
        "EMAIL_USE_TLS": True,
        "EMAIL_USE_SSL": False,
        "EMAIL_TIMEOUT": 7,
        "DEFAULT_FROM_EMAIL": "coprssh <coprssh@localhost>",
    }


@pytest.mark.slow
def test_email_url_can_come_from_a_file(tmp_path):
    secret = tmp_path / "email-url"
    secret.write_text("smtps://bob:from-a-file@mail.example.org\n")

    result = settings_with(tmp_path, EMAIL_URL_FILE=str(secret))

    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert (shown["EMAIL_HOST_PASSWORD"], shown["EMAIL_PORT"], shown["EMAIL_USE_SSL"]) == (
        "from-a-file",
        465,
        True,
    )


@pytest.mark.slow
def test_the_usual_email_variables_work_without_email_url(tmp_path):
    result = settings_with(
        tmp_path,
        EMAIL_HOST="smtp.example.org",
        EMAIL_PORT="587",
        EMAIL_HOST_USER="bob",
        EMAIL_HOST_PASSWORD="pw",
        EMAIL_USE_TLS="yes",
        DEFAULT_FROM_EMAIL="builds@example.org",
    )

    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert (shown["EMAIL_BACKEND"], shown["EMAIL_HOST"], shown["EMAIL_PORT"]) == (
        SMTP,
        "smtp.example.org",
        587,
    )
    assert (shown["EMAIL_USE_TLS"], shown["EMAIL_TIMEOUT"], shown["DEFAULT_FROM_EMAIL"]) == (
        True,
        10,
        "builds@example.org",
    )


@pytest.mark.slow
def test_with_nothing_set_development_prints_mails_and_production_uses_localhost(tmp_path):
    development = settings_with(tmp_path, DEBUG="1")
    production = settings_with(tmp_path)

    assert json.loads(development.stdout)["EMAIL_BACKEND"] == BACKENDS["console"]
    shown = json.loads(production.stdout)
    assert (shown["EMAIL_BACKEND"], shown["EMAIL_HOST"], shown["EMAIL_PORT"]) == (SMTP, "localhost", 25)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"EMAIL_URL": "smtp://bob:hunter22@mail.example.org:99999"},
            "EMAIL_URL: not a URL with a valid port",
        ),
        ({"EMAIL_HOST": "smtp.example.org", "EMAIL_PORT": "0"}, "EMAIL_PORT must be at least 1"),
        ({"EMAIL_HOST": "x", "EMAIL_USE_TLS": "1", "EMAIL_USE_SSL": "1"}, "exclude each other"),
        ({"EMAIL_TIMEOUT": "forever"}, "EMAIL_TIMEOUT must be an integer"),
    ],
)
def test_bad_mail_settings_stop_the_service_at_start(tmp_path, env, message):
    result = settings_with(tmp_path, **env)

    assert result.returncode != 0
    assert message in result.stderr
    assert "hunter22" not in result.stderr
