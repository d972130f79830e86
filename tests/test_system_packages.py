"""bin/system-packages: bin/run and .ci/run install what local builders need, or say how. Ref: #8

The script runs against fake apt-get and dpkg-query on a PATH of our own, so nothing is installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "bin" / "system-packages"


@pytest.fixture
def bin_dir() -> Iterator[Path]:
    """A PATH holding only the tools the script needs, and no package manager unless a test adds one.

    Outside pytest's tmp_path, whose parents only root may enter: one test runs the script as nobody.
    """
    top = Path(tempfile.mkdtemp(prefix="coprssh-system-packages-"))
    top.chmod(0o755)
    path = top / "bin"
    path.mkdir(mode=0o755)
    os.symlink(shutil.which("grep"), path / "grep")
    yield path
    shutil.rmtree(top)


def _fake(bin_dir: Path, name: str, body: str) -> None:
    tool = bin_dir / name
    tool.write_text(f"#!{shutil.which('bash')}\n{body}\n")
    tool.chmod(0o755)


def _apt(bin_dir: Path, *, installed: set[str]) -> Path:
    """A dpkg that knows `installed` and an apt-get that only writes down how it was called."""
    calls = bin_dir.parent / "apt-calls"
    _fake(
        bin_dir,
        "dpkg-query",
        f'case "${{@: -1}}" in {"|".join(installed) or "none"}) echo -n "install ok installed";; *) exit 1;; esac',
    )
    _fake(bin_dir, "apt-get", f'echo "$*" >> {calls}')
    return calls


def _run(bin_dir: Path, *args: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
    script = SCRIPT
    if user is not None:
        # The checkout may sit in a folder only root can enter (a mktemp -d clone): run a copy.
        script = bin_dir.parent / "system-packages"
        shutil.copy(SCRIPT, script)
        script.chmod(0o755)
    command = [shutil.which("bash"), str(script), *args]
    if user is not None:
        command = [
            shutil.which("setpriv") or "setpriv",
            "--reuid",
            user,
            "--regid",
            user,
            "--clear-groups",
            *command,
        ]
    return subprocess.run(
        command, env={"PATH": str(bin_dir)}, capture_output=True, text=True, timeout=30, check=False
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="installs only as root")
def test_as_root_on_debian_it_installs_only_what_is_missing(bin_dir):
    calls = _apt(bin_dir, installed={"openssh-client", "git"})

    result = _run(bin_dir, "postgresql-client")

    assert result.returncode == 0, result.stderr
    assert calls.read_text().splitlines() == [
        "update -qq",
        "install -y -qq --no-install-recommends openssh-server rpm postgresql-client",
    ]


@pytest.mark.skipif(os.geteuid() != 0, reason="installs only as root")
def test_a_postgresql_server_for_ci(bin_dir):
    calls = _apt(bin_dir, installed={"openssh-server", "openssh-client", "rpm", "git"})

    result = _run(bin_dir, "postgresql")

    assert result.returncode == 0, result.stderr
    assert calls.read_text().splitlines() == [
        "update -qq",
        "install -y -qq --no-install-recommends postgresql",
    ]
    # Elsewhere, the command to run names Fedora's package of the server.
    without_apt = _run(bin_dir.parent / "no-such-dir", "postgresql")
    assert "postgresql-server" in without_apt.stderr


def test_with_everything_installed_it_does_nothing(bin_dir):
    calls = _apt(bin_dir, installed={"openssh-server", "openssh-client", "rpm", "git"})

    result = _run(bin_dir)

    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert not calls.exists()


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv")
def test_as_another_user_it_prints_the_commands_and_fails(bin_dir):
    calls = _apt(bin_dir, installed={"openssh-client", "git"})

    result = _run(bin_dir, user="65534")

    assert result.returncode == 1
    assert not calls.exists()
    assert (
        "sudo apt-get update && sudo apt-get install -y --no-install-recommends openssh-server rpm"
        in result.stderr
    )
    assert "sudo dnf install -y openssh-server rpm-build" in result.stderr


def test_without_apt_it_names_the_fedora_packages_of_the_missing_programs(bin_dir):
    # No apt-get and no dpkg: the programs themselves are looked for, on a PATH without them.
    result = _run(bin_dir)

    assert result.returncode == 1
    assert "not an apt-based system" in result.stderr
    fedora = next(line for line in result.stderr.splitlines() if "dnf install" in line)
    sshd = [] if Path("/usr/sbin/sshd").exists() else ["openssh-server"]
    assert fedora.split()[5:] == [*sshd, "openssh-clients", "rpm-build", "git"]


def test_unknown_package_is_refused(bin_dir):
    _apt(bin_dir, installed=set())

    result = _run(bin_dir, "no-such-package")

    assert result.returncode == 2
    assert "unknown package 'no-such-package'" in result.stderr
