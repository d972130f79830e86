"""Projects in a real browser: the new-project form, and what it refuses."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import expect

from tests.browser.conftest import Console, Service
from tests.browser.flows import ARCH, CHROOT, CHROOT_GROUP, create_project, message, title


def test_a_project_is_created_through_the_form(
    page: Any, service: Service, as_new_user: tuple[str, str], screenshot
) -> None:
    user, _ = as_new_user
    page.goto("/projects/")
    page.get_by_role("link", name="New project").click()
    expect(title(page)).to_have_text("New project")
    page.get_by_label("Name", exact=True).fill("hello-world")
    page.get_by_label("Description").fill("Greetings, packaged.\nSecond line.")
    page.get_by_role("group", name=CHROOT_GROUP, exact=True).get_by_role("checkbox", name=ARCH).check()
    screenshot("new-project")
    page.get_by_role("button", name="Create project").click()

    expect(page).to_have_url(re.compile(rf"/projects/{user}/hello-world/$"))
    expect(message(page)).to_have_text(f"Created project {user}/hello-world.")
    expect(title(page)).to_have_text(f"{user}/hello-world")
    expect(page.get_by_text("Greetings, packaged.")).to_be_visible()
    expect(page.locator(".chroot")).to_have_text([CHROOT])
    expect(page.get_by_text("No builds yet.")).to_be_visible()
    # The owner may build in it; the list of projects has it too.
    expect(page.get_by_role("link", name="New build")).to_be_visible()
    page.get_by_role("link", name="Projects", exact=True).first.click()
    row = page.get_by_role("row").filter(has=page.get_by_role("link", name="hello-world", exact=True))
    expect(row).to_contain_text(user)
    expect(row).to_contain_text("no builds yet")


def test_the_form_refuses_a_bad_name_and_a_taken_one_and_creates_nothing(
    page: Any, service: Service, as_new_user: tuple[str, str], console: Console
) -> None:
    user, _ = as_new_user
    console.expected.append(r"^400 .*/projects/new/$")
    console.expected.append(r"status of 400 \(Bad Request\)")
    create_project(page, user, "taken")

    for name, why in [
        ("../etc", "letters, digits and . _ + - (not first)"),
        ("x" * 101, "at most 100 characters"),
        ("taken", "You already have a project named taken."),
    ]:
        page.goto("/projects/new/")
        # What a hostile client sends, past the browser's own length limit.
        page.get_by_label("Name", exact=True).evaluate("input => input.removeAttribute('maxlength')")
        page.get_by_label("Name", exact=True).fill(name)
        page.get_by_role("group", name=CHROOT_GROUP, exact=True).get_by_role("checkbox", name=ARCH).check()
        page.get_by_role("button", name="Create project").click()
        expect(page.locator(".errorlist")).to_contain_text(why)
        expect(title(page)).to_have_text("New project")

    # Without a chroot: said so, and the name typed is kept.
    page.get_by_label("Name", exact=True).fill("no-chroot")
    page.get_by_role("group", name=CHROOT_GROUP, exact=True).get_by_role("checkbox", name=ARCH).uncheck()
    page.get_by_role("button", name="Create project").click()
    expect(page.locator(".errorlist")).to_contain_text("Choose at least one chroot.")
    expect(page.get_by_label("Name", exact=True)).to_have_value("no-chroot")

    # Nothing of these was created: the user has the one project only.
    page.goto("/projects/")
    expect(page.get_by_role("row").filter(has_text=user)).to_have_count(1)
