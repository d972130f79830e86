"""Builds in a real browser: submitting a spec, the build page following it live, failures, cancel."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from tests.browser.conftest import Console, Service, SubmittedBuild, log_in
from tests.browser.flows import (
    BUILD_TIMEOUT_MS,
    CHROOT,
    HELLO_SPEC,
    SPECS,
    choose_spec,
    create_project,
    live_log,
    message,
    phase,
    submit,
    title,
)

# Set up before the build page loads: what the page showed of the build's state and of its
# live log, each time either changed (the first entry is what the server sent).
WATCH_BUILD_PAGE = """
(() => {
  const seen = { states: [], log: [] };
  window.__buildPageSeen = seen;
  const note = (list, value) => { if (list[list.length - 1] !== value) list.push(value); };
  new MutationObserver(() => {
    const state = document.querySelector('h1 [data-field="build-state"]');
    const log = document.querySelector('[role="log"][aria-label="builder-live.log of %s"]');
    if (state) note(seen.states, state.textContent.trim());
    if (log) note(seen.log, log.textContent.length);
  }).observe(document, { subtree: true, childList: true, characterData: true });
})();
"""


def test_a_build_of_an_uploaded_spec_is_followed_live_without_reloading(
    page: Any, service: Service, as_new_user: tuple[str, str], console: Console, screenshot
) -> None:
    user, _ = as_new_user
    create_project(page, user, "hello", description="A greeting from a package built on coprssh.")
    choose_spec(page, HELLO_SPEC)
    screenshot("new-build")
    page.add_init_script(WATCH_BUILD_PAGE % CHROOT)
    build_id = submit(page)
    build_url = page.url
    page.evaluate("window.__noReload = 1")

    expect(message(page)).to_have_text(f"Build #{build_id} submitted.")
    expect(title(page)).to_have_text(f"Build #{build_id} succeeded", timeout=BUILD_TIMEOUT_MS)
    log = live_log(page, CHROOT)
    expect(log).to_contain_text("Wrote: ")
    expect(log).to_contain_text(re.compile(r"Succeeded\.\s*$"))
    chroot = phase(page, CHROOT)
    expect(chroot.get_by_role("link", name="hello-coprssh-1.0-1.noarch.rpm")).to_be_visible()
    expect(page.get_by_text("hello-coprssh-1.0-1", exact=True)).to_be_visible()  # the package, learnt live

    # All of that came to the page as it was: no reload, no other page.
    assert page.evaluate("window.__noReload") == 1
    assert page.url == build_url
    seen = page.evaluate("window.__buildPageSeen")
    assert seen["states"][0] in {"pending", "starting", "running"}, seen
    assert seen["states"][-1] == "succeeded", seen
    assert seen["log"][0] == 0, seen  # the server sends no log; the page reads it as it grows
    assert seen["log"] == sorted(set(seen["log"])), seen
    assert seen["log"][-1] == len(log.text_content()), seen
    screenshot("build-succeeded", full_page=True)

    # The project's page lists the build with its outcome.
    page.get_by_role("link", name=f"{user}/hello").first.click()
    row = page.get_by_role("row").filter(has=page.get_by_role("link", name=f"#{build_id}"))
    expect(row).to_contain_text("hello-coprssh")
    expect(row).to_contain_text("succeeded")
    screenshot("project")


def test_a_failed_build_shows_the_failing_check_and_offers_ssh(
    page: Any, service: Service, console: Console, failed_build: SubmittedBuild, screenshot
) -> None:
    log_in(page, *failed_build.owner)
    page.goto(f"/builds/{failed_build.build_id}/")

    expect(title(page)).to_have_text(f"Build #{failed_build.build_id} failed", timeout=BUILD_TIMEOUT_MS)
    chroot = phase(page, CHROOT)
    expect(chroot).to_contain_text("rpmbuild failed with exit code 1")
    # The log of the failed phase is open, with the failing check's own words and rpmbuild's verdict.
    log = live_log(page, CHROOT)
    expect(log).to_be_visible()
    expect(log).to_contain_text("check: expected 2, got 3")
    expect(log).to_contain_text("Bad exit status from")
    expect(log).to_contain_text("(%check)")
    expect(page.get_by_role("button", name="Cancel")).to_be_hidden()
    resubmit_ssh = page.get_by_role("link", name="Resubmit and allow SSH")
    expect(resubmit_ssh).to_be_visible()
    screenshot("build-failed", full_page=True)

    resubmit_ssh.click()
    expect(title(page)).to_have_text(f"Resubmit build #{failed_build.build_id} and allow SSH")
    expect(page.get_by_role("checkbox", name=CHROOT)).to_be_visible()
    expect(page.get_by_label("Public SSH keys")).to_be_visible()


def test_a_running_build_shows_its_output_and_can_be_canceled(
    page: Any, service: Service, as_new_user: tuple[str, str], screenshot
) -> None:
    user, _ = as_new_user
    create_project(page, user, "slow")
    choose_spec(page, SPECS / "slow.spec")  # %build prints a line, then sleeps for a minute
    build_id = submit(page)

    log = live_log(page, CHROOT)
    expect(log).to_contain_text("slow: building for a minute", timeout=BUILD_TIMEOUT_MS)
    expect(title(page)).to_have_text(f"Build #{build_id} running")
    screenshot("build-running", full_page=True)

    page.get_by_role("button", name="Cancel").click()
    expect(message(page)).to_have_text(f"Build #{build_id} canceled.")
    expect(title(page)).to_have_text(f"Build #{build_id} canceled")
    expect(phase(page, CHROOT)).to_contain_text(f"canceled by {user}")
    expect(page.get_by_role("link", name="Resubmit", exact=True)).to_be_visible()


def test_a_file_that_is_no_spec_is_refused_and_nothing_is_built(
    page: Any, service: Service, as_new_user: tuple[str, str], console: Console, tmp_path: Path
) -> None:
    user, _ = as_new_user
    console.expected.append(r"^400 .*/build/$")
    console.expected.append(r"status of 400 \(Bad Request\)")
    create_project(page, user, "refusals")
    picture = tmp_path / "photo.png"
    picture.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8)
    disguised = tmp_path / "photo.spec"
    disguised.write_bytes(picture.read_bytes())

    choose_spec(page, picture)
    page.get_by_role("button", name="Submit build").click()
    expect(page.locator(".errorlist")).to_have_text(
        "The file name 'photo.png' must end in .spec or .src.rpm."
    )
    expect(title(page)).to_have_text("New build")

    page.get_by_label("Spec file or source RPM", exact=True).set_input_files(disguised)
    page.get_by_role("button", name="Submit build").click()
    expect(page.locator(".errorlist")).to_have_text("The file photo.spec is a binary file, not a spec file.")

    page.goto(f"/projects/{user}/refusals/")
    expect(page.get_by_text("No builds yet.")).to_be_visible()
