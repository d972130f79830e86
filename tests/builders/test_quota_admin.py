"""Operators change the SSH quota in the admin; the tick then lets queued leases go."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import Permission
from django.utils import timezone

from builders import services
from builders.models import AuditEvent, Builder, Lease, QuotaOverride, QuotaPolicy
from builders.services.quota import delete_quota_override
from builders.tasks import tick
from tests.builders.factories import make_builder, make_lease, make_pool

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


# --- every edit leaves an audit event ------------------------------------------------------


def quota_events() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=AuditEvent.Action.QUOTA_CHANGED).order_by("pk"))


def test_policy_edit_is_audited_with_what_changed_and_who(admin_client, operator, policy):
    response = admin_client.post(
        POLICY_URL, policy_form(max_ssh_builders="3", max_lifetime="72:00:00"), REMOTE_ADDR="203.0.113.5"
    )

    assert response.status_code == 302
    [event] = quota_events()
    assert event.detail == "quota policy: max_ssh_builders 2 → 3, max_lifetime 48:00:00 → 72:00:00"
    assert (event.actor, event.source, event.remote_addr) == (operator, "admin", "203.0.113.5")


def test_saving_the_policy_unchanged_writes_no_event(admin_client, policy):
    response = admin_client.post(POLICY_URL, policy_form())

    assert response.status_code == 302
    assert quota_events() == []


def test_refused_policy_edit_writes_no_event(admin_client, policy):
    admin_client.post(POLICY_URL, policy_form(default_lifetime="49:00:00"))

    assert quota_events() == []


def test_override_created_changed_and_deleted_each_leave_an_event(admin_client, operator, user, policy):
    form = {
        "user": str(user.pk),
        "max_ssh_builders": "4",
        "default_lifetime": "",
        "max_lifetime": "",
        "note": "demo",
    }
    assert admin_client.post(OVERRIDE_ADD_URL, form).status_code == 302
    override = QuotaOverride.objects.get(user=user)
    change_url = f"/admin/builders/quotaoverride/{override.pk}/change/"
    changed = {**form, "max_ssh_builders": "3", "max_lifetime": "04:00:00"}
    assert admin_client.post(change_url, changed).status_code == 302
    delete_url = f"/admin/builders/quotaoverride/{override.pk}/delete/"
    assert admin_client.post(delete_url, {"post": "yes"}).status_code == 302

    assert not QuotaOverride.objects.exists()
    assert [event.detail for event in quota_events()] == [
        "quota override for alice created: max_ssh_builders 4, note 'demo'",
        "quota override for alice changed: max_ssh_builders 4 → 3, max_lifetime unset → 04:00:00",
        "quota override for alice deleted (was max_ssh_builders 3, max_lifetime 04:00:00, note 'demo');"
        " the policy applies",
    ]
    assert {(event.actor, event.source) for event in quota_events()} == {(operator, "admin")}


def test_bulk_delete_of_overrides_audits_each(admin_client, user, other_user, policy):
    first = QuotaOverride.objects.create(user=user, max_ssh_builders=5)
    second = QuotaOverride.objects.create(user=other_user, note="course")

    response = admin_client.post(
        "/admin/builders/quotaoverride/",
        {"action": "delete_selected", ACTION_CHECKBOX_NAME: [str(first.pk), str(second.pk)], "post": "yes"},
    )

    assert response.status_code == 302
    assert not QuotaOverride.objects.exists()
    assert sorted(event.detail for event in quota_events()) == [
        "quota override for alice deleted (was max_ssh_builders 5); the policy applies",
        "quota override for bob deleted (was note 'course'); the policy applies",
    ]


def test_delete_quota_override_twice_is_harmless(user, policy):
    override = QuotaOverride.objects.create(user=user, max_ssh_builders=5)
    via = services.Via(source="admin")

    assert delete_quota_override(override_id=override.pk, via=via) is not None
    assert delete_quota_override(override_id=override.pk, via=via) is None
    assert len(quota_events()) == 1


def test_view_only_staff_cannot_edit_overrides(client, django_user_model, user, policy):
    viewer = django_user_model.objects.create_user("viewer", password="viewer-password-1", is_staff=True)
    viewer.user_permissions.set(
        Permission.objects.filter(codename__in=["view_quotapolicy", "view_quotaoverride"])
    )
    override = QuotaOverride.objects.create(user=user, max_ssh_builders=5)
    client.force_login(viewer)

    change = client.post(
        f"/admin/builders/quotaoverride/{override.pk}/change/",
        {
            "user": str(user.pk),
            "max_ssh_builders": "50",
            "default_lifetime": "",
            "max_lifetime": "",
            "note": "",
        },
    )
    delete = client.post(f"/admin/builders/quotaoverride/{override.pk}/delete/", {"post": "yes"})
    add = client.post(OVERRIDE_ADD_URL, {"user": str(user.pk), "max_ssh_builders": "9"})

    assert (change.status_code, delete.status_code, add.status_code) == (403, 403, 403)
    assert QuotaOverride.objects.get(pk=override.pk).max_ssh_builders == 5
    assert quota_events() == []
