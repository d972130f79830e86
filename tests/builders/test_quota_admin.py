"""Operators change the SSH quota in the admin; the tick then lets queued leases go."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from builders import services
from builders.models import Builder, Lease, QuotaOverride, QuotaPolicy
from builders.tasks import tick
from tests.factories import make_builder, make_lease, make_pool

pytestmark = pytest.mark.django_db

POLICY_URL = "/admin/builders/quotapolicy/1/change/"
OVERRIDE_ADD_URL = "/admin/builders/quotaoverride/add/"
LIFETIMES_MESSAGE = "The default lifetime must be positive and at most the maximum lifetime."


@pytest.fixture
def operator(django_user_model):
    return django_user_model.objects.create_superuser("ops", "ops@example.org", "ops-password-1")


@pytest.fixture
def admin_client(client, operator):
    client.force_login(operator)
    return client


@pytest.fixture
def policy() -> QuotaPolicy:
    # A transactional test elsewhere may have flushed the migration's row.
    return QuotaPolicy.get()


@pytest.fixture
def pool(tmp_path):
    # A local pool over an empty directory: the tick's provider steps have nothing to touch.
    return make_pool(architectures=["x86_64"], provider_settings={"root_dir": str(tmp_path / "builders")})


@pytest.fixture
def five_requests(user, pool, policy):
    """Five SSH requests by one user: the quota's two wait for a builder, three are queued."""
    return [
        services.request_lease(owner=user, arch="x86_64", ssh=True, purpose=f"build #{i}") for i in range(5)
    ]


def states(leases: list[Lease]) -> list[str]:
    return [Lease.objects.get(pk=lease.pk).state for lease in leases]


def slot_count(user) -> int:
    return Lease.objects.holding_ssh_slot().filter(owner=user).count()


def run_tick() -> dict[str, object]:
    summary = tick()
    failed = [name for name, outcome in summary.items() if outcome == "error"]
    assert failed == [], summary
    return summary


def policy_form(**values: str) -> dict[str, str]:
    form = {
        "max_ssh_builders": "2",
        "default_lifetime": "01:00:00",
        "max_lifetime": "48:00:00",
        "warning_before": "00:10:00",
    }
    form.update(values)
    return form


# --- raising the quota -------------------------------------------------------------------


def test_operator_raises_a_users_quota_with_an_override_and_the_tick_promotes_the_queue(
    admin_client, user, five_requests
):
    W, Q = Lease.State.WAITING, Lease.State.QUEUED
    assert states(five_requests) == [W, W, Q, Q, Q]

    response = admin_client.post(
        OVERRIDE_ADD_URL,
        {
            "user": str(user.pk),
            "max_ssh_builders": "4",
            "default_lifetime": "",
            "max_lifetime": "",
            "note": "release week",
        },
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    override = QuotaOverride.objects.get(user=user)
    assert override.max_ssh_builders == 4
    assert override.default_lifetime is None
    # The admin only records the new limit; the queue moves on the next tick.
    assert states(five_requests) == [W, W, Q, Q, Q]

    summary = run_tick()

    assert sorted(summary["promoted"]) == [five_requests[2].pk, five_requests[3].pk]
    assert states(five_requests) == [W, W, W, W, Q]
    assert slot_count(user) == 4
    last = Lease.objects.get(pk=five_requests[4].pk)
    assert last.queue_reason.startswith("4 of 4 SSH builders in use: ")


def test_operator_raises_the_global_quota_and_the_tick_promotes_the_queue(
    admin_client, user, other_user, five_requests
):
    theirs = services.request_lease(owner=other_user, arch="x86_64", ssh=True, purpose="bob's build")
    assert admin_client.get(POLICY_URL).status_code == 200

    response = admin_client.post(POLICY_URL, policy_form(max_ssh_builders="3"))

    assert response.status_code == 302, response.content.decode()[:2000]
    assert QuotaPolicy.get().max_ssh_builders == 3
    assert slot_count(user) == 2

    run_tick()

    W, Q = Lease.State.WAITING, Lease.State.QUEUED
    assert states(five_requests) == [W, W, W, Q, Q]
    assert slot_count(user) == 3
    assert Lease.objects.get(pk=theirs.pk).state == W


def test_tick_promotes_nothing_while_slots_are_held(user, five_requests):
    run_tick()

    assert slot_count(user) == 2
    assert Lease.objects.filter(owner=user, state=Lease.State.QUEUED).count() == 3


def test_lowering_the_quota_queues_no_lease_that_holds_a_slot(admin_client, user, pool, five_requests):
    # Leases holding slots keep them; the lower limit applies to the next requests.
    response = admin_client.post(POLICY_URL, policy_form(max_ssh_builders="1"))
    assert response.status_code == 302

    run_tick()

    assert slot_count(user) == 2
    extra = services.request_lease(owner=user, arch="x86_64", ssh=True, purpose="one more")
    assert extra.state == Lease.State.QUEUED
    assert f"build #0 (SSH builder #{five_requests[0].pk})" in extra.queue_reason


# --- what the policy form refuses ---------------------------------------------------------


def test_policy_admin_refuses_a_default_lifetime_longer_than_the_max_lifetime(admin_client, policy):
    response = admin_client.post(
        POLICY_URL, policy_form(max_ssh_builders="5", default_lifetime="49:00:00", max_lifetime="48:00:00")
    )

    assert response.status_code == 200  # the form again, not a redirect
    assert LIFETIMES_MESSAGE in response.content.decode()
    assert response.context["adminform"].form.errors
    unchanged = QuotaPolicy.get()
    assert unchanged.max_ssh_builders == 2
    assert unchanged.default_lifetime == timedelta(hours=1)
    assert unchanged.max_lifetime == timedelta(hours=48)


def test_policy_admin_accepts_lifetimes_entered_as_hours_minutes_seconds(admin_client, policy):
    response = admin_client.post(
        POLICY_URL, policy_form(default_lifetime="02:30:00", max_lifetime="72:00:00")
    )

    assert response.status_code == 302
    changed = QuotaPolicy.get()
    assert changed.default_lifetime == timedelta(hours=2, minutes=30)
    assert changed.max_lifetime == timedelta(hours=72)


def test_policy_admin_has_no_delete_and_no_second_row(admin_client, policy):
    assert admin_client.get("/admin/builders/quotapolicy/1/delete/").status_code == 403
    assert admin_client.post("/admin/builders/quotapolicy/1/delete/", {"post": "yes"}).status_code == 403
    assert admin_client.get("/admin/builders/quotapolicy/add/").status_code == 403
    change_page = admin_client.get(POLICY_URL).content.decode()
    assert "/admin/builders/quotapolicy/1/delete/" not in change_page
    changelist = admin_client.get("/admin/builders/quotapolicy/").content.decode()
    assert "delete_selected" not in changelist
    assert QuotaPolicy.objects.count() == 1


def test_ordinary_users_cannot_change_the_quota(client, user, policy):
    client.force_login(user)

    response = client.post(POLICY_URL, policy_form(max_ssh_builders="50"))

    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
    assert QuotaPolicy.get().max_ssh_builders == 2


# --- overrides that contradict the policy --------------------------------------------------


def test_override_admin_refuses_a_max_lifetime_shorter_than_the_default_lifetime(admin_client, user, policy):
    response = admin_client.post(
        OVERRIDE_ADD_URL,
        {"user": str(user.pk), "max_ssh_builders": "", "default_lifetime": "", "max_lifetime": "00:30:00"},
    )

    assert response.status_code == 200
    assert not QuotaOverride.objects.filter(user=user).exists()


@pytest.mark.parametrize(
    "override",
    [
        {"max_lifetime": timedelta(minutes=30)},  # policy default 1 h is longer
        {"default_lifetime": timedelta(hours=72)},  # policy max 48 h is shorter
    ],
    ids=["short-max", "long-default"],
)
def test_start_lease_keeps_the_expiry_within_the_cap_whatever_the_override(user, pool, policy, override):
    QuotaOverride.objects.create(user=user, **override)
    builder = make_builder(pool=pool, state=Builder.State.LEASED, sandbox="ssh-override")
    lease = make_lease(
        owner=user, ssh=True, state=Lease.State.ASSIGNED, builder=builder, sandbox="ssh-override"
    )

    started = services.start_lease(lease_id=lease.pk)

    assert started.state == Lease.State.ACTIVE
    assert started.expires_at <= started.max_expires_at
    assert started.max_expires_at <= timezone.now() + timedelta(hours=48)
