"""Fixtures for the builders tests: settings under tmp_path, the fake provider,
SSH keys and the local provider."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from builders.providers import HostKeyPair, generate_host_key
from builders.providers.local import LocalProvider
from tests.builders.fakes import FakeProvider, install


@pytest.fixture(autouse=True)
def builder_settings(settings: Any, tmp_path: Path) -> None:
    """Builders and the service's SSH key live under the test's tmp_path, never in ./data."""
    settings.COPRSSH_BUILDERS_DIR = tmp_path / "builders-dir"
    settings.COPRSSH_ADMIN_KEY_FILE = tmp_path / "ssh" / "admin_ed25519"
    # The users these tests make need no strong hash; PBKDF2 costs a third of a second each.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeProvider:
    """Every pool's provider is this in-memory fake; SSH checks ask it too."""
    return install(monkeypatch, FakeProvider())


@dataclass(frozen=True)
class AdminKey:
    """The service's SSH key as the tests use it: a private key file and its public line."""

    path: Path
    public_line: str


@pytest.fixture
def admin_key(tmp_path: Path) -> AdminKey:
    # An Ed25519 pair in OpenSSH format is both a valid host key and a valid login key.
    pair = generate_host_key()
    path = tmp_path / "admin_ed25519"
    path.write_text(pair.private_pem)
    path.chmod(0o600)  # ssh refuses a private key others can read
    return AdminKey(path=path, public_line=pair.public_line)


@pytest.fixture
def host_key() -> HostKeyPair:
    return generate_host_key()


@pytest.fixture
def builders_root(tmp_path: Path) -> Iterator[Path]:
    """A root for sandboxes; every process started under it is gone after the test, pass or fail."""
    root = tmp_path / "builders"
    yield root
    _delete_sandboxes(root)
    _kill_processes_mentioning(root)
    LocalProvider(root).delete_stray_accounts()


@pytest.fixture
def local_provider(builders_root: Path) -> LocalProvider:
    return LocalProvider(builders_root, stop_timeout=2.0)


def _delete_sandboxes(root: Path) -> None:
    if not root.is_dir():
        return
    provider = LocalProvider(root, stop_timeout=2.0)
    for entry in root.iterdir():
        with contextlib.suppress(Exception):  # the safety net below catches whatever this misses
            provider.delete(entry.name)


def _kill_processes_mentioning(root: Path) -> None:
    """Safety net: SIGKILL any process whose command line names a path under `root`."""
    prefix = str(root) + "/"
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().decode("utf-8", "replace")
        except OSError:
            continue
        if prefix in cmdline:
            with contextlib.suppress(OSError):
                os.kill(int(entry), signal.SIGKILL)
