"""Operators' console for pools, builders, leases, the quota policy and the audit log.

State is read-only here; actions call the same services as the web, API and tasks, and each
declares the permission it needs. Nothing here deletes a pool, builder or lease: a row deleted
behind the services' back would leave a machine running that nobody terminates. Quota edits
go through the quota services, which write the audit log.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Model, Prefetch, Q, QuerySet
from django.forms import ModelForm
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html

from builders import services
from builders.models import AuditEvent, Builder, Lease, Pool, QuotaOverride, QuotaPolicy
from builders.services.quota import delete_quota_override, save_quota_override, save_quota_policy
from coprssh.exceptions import ServiceError

if TYPE_CHECKING:
    from django.contrib.admin.options import _FieldsetSpec

M = TypeVar("M", bound=Model)
Actions = dict[str, tuple[Callable[..., str], str, str] | None]
Context = dict[str, Any]


def _via(request: HttpRequest) -> services.Via:
    return services.Via(user=request.user, source="admin", remote_addr=request.META.get("REMOTE_ADDR"))


def _age(since: datetime | None) -> str:
    if since is None:
        return "—"
    seconds = int((timezone.now() - since).total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h"


class NoDeleteAdmin(admin.ModelAdmin[M]):
    """Rows that only services may remove: no Delete button, page or bulk action, even for superusers."""

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def get_actions(self, request: HttpRequest) -> Actions:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions


class StateAdmin(NoDeleteAdmin[M]):
    """Rows whose every field belongs to the services: shown, never written back by a Save.

    Saving a read-only form would still write the whole row as it was read, undoing a release
    or a terminate that committed in between; the actions are the way to change these.
    """

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Context | None = None
    ) -> HttpResponse:
        context = {"show_save": False, "show_save_and_continue": False, **(extra_context or {})}
        return super().change_view(request, object_id, form_url, extra_context=context)

    def save_model(self, request: HttpRequest, obj: M, form: ModelForm[M], change: bool) -> None:
        pass


class HealthFilter(admin.SimpleListFilter):
    """The same three states as services.pool_health, as database conditions."""

    title = "health"
    parameter_name = "health"
    conditions = {
        "healthy": Q(paused_at=None, consecutive_failures=0),
        "failing": Q(paused_at=None, consecutive_failures__gt=0),
        "paused": Q(paused_at__isnull=False),
    }

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin[Pool]) -> list[tuple[str, str]]:
        return [(state, state) for state in self.conditions]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Pool]) -> QuerySet[Pool]:
        condition = self.conditions.get(self.value() or "")
        return queryset if condition is None else queryset.filter(condition)


HEALTH_FIELDS = (
    "health",
    "consecutive_failures",
    "failing_since",
    "backoff_until",
    "paused_at",
    "last_error",
    "last_error_at",
)


@admin.register(Pool)
class PoolAdmin(NoDeleteAdmin[Pool]):
    list_display = [
        "name",
        "provider",
        "arches",
        "ssh_route",
        "enabled",
        "health",
        "max_builders",
        "warm_builders",
        "alive",
        "startup",
        "failures_24h",
    ]
    list_filter = ["provider", "enabled", HealthFilter]
    search_fields = ["name"]
    readonly_fields = ["created_at", "statistics", *HEALTH_FIELDS]
    actions = ["resume"]
    # Pools are taken out of service with "enabled"; PROTECT keeps their builders' rows anyway.

    def get_fieldsets(self, request: HttpRequest, obj: Pool | None = None) -> _FieldsetSpec:
        settings_fields = (
            "name",
            "provider",
            "architectures",
            "max_builders",
            "warm_builders",
            "provider_settings",
            "ssh_route",
            "reaches_service",
            "enabled",
        )
        if obj is None:
            return [(None, {"fields": settings_fields})]
        return [
            (None, {"fields": settings_fields}),
            ("Health", {"fields": HEALTH_FIELDS}),
            ("Builders", {"fields": ["created_at", "statistics"]}),
        ]

    @admin.display(description="health")
    def health(self, pool: Pool) -> str:
        health = services.pool_health(pool)
        if health.ok:
            return health.text
        colour = "#b3261e" if health.state == "paused" else "#9a5b00"
        return format_html('<strong style="color: {};">{}</strong>', colour, health.text)

    @admin.action(description="Resume now", permissions=["change"])
    def resume(self, request: HttpRequest, queryset: QuerySet[Pool]) -> None:
        resumed = []
        for pool in queryset:
            if services.pool_health(pool).ok:
                continue
            try:
                services.resume_pool(pool_id=pool.pk, via=_via(request))
            except ServiceError as exc:
                self.message_user(request, f"{pool}: {exc.message}", messages.WARNING)
            else:
                resumed.append(pool.name)
        if resumed:
            self.message_user(request, f"Resumed: {', '.join(resumed)}.")
        else:
            self.message_user(request, "No selected pool was failing or paused.", messages.WARNING)

    def save_model(self, request: HttpRequest, obj: Pool, form: ModelForm[Pool], change: bool) -> None:
        # Only what the operator edited: the health fields belong to builders.services.pools,
        # and writing back the values read with the form would undo a failure counted meanwhile.
        if change:
            obj.save(update_fields=form.changed_data)
        else:
            obj.save()

    def get_urls(self) -> list[URLPattern]:
        resume = path(
            "<path:object_id>/resume/",
            self.admin_site.admin_view(self.resume_view),
            name="builders_pool_resume",
        )
        return [resume, *super().get_urls()]

    def resume_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The change page's "Resume now" button; admin_view adds the staff check and CSRF."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        pool = self.get_object(request, unquote(object_id))
        if pool is None:
            raise Http404("No such pool.")
        if not self.has_change_permission(request, pool):
            raise PermissionDenied
        try:
            services.resume_pool(pool_id=pool.pk, via=_via(request))
        except ServiceError as exc:
            self.message_user(request, exc.message, messages.WARNING)
        else:
            self.message_user(request, f"Pool {pool} resumed: it starts builders again.")
        return HttpResponseRedirect(reverse("admin:builders_pool_change", args=[pool.pk]))

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Context | None = None
    ) -> HttpResponse:
        context = dict(extra_context or {})
        pool = self.get_object(request, unquote(object_id))
        if (
            pool is not None
            and not services.pool_health(pool).ok
            and self.has_change_permission(request, pool)
        ):
            context["resume_url"] = reverse("admin:builders_pool_resume", args=[pool.pk])
        return super().change_view(request, object_id, form_url, extra_context=context)

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
            if ready is not None
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
class BuilderAdmin(StateAdmin[Builder]):
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

    @admin.action(description="Terminate selected builders (ends their leases)", permissions=["change"])
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
class LeaseAdmin(StateAdmin[Lease]):
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
    readonly_fields = [*(f.name for f in Lease._meta.fields), "key_fingerprints"]
    date_hierarchy = "created_at"
    list_select_related = ["owner", "builder"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_terminate_builder_permission(self, request: HttpRequest) -> bool:
        """Terminating a lease's builder changes the builder: the builders' change permission."""
        opts = Builder._meta
        return request.user.has_perm(f"{opts.app_label}.change_{opts.model_name}")

    @admin.display(description="keys deployed")
    def key_fingerprints(self, lease: Lease) -> str:
        """What the gateway lets through for this lease (and what its logins are matched by)."""
        return ", ".join(lease.keys.values_list("fingerprint", flat=True)) or "—"

    @admin.display(description="remaining")
    def remaining_text(self, lease: Lease) -> str:
        if lease.state != Lease.State.ACTIVE or lease.remaining is None:
            return "—"
        minutes = int(lease.remaining.total_seconds() // 60)
        return f"{minutes // 60} h {minutes % 60} min"

    @admin.action(description="Prolong selected leases by 1 hour", permissions=["change"])
    def prolong_one_hour(self, request: HttpRequest, queryset: QuerySet[Lease]) -> None:
        prolonged = []
        for lease in queryset:
            try:
                services.prolong_lease(lease_id=lease.pk, hours=1, via=_via(request))
            except ServiceError as exc:
                self.message_user(request, f"Lease #{lease.pk}: {exc.message}", messages.WARNING)
            else:
                prolonged.append(f"#{lease.pk}")
        if prolonged:
            self.message_user(request, f"Prolonged by 1 hour: lease {', '.join(prolonged)}.")

    @admin.action(description="Release selected leases", permissions=["change"])
    def release(self, request: HttpRequest, queryset: QuerySet[Lease]) -> None:
        for lease in queryset:
            services.release_lease(lease_id=lease.pk, via=_via(request))
        self.message_user(request, "Released.")

    @admin.action(description="Terminate the builders of selected leases", permissions=["terminate_builder"])
    def terminate_builders(self, request: HttpRequest, queryset: QuerySet[Lease]) -> None:
        done = 0
        for lease in queryset:
            if lease.builder_id is None:
                continue
            try:
                services.terminate_builder(builder_id=lease.builder_id, via=_via(request))
                done += 1
            except ServiceError as exc:
                self.message_user(request, f"Lease #{lease.pk}: {exc.message}", messages.WARNING)
        self.message_user(request, f"{done} builder(s) are being terminated.")


@admin.register(QuotaPolicy)
class QuotaPolicyAdmin(admin.ModelAdmin[QuotaPolicy]):
    list_display = ["__str__", "max_ssh_builders", "default_lifetime", "max_lifetime", "warning_before"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return not QuotaPolicy.objects.exists()

    def has_delete_permission(self, request: HttpRequest, obj: QuotaPolicy | None = None) -> bool:
        return False

    def save_model(
        self, request: HttpRequest, obj: QuotaPolicy, form: ModelForm[QuotaPolicy], change: bool
    ) -> None:
        save_quota_policy(policy=obj, via=_via(request))


@admin.register(QuotaOverride)
class QuotaOverrideAdmin(admin.ModelAdmin[QuotaOverride]):
    list_display = ["user", "max_ssh_builders", "default_lifetime", "max_lifetime", "note"]
    search_fields = ["user__username", "note"]
    raw_id_fields = ["user"]

    def save_model(
        self, request: HttpRequest, obj: QuotaOverride, form: ModelForm[QuotaOverride], change: bool
    ) -> None:
        save_quota_override(override=obj, via=_via(request))

    def delete_model(self, request: HttpRequest, obj: QuotaOverride) -> None:
        delete_quota_override(override_id=obj.pk, via=_via(request))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[QuotaOverride]) -> None:
        # Django's "Delete selected" (after its confirmation page) lands here: one service call each.
        for override_id in queryset.values_list("pk", flat=True):
            delete_quota_override(override_id=override_id, via=_via(request))


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin[AuditEvent]):
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
