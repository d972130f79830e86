"""`manage.py gateway`: what it writes, and what it refuses before starting anything."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from builders.gateway import sshd
from builders.providers import accounts
from builders.services import gateway as gateways
from tests.builders.gateway_fixtures import *  # noqa: F403 - the fixtures
from tests.builders.gateway_fixtures import TEST_ACCOUNT

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_account_left() -> Iterator[None]:
    """--check makes the gateway's account when run as root: remove the one a test made."""
    existed = accounts.lookup(TEST_ACCOUNT) is not None
    yield
    if os.geteuid() == 0 and not existed and accounts.lookup(TEST_ACCOUNT) is not None:
        accounts.remove(TEST_ACCOUNT, home=Path("/nonexistent"))


def test_check_writes_the_gateways_files_and_sshd_accepts_them(gateway_settings):
    out = io.StringIO()

    call_command("gateway", "--check", stdout=out)
    again = sshd.read_host_key(gateways.gateway_files().host_key_pub)
    call_command("gateway", "--check", stdout=io.StringIO())

    files = gateways.gateway_files()
    assert out.getvalue().strip() == f"gateway configuration in {files.dir} is valid"
    assert files.dir.stat().st_mode & 0o777 == 0o700
    assert files.host_key.stat().st_mode & 0o777 == 0o600
    assert sshd.read_host_key(files.host_key_pub) == again  # made once, then kept: users pin it
    config = files.config.read_text()
    for line in (
        f"Port {gateway_settings.COPRSSH_GATEWAY_PORT}",
        "ListenAddress 127.0.0.1",
        f"AllowUsers {gateway_settings.COPRSSH_GATEWAY_USER}",
        "AuthorizedKeysFile none",
        f"AuthorizedKeysCommand /usr/bin/cat {files.authorized_keys}",
        "MaxSessions 0",
        "AllowTcpForwarding local",
        "PermitListen none",
        "PermitTTY no",
        "LogLevel VERBOSE",
    ):
        assert f"\n{line}\n" in config
    assert files.authorized_keys.read_text() == ""


def test_no_gateway_host_no_gateway(gateway_settings):
    gateway_settings.COPRSSH_GATEWAY_HOST = ""

    with pytest.raises(CommandError, match="Set COPRSSH_GATEWAY_HOST"):
        call_command("gateway", "--check")


def test_a_pinned_host_key_that_is_not_the_gateways_is_refused(gateway_settings):
    call_command("gateway", "--check", stdout=io.StringIO())
    gateway_settings.COPRSSH_GATEWAY_HOST_KEY = (
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGr0Pmn2ZX5vX5ufGwLJnN9PwPf6Ln3ZfUtqOH7oCxHq"
    )

    with pytest.raises(CommandError, match="COPRSSH_GATEWAY_HOST_KEY is not this gateway's host key"):
        call_command("gateway", "--check")


def test_without_root_only_the_services_own_account_can_be_the_gateways(gateway_settings, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 65534)
    gateway_settings.COPRSSH_GATEWAY_USER = "coprssh-gw"

    with pytest.raises(CommandError, match="Without root the gateway can only let its own account in"):
        call_command("gateway", "--check")


def test_an_sshd_that_is_not_there_is_named(gateway_settings):
    gateway_settings.COPRSSH_GATEWAY_SSHD = "/nonexistent/sshd"

    with pytest.raises(CommandError, match="The gateway did not start: no sshd at /nonexistent/sshd"):
        call_command("gateway", "--interval", "1")


def test_interval_is_bounded(gateway_settings):
    with pytest.raises(CommandError, match="--interval must be from 0.1 to 3600 seconds"):
        call_command("gateway", "--interval", "0")
