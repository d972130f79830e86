"""The task names the builders services queue are functions of builders/tasks.py."""

from __future__ import annotations

from django.utils.module_loading import import_string

from builders import tasks
from builders.services import common


def test_every_task_name_the_services_queue_is_a_task_function():
    names = {value for key, value in vars(common).items() if key.isupper() and isinstance(value, str)}
    names = {name for name in names if name.startswith("builders.")}
    assert len(names) >= 7  # the scan still finds them

    for name in sorted(names):
        assert callable(import_string(name)), name
        assert import_string(name).__module__ == tasks.__name__, name
