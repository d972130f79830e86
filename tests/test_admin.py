"""The operators' console: who gets in, and the task queue's health on its front page."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from django_q.models import Failure, OrmQ, Success

from builders.models import Pool
from builders.tasks import TICK_FUNC
from coprssh.health import queue_health


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
