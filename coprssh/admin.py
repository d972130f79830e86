"""The operators' console: Django's admin with the task queue's health on its front page."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest
from django.template.response import TemplateResponse

from coprssh.health import queue_health


class OperatorsSite(admin.AdminSite):
    site_header = "coprssh operators' console"
    site_title = "coprssh operators"
    index_title = "Pools, builders, leases, quota and audit"
    index_template = "admin/operators_index.html"

    def index(self, request: HttpRequest, extra_context: dict | None = None) -> TemplateResponse:
        context = {"queue_health": queue_health(), **(extra_context or {})}
        return super().index(request, extra_context=context)
