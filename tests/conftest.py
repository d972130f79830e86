"""Shared fixtures. The suite runs on PostgreSQL (DATABASE_URL) and on SQLite (unset)."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import cache

from tests.fakes import KeyServer, TaskQueue, serving_keys


def pytest_configure(config: pytest.Config) -> None:
    """Tests press Ctrl-C on the programs they start (bin/run, qcluster, the CLI's waits). A shell
    runs a background job with SIGINT ignored, and a program inherits that: the tests would then
    see a Ctrl-C that does nothing. Handling SIGINT here gives every program started below the
    default action back (exec resets a handled signal, not an ignored one)."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    """Throttle and login counters (and fetched keys) live in the cache: none leaks between tests."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user("alice", password="alice-password-1")


@pytest.fixture
def other_user(django_user_model):
    return django_user_model.objects.create_user("bob", password="bob-password-1")


@pytest.fixture
def key_server(settings: Any) -> Iterator[KeyServer]:
    """GitHub's and FAS's key endpoints, served from 127.0.0.1 (tests/fakes.py)."""
    with serving_keys() as server:
        settings.COPRSSH_GITHUB_KEYS_URL = server.github_url
        settings.COPRSSH_FAS_KEYS_URL = server.fas_url
        yield server


@pytest.fixture
def queued(monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any) -> TaskQueue:
    """Record tasks instead of queueing them in django-q (services import async_task late)."""
    queue = TaskQueue(capture=django_capture_on_commit_callbacks)
    monkeypatch.setattr("django_q.tasks.async_task", queue.record)
    return queue
