"""Steps that several browser tests take the way a user takes them, and the pages' parts they look at."""

from __future__ import annotations

import platform
import re
from pathlib import Path
from typing import Any

from playwright.sync_api import Locator, expect

ROOT = Path(__file__).resolve().parents[2]
HELLO_SPEC = ROOT / "builds" / "demo" / "hello-coprssh.spec"
SPECS = ROOT / "tests" / "builds" / "specs"
# The demo's local builders serve this machine's architecture only.
ARCH = platform.machine()
CHROOT_GROUP = "fedora-rawhide"
CHROOT = f"{CHROOT_GROUP}-{ARCH}"
# A build of one of the small test specs ends within seconds; the first build of a session may
# also wait for the demo's first builder.
BUILD_TIMEOUT_MS = 90_000


def create_project(page: Any, owner: str, name: str, *, description: str = "") -> None:
    """Create `owner/name` with one chroot through the new-project form; the page shows the project."""
    page.goto("/projects/")
    page.get_by_role("link", name="New project").click()
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("Description").fill(description)
    page.get_by_role("group", name=CHROOT_GROUP, exact=True).get_by_role("checkbox", name=ARCH).check()
    page.get_by_role("button", name="Create project").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"{owner}/{name}")


def choose_spec(page: Any, spec: Path) -> None:
    """On the project page: open the new-build form and pick `spec` for upload, in the one chroot."""
    page.get_by_role("link", name="New build").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("New build")
    page.get_by_role("radio", name="Upload a spec file or source RPM").check()
    page.get_by_label("Spec file or source RPM", exact=True).set_input_files(spec)
    page.get_by_role("checkbox", name=CHROOT).check()


def submit(page: Any) -> int:
    """Submit the new-build form; the id of the build whose page it leads to."""
    page.get_by_role("button", name="Submit build").click()
    expect(page).to_have_url(re.compile(r"/builds/\d+/$"))
    found = re.search(r"/builds/(\d+)/$", page.url)
    assert found, page.url
    return int(found.group(1))


def title(page: Any) -> Locator:
    """The page's h1; on a build page, "Build #N <state>"."""
    return page.get_by_role("heading", level=1)


def phase(page: Any, key: str) -> Locator:
    """The card of one phase of the build page ("SRPM" or a chroot), found by its heading."""
    heading = page.get_by_role("heading", level=2, name=key, exact=True)
    return page.locator("section.phase").filter(has=heading)


def live_log(page: Any, key: str) -> Locator:
    """The build output shown for a phase (builder-live.log, filled and followed by build.js)."""
    return page.get_by_role("log", name=f"builder-live.log of {key}")


def message(page: Any) -> Locator:
    """The messages above a page of the site (Django's messages framework)."""
    return page.locator("ul.messages")
