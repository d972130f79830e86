"""The real copr-cli (and python-copr) against a live coprssh: fixtures.

`copr-cli` is the unmodified client from PyPI (pinned in requirements-dev.txt), run from the
virtualenv as a subprocess with `--config FILE`, against pytest-django's `live_server` (a thread
of this process serving the test database). Tests that use it need
`@pytest.mark.django_db(transaction=True)`, so the server thread sees what the test wrote.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from rest_framework.authtoken.models import Token

from builds.models import Chroot
from tests.builds.flow import farm, hello_srpm  # noqa: F401 - fixtures for the tests here

COPR_CLI = Path(sys.executable).parent / "copr-cli"
HELLO_SPEC = Path(__file__).resolve().parents[2] / "builds" / "demo" / "hello-coprssh.spec"
CHROOTS = ["fedora-rawhide-x86_64", "epel-9-x86_64"]
TIMEOUT = 90


def write_config(path: Path, url: str, login: str, token: str) -> Path:
    path.write_text(
        f"[copr-cli]\ncopr_url = {url}\nlogin = {login}\nusername = {login}\ntoken = {token}\nencrypted = False\n"
    )
    return path


@dataclass
class CoprCli:
    """Runs `copr-cli --config FILE …` with HOME in the test's directory and nothing from the shell."""

    config: Path
    home: Path

    def __call__(self, *args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.home), "LANG": "C.UTF-8"}
        return subprocess.run(
            [str(COPR_CLI), "--config", str(config or self.config), *args],
            env=env,
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )

    def ok(self, *args: str) -> subprocess.CompletedProcess[str]:
        result = self(*args)
        assert result.returncode == 0, f"{args}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
        return result


@pytest.fixture
def chroots(db: None) -> list[str]:
    # Seeded by a migration, but a transactional test before this one flushed them.
    for name in CHROOTS:
        os_name, version, arch = name.split("-")
        Chroot.objects.get_or_create(name=name, defaults={"os": os_name, "version": version, "arch": arch})
    return CHROOTS


@pytest.fixture
def token(user) -> str:
    return Token.objects.create(user=user).key


@pytest.fixture
def copr_config(live_server, token: str, tmp_path: Path) -> Path:
    return write_config(tmp_path / "copr", live_server.url, "alice", token)


@pytest.fixture
def copr(copr_config: Path, tmp_path: Path, chroots: list[str]) -> CoprCli:
    if not COPR_CLI.exists():
        pytest.skip("copr-cli is not installed: run bin/setup dev")
    home = tmp_path / "home"
    home.mkdir()
    return CoprCli(config=copr_config, home=home)


@pytest.fixture(autouse=True)
def _storage(settings, tmp_path: Path) -> None:
    """Logs and sources of the builds of a test go to its own folder."""
    settings.COPRSSH_STORAGE_DIR = tmp_path / "storage"


def stored_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


@pytest.fixture(scope="session")
def demo_rpm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A binary RPM made by `rpmbuild -bb` from the demo spec."""
    if shutil.which("rpmbuild") is None:
        pytest.skip("rpmbuild is not installed")
    top = tmp_path_factory.mktemp("demo-rpm")
    subprocess.run(
        ["rpmbuild", "-bb", "--quiet", "--define", f"_topdir {top}", str(HELLO_SPEC)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    (rpm,) = top.rglob("*.noarch.rpm")
    return rpm
