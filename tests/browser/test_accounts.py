"""Logging in and out in a real browser. Ref: #15"""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import expect

from tests.browser.conftest import Console, Service, log_in


def test_log_in_and_out(page: Any, service: Service, console: Console, screenshot) -> None:
    page.goto("/")
    screenshot("home")
    log_in(page, "demo", service.passwords["demo"])
    expect(page.get_by_role("button", name="Log out")).to_be_visible()
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("banner").get_by_role("link", name="Log in")).to_be_visible()
    # Logged out: the profile sends to the login page again.
    page.goto("/accounts/profile/")
    expect(page).to_have_url(re.compile(r"/accounts/login/"))


def test_a_wrong_password_is_refused_with_a_message(page: Any, service: Service, console: Console) -> None:
    page.goto("/accounts/login/")
    page.get_by_label("User name").fill("demo")
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Log in").click()
    expect(page.locator(".errorlist")).to_be_visible()
    assert console.errors == []
    expect(page).to_have_url(re.compile(r"/accounts/login/"))
