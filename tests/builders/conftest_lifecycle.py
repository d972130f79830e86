"""Fixtures and small helpers for the builder lifecycle, fault, expiry, sandbox and admin tests.

Test modules take the fixtures with `from tests.builders.conftest_lifecycle import *` (`__all__`
keeps that to the fixtures) and import the `make_*` helpers by name.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone
from django.utils.module_loading import import_string

from builders.models import Builder, Lease, Pool
from tests.builders.fakes import FakeProvider, install

__all__ = ["builder_settings", "fake", "queued"]


@pytest.fixture(autouse=True)
def builder_settings(settings: Any, tmp_path: Path) -> None:
    """Builders and the service's SSH key live under the test's tmp_path, never in ./data."""
    settings.COPRSSH_BUILDERS_DIR = tmp_path / "builders-dir"
    settings.COPRSSH_ADMIN_KEY_FILE = tmp_path / "ssh" / "admin_ed25519"
    # The users these tests make need no strong hash; PBKDF2 costs a third of a second each.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@dataclass
class TaskQueue:
    """What services queued with `transaction.on_commit(async_task(...))`, in order.

    `call` runs a service and its on-commit callbacks (which record tasks here instead of
    reaching django-q); `run` plays a worker, executing the recorded tasks by their dotted names.
    """

    capture: Callable[..., AbstractContextManager[Any]]
    tasks: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)

    def record(self, func: str, *args: Any, **kwargs: Any) -> str:
        self.tasks.append((func, args))
        return f"task-{len(self.tasks)}"

    def call(self, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        with self.capture(execute=True):
            return func(*args, **kwargs)

    def take(self) -> list[tuple[str, tuple[Any, ...]]]:
        """The tasks queued since the last take, and forget them."""
        taken, self.tasks = self.tasks, []
        return taken

    def names(self) -> list[str]:
        return [func for func, _ in self.tasks]

    def run(self, *, only: str | None = None, limit: int = 50) -> list[tuple[str, tuple[Any, ...]]]:
        """Run queued tasks (and those they queue) oldest first until none is left; return them."""
        done = []
        while self.tasks:
            index = next((i for i, (func, _) in enumerate(self.tasks) if only in (None, func)), None)
            if index is None:
                break
            func, args = self.tasks.pop(index)
            self.call(import_string(func), *args)
            done.append((func, args))
            if len(done) >= limit:
                raise AssertionError(f"tasks keep queueing tasks: {done[-10:]}")
        return done


@pytest.fixture
def queued(monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any) -> TaskQueue:
    """Record tasks instead of queueing them in django-q (`queue_task` imports async_task late)."""
    queue = TaskQueue(capture=django_capture_on_commit_callbacks)
    monkeypatch.setattr("django_q.tasks.async_task", queue.record)
    return queue


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeProvider:
    """Every pool's provider is this in-memory fake; SSH checks ask it too."""
    return install(monkeypatch, FakeProvider())


def make_pool(**overrides: Any) -> Pool:
    values: dict[str, Any] = {
        "name": "x86",
        "provider": Pool.Provider.LOCAL,
        "architectures": ["x86_64"],
        "max_builders": 4,
        "warm_builders": 0,
    }
    values.update(overrides)
    return Pool.objects.create(**values)


def make_builder(pool: Pool, **overrides: Any) -> Builder:
    """A ready, fresh builder row (no machine behind it unless `provider_id` names one)."""
    now = timezone.now()
    values: dict[str, Any] = {
        "pool": pool,
        "state": Builder.State.READY,
        "ipv4": "192.0.2.1",
        "port": 22,
        "host_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeFakeFakeFakeFakeFakeFakeFakeFakeFakeFake",
        "ready_at": now,
        "state_changed_at": now,
    }
    values.update(overrides)
    builder = Builder.objects.create(**values)
    if not builder.name:
        builder.name = f"{pool.name}-{builder.pk}"
        builder.save(update_fields=["name"])
    return builder


def make_lease(owner: Any, **overrides: Any) -> Lease:
    """An active SSH lease row, expiring in an hour, as `start_lease` leaves one."""
    now = timezone.now()
    values: dict[str, Any] = {
        "owner": owner,
        "sandbox": "ssh-fixture",
        "ssh": True,
        "arch": "x86_64",
        "state": Lease.State.ACTIVE,
        "started_at": now,
        "expires_at": now + timedelta(hours=1),
        "max_expires_at": now + timedelta(hours=48),
    }
    values.update(overrides)
    return Lease.objects.create(**values)
