"""Who may do what in the operators' console: actions need their permission, deletes need a service.

Ref: issue #8 part 4, a staff user with only view permission on leases released someone's lease,
and "Delete selected" removed active leases behind the services' back.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import Permission
from django.utils import timezone

from builders.models import AuditEvent, Builder, Lease, Pool, QuotaPolicy
from keys.models import SavedKey
from tests.builders.factories import make_builder, make_pool, make_ssh_lease

pytestmark = pytest.mark.django_db

VIEW_ONLY = ["view_lease", "view_builder", "view_pool", "view_savedkey", "view_quotapolicy"]


def _staff(django_user_model, username: str, codenames: list[str]):
    user = django_user_model.objects.create_user(username, password=f"{username}-password-1", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    return user


@pytest.fixture
def viewer(client, django_user_model):
    """A staff user who may look at everything the console shows and change nothing."""
    client.force_login(_staff(django_user_model, "viewer", VIEW_ONLY))
    return client


@pytest.fixture
def ops(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("ops", "ops@example.org", "ops-password-1"))
    return client


@pytest.fixture
def world(user):
    """An active SSH lease on its builder, a paused pool, a saved key: something for every action."""
    pool = make_pool(
        name="cloud",
        consecutive_failures=1,
        failing_since=timezone.now() - timedelta(minutes=5),
        paused_at=timezone.now() - timedelta(minutes=5),
        last_error="image fedora-41 not found",
        last_error_at=timezone.now() - timedelta(minutes=5),
    )
    builder = make_builder(pool, state=Builder.State.LEASED, sandbox="ssh-perm", single_use=True)
    lease = make_ssh_lease(owner=user, sandbox="ssh-perm", builder=builder, purpose="build 7")
    key = SavedKey.objects.create(
        user=user, title="laptop", key_type="ssh-ed25519", bits=256, data="AAAA", fingerprint="SHA256:abc"
    )
    return {"pool": pool, "builder": builder, "lease": lease, "key": key}


def snapshot(world: dict) -> dict:
    """Everything an action or a delete could change."""
    lease = Lease.objects.filter(pk=world["lease"].pk).values("state", "expires_at", "end_reason").first()
    builder = Builder.objects.filter(pk=world["builder"].pk).values("state").first()
    pool = Pool.objects.filter(pk=world["pool"].pk).values("paused_at", "consecutive_failures").first()
    return {
        "lease": lease,
        "builder": builder,
        "pool": pool,
        "keys": list(SavedKey.objects.values_list("pk", flat=True)),
        "events": AuditEvent.objects.count(),
    }


def _post_action(client, url: str, action: str, pk: int, **extra: str):
    data = {"action": action, ACTION_CHECKBOX_NAME: [str(pk)], **extra}
    return client.post(url, data, REMOTE_ADDR="203.0.113.7")


ACTIONS = [
    ("/admin/builders/builder/", "terminate", "builder"),
    ("/admin/builders/lease/", "prolong_one_hour", "lease"),
    ("/admin/builders/lease/", "release", "lease"),
    ("/admin/builders/lease/", "terminate_builders", "lease"),
    ("/admin/builders/pool/", "resume", "pool"),
    ("/admin/builders/lease/", "delete_selected", "lease"),
    ("/admin/builders/builder/", "delete_selected", "builder"),
    ("/admin/builders/pool/", "delete_selected", "pool"),
    ("/admin/keys/savedkey/", "delete_selected", "key"),
]


@pytest.mark.parametrize(
    ("url", "action", "target"), ACTIONS, ids=[f"{u.split('/')[-2]}-{a}" for u, a, _ in ACTIONS]
)
@pytest.mark.parametrize("confirmed", [False, True], ids=["asked", "confirmed"])
def test_view_only_staff_cannot_run_an_action(viewer, queued, world, url, action, target, confirmed):
    before = snapshot(world)
    extra = {"post": "yes"} if confirmed else {}  # "yes" is what a delete confirmation page posts

    response = queued.call(_post_action, viewer, url, action, world[target].pk, **extra)

    # The action is not among the user's choices: Django shows the changelist again, unchanged.
    assert response.status_code == 200
    assert snapshot(world) == before
    assert queued.take() == []


@pytest.mark.parametrize(
    "url",
    ["/admin/builders/builder/", "/admin/builders/lease/", "/admin/builders/pool/", "/admin/keys/savedkey/"],
)
def test_view_only_staff_is_offered_no_action(viewer, world, url):
    response = viewer.get(url)

    assert response.status_code == 200
    assert response.context["action_form"] is None
    assert 'name="action"' not in response.content.decode()


@pytest.mark.parametrize(
    "target",
    ["builder", "lease", "pool", "key"],
)
def test_view_only_staff_cannot_delete_from_the_change_page(viewer, world, target):
    url = {
        "builder": "/admin/builders/builder/{}/",
        "lease": "/admin/builders/lease/{}/",
        "pool": "/admin/builders/pool/{}/",
        "key": "/admin/keys/savedkey/{}/",
    }[target].format(world[target].pk)
    before = snapshot(world)

    assert viewer.get(url + "change/").status_code == 200
    assert "deletelink" not in viewer.get(url + "change/").content.decode()
    assert viewer.get(url + "delete/").status_code == 403
    assert viewer.post(url + "delete/", {"post": "yes"}).status_code == 403
    assert snapshot(world) == before


def test_view_only_staff_cannot_change_a_pool_or_resume_it(viewer, queued, world):
    pool = world["pool"]
    before = snapshot(world)

    page = viewer.get(f"/admin/builders/pool/{pool.pk}/change/").content.decode()
    response = queued.call(viewer.post, f"/admin/builders/pool/{pool.pk}/resume/")
    change = viewer.post(
        f"/admin/builders/pool/{pool.pk}/change/",
        {"name": "cloud", "provider": "local", "architectures": '["x86_64"]', "max_builders": "9"},
    )

    assert "Resume now" not in page
    assert response.status_code == 403
    assert change.status_code == 403
    assert snapshot(world) == before
    assert Pool.objects.get(pk=pool.pk).max_builders == 4
    assert queued.take() == []


def test_view_only_staff_cannot_change_the_quota_policy(viewer, world):
    policy = QuotaPolicy.get()
    before = snapshot(world)

    response = viewer.post(
        f"/admin/builders/quotapolicy/{policy.pk}/change/",
        {
            "max_ssh_builders": "50",
            "default_lifetime": "01:00:00",
            "max_lifetime": "48:00:00",
            "warning_before": "00:10:00",
        },
    )

    assert response.status_code == 403
    assert QuotaPolicy.get().max_ssh_builders == 2
    assert snapshot(world) == before


def test_lease_changer_prolongs_but_may_not_terminate_builders(client, django_user_model, queued, world):
    """Terminating a lease's builder from the leases' list needs change permission on builders."""
    client.force_login(_staff(django_user_model, "leaser", ["view_lease", "change_lease"]))
    lease, builder = world["lease"], world["builder"]

    offered = [
        name
        for name, _ in client.get("/admin/builders/lease/").context["action_form"].fields["action"].choices
    ]
    refused = queued.call(_post_action, client, "/admin/builders/lease/", "terminate_builders", lease.pk)
    builder.refresh_from_db()
    prolonged = queued.call(_post_action, client, "/admin/builders/lease/", "prolong_one_hour", lease.pk)

    assert offered == ["", "prolong_one_hour", "release"]
    # With other actions on offer, Django answers an unknown one with "No action selected." and a redirect.
    assert refused.status_code == 302
    assert builder.state == Builder.State.LEASED
    assert prolonged.status_code == 302
    assert Lease.objects.get(pk=lease.pk).expires_at == lease.expires_at + timedelta(hours=1)
    assert list(AuditEvent.objects.values_list("action", flat=True)) == [AuditEvent.Action.PROLONGED]


@pytest.mark.parametrize("model", ["builder", "lease", "pool"])
def test_nobody_deletes_builders_leases_or_pools_in_the_admin(ops, world, model):
    pk = world[model].pk
    before = snapshot(world)

    changelist = ops.get(f"/admin/builders/{model}/")
    change_page = ops.get(f"/admin/builders/{model}/{pk}/change/").content.decode()
    delete_page = ops.get(f"/admin/builders/{model}/{pk}/delete/")
    delete_post = ops.post(f"/admin/builders/{model}/{pk}/delete/", {"post": "yes"})
    bulk = _post_action(ops, f"/admin/builders/{model}/", "delete_selected", pk, post="yes")

    assert "delete_selected" not in changelist.content.decode()
    assert "deletelink" not in change_page
    assert (delete_page.status_code, delete_post.status_code) == (403, 403)
    assert bulk.status_code == 302  # "No action selected."
    assert snapshot(world) == before
