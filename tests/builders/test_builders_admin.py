"""The operators' console for builders: changelists, actions that call the services, who gets in."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME

from builders.models import AuditEvent, Builder, Lease, QuotaOverride, QuotaPolicy
from tests.builders.conftest_lifecycle import *  # noqa: F403 - the fixtures
from tests.builders.conftest_lifecycle import make_builder, make_lease, make_pool

pytestmark = pytest.mark.django_db

MODELS = ["pool", "builder", "lease", "quotapolicy", "quotaoverride", "auditevent"]


@pytest.fixture
def operator(django_user_model):
    return django_user_model.objects.create_superuser("ops", "ops@example.org", "ops-password-1")


@pytest.fixture
def ops(client, operator):
    client.force_login(operator)
    return client


@pytest.fixture
def pool(db):
    return make_pool(name="cloud")


@pytest.fixture
def active(pool, user):
    """An SSH lease in use: its builder, the lease, an override and a few audit events."""
    builder = make_builder(pool, state=Builder.State.LEASED, sandbox="ssh-admin", single_use=True)
    lease = make_lease(user, sandbox="ssh-admin", builder=builder, purpose="build 12")
    QuotaOverride.objects.create(user=user, max_ssh_builders=3, note="workshop")
    AuditEvent.objects.create(
        action=AuditEvent.Action.LEASE_STARTED, actor=user, lease=lease, builder=builder
    )
    return lease


def _action(client, model: str, action: str, *pks: int):
    return client.post(
        f"/admin/builders/{model}/",
        {"action": action, ACTION_CHECKBOX_NAME: [str(pk) for pk in pks]},
        REMOTE_ADDR="203.0.113.9",
    )


@pytest.mark.parametrize("model", MODELS)
def test_operator_sees_each_changelist(ops, active, model):
    response = ops.get(f"/admin/builders/{model}/")
    assert response.status_code == 200


def test_operator_sees_a_builder_and_a_lease(ops, active):
    assert ops.get(f"/admin/builders/builder/{active.builder_id}/change/").status_code == 200
    assert ops.get(f"/admin/builders/lease/{active.pk}/change/").status_code == 200
    assert ops.get(f"/admin/builders/quotapolicy/{QuotaPolicy.get().pk}/change/").status_code == 200


def test_builder_changelist_shows_the_current_lease(ops, active):
    page = ops.get("/admin/builders/builder/").content.decode()
    assert f"#{active.pk} alice (active)" in page
    assert "ssh-admin" in page


def test_terminate_action_terminates_a_ready_builder_through_the_service(ops, operator, queued, pool):
    builder = make_builder(pool)
    other = make_builder(pool)
    response = queued.call(_action, ops, "builder", "terminate", builder.pk)
    assert response.status_code == 302
    builder.refresh_from_db()
    other.refresh_from_db()
    assert builder.state == Builder.State.TERMINATING
    assert other.state == Builder.State.READY
    assert queued.take() == [("builders.tasks.delete_builder", (builder.pk,))]
    [event] = AuditEvent.objects.filter(action=AuditEvent.Action.TERMINATED)
    assert (event.builder_id, event.actor, event.source, event.remote_addr) == (
        builder.pk,
        operator,
        "admin",
        "203.0.113.9",
    )
    page = ops.get(response["Location"]).content.decode()
    assert "1 builder(s) are being terminated." in page


def test_terminate_action_ends_the_lease_on_the_builder(ops, queued, active):
    queued.call(_action, ops, "builder", "terminate", active.builder_id)
    active.refresh_from_db()
    assert (active.state, active.end_reason) == (Lease.State.ENDED, Lease.EndReason.TERMINATED)
    assert active.builder.state == Builder.State.TERMINATING


def test_terminate_action_warns_about_a_builder_it_cannot_terminate(ops, queued, pool):
    failed = make_builder(pool, state=Builder.State.FAILED)
    response = queued.call(_action, ops, "builder", "terminate", failed.pk)
    page = ops.get(response["Location"]).content.decode()
    assert "has no machine to terminate" in page
    failed.refresh_from_db()
    assert failed.state == Builder.State.FAILED
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.TERMINATED).exists()


def test_prolong_action_adds_an_hour_through_the_service(ops, operator, queued, active):
    before = active.expires_at
    queued.call(_action, ops, "lease", "prolong_one_hour", active.pk)
    active.refresh_from_db()
    assert active.expires_at == before + timedelta(hours=1)
    [event] = AuditEvent.objects.filter(action=AuditEvent.Action.PROLONGED)
    assert (event.lease_id, event.actor, event.source) == (active.pk, operator, "admin")


def test_prolong_action_past_the_cap_says_why_and_changes_nothing(ops, queued, active):
    Lease.objects.filter(pk=active.pk).update(expires_at=active.max_expires_at)
    response = queued.call(_action, ops, "lease", "prolong_one_hour", active.pk)
    page = ops.get(response["Location"]).content.decode()
    assert "Cannot prolong by 1 h" in page
    active.refresh_from_db()
    assert active.expires_at == active.max_expires_at


def test_release_action_ends_the_lease_through_the_service(ops, operator, queued, active):
    queued.call(_action, ops, "lease", "release", active.pk)
    active.refresh_from_db()
    assert (active.state, active.end_reason) == (Lease.State.ENDED, Lease.EndReason.RELEASED)
    assert active.builder.state == Builder.State.TERMINATING
    assert ("builders.tasks.delete_builder", (active.builder_id,)) in queued.take()
    [event] = AuditEvent.objects.filter(action=AuditEvent.Action.RELEASED)
    assert (event.lease_id, event.actor, event.source) == (active.pk, operator, "admin")


def test_terminate_builders_action_of_leases(ops, operator, queued, active):
    queued.call(_action, ops, "lease", "terminate_builders", active.pk)
    active.refresh_from_db()
    assert active.builder.state == Builder.State.TERMINATING
    assert AuditEvent.objects.get(action=AuditEvent.Action.TERMINATED).actor == operator


@pytest.mark.parametrize(
    "path",
    [f"/admin/builders/{model}/" for model in MODELS]
    + ["/admin/builders/builder/1/change/", "/admin/builders/lease/1/change/", "/admin/builders/pool/add/"],
)
def test_non_staff_user_is_sent_to_the_login_page(client, user, active, path):
    client.force_login(user)
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_non_staff_user_cannot_run_an_action(client, user, queued, active):
    client.force_login(user)
    response = queued.call(_action, client, "builder", "terminate", active.builder_id)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    active.builder.refresh_from_db()
    assert active.builder.state == Builder.State.LEASED


@pytest.mark.parametrize("model", ["builder", "lease", "auditevent"])
def test_builders_leases_and_events_cannot_be_added_by_hand(ops, model):
    assert ops.get(f"/admin/builders/{model}/add/").status_code == 403
    assert ops.post(f"/admin/builders/{model}/add/", {}).status_code == 403
