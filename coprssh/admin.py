"""The operators' console: Django's admin with the task queue's and pools' health on its front page."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest
from django.template.response import TemplateResponse

from builders.models import Pool
from builders.services import pool_health
from coprssh.health import queue_health


class OperatorsSite(admin.AdminSite):
    site_header = "coprssh operators' console"
    site_title = "coprssh operators"
    index_title = "Pools, builders, leases, quota and audit"
    index_template = "admin/operators_index.html"

    def index(self, request: HttpRequest, extra_context: dict | None = None) -> TemplateResponse:
        context = {"queue_health": queue_health(), **(extra_context or {})}
        if request.user.has_perm("builders.view_pool"):
            context["pools_health"] = [(pool, pool_health(pool)) for pool in Pool.objects.order_by("name")]
        return super().index(request, extra_context=context)
