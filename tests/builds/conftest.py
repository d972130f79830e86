"""Fixtures for build tests: real packages made with rpmbuild from the demo spec."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

DEMO_SPEC = Path(__file__).resolve().parents[2] / "builds" / "demo" / "hello-coprssh.spec"


def _rpmbuild(mode: str, top: Path) -> list[Path]:
    if shutil.which("rpmbuild") is None:
        pytest.skip("rpmbuild is not installed")
    subprocess.run(
        ["rpmbuild", mode, "--quiet", "--define", f"_topdir {top}", str(DEMO_SPEC)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return sorted(top.rglob("*.rpm"))


@pytest.fixture(scope="session")
def demo_spec() -> Path:
    """The demo spec (no sources, noarch), as the SRPM phase would build it."""
    return DEMO_SPEC


@pytest.fixture(scope="session")
def demo_srpm(tmp_path_factory) -> Path:
    """A real source RPM, made by `rpmbuild -bs` from the demo spec."""
    (srpm,) = _rpmbuild("-bs", tmp_path_factory.mktemp("rpmbuild-bs"))
    assert srpm.name.endswith(".src.rpm")
    return srpm


@pytest.fixture(scope="session")
def demo_binary_rpm(tmp_path_factory) -> Path:
    """A real binary RPM, made by `rpmbuild -bb` from the demo spec."""
    (rpm,) = _rpmbuild("-bb", tmp_path_factory.mktemp("rpmbuild-bb"))
    assert rpm.name.endswith(".noarch.rpm")
    return rpm
