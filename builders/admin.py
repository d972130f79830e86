"""Operators' console for pools, builders, leases, the quota policy and the audit log.

State is read-only here; actions call the same services as the web, API and tasks.
"""

from __future__ import annotations

import statistics
from datetime import timedelta

from django.contrib import admin, messages
from django.db.models import Prefetch, QuerySet
from django.http import HttpRequest
from django.utils import timezone

from builders import services
from builders.models import AuditEvent, Builder, Lease, Pool, QuotaOverride, QuotaPolicy
from coprssh.exceptions import ServiceError


def _via(request: HttpRequest) -> services.Via:
    return services.Via(user=request.user, source="admin", remote_addr=request.META.get("REMOTE_ADDR"))


def _age(since) -> str:  # noqa: ANN001 - a datetime or None
    if since is None:
        return "—"
    seconds = int((timezone.now() - since).total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h"


@admin.register(Pool)
class PoolAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "provider",
        "arches",
        "enabled",
        "max_builders",
        "warm_builders",
        "alive",
        "startup",
        "failures_24h",
    ]
    list_filter = ["provider", "enabled"]
    search_fields = ["name"]
    readonly_fields = ["created_at", "statistics"]

    @admin.display(description="architectures")
    def arches(self, pool: Pool) -> str:
        return ", ".join(pool.architectures)

    @admin.display(description="alive builders")
    def alive(self, pool: Pool) -> int:
        return pool.builders.alive().count()

    @admin.display(description="median startup (last 50)")
    def startup(self, pool: Pool) -> str:
        times = [
            (ready - created).total_seconds()
            for created, ready in pool.builders.filter(ready_at__isnull=False)
            .order_by("-ready_at")
            .values_list("created_at", "ready_at")[:50]
        ]
        return f"{statistics.median(times):.1f} s" if times else "—"

    @admin.display(description="failed (24 h)")
    def failures_24h(self, pool: Pool) -> int:
        since = timezone.now() - timedelta(hours=24)
        return pool.builders.filter(state=Builder.State.FAILED, state_changed_at__gte=since).count()

    @admin.display(description="builders by state")
    def statistics(self, pool: Pool) -> str:
        counts = {state: pool.builders.filter(state=state).count() for state in Builder.State.values}
        return ", ".join(f"{state}: {count}" for state, count in counts.items() if count) or "none yet"


@admin.register(Builder)
class BuilderAdmin(admin.ModelAdmin):
    list_display = [
        "__str__",
        "pool",
        "state",
        "address",
        "sandbox",
        "current_lease",
        "reuse_count",
        "age",
        "last_error_short",
    ]
    list_filter = ["state", "pool", "single_use"]
    search_fields = ["name", "provider_id", "ipv4", "ipv6", "sandbox"]
    actions = ["terminate"]
    readonly_fields = [f.name for f in Builder._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # builders are started by the pools, not by hand

    @admin.display(description="address")
    def address(self, builder: Builder) -> str:
        return f"{builder.host}:{builder.port}" if builder.host else "—"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Builder]:
        open_leases = Prefetch(
            "leases", queryset=Lease.objects.open().select_related("owner"), to_attr="open_leases"
        )
        return super().get_queryset(request).select_related("pool").prefetch_related(open_leases)

    @admin.display(description="lease")
    def current_lease(self, builder: Builder) -> str:
        leases = getattr(builder, "open_leases", None)
        lease = leases[0] if leases else (None if leases is not None else builder.leases.open().first())
        return f"#{lease.pk} {lease.owner} ({lease.state})" if lease else "—"

    @admin.display(description="age")
    def age(self, builder: Builder) -> str:
        return _age(builder.created_at)

    @admin.display(description="last error")
    def last_error_short(self, builder: Builder) -> str:
        return builder.last_error[:80]

    @admin.action(description="Terminate selected builders (ends their leases)")
    def terminate(self, request: HttpRequest, queryset: QuerySet[Builder]) -> None:
        done = 0
        for builder in queryset:
            try:
                services.terminate_builder(builder_id=builder.pk, via=_via(request))
                done += 1
            except ServiceError as exc:
                self.message_user(request, f"{builder}: {exc.message}", messages.WARNING)
        self.message_user(request, f"{done} builder(s) are being terminated.")


@admin.register(Lease)
class LeaseAdmin(admin.ModelAdmin):
    list_display = [
        "__str__",
        "owner",
        "ssh",
        "purpose",
        "arch",
        "state",
        "builder",
        "expires_at",
        "remaining_text",
        "end_reason",
    ]
    list_filter = ["state", "ssh", "end_reason", "arch"]
    search_fields = ["owner__username", "purpose", "sandbox"]
    raw_id_fields = ["owner", "builder", "pool"]
    actions = ["prolong_one_hour", "release", "terminate_builders"]
    readonly_fields = [f.name for f in Lease._meta.fields]
    date_hierarchy = "created_at"
    list_select_related = ["owner", "builder"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="remaining")
    def remaining_text(self, lease: Lease) -> str:
        if lease.state != Lease.State.ACTIVE or lease.remaining is None:
            return "—"
        minutes = int(lease.remaining.total_seconds() // 60)
        return f"{minutes // 60} h {minutes % 60} min"

    @admin.action(description="Prolong selected leases by 1 hour")
    def prolong_one_hour(self, request: HttpRequest, queryset: QuerySet[Lease]) -> None:
        for lease in queryset:
            try:
                services.prolong_lease(lease_id=lease.pk, hours=1, via=_via(request))
            except ServiceError as exc:
                self.message_user(request, f"Lease #{lease.pk}: {exc.message}", messages.WARNING)

    @admin.action(description="Release selected leases")
    def release(self, request: HttpRequest, queryset: QuerySet[Lease]) -> None:
        for lease in queryset:
            services.release_lease(lease_id=lease.pk, via=_via(request))
        self.message_user(request, "Released.")

    @admin.action(description="Terminate the builders of selected leases")
    def terminate_builders(self, request: HttpRequest, queryset: QuerySet[Lease]) -> None:
        for lease in queryset.exclude(builder=None):
            try:
                services.terminate_builder(builder_id=lease.builder_id, via=_via(request))
            except ServiceError as exc:
                self.message_user(request, f"Lease #{lease.pk}: {exc.message}", messages.WARNING)


@admin.register(QuotaPolicy)
class QuotaPolicyAdmin(admin.ModelAdmin):
    list_display = ["__str__", "max_ssh_builders", "default_lifetime", "max_lifetime", "warning_before"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return not QuotaPolicy.objects.exists()

    def has_delete_permission(self, request: HttpRequest, obj: QuotaPolicy | None = None) -> bool:
        return False


@admin.register(QuotaOverride)
class QuotaOverrideAdmin(admin.ModelAdmin):
    list_display = ["user", "max_ssh_builders", "default_lifetime", "max_lifetime", "note"]
    search_fields = ["user__username", "note"]
    raw_id_fields = ["user"]


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ["created_at", "action", "actor", "source", "remote_addr", "lease", "builder", "detail"]
    list_filter = ["action", "source"]
    search_fields = ["actor__username", "detail", "remote_addr"]
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in AuditEvent._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        return False
