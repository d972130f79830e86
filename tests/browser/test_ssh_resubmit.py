"""Resubmit a failed build with SSH: the key preview, then log in to its builder, prolong and release it."""

from __future__ import annotations

import re
import subprocess
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from tests.browser.conftest import Console, Service
from tests.browser.ssh_steps import (
    CHROOT,
    READY_TIMEOUT_MS,
    SSH_TIMEOUT,
    KeyPair,
    assert_not_reloaded,
    builder_of,
    failed_build,
    key_pair,
    ssh,
    ssh_config,
    watch_for_reloads,
)
from tests.fakes import KeyServer

SHOWN_TIME = "%Y-%m-%d %H:%M:%S UTC"  # the test browser and the demo show UTC


def _preview_line(page: Any, number: int) -> Any:
    return page.locator("#key-preview ul.preview > li").nth(number - 1)


def test_resubmit_with_ssh_log_in_prolong_and_release(
    page: Any,
    service: Service,
    console: Console,
    ssh_user: tuple[str, str],
    keys_online: KeyServer,
    tmp_path: Path,
    screenshot: Any,
) -> None:
    user, _ = ssh_user
    build_id = failed_build(page, user)
    page.get_by_role("link", name="Resubmit and allow SSH").click()
    expect(page).to_have_url(re.compile(rf"/builds/{build_id}/resubmit-ssh/$"))
    expect(page.get_by_role("heading", name=f"Resubmit build #{build_id} and allow SSH")).to_be_visible()
    expect(page.get_by_label(CHROOT)).to_be_checked()  # the failed chroot

    # The keys are checked line by line as they are pasted and typed, without submitting anything.
    posted: list[str] = []
    page.on("request", lambda request: request.method == "POST" and posted.append(request.url))
    mine = key_pair(tmp_path, "ed25519", "alice@laptop")
    old = key_pair(tmp_path, "dsa", "alice@old-box")
    on_github = key_pair(tmp_path, "ed25519", "alice@github")
    github_path = keys_online.github("alice-gh", on_github)
    keys = page.get_by_label("Public SSH keys")
    status = page.locator("#key-preview .preview-status")

    keys.fill(mine.public)  # pasted
    expect(status).to_have_text("1 key will be deployed:")
    expect(_preview_line(page, 1)).to_have_text(
        f"line 1: ssh-ed25519 · 256 bits · {mine.fingerprint} · alice@laptop"
    )
    expect(_preview_line(page, 1)).to_have_class("key")

    keys.fill(f"{mine.public}\n{old.public}\n")
    expect(status).to_have_text("1 line is not accepted; fix or remove it before submitting.")
    expect(_preview_line(page, 2)).to_have_text(
        "line 2: DSA keys (ssh-dss) are not accepted; create a new key with `ssh-keygen -t ed25519`"
    )
    expect(_preview_line(page, 2)).to_have_class("error")

    keys.press("Control+End")
    keys.press_sequentially("GitHub:alice-gh", delay=20)  # typed
    github = _preview_line(page, 3)
    expect(github).to_have_class("reference")
    expect(github).to_contain_text("line 3: GitHub:alice-gh → 1 key")
    expect(github.get_by_role("listitem")).to_have_text(
        f"ssh-ed25519 · 256 bits · {on_github.fingerprint} · GitHub:alice-gh"
    )
    expect(status).to_have_text("1 line is not accepted; fix or remove it before submitting.")
    assert keys_online.hits(github_path) >= 1
    assert all(url.endswith("/api/v1/keys/check/") for url in posted), posted
    expect(page).to_have_url(re.compile(rf"/builds/{build_id}/resubmit-ssh/$"))
    expect(page.locator("#ssh-quota")).to_contain_text("0 of 2 SSH builders in use")
    screenshot("ssh-resubmit")

    # Without the refused line, both keys go.
    keys.fill(f"{mine.public}\nGitHub:alice-gh\n")
    expect(status).to_have_text("2 keys will be deployed:")
    page.get_by_role("button", name="Resubmit with SSH").click()
    expect(page.locator(".messages")).to_contain_text(
        re.compile(rf"Build #\d+ submitted from #{build_id} with SSH access for 2 keys\.")
    )
    watch_for_reloads(page)
    new_id = int(re.findall(r"/builds/(\d+)/$", page.url)[0])
    assert new_id != build_id
    panel = page.locator("[data-ssh]")
    expect(panel).to_have_count(1)
    lease_id = int(panel.get_attribute("data-lease") or 0)

    # The panel turns ready by itself, whole: how to log in, through the gateway first.
    expect(panel.locator('[data-ssh-field="state"]')).to_have_text("ready", timeout=READY_TIMEOUT_MS)
    command_box = panel.locator('[data-ssh-field="ssh_command"]')
    gateway = rf"\S+@127\.0\.0\.1:{service.gateway_port}"
    expect(command_box).to_have_text(re.compile(rf"ssh -J {gateway} -p \d+ csb-\w+@127\.0\.0\.1"))
    expect(panel.locator(".ssh-route")).to_have_text(
        "Through the coprssh SSH gateway (ssh -J): it works without IPv6 and from behind most firewalls."
    )
    expect(panel.locator(".ssh-other")).to_have_text(
        re.compile(r"Or directly, if you can reach its address: ssh -p \d+ csb-\w+@127\.0\.0\.1")
    )
    expect(panel.locator("dd", has_text=re.compile(rf"^{gateway}$"))).to_be_visible()
    for fingerprint in (mine.fingerprint, on_github.fingerprint):
        expect(panel.locator('[data-ssh-field="key_fingerprints"]')).to_contain_text(fingerprint)
    command = command_box.inner_text()
    login_user = panel.locator('[data-ssh-field="user"]').inner_text()
    assert login_user in command

    countdown = panel.locator("[data-countdown]")
    expect(countdown).to_have_text(re.compile(r"^\(\d+ min \d\d s left\)$"))
    before = countdown.inner_text()
    expect(countdown).not_to_have_text(before, timeout=5_000)  # it counts down, second by second
    assert_not_reloaded(page)
    panel.scroll_into_view_if_needed()
    screenshot("ssh-ready")

    # Copy puts exactly that command on the clipboard, and it logs in.
    copy = panel.get_by_role("button", name=re.compile(r"^Cop(y|ied)$"))  # its label says what it did
    copy.click()
    expect(copy).to_have_text("Copied")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == command
    done = ssh(copied, mine, tmp_path, "id", "-un")
    assert (done.returncode, done.stdout.strip()) == (0, login_user), done.stderr
    _log_in_with_the_shown_config(panel, lease_id, mine, tmp_path)

    # Prolong: the expiry moves by the hours asked for.
    expires = panel.locator('[data-ssh-field="expires_at_display"]')
    old_expiry = datetime.strptime(expires.inner_text(), SHOWN_TIME)
    panel.get_by_label("Prolong by").fill("2")
    panel.get_by_role("button", name="Prolong").click()
    expect(page.locator(".messages")).to_contain_text("SSH builder prolonged by 2 h")
    expect(expires).to_have_text((old_expiry + timedelta(hours=2)).strftime(SHOWN_TIME))
    # The page made again shows the logins above, through the gateway.
    expect(panel.locator(".ssh-last-login")).to_contain_text("Last login through the gateway:")

    # Release: asked first, then the builder is gone.
    asked: list[str] = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.accept()))
    panel.get_by_role("button", name="Release").click()
    expect(page.locator(".messages")).to_contain_text("SSH builder released")
    assert asked == ["Release this SSH builder now? It is removed at once, with everything on it."]
    expect(panel.locator('[data-ssh-field="state"]')).to_have_text("ended")
    expect(panel.get_by_text("This SSH builder is gone: released,")).to_be_visible()
    expect(panel.get_by_role("button", name="Copy")).to_be_hidden()
    assert builder_of(service, lease_id, until="terminated") == "ended released terminated"
    refused = ssh(copied, mine, tmp_path, "true")
    assert refused.returncode != 0


def _log_in_with_the_shown_config(panel: Any, lease_id: int, key: KeyPair, directory: Path) -> None:
    """`ssh coprssh-<id>` with the panel's ~/.ssh/config lines, its known_hosts pinning the host keys."""
    panel.get_by_text("~/.ssh/config and known_hosts").click()
    known_hosts = directory / "known_hosts"
    known_hosts.write_text(panel.locator('[data-ssh-field="known_hosts"]').inner_text() + "\n")
    config = ssh_config(directory, key, known_hosts=known_hosts)
    shown = panel.locator('[data-ssh-field="ssh_config"]').inner_text()
    config.write_text(shown + "\n" + config.read_text())  # its hosts first, then the defaults
    done = subprocess.run(
        ["ssh", "-F", str(config), f"coprssh-{lease_id}", "true"],
        capture_output=True,
        text=True,
        timeout=SSH_TIMEOUT,
    )
    assert done.returncode == 0, done.stderr
