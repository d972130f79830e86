"""Run the SSH gateway in the foreground (for systemd, or `bin/run` in the demo)."""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from builders.gateway import sshd
from builders.selectors import gateway
from builders.services import gateway as gateways

log = logging.getLogger(__name__)


class Command(BaseCommand):
    help = (
        "Run the SSH gateway: write its sshd_config, host key and authorized_keys under COPRSSH_GATEWAY_DIR, "
        "run sshd in the foreground, and every few seconds write its keys from the leases and audit its logins."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--interval",
            type=float,
            default=10.0,
            help="seconds between two passes over the leases and the log (default 10)",
        )
        parser.add_argument(
            "--check", action="store_true", help="write the files and check sshd accepts them, then exit"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        interval = options["interval"]
        if not 0.1 <= interval <= 3600:
            raise CommandError("--interval must be from 0.1 to 3600 seconds")
        try:
            if options["check"]:
                files = gateways.prepare_gateway()
                sshd.check_config(settings.COPRSSH_GATEWAY_SSHD, files)
                self.stdout.write(f"gateway configuration in {files.dir} is valid")
                return
            stop = threading.Event()
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(sig, lambda *_: stop.set())
            server = gateways.start_gateway()
        except gateways.GatewayUnavailable as exc:
            raise CommandError(exc.message) from None
        shown = gateway()
        self.stdout.write(
            f"SSH gateway on port {settings.COPRSSH_GATEWAY_PORT}: ssh -J {shown.proxy_jump if shown else '?'}"
            f" (host key {shown.host_key_fingerprint if shown else '?'})",
        )
        self.stdout.flush()
        due = time.monotonic() + interval
        try:
            while not stop.is_set():
                code = server.wait(timeout=0.5)
                if code is not None and not stop.is_set():
                    raise CommandError(f"sshd exited with status {code}; its log: {server.files.log}")
                if time.monotonic() >= due:
                    self._sync()
                    due = time.monotonic() + interval
        finally:
            server.stop()
            self._sync()  # the last logins sshd logged before it stopped

    def _sync(self) -> None:
        # Each pass on its own: a database that is away for a moment must not stop the gateway.
        for step in (gateways.write_gateway_keys, gateways.record_gateway_logins):
            try:
                step()
            except Exception:
                log.exception("gateway: %s failed", step.__name__)
