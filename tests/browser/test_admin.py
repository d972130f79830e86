"""The operators' console in a real browser: the actions on pools and leases, and what they say."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import Service
from tests.browser.flows import ARCH


def run_action(page: Any, label: str) -> None:
    """Choose `label` in the changelist's action menu and run it on the rows ticked."""
    page.get_by_label("Action:").select_option(label=label)
    page.get_by_role("button", name="Go").click()


def tick(page: Any, name: str) -> None:
    page.get_by_role("checkbox", name=f"Select this object for an action - {name}", exact=True).check()


def minutes(remaining: str | None) -> int:
    """The lease list's "remaining" column, "1 h 59 min", in minutes."""
    found = re.fullmatch(r"(\d+) h (\d+) min", remaining or "")
    assert found, remaining
    return int(found.group(1)) * 60 + int(found.group(2))


def messages(page: Any) -> Any:
    return page.locator("ul.messagelist")


@pytest.fixture
def paused_pools(service: Service) -> Iterator[list[str]]:
    """Two pools, paused after a create failed for good, as a provider's hard error leaves them.

    Disabled, and for an architecture no test builds for: they never start a machine. Removed
    afterwards, so that other pages of the session show the demo's pool only.
    """
    names = [f"cloud-{secrets.token_hex(3)}" for _ in range(2)]
    service.shell(
        "from builders.models import Pool\n"
        "from builders.services.pools import record_failure\n"
        f"for name in {names!r}:\n"
        "    pool = Pool.objects.create(name=name, provider='local', architectures=['s390x'], enabled=False,\n"
        "                               max_builders=1, warm_builders=0)\n"
        "    record_failure(pool_id=pool.pk, message='the image has no sshd', permanent=True)\n"
    )
    yield names
    service.shell(f"from builders.models import Pool\nPool.objects.filter(name__in={names!r}).delete()\n")


def test_operators_resume_paused_pools_from_the_list_and_from_the_pool_page(
    page: Any, service: Service, as_operator: str, paused_pools: list[str], screenshot
) -> None:
    listed, opened = paused_pools
    page.goto("/admin/")
    pools = page.locator("#pools-health")
    for name in paused_pools:
        row = pools.get_by_role("row").filter(has=page.get_by_role("link", name=name, exact=True))
        expect(row).to_contain_text("paused since")
        expect(row).to_contain_text("the image has no sshd; an operator must resume it")
    expect(pools.get_by_role("row").filter(has=page.get_by_role("link", name="local"))).to_contain_text(
        "healthy"
    )
    screenshot("admin-index")

    # From the list: the action on a healthy pool says there was nothing to do.
    page.get_by_role("link", name="Pools").first.click()
    tick(page, "local")
    run_action(page, "Resume now")
    expect(messages(page)).to_have_text("No selected pool was failing or paused.")

    tick(page, listed)
    run_action(page, "Resume now")
    expect(messages(page)).to_have_text(f"Resumed: {listed}.")
    expect(page.get_by_role("row").filter(has=page.get_by_role("link", name=listed))).to_contain_text(
        "healthy"
    )
    expect(page.get_by_role("row").filter(has=page.get_by_role("link", name=opened))).to_contain_text(
        "paused since"
    )
    screenshot("admin-pools")

    # From the pool's own page: its "Resume now" button, there only while the pool is paused.
    page.get_by_role("link", name=opened, exact=True).click()
    page.get_by_role("button", name="Resume now").click()
    expect(messages(page)).to_have_text(f"Pool {opened} resumed: it starts builders again.")
    expect(page.get_by_role("button", name="Resume now")).to_have_count(0)

    # Both are in the audit log, as done by the operator in the admin.
    page.goto("/admin/builders/auditevent/?action__exact=pool-resumed")
    for name in paused_pools:
        row = page.get_by_role("row").filter(has_text=f"{name}: was paused since")
        expect(row).to_contain_text("operator")
        expect(row).to_contain_text("admin")


@pytest.fixture
def ssh_lease(service: Service) -> tuple[str, int]:
    """An active SSH lease of a fresh user on one of the demo's builders: (user name, lease id)."""
    user, _ = service.new_user("holder")
    code = (
        "import time\n"
        "from django.contrib.auth import get_user_model\n"
        "from builders.services import request_lease\n"
        f"owner = get_user_model().objects.get(username={user!r})\n"
        f"lease = request_lease(owner=owner, arch={ARCH!r}, ssh=True, purpose='debugging by hand', at_once=True)\n"
        # The task cluster hands it a builder and starts it; a fresh builder takes a few seconds.
        "deadline = time.monotonic() + 90\n"
        "while lease.state != 'active' and time.monotonic() < deadline:\n"
        "    time.sleep(0.2)\n"
        "    lease.refresh_from_db()\n"
        "print(lease.pk, lease.state)\n"
    )
    printed = service.manage("shell", "--no-imports", "-c", code, timeout=120)
    lease_id, state = printed.split()
    assert state == "active", printed
    return user, int(lease_id)


def test_operators_prolong_and_release_an_ssh_lease_with_the_list_actions(
    page: Any, service: Service, as_operator: str, ssh_lease: tuple[str, int], screenshot
) -> None:
    user, lease_id = ssh_lease
    page.goto("/admin/builders/lease/")
    page.get_by_role("textbox", name="Search").fill(user)
    page.get_by_role("textbox", name="Search").press("Enter")
    row = page.get_by_role("row").filter(has=page.get_by_role("link", name=f"lease #{lease_id}"))
    expect(row.locator("td.field-state")).to_have_text("Active")
    expect(row.locator("td.field-purpose")).to_have_text("debugging by hand")
    # Fresh from the default lifetime of 1 hour.
    remaining = row.locator("td.field-remaining_text")
    before = minutes(remaining.text_content())
    assert 57 <= before <= 60, remaining.text_content()

    tick(page, f"lease #{lease_id}")
    run_action(page, "Prolong selected leases by 1 hour")
    expect(messages(page)).to_have_text(f"Prolonged by 1 hour: lease #{lease_id}.")
    assert minutes(remaining.text_content()) - before in {59, 60}, remaining.text_content()
    screenshot("admin-leases")

    tick(page, f"lease #{lease_id}")
    run_action(page, "Release selected leases")
    expect(messages(page)).to_have_text("Released.")
    expect(row.locator("td.field-state")).to_have_text("Ended")
    expect(row.locator("td.field-end_reason")).to_have_text("Released")
    expect(remaining).to_have_text("—")

    # The lease's own page tells the same, and offers no Save: its state belongs to the services.
    row.get_by_role("link", name=f"lease #{lease_id}").click()
    expect(page.locator(".field-state .readonly")).to_have_text("Ended")
    expect(page.get_by_role("button", name="Save")).to_have_count(0)
