"""The operators' console for builders: changelists, actions that call the services, who gets in."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.test import Client
from django.utils import timezone

from builders.models import AuditEvent, Builder, Lease, Pool, QuotaOverride, QuotaPolicy
from builders.services import pool_health
from builders.services.machines import provider_for
from tests.builders.factories import make_builder, make_pool, make_ssh_lease

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
    lease = make_ssh_lease(owner=user, sandbox="ssh-admin", builder=builder, purpose="build 12")
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
    response = queued.call(_action, ops, "lease", "prolong_one_hour", active.pk)
    active.refresh_from_db()
    assert active.expires_at == before + timedelta(hours=1)
    assert f"Prolonged by 1 hour: lease #{active.pk}." in ops.get(response["Location"]).content.decode()
    [event] = AuditEvent.objects.filter(action=AuditEvent.Action.PROLONGED)
    assert (event.lease_id, event.actor, event.source) == (active.pk, operator, "admin")


def test_prolong_action_past_the_cap_says_why_and_changes_nothing(ops, queued, active):
    Lease.objects.filter(pk=active.pk).update(expires_at=active.max_expires_at)
    response = queued.call(_action, ops, "lease", "prolong_one_hour", active.pk)
    page = ops.get(response["Location"]).content.decode()
    assert "Cannot prolong by 1 h" in page
    assert "Prolonged by 1 hour" not in page
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
    response = queued.call(_action, ops, "lease", "terminate_builders", active.pk)
    assert "1 builder(s) are being terminated." in ops.get(response["Location"]).content.decode()
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


# --- pool health and "Resume now" ------------------------------------------------------------


def _failing(name: str = "failing", **overrides) -> Pool:
    now = timezone.now()
    values = {
        "consecutive_failures": 3,
        "failing_since": now - timedelta(minutes=6),
        "backoff_until": now + timedelta(minutes=2),
        "last_error": "cannot create builder: sshd not found",
        "last_error_at": now - timedelta(minutes=1),
    }
    values.update(overrides)
    return make_pool(name=name, **values)


def _paused(name: str = "paused") -> Pool:
    return _failing(
        name, consecutive_failures=1, paused_at=timezone.now(), last_error="flavor m1.huge not found"
    )


def test_pool_changelist_shows_each_pools_health(ops, pool):
    failing, paused = _failing(), _paused()

    page = ops.get("/admin/builders/pool/").content.decode()

    assert ">healthy<" in page
    assert pool_health(failing).text in page
    assert "next attempt" in pool_health(failing).text
    assert pool_health(paused).text in page
    assert "flavor m1.huge not found; an operator must resume it" in page


@pytest.mark.parametrize(
    ("state", "names"), [("healthy", ["cloud"]), ("failing", ["failing"]), ("paused", ["paused"])]
)
def test_pool_changelist_filters_by_health(ops, pool, state, names):
    _failing(), _paused()

    response = ops.get("/admin/builders/pool/", {"health": state})

    assert [p.name for p in response.context["cl"].result_list] == names


def test_pool_change_page_shows_the_error_read_only_and_a_resume_button(ops):
    failing = _failing()

    response = ops.get(f"/admin/builders/pool/{failing.pk}/change/")

    page = response.content.decode()
    assert "cannot create builder: sshd not found" in page
    assert f'action="/admin/builders/pool/{failing.pk}/resume/"' in page
    assert "last_error" not in response.context["adminform"].form.fields
    assert "consecutive_failures" not in response.context["adminform"].form.fields


def test_healthy_pool_change_page_has_no_resume_button(ops, pool):
    page = ops.get(f"/admin/builders/pool/{pool.pk}/change/").content.decode()

    assert "/resume/" not in page
    assert "Resume now" not in page


def test_resume_action_resumes_failing_and_paused_pools_through_the_service(ops, operator, queued, pool):
    failing, paused = _failing(), _paused()

    response = queued.call(_action, ops, "pool", "resume", failing.pk, paused.pk, pool.pk)

    assert response.status_code == 302
    for resumed in (failing, paused):
        resumed.refresh_from_db()
        assert (resumed.paused_at, resumed.backoff_until, resumed.consecutive_failures) == (None, None, 0)
        assert pool_health(resumed).ok
    events = AuditEvent.objects.filter(action=AuditEvent.Action.POOL_RESUMED).order_by("pk")
    assert [(e.actor, e.source, e.remote_addr) for e in events] == [(operator, "admin", "203.0.113.9")] * 2
    assert "paused: was paused since" in " ".join(e.detail for e in events)
    assert "builders.tasks.assign_leases" in queued.names()
    page = ops.get(response["Location"]).content.decode()
    assert "Resumed: failing, paused." in page


def test_resume_action_on_a_healthy_pool_changes_nothing(ops, queued, pool):
    response = queued.call(_action, ops, "pool", "resume", pool.pk)

    assert "No selected pool was failing or paused." in ops.get(response["Location"]).content.decode()
    assert not AuditEvent.objects.exists()


def test_resume_button_resumes_the_pool(ops, operator, queued):
    paused = _paused()

    response = queued.call(ops.post, f"/admin/builders/pool/{paused.pk}/resume/", REMOTE_ADDR="203.0.113.9")

    assert response.status_code == 302
    assert response["Location"] == f"/admin/builders/pool/{paused.pk}/change/"
    paused.refresh_from_db()
    assert paused.paused_at is None
    [event] = AuditEvent.objects.filter(action=AuditEvent.Action.POOL_RESUMED)
    assert (event.actor, event.source) == (operator, "admin")
    assert "Pool paused resumed" in ops.get(response["Location"]).content.decode()


def test_resume_button_takes_only_a_post_with_a_csrf_token(operator, queued):
    paused = _paused()
    client = Client(enforce_csrf_checks=True)
    client.force_login(operator)

    get = client.get(f"/admin/builders/pool/{paused.pk}/resume/")
    forged = queued.call(client.post, f"/admin/builders/pool/{paused.pk}/resume/")

    assert get.status_code == 405
    assert forged.status_code == 403
    paused.refresh_from_db()
    assert paused.paused_at is not None
    assert not AuditEvent.objects.exists()


def test_resume_button_of_a_missing_pool_is_not_found(ops):
    assert ops.post("/admin/builders/pool/999999/resume/").status_code == 404


def test_editing_a_failing_pool_changes_its_settings_and_keeps_its_health(ops):
    failing = _failing()

    response = ops.post(
        f"/admin/builders/pool/{failing.pk}/change/",
        {
            "name": "failing",
            "provider": "local",
            "architectures": '["x86_64"]',
            "max_builders": "6",
            "warm_builders": "1",
            "provider_settings": "{}",
            "ssh_route": "both",
            "enabled": "on",
        },
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    edited = Pool.objects.get(pk=failing.pk)
    assert (edited.max_builders, edited.warm_builders) == (6, 1)
    assert edited.ssh_route == "both"
    assert (edited.consecutive_failures, edited.backoff_until) == (3, failing.backoff_until)
    assert edited.last_error == "cannot create builder: sshd not found"


@pytest.mark.parametrize("model", ["builder", "lease"])
def test_builder_and_lease_pages_have_no_save_button(ops, active, model):
    pk = active.builder_id if model == "builder" else active.pk

    page = ops.get(f"/admin/builders/{model}/{pk}/change/").content.decode()

    assert 'name="_save"' not in page
    assert 'name="_continue"' not in page


def _pool_form(name: str, provider: str, settings: str) -> dict[str, str]:
    return {
        "name": name,
        "provider": provider,
        "architectures": '["x86_64"]',
        "max_builders": "2",
        "warm_builders": "0",
        "provider_settings": settings,
        "ssh_route": "direct",
        "reaches_service": "on",
        "enabled": "on",
    }


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ('{"sshd_path": "sshd"}', "sshd_path must be an absolute path"),
        ('{"sshd_path": 7}', "sshd_path must be an absolute path"),
        ('{"root_dir": "builders"}', "root_dir must be an absolute path"),
        ('{"root_dir": "/srv/my builders"}', "root_dir must not contain whitespace"),
        ('{"root_dir": "/srv/b\\"x"}', "root_dir must not contain whitespace"),
        ('{"homes_dir": "/home/%u"}', "homes_dir must not contain whitespace"),
        ('{"homes_dir": "/home/a\\u0001b"}', "homes_dir must not contain whitespace"),
        ('{"homes_dir": "/' + "h" * 2000 + '"}', "homes_dir may have at most 1024 characters"),
        ('{"ipv6": "no"}', "ipv6 must be true or false"),
        ('{"isolate": 0}', "isolate must be true or false"),
        ('{"boot_timeout": "soon"}', "boot_timeout must be a number of seconds from 1 to 86400"),
        ('{"boot_timeout": true}', "boot_timeout must be a number of seconds from 1 to 86400"),
        ('{"boot_timeout": -5}', "boot_timeout must be a number of seconds from 1 to 86400"),
        ('{"boot_timeout": 1e308}', "boot_timeout must be a number of seconds from 1 to 86400"),
        ('{"sshd-path": "/usr/sbin/sshd"}', "not a setting of local pools: &#x27;sshd-path&#x27;"),
    ],
)
def test_pool_admin_refuses_local_settings_no_builder_could_start_with(ops, given, message):
    response = ops.post("/admin/builders/pool/add/", _pool_form("bad", "local", given))

    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Pool.objects.filter(name="bad").exists()


def test_pool_admin_names_every_problem_of_the_settings_at_once(ops):
    given = '{"root_dir": "rel", "ipv6": "yes", ' + ", ".join(f'"k{i}": 1' for i in range(50)) + "}"

    page = ops.post("/admin/builders/pool/add/", _pool_form("bad", "local", given)).content.decode()

    assert "root_dir must be an absolute path" in page
    assert "ipv6 must be true or false" in page
    # Fifty unknown keys are named by the first few, not quoted in full.
    assert "&#x27;k0&#x27;, &#x27;k1&#x27;" in page
    assert "&#x27;k49&#x27;" not in page
    assert not Pool.objects.filter(name="bad").exists()


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("{}", "auth must be an object"),
        ('{"auth": "secret"}', "auth must be an object"),
        ('{"auth": {"image": "f"}, "image": "f", "flavor": "m"}', "auth needs auth_url"),
        (
            '{"auth": {"auth_url": "https://k.example/v3"}}',
            "missing 2 required keyword-only arguments: &#x27;image&#x27; and &#x27;flavor&#x27;",
        ),
        (
            '{"auth": {"auth_url": "https://k.example/v3"}, "image": "", "flavor": "m"}',
            "image and flavor are required",
        ),
        (
            '{"auth": {"auth_url": "https://k.example/v3"}, "image": "f", "flavor": "m", "colour": "red"}',
            "unexpected keyword argument &#x27;colour&#x27;",
        ),
        (
            '{"auth": {"auth_url": "https://k.example/v3"}, "image": "f", "flavor": "m", "port": "22"}',
            "the OpenStack provider refuses these settings",
        ),
    ],
)
def test_pool_admin_refuses_openstack_settings_the_provider_refuses(ops, given, message):
    response = ops.post("/admin/builders/pool/add/", _pool_form("bad", "openstack", given))

    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Pool.objects.filter(name="bad").exists()


def test_pool_admin_saves_settings_a_provider_can_be_made_from(ops, tmp_path):
    given = (
        f'{{"root_dir": "{tmp_path}/pool", "sshd_path": "/usr/sbin/sshd", "ipv6": false, '
        '"isolate": null, "boot_timeout": 30}'
    )

    response = ops.post("/admin/builders/pool/add/", _pool_form("good", "local", given))

    assert response.status_code == 302, response.content.decode()[:2000]
    pool = Pool.objects.get(name="good")
    assert pool.provider_settings["boot_timeout"] == 30
    assert provider_for(pool).root_dir == tmp_path / "pool"
