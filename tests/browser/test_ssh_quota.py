"""An SSH build over the user's quota waits, says why, and starts once a slot frees."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from tests.browser.conftest import Console, Service
from tests.browser.ssh_steps import (
    CHROOT,
    READY_TIMEOUT_MS,
    assert_not_reloaded,
    failed_build,
    key_pair,
    resubmit_with_ssh,
    watch_for_reloads,
)


def _lower_quota(service: Service, user: str, *, to: int) -> None:
    """The operator gives `user` fewer SSH builders than the policy's two (so one test needs fewer)."""
    service.shell(
        "from django.contrib.auth import get_user_model\n"
        "from builders.models import QuotaOverride\n"
        "from builders.services import Via\n"
        "from builders.services.quota import save_quota_override\n"
        "users = get_user_model().objects\n"
        f"override = QuotaOverride(user=users.get(username={user!r}), max_ssh_builders={to})\n"
        "save_quota_override(override=override, via=Via(user=users.get(username='operator'), source='admin'))\n"
    )


def test_an_ssh_build_over_the_quota_waits_with_its_reason(
    page: Any, service: Service, console: Console, ssh_user: tuple[str, str], tmp_path: Path, screenshot: Any
) -> None:
    user, _ = ssh_user
    _lower_quota(service, user, to=1)
    build_id = failed_build(page, user)
    key = key_pair(tmp_path, "ed25519", "alice@laptop")
    page.goto(f"/builds/{build_id}/resubmit-ssh/")
    expect(page.locator("#ssh-quota")).to_contain_text("0 of 1 SSH builder in use.")
    first = resubmit_with_ssh(page, build_id, key.public)
    holder = page.locator("[data-ssh]")
    expect(holder.locator('[data-ssh-field="state"]')).to_have_text(re.compile("^(provisioning|ready)$"))
    holder_lease = holder.get_attribute("data-lease")

    # The form says the slot is taken, and by which build; the build is accepted all the same.
    page.goto(f"/builds/{build_id}/resubmit-ssh/")
    quota = page.locator("#ssh-quota")
    expect(quota).to_contain_text(f"1 of 1 SSH builder in use: build #{first}.")
    expect(quota).to_contain_text("All of them are in use: this build is accepted but waits")
    second = resubmit_with_ssh(page, build_id, key.public)
    watch_for_reloads(page)
    panel = page.locator("[data-ssh]")
    expect(panel.locator('[data-ssh-field="state"]')).to_have_text("queued")
    expect(panel.get_by_text("Queued: all your SSH builders are in use;")).to_be_visible()
    expect(panel.locator('[data-ssh-field="queue_reason"]')).to_have_text(
        f"1 of 1 SSH builders in use: build #{first} {CHROOT} (SSH builder #{holder_lease}). "
        "This one starts as soon as one of them ends."
    )
    expect(page.locator('[data-field="build-state"]')).not_to_have_text(re.compile("failed|succeeded"))
    panel.scroll_into_view_if_needed()
    screenshot("ssh-queued")

    # Releasing the first one (in another tab) frees the slot: the waiting build starts, live.
    other = page.context.new_page()
    other.goto(f"/builds/{first}/")
    other.once("dialog", lambda dialog: dialog.accept())
    other_panel = other.locator("[data-ssh]")
    expect(other_panel.locator('[data-ssh-field="state"]')).to_have_text("ready", timeout=READY_TIMEOUT_MS)
    other_panel.get_by_role("button", name="Release").click()
    expect(other_panel.locator('[data-ssh-field="state"]')).to_have_text("ended")
    other.close()
    expect(panel.locator('[data-ssh-field="queue_reason"]')).to_be_hidden()
    expect(panel.locator('[data-ssh-field="state"]')).to_have_text("ready", timeout=READY_TIMEOUT_MS)
    expect(panel.locator('[data-ssh-field="ssh_command"]')).to_have_text(re.compile(r"^ssh -J "))
    assert_not_reloaded(page)
    assert page.url.endswith(f"/builds/{second}/")

    page.once("dialog", lambda dialog: dialog.accept())
    panel.get_by_role("button", name="Release").click()
    expect(panel.locator('[data-ssh-field="state"]')).to_have_text("ended")
