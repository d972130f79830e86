"""The operators' console: Django's admin, with the queue, pools, SSH builders and audit on its front page."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.template.response import TemplateResponse

from coprssh import console
from coprssh.health import queue_health


class OperatorsSite(admin.AdminSite):
    site_header = "coprssh operators' console"
    site_title = "coprssh operators"
    index_title = "Pools, builders, leases, quota and audit"
    index_template = "admin/operators_index.html"

    def index(self, request: HttpRequest, extra_context: dict | None = None) -> TemplateResponse:
        context: dict[str, Any] = {"queue_health": queue_health()}
        can = request.user.has_perm
        if can("builders.view_pool"):
            context["pool_rows"] = console.pool_rows()
        if can("builders.view_lease"):
            context["ssh_rows"], context["ssh_total"] = console.ssh_builders_in_use()
        if can("builders.view_auditevent"):
            context["audit_events"] = console.latest_audit_events()
        return super().index(request, extra_context={**context, **(extra_context or {})})
