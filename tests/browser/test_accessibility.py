"""Accessibility of the main pages: axe-core finds no serious or critical problem on any of them."""

from __future__ import annotations

import re
from typing import Any

from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import expect

from tests.browser.conftest import Console, Service, SubmittedBuild, log_in
from tests.browser.flows import BUILD_TIMEOUT_MS, CHROOT, title

SERIOUS = {"serious", "critical"}
axe = Axe()


def assert_accessible(page: Any, what: str) -> None:
    """Run axe-core on the page as it is now; fail naming each serious or critical rule it breaks, and where."""
    violations = axe.run(page).response["violations"]
    serious = [v for v in violations if v["impact"] in SERIOUS]
    lines = []
    for violation in serious:
        lines.append(f"{violation['id']} ({violation['impact']}): {violation['help']}")
        for node in violation["nodes"][:10]:
            summary = " ".join(node.get("failureSummary", "").split())
            lines.append(f"    {' '.join(map(str, node['target']))}: {summary}")
    assert not serious, f"{what} ({page.url}):\n" + "\n".join(lines)


def test_the_pages_anyone_sees_are_accessible(page: Any, service: Service, console: Console) -> None:
    page.goto("/")
    assert_accessible(page, "home")
    page.get_by_role("banner").get_by_role("link", name="Log in").click()
    assert_accessible(page, "login")
    page.get_by_label("User name").fill("nobody")
    page.get_by_label("Password").fill("wrong")
    page.get_by_role("button", name="Log in").click()
    expect(page.locator(".errorlist")).to_be_visible()
    assert_accessible(page, "login, refused")

    page.get_by_role("link", name="Projects", exact=True).click()
    assert_accessible(page, "project list")
    page.get_by_role("link", name="hello-coprssh", exact=True).click()
    assert_accessible(page, "project")
    # The demo's own build of its sample spec, submitted when the demo started.
    page.get_by_role("link", name=re.compile(r"^#\d+$")).last.click()
    expect(title(page)).to_have_text(re.compile(r"^Build #\d+\s+succeeded\s*$"), timeout=BUILD_TIMEOUT_MS)
    assert_accessible(page, "succeeded build")


def test_a_users_pages_and_a_failed_build_are_accessible(
    page: Any, service: Service, console: Console, failed_build: SubmittedBuild
) -> None:
    console.expected.append(r"^400 .*/projects/new/$")
    console.expected.append(r"status of 400 \(Bad Request\)")
    user, password = failed_build.owner
    log_in(page, user, password)
    page.goto("/accounts/profile/")
    assert_accessible(page, "profile")

    page.goto("/projects/new/")
    assert_accessible(page, "new project")
    page.get_by_label("Name", exact=True).fill("../up")  # refused, as is the missing chroot
    page.get_by_role("button", name="Create project").click()
    expect(page.locator(".errorlist").first).to_be_visible()
    assert_accessible(page, "new project, refused")

    page.goto(f"/builds/{failed_build.build_id}/")
    expect(title(page)).to_have_text(f"Build #{failed_build.build_id} failed", timeout=BUILD_TIMEOUT_MS)
    expect(page.get_by_role("log", name=f"builder-live.log of {CHROOT}")).to_contain_text("Bad exit status")
    assert_accessible(page, "failed build")
    page.get_by_role("link", name="Resubmit and allow SSH").first.click()
    expect(title(page)).to_have_text(f"Resubmit build #{failed_build.build_id} and allow SSH")
    assert_accessible(page, "resubmit with SSH")

    page.get_by_role("link", name=f"{user}/check-fails").click()
    assert_accessible(page, "own project")
    page.get_by_role("link", name="New build").click()
    assert_accessible(page, "new build")


def test_the_operators_console_is_accessible(page: Any, service: Service, as_operator: str) -> None:
    page.goto("/admin/")
    assert_accessible(page, "admin index")
    for model in ("Pools", "Builders", "Leases", "Audit events"):
        page.get_by_role("link", name=model, exact=True).first.click()
        assert_accessible(page, f"admin: {model}")
    page.get_by_role("link", name="Pools", exact=True).first.click()
    page.get_by_role("link", name="local", exact=True).click()
    assert_accessible(page, "admin: the demo's pool")


def test_the_api_documentation_is_served_by_the_service_alone_and_is_accessible(
    page: Any, service: Service, console: Console, screenshot
) -> None:
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto("/api/v1/docs/")

    expect(page.get_by_role("heading", name=re.compile(r"^coprssh API"))).to_be_visible()
    operation = page.get_by_role("button", name=re.compile(r"^GET\s*\/api\/v1\/builds\/$"))
    expect(operation).to_be_visible()
    page.wait_for_load_state("networkidle")
    # Swagger UI, its styles and the schema all come from the service: nothing from a CDN.
    elsewhere = [url for url in requested if not url.startswith(f"{service.url}/")]
    assert elsewhere == [], elsewhere
    assert any(url.endswith("/api/v1/schema/") for url in requested), requested
    assert_accessible(page, "API docs")
    screenshot("api-docs")

    operation.click()
    page.get_by_role("button", name="Try it out").click()
    expect(page.get_by_role("button", name="Execute")).to_be_visible()
    assert_accessible(page, "API docs, an operation opened")
