"""The operators' console: who gets in, and the task queue's health on its front page."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from django_q.models import Failure, OrmQ, Success

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
