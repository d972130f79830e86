"""The task queue: django-q2 settings for at-least-once delivery, and a real cluster at work."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django_q.brokers import get_broker
from django_q.models import Failure, OrmQ, Schedule, Success
from django_q.scheduler import scheduler
from django_q.tasks import async_task

from builders import services
from builders.tasks import TICK_FUNC, TICK_SCHEDULE_NAME, tick

ROOT = Path(__file__).resolve().parent.parent


def test_task_timeout_is_shorter_than_redelivery():
    # A task still running when `retry` passes is handed to a second worker.
    q = settings.Q_CLUSTER
    assert q["timeout"] < q["retry"]


def test_failed_tasks_are_acknowledged_and_schedules_do_not_catch_up():
    q = settings.Q_CLUSTER
    assert q["ack_failures"] is True
    assert q["catch_up"] is False
    assert q["orm"] == "default"
    assert q["max_attempts"] >= 1


@pytest.mark.django_db
def test_migration_creates_one_minute_tick_schedule():
    schedule = Schedule.objects.get(name=TICK_SCHEDULE_NAME)
    assert schedule.func == TICK_FUNC
    assert schedule.schedule_type == Schedule.MINUTES
    assert schedule.minutes == 1
    assert schedule.repeats == -1


@pytest.mark.django_db
def test_tick_runs_every_step_and_reports_when():
    summary = tick()
    assert "ran_at" in summary
    assert summary["seconds"] >= 0
    # The tick swallows a failing step's exception and marks it, so an error shows only here.
    assert [name for name, value in summary.items() if value == "error"] == []
    assert {"expired", "assigned", "started", "deleted"} <= set(summary)


@pytest.mark.django_db
def test_tick_marks_a_failing_step_and_runs_the_others(monkeypatch):
    def down() -> int:
        raise RuntimeError("the provider is down")

    monkeypatch.setattr(services, "ensure_capacity", down)
    summary = tick()
    assert summary["started"] == "error"
    assert [name for name, value in summary.items() if value == "error"] == ["started"]
    assert summary["deleted"] == 0  # a later step still ran


def _database_url() -> str:
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    user = db.get("USER") or "postgres"
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return f"postgres://{user}@{host}:{port}/{db['NAME']}"


@pytest.fixture
def cluster(tmp_path):
    """A real `manage.py qcluster` process on the test database."""
    env = dict(os.environ)
    env.update(
        DATABASE_URL=_database_url(),
        COPRSSH_DATA_DIR=str(tmp_path),
        COPRSSH_WORKERS="1",
        DEBUG="1",
    )
    log = (tmp_path / "qcluster.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    yield process
    # The cluster's main process stops its workers itself when told to.
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    log.close()


def _wait_for(predicate, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_cluster_runs_the_scheduled_tick(cluster):
    # Transactional tests flush the database, so the migration's row is made again here.
    Schedule.objects.update_or_create(
        name=TICK_SCHEDULE_NAME,
        defaults={"func": TICK_FUNC, "schedule_type": Schedule.MINUTES, "minutes": 1, "repeats": -1},
    )
    # The cluster's own scheduler wakes every 30 s; running one pass here queues the due
    # tick at once, and the real cluster process must pick it up and run it.
    scheduler(broker=get_broker())
    done = _wait_for(lambda: Success.objects.filter(func=TICK_FUNC).first(), what="the tick to succeed")
    assert "ran_at" in done.result
    assert Schedule.objects.get(name=TICK_SCHEDULE_NAME).next_run > done.started
    assert cluster.poll() is None


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_cluster_records_a_failed_task_and_does_not_redeliver_it(cluster):
    async_task(TICK_FUNC, "an argument tick does not take")
    failure = _wait_for(lambda: Failure.objects.filter(func=TICK_FUNC).first(), what="the failure")
    assert "TypeError" in failure.result
    # Acknowledged: nothing is left on the broker to be handed out again.
    _wait_for(lambda: not OrmQ.objects.exists(), timeout=10, what="the queue to empty")
    time.sleep(1)
    assert Failure.objects.filter(func=TICK_FUNC).count() == 1
