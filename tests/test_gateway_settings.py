"""The SSH gateway's settings refuse values that would end up in sshd_config or in users' ssh commands."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _settings(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("COPRSSH_GATEWAY_")}
    clean.update(env, COPRSSH_DATA_DIR=str(tmp_path), DEBUG="1")
    code = "import coprssh.settings as s; print(s.COPRSSH_GATEWAY_HOST, s.COPRSSH_GATEWAY_PORT, s.COPRSSH_GATEWAY_LISTEN)"
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (
            "COPRSSH_GATEWAY_HOST",
            "gw.example.org -oProxyCommand=sh",
            "COPRSSH_GATEWAY_HOST must be a host name",
        ),
        ("COPRSSH_GATEWAY_HOST", "user@gw.example.org", "COPRSSH_GATEWAY_HOST must be a host name"),
        ("COPRSSH_GATEWAY_HOST", "[2001:db8::1]", "COPRSSH_GATEWAY_HOST must be a host name"),
        ("COPRSSH_GATEWAY_HOST", "gw" * 200, "COPRSSH_GATEWAY_HOST must be a host name"),
        ("COPRSSH_GATEWAY_PORT", "0", "COPRSSH_GATEWAY_PORT must be at least 1"),
        ("COPRSSH_GATEWAY_PORT", "65536", "COPRSSH_GATEWAY_PORT must be at most 65535"),
        ("COPRSSH_GATEWAY_USER", "root\nAllowUsers *", "COPRSSH_GATEWAY_USER must be a user name"),
        ("COPRSSH_GATEWAY_USER", "Gateway", "COPRSSH_GATEWAY_USER must be a user name"),
        (
            "COPRSSH_GATEWAY_LISTEN",
            "127.0.0.1,gw.example.org",
            "COPRSSH_GATEWAY_LISTEN must list IP addresses",
        ),
        ("COPRSSH_GATEWAY_SSHD", "sshd", "COPRSSH_GATEWAY_SSHD must be an absolute path"),
        ("COPRSSH_GATEWAY_DIR", "/srv/gw dir", "COPRSSH_GATEWAY_DIR must not contain blanks"),
        ("COPRSSH_GATEWAY_DIR", "/srv/gw#1", "COPRSSH_GATEWAY_DIR must not contain blanks"),
        (
            "COPRSSH_GATEWAY_HOST_KEY",
            "ssh-rsa AAAA",
            "COPRSSH_GATEWAY_HOST_KEY must be the gateway's public key line",
        ),
        (
            "COPRSSH_GATEWAY_HOST_KEY",
            "ssh-ed25519 AAAA\nssh-ed25519 BBBB",
            "COPRSSH_GATEWAY_HOST_KEY must be",
        ),
    ],
)
def test_a_bad_gateway_setting_stops_the_service_naming_it(tmp_path, name, value, message):
    result = _settings(tmp_path, **{"COPRSSH_GATEWAY_HOST": "gw.example.org", name: value})

    assert result.returncode != 0
    assert message in result.stderr


def test_gateway_settings_take_names_addresses_and_lists(tmp_path):
    result = _settings(
        tmp_path,
        COPRSSH_GATEWAY_HOST="2001:db8::1",
        COPRSSH_GATEWAY_PORT="22",
        COPRSSH_GATEWAY_LISTEN="::, 0.0.0.0",
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "2001:db8::1 22 ['::', '0.0.0.0']"


def test_a_data_dir_with_blanks_is_fine_without_a_gateway(tmp_path):
    result = _settings(tmp_path / "my data", COPRSSH_GATEWAY_HOST="")

    assert result.returncode == 0, result.stderr
