"""Stop the builders of the local pools: end their leases, delete their machines, stop stray sandboxes
(also those whose folder was deleted while their sshd ran).

Run it with the task cluster stopped (bin/run does, after Ctrl-C): a running cluster would start new
warm builders at once. Local builders are sshd processes of this host, which nothing reattaches in
a useful way after a restart; OpenStack builders outlive a restart and are reattached, so they are
left alone unless --all is given (before decommissioning a service, say).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from builders.models import Builder, Lease, Pool
from builders.providers import sandbox
from builders.providers.base import ProviderError
from builders.providers.local import NAME_RE, LocalProvider
from builders.services import Via, delete_builder, machines, terminate_builder
from coprssh.exceptions import ServiceError

SHUTDOWN = Via(source="shutdown")


class Command(BaseCommand):
    help = (
        "End the leases and delete the machines of every alive builder of the local pools (--all:"
        " of every pool), then stop any sandbox of those pools that no builder row claims."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--all",
            action="store_true",
            dest="all_pools",
            help="Every pool, OpenStack ones too: their machines are deleted rather than reattached later.",
        )

    def handle(self, *args: Any, all_pools: bool = False, **options: Any) -> None:
        selected = Pool.objects.order_by("name")
        if not all_pools:
            selected = selected.filter(provider=Pool.Provider.LOCAL)
        pools = list(selected)
        builders = Builder.objects.filter(pool__in=pools)
        problems = 0
        ended: dict[int, str] = {}
        for builder_id in builders.alive().order_by("pk").values_list("pk", flat=True):
            lease = Lease.objects.open().filter(builder_id=builder_id).first()
            try:
                terminate_builder(builder_id=builder_id, via=SHUTDOWN)
            except ServiceError as exc:
                # A failed builder without a machine has nothing to stop; a row gone meanwhile neither.
                self.stdout.write(f"builder {builder_id}: skipped ({exc})")
                continue
            ended[builder_id] = f"lease {lease.pk} ended, " if lease is not None else ""
        terminating = builders.filter(state=Builder.State.TERMINATING).order_by("pk")
        deleted = 0
        for builder_id in terminating.values_list("pk", flat=True):
            # Synchronously: the cluster that would run the queued delete is stopped.
            builder = delete_builder(builder_id=builder_id)
            if builder is None:
                continue
            deleted += 1
            name = builder.name or f"#{builder.pk}"
            if builder.state == Builder.State.TERMINATING:
                self.stdout.write(
                    self.style.ERROR(f"builder {name}: {ended.get(builder_id, '')}{builder.last_error}")
                )
                problems += 1
            else:
                self.stdout.write(f"builder {name}: {ended.get(builder_id, '')}machine deleted")
        stray = 0
        for pool in pools:
            swept, failed = self._sweep(pool)
            stray += swept
            problems += failed
        if not deleted and not stray:
            self.stdout.write("no builders to stop")
        if problems:
            raise CommandError(f"{problems} machine(s) could not be stopped; see above, then run this again.")

    def _sweep(self, pool: Pool) -> tuple[int, int]:
        """Delete what the provider still lists: sandboxes whose row is gone or that a crash left."""
        try:
            provider = machines.provider_for(pool)
            listed = provider.list_owned()
        except ProviderError as exc:
            self.stdout.write(self.style.ERROR(f"pool {pool.name}: cannot list machines: {exc.message}"))
            return 0, 1
        problems = 0
        for machine in listed:
            try:
                provider.delete(machine.provider_id)
            except ProviderError as exc:
                self.stdout.write(self.style.ERROR(f"pool {pool.name}: {machine.name}: {exc.message}"))
                problems += 1
                continue
            self.stdout.write(f"pool {pool.name}: {machine.name} deleted, no live builder claimed it")
        swept = len(listed) - problems
        if isinstance(provider, LocalProvider):
            # Sandboxes whose folder was deleted (the data folder, say) while their sshd ran on.
            for name in sandbox.left_behind(provider.root_dir):
                if not name.startswith(provider.name_prefix) or not NAME_RE.fullmatch(name):
                    continue
                try:
                    provider.delete(name)
                except ProviderError as exc:
                    self.stdout.write(self.style.ERROR(f"pool {pool.name}: {name}: {exc.message}"))
                    problems += 1
                    continue
                swept += 1
                self.stdout.write(f"pool {pool.name}: {name} stopped, its sandbox folder was deleted")
        return swept, problems
