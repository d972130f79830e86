"""Run the one-minute tick once, now (the cluster also runs it every minute)."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand

from builders.tasks import tick


class Command(BaseCommand):
    help = "Run the tick once: expire leases, assign waiting ones, keep pools warm, clean up."

    def handle(self, *args: object, **options: object) -> None:
        summary = tick()
        self.stdout.write(json.dumps(summary, default=str, indent=2))
