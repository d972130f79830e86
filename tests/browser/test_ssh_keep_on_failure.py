"""Keep the builder for SSH if the build fails: the failed phase's builder turns up on the open page."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from tests.browser.conftest import Console, Service
from tests.browser.ssh_steps import (
    BUILD_TIMEOUT_MS,
    CHROOT,
    READY_TIMEOUT_MS,
    assert_not_reloaded,
    builder_of,
    key_pair,
    ssh,
    submit_build,
    watch_for_reloads,
)


def test_a_failed_build_keeps_its_builder_for_ssh_without_a_reload(
    page: Any, service: Service, console: Console, ssh_user: tuple[str, str], tmp_path: Path
) -> None:
    user, _ = ssh_user
    key = key_pair(tmp_path, "ed25519", "alice@laptop")
    build_id = submit_build(page, user, keep_for=key)
    watch_for_reloads(page)
    expect(page.locator(".messages")).to_have_text(
        f"Build #{build_id} submitted; if it fails, its builder is kept for SSH with 1 key."
    )
    expect(page.locator("#keep-note")).to_be_visible()
    expect(page.locator('[data-field="build-state"]')).to_have_text("failed", timeout=BUILD_TIMEOUT_MS)

    card = page.locator("section.phase", has=page.get_by_role("heading", name=CHROOT))
    panel = card.locator("[data-ssh]")
    expect(panel.locator('[data-ssh-field="state"]')).to_have_text("ready", timeout=READY_TIMEOUT_MS)
    expect(card.locator(".kept-note")).to_have_text(
        "This phase failed, and its builder was kept for debugging over SSH, as asked when the build was submitted."
    )
    expect(panel.locator('[data-ssh-field="key_fingerprints"]')).to_have_text(key.fingerprint)
    expect(panel.locator("[data-countdown]")).to_have_text(re.compile(r"^\(\d+ min \d\d s left\)$"))
    # The SRPM phase succeeded: its builder was not kept.
    expect(page.locator('section.phase[data-phase="srpm"] [data-ssh]')).to_have_count(0)
    assert_not_reloaded(page)

    # The panel put in works as one made with the page: Copy, and the builder the build failed
    # on, with what it left behind.
    copy = panel.get_by_role("button", name=re.compile(r"^Cop(y|ied)$"))
    copy.click()
    expect(copy).to_have_text("Copied")
    command = page.evaluate("navigator.clipboard.readText()")
    assert command == panel.locator('[data-ssh-field="ssh_command"]').inner_text()
    done = ssh(command, key, tmp_path, "ls", "-d", "jobs/*")
    assert done.returncode == 0, done.stderr
    assert f"jobs/{build_id}-{CHROOT}-" in done.stdout

    lease_id = int(panel.get_attribute("data-lease") or 0)
    asked: list[str] = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.accept()))
    panel.get_by_role("button", name="Release").click()
    expect(panel.locator('[data-ssh-field="state"]')).to_have_text("ended")
    assert asked == ["Release this SSH builder now? It is removed at once, with everything on it."]
    assert builder_of(service, lease_id, until="terminated") == "ended released terminated"
