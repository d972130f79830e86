"""Run both one-minute ticks once, now (the cluster also runs each every minute)."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand

from builders import tasks as builders_tasks
from builds import tasks as builds_tasks


class Command(BaseCommand):
    help = (
        "Run both ticks once: the builders tick (expire leases, assign waiting ones, keep pools warm,"
        " clean up), then the builds tick (check silent agents, collect lost reports, fail phases whose"
        " lease ended, warn by mail)."
    )

    def handle(self, *args: object, **options: object) -> None:
        summary: dict[str, object] = {builders_tasks.TICK_SCHEDULE_NAME: builders_tasks.tick()}
        summary[builds_tasks.BUILDS_TICK_NAME] = builds_tasks.tick()
        self.stdout.write(json.dumps(summary, default=str, indent=2))
