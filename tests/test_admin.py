"""The operators' console: who gets in, and its front page (task queue, pools, SSH builders, audit)."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_q.models import Failure, OrmQ, Schedule, Success

from builders.models import AuditEvent, Builder, Lease, Pool
from builders.tasks import TICK_FUNC, TICK_SCHEDULE_NAME
from builds.models import Build, BuildChroot
from builds.services import create_project, submit_build
from builds.sources import check_upload
from coprssh import console
from coprssh.health import queue_health
from tests.builders.factories import make_builder, make_lease, make_pool, make_ssh_lease


@pytest.fixture
def operator(django_user_model):
    return django_user_model.objects.create_superuser("ops", "ops@example.org", "ops-password-1")


def _task(model, *, stopped, func=TICK_FUNC, name="t"):
    return model.objects.create(
        id=f"{name}{stopped.timestamp()}"[:32],
        name=name,
        func=func,
        started=stopped - timedelta(seconds=1),
        stopped=stopped,
        success=model is Success,
        result="{}",
    )


@pytest.mark.django_db
def test_anonymous_and_ordinary_users_are_sent_to_the_admin_login(client, user):
    response = client.get("/admin/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
    client.force_login(user)
    response = client.get("/admin/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


@pytest.mark.django_db
def test_console_front_page_says_the_tick_never_ran(client, operator):
    # Its first run was due ten minutes ago, and no cluster took it up.
    Schedule.objects.update_or_create(
        name=TICK_SCHEDULE_NAME,
        defaults={"func": TICK_FUNC, "next_run": timezone.now() - timedelta(minutes=10)},
    )
    client.force_login(operator)
    response = client.get("/admin/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "coprssh operators&#x27; console" in page
    assert "Task queue" in page
    assert "overdue" in page


@pytest.mark.django_db
def test_console_front_page_shows_a_recent_tick_as_healthy(client, operator):
    _task(Success, stopped=timezone.now() - timedelta(seconds=30))
    client.force_login(operator)
    page = client.get("/admin/").content.decode()
    assert "Last tick" in page
    assert "overdue" not in page


@pytest.mark.django_db
def test_a_tick_that_never_ran_is_overdue_only_three_minutes_after_its_first_run_was_due():
    Success.objects.filter(func=TICK_FUNC).delete()
    schedule, _ = Schedule.objects.update_or_create(
        name=TICK_SCHEDULE_NAME,
        defaults={"func": TICK_FUNC, "next_run": timezone.now() + timedelta(seconds=40)},
    )
    assert queue_health().tick_overdue is False  # a service that just started

    Schedule.objects.filter(pk=schedule.pk).update(next_run=timezone.now() - timedelta(minutes=4))
    assert queue_health().tick_overdue is True  # no cluster took it up

    Schedule.objects.filter(pk=schedule.pk).delete()
    assert queue_health().tick_overdue is True


@pytest.mark.django_db
def test_queue_health_counts_queue_failures_and_an_old_tick():
    _task(Success, stopped=timezone.now() - timedelta(minutes=10))
    _task(Failure, stopped=timezone.now() - timedelta(hours=1), func="builders.tasks.other", name="f1")
    _task(Failure, stopped=timezone.now() - timedelta(days=2), func="builders.tasks.other", name="f2")
    OrmQ.objects.create(key="coprssh", payload="x", lock=timezone.now())
    health = queue_health()
    assert health.queued == 1
    assert health.failures_24h == 1
    assert health.tick_overdue is True


@pytest.mark.django_db
def test_console_front_page_shows_each_pools_health(client, operator):
    Pool.objects.create(name="local", architectures=["x86_64"])
    Pool.objects.create(
        name="cloud",
        architectures=["x86_64"],
        consecutive_failures=1,
        failing_since=timezone.now(),
        paused_at=timezone.now(),
        last_error="authentication refused",
    )
    client.force_login(operator)

    page = client.get("/admin/").content.decode()

    assert "Pools" in page
    assert "healthy" in page
    assert "authentication refused; an operator must resume it" in page


@pytest.mark.django_db
def test_console_front_page_hides_pools_from_staff_who_may_not_see_them(client, django_user_model):
    Pool.objects.create(
        name="cloud",
        architectures=["x86_64"],
        paused_at=timezone.now(),
        last_error="tenant disabled by the cloud",
    )
    client.force_login(
        django_user_model.objects.create_user("staff", password="staff-password-1", is_staff=True)
    )

    page = client.get("/admin/").content.decode()

    assert "pools-health" not in page
    assert "tenant disabled" not in page


# --- the front page: pools, SSH builders in use, the latest audit events ------------------------

DEMO_SPEC = Path(__file__).resolve().parent.parent / "builds" / "demo" / "hello-coprssh.spec"
CHROOTS = ["fedora-43-x86_64", "fedora-rawhide-x86_64"]


def section(page: str, element_id: str) -> str:
    """The front page's module with this id (up to the next module)."""
    start = page.index(f'id="{element_id}"')
    end = page.find('<div class="module"', start)
    return page[start : end if end != -1 else len(page)]


def front_page(client) -> str:
    response = client.get("/admin/")
    assert response.status_code == 200
    return response.content.decode()


@pytest.fixture
def storage_dir(settings, tmp_path) -> Path:
    settings.COPRSSH_STORAGE_DIR = tmp_path / "storage"
    return settings.COPRSSH_STORAGE_DIR


def submitted_build(owner, name: str = "hello") -> Build:
    project = create_project(owner=owner, name=name, chroots=CHROOTS)
    upload = SimpleUploadedFile(DEMO_SPEC.name, DEMO_SPEC.read_bytes())
    return submit_build(
        project=project, submitter=owner, chroots=None, source=check_upload(upload), upload=upload
    )


def serve(build: Build, chroot: str, lease: Lease) -> None:
    """Make `lease` the one the build's `chroot` phase runs on, as an SSH build's phase is."""
    assert BuildChroot.objects.filter(build=build, chroot__name=chroot).update(lease=lease) == 1


def ssh_builder_in_use(owner, build: Build, chroot: str, *, expires_in: timedelta, pool=None) -> Lease:
    builder = make_builder(pool, state=Builder.State.LEASED, single_use=True)
    lease = make_ssh_lease(owner=owner, builder=builder, started_at=timezone.now())
    Lease.objects.filter(pk=lease.pk).update(expires_at=timezone.now() + expires_in)
    serve(build, chroot, lease)
    return Lease.objects.get(pk=lease.pk)


@pytest.mark.django_db
def test_front_page_lists_the_ssh_builders_in_use_by_user_with_build_builder_and_expiry(
    client, operator, user, other_user, storage_dir
):
    alice_build, bob_build = submitted_build(user), submitted_build(other_user, name="bobs")
    late = ssh_builder_in_use(user, alice_build, "fedora-rawhide-x86_64", expires_in=timedelta(hours=5))
    soon = ssh_builder_in_use(user, alice_build, "fedora-43-x86_64", expires_in=timedelta(minutes=30))
    waiting = make_lease(owner=other_user, ssh=True, state=Lease.State.WAITING)
    serve(bob_build, "fedora-43-x86_64", waiting)
    # Not in use: an ended SSH lease, one queued over the quota, and a normal build's lease.
    make_lease(owner=user, ssh=True, state=Lease.State.ENDED)
    make_lease(owner=user, ssh=True, state=Lease.State.QUEUED)
    make_lease(
        owner=user, ssh=False, state=Lease.State.ACTIVE, builder=make_builder(state=Builder.State.LEASED)
    )
    client.force_login(operator)

    ssh = section(front_page(client), "ssh-builders")

    assert "SSH builders in use: 3" in ssh
    rows = re.findall(r"<tr><td>(.*?)</td></tr>", ssh, re.S)
    # By user, then the one that expires first.
    assert [row.split("</td>")[0] for row in rows] == ["alice", "alice", "bob"]
    assert f'<a href="/builds/{alice_build.pk}/">#{alice_build.pk}</a> fedora-43-x86_64' in rows[0]
    assert f'<a href="/builds/{alice_build.pk}/">#{alice_build.pk}</a> fedora-rawhide-x86_64' in rows[1]
    assert f'<a href="/admin/builders/builder/{soon.builder_id}/change/">{soon.builder}</a>' in rows[0]
    assert f'<a href="/admin/builders/lease/{late.pk}/change/">lease #{late.pk}</a>' in rows[1]
    assert timezone.localtime(soon.expires_at).strftime("%Y-%m-%d %H:%M") in rows[0]
    assert "(in 29\xa0minutes)" in rows[0] or "(in 30\xa0minutes)" in rows[0]
    assert f"#{bob_build.pk}</a> fedora-43-x86_64" in rows[2]
    assert "waiting for a builder" in rows[2]


@pytest.mark.django_db
def test_front_page_says_when_no_ssh_builder_is_in_use(client, operator):
    client.force_login(operator)

    assert "SSH builders in use: 0" in section(front_page(client), "ssh-builders")


@pytest.mark.django_db
def test_front_page_shows_the_first_ssh_builders_and_links_to_all(client, operator, user, monkeypatch):
    monkeypatch.setattr(console, "SSH_ROWS", 2)
    for _ in range(3):
        make_ssh_lease(owner=user, builder=make_builder(state=Builder.State.LEASED))
    client.force_login(operator)

    ssh = section(front_page(client), "ssh-builders")

    assert "SSH builders in use: 3" in ssh
    assert ssh.count("<tr><td>alice</td>") == 2
    assert "/admin/builders/lease/?ssh__exact=1" in ssh


@pytest.mark.django_db
def test_front_page_says_whether_each_pool_is_warm_failing_or_paused(client, operator):
    now = timezone.now()
    warm = make_pool(name="warm", warm_builders=1)
    make_builder(warm)  # ready
    make_builder(warm, state=Builder.State.LEASED)
    make_builder(warm, state=Builder.State.TERMINATED)
    make_builder(make_pool(name="warming", warm_builders=2))
    make_pool(
        name="failing",
        consecutive_failures=2,
        failing_since=now,
        backoff_until=now + timedelta(minutes=5),
        last_error="cannot create: quota exceeded",
    )
    make_pool(name="paused", paused_at=now, last_error="image not found")
    make_pool(name="off", enabled=False)
    client.force_login(operator)

    pools = section(front_page(client), "pools-health")

    rows = dict(re.findall(r'<tr class="pool-(\w+)"><th scope="row"[^>]*><a [^>]*>([\w-]+)</a>', pools))
    assert rows == {
        "disabled": "off",
        "failing": "failing",
        "paused": "paused",
        "warm": "warm",
        "warming": "warming",
    }
    warm_row = pools[pools.index('class="pool-warm"') :].split("</tr>")[0]
    assert "<td>1 (1)</td>" in warm_row  # ready (kept warm)
    assert "<td>2 (4)</td>" in warm_row  # alive (max): the terminated one is gone
    assert "quota exceeded; next attempt" in pools
    assert "image not found; an operator must resume it" in pools


@pytest.mark.django_db
def test_front_page_shows_the_twenty_latest_audit_events(client, operator, user):
    builder = make_builder(name="csb-builder-7")
    lease = make_ssh_lease(owner=user, builder=builder)
    start = timezone.now() - timedelta(hours=1)
    for n in range(25):
        AuditEvent.objects.create(
            created_at=start + timedelta(minutes=n),
            action=AuditEvent.Action.PROLONGED,
            actor=user,
            source="web",
            remote_addr="192.0.2.7",
            lease=lease,
            builder=builder,
            detail=f"event number {n:02}",
        )
    AuditEvent.objects.create(
        action=AuditEvent.Action.EXPIRED, source="tick", detail="<script>alert(1)</script>"
    )
    client.force_login(operator)

    audit = section(front_page(client), "audit-events")

    details = re.findall(r"event number (\d\d)", audit)
    assert details == [f"{n:02}" for n in range(24, 5, -1)]  # 19 of them, newest first, after the tick's
    rows = audit.split("<tr>")
    assert "expired" in rows[2]
    assert "— (tick)" in rows[2]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in audit
    assert "<script>alert" not in audit
    assert "alice (web, 192.0.2.7)" in rows[3]
    assert "prolonged" in rows[3]
    assert f'<a href="/admin/builders/lease/{lease.pk}/change/">lease #{lease.pk}</a>' in rows[3]
    assert f'<a href="/admin/builders/builder/{builder.pk}/change/">csb-builder-7</a>' in rows[3]
    assert "/admin/builders/auditevent/" in audit


@pytest.mark.django_db
def test_front_page_takes_as_many_queries_for_many_rows_as_for_few(
    client, operator, storage_dir, django_user_model
):
    client.force_login(operator)

    def fill(n: int) -> None:
        for i in range(n):
            owner = django_user_model.objects.create_user(f"user-{n}-{i}")
            pool = make_pool(warm_builders=1)
            make_builder(pool)
            build = submitted_build(owner)
            for chroot in CHROOTS:
                ssh_builder_in_use(owner, build, chroot, expires_in=timedelta(hours=1), pool=pool)
            for _ in range(5):
                AuditEvent.objects.create(action=AuditEvent.Action.RELEASED, actor=owner, source="api")

    fill(1)
    with CaptureQueriesContext(connection) as few:
        front_page(client)
    fill(6)
    with CaptureQueriesContext(connection) as many:
        page = front_page(client)

    assert page.count("<tr><td>user-") == 14
    assert len(many) == len(few), [q["sql"] for q in many.captured_queries]
    assert len(many) <= 20


@pytest.mark.django_db
def test_front_page_shows_staff_only_the_parts_they_may_view(client, django_user_model, user):
    make_ssh_lease(owner=user, builder=make_builder())
    AuditEvent.objects.create(action=AuditEvent.Action.RELEASED, actor=user, detail="a secret detail")
    staff = django_user_model.objects.create_user("staff", password="staff-password-1", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_lease"))
    client.force_login(staff)

    page = front_page(client)

    assert "ssh-builders" in page
    assert "audit-events" not in page
    assert "a secret detail" not in page
    assert "pools-health" not in page
