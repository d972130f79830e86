"""What every /api_3/ endpoint shares: the view base, Copr's error shape, parameter readers, pages.

Reads are anonymous, as in Copr; writes need HTTP Basic `login:token` (copr_api/auth.py). Every
answer is JSON, an error an object with an `error` key: the client reads that message and maps
403 to its authentication error and 404 to "not found" (it ignores other status codes).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.db.models import Prefetch, QuerySet
from django.http import Http404
from rest_framework import exceptions
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from builds.models import Build, BuildChroot, Chroot, Project
from copr_api.auth import CoprTokenAuthentication
from coprssh.exceptions import NotFoundError, ServiceError

log = logging.getLogger(__name__)

# Copr answers every item by default; we cap a page (the client pages by offset until empty).
MAX_LIMIT = 100
NEEDS_LOGIN = (
    "This needs API authentication: put login, username and token from your coprssh profile page "
    "into the [copr-cli] section of ~/.config/copr."
)


def copr_exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    """Every error as Copr's `{"error": message}`."""
    headers: dict[str, str] = {}
    status: int
    if isinstance(exc, ServiceError):
        status, message = exc.status_code, exc.message
    elif isinstance(exc, Http404):
        status, message = 404, str(exc) or "Not found."
    elif isinstance(exc, exceptions.NotAuthenticated):
        status, message = 403, NEEDS_LOGIN
    elif isinstance(exc, exceptions.AuthenticationFailed):
        status, message = 403, str(exc.detail)
    elif isinstance(exc, exceptions.ValidationError):
        status, message = 400, _flatten(exc.detail)
    elif isinstance(exc, exceptions.APIException):
        status, message = exc.status_code, str(exc.detail)
        # DRF sets Throttled.wait in its __init__; drf-stubs leave the attribute out.
        wait = exc.wait if isinstance(exc, exceptions.Throttled) else None  # type: ignore[attr-defined]
        if wait is not None:
            headers["Retry-After"] = str(int(wait))
    else:
        log.exception("api_3: unexpected error", exc_info=exc)
        status, message = 500, "Internal error of the coprssh service; the operators have the details."
    return Response({"error": message}, status=status, headers=headers)


def _flatten(detail: Any, prefix: str = "") -> str:
    if isinstance(detail, dict):
        return "\n".join(_flatten(value, f"{key}: ") for key, value in detail.items())
    if isinstance(detail, list):
        return "\n".join(_flatten(value, prefix) for value in detail)
    return f"{prefix}{detail}"


class CoprView(APIView):
    """Basic `login:token`, JSON in (a body, or multipart with a `json` part) and JSON out."""

    authentication_classes = [CoprTokenAuthentication]
    permission_classes = [AllowAny]
    renderer_classes = [JSONRenderer]
    parser_classes = [JSONParser, MultiPartParser]
    schema = None  # not part of the OpenAPI schema of API v1

    def get_exception_handler(self) -> Callable[[Exception, dict[str, Any]], Response]:
        return copr_exception_handler


class WriteView(CoprView):
    permission_classes = [IsAuthenticated]  # refused with NEEDS_LOGIN


# --- reading parameters -------------------------------------------------------------------------


def arg_text(data: Any, name: str, *, required: bool = True) -> str:
    value = data.get(name) if hasattr(data, "get") else None
    if value is None or value == "":
        if required:
            raise ServiceError(f"Missing argument {name}.", field=name)
        return ""
    if not isinstance(value, str):
        raise ServiceError(f"{name} must be a string.", field=name)
    return value


def arg_whole(data: Any, name: str, default: int | None = None) -> int | None:
    value = data.get(name)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ServiceError(f"{name} must be a whole number.", field=name) from None


def arg_names(data: dict[str, Any], name: str) -> list[str]:
    value = data.get(name)
    if value in (None, ""):
        return []
    if isinstance(value, str):
        value = value.split()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ServiceError(f"{name} must be a list of chroot names.", field=name)
    return value


def truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"))


def copr_page(
    request: Request,
    queryset: QuerySet[Any],
    to_dict: Callable[[Any], dict[str, Any]],
    *,
    orders: dict[str, str],
    default_order: str = "id",
    keep: Callable[[dict[str, Any]], bool] | None = None,
) -> dict[str, Any]:
    """Copr's `{"items", "meta"}` page: limit, offset, order, order_type (ASC/DESC)."""
    params = request.query_params
    limit = arg_whole(params, "limit", MAX_LIMIT) or MAX_LIMIT
    offset = arg_whole(params, "offset", 0) or 0
    if offset < 0:
        raise ServiceError("offset must not be negative.", field="offset")
    limit = max(1, min(limit, MAX_LIMIT))
    order = params.get("order") or default_order
    if order not in orders:
        raise ServiceError(f"Cannot order by {order[:40]}; use one of {', '.join(orders)}.", field="order")
    order_type = (params.get("order_type") or ("ASC" if order == "name" else "DESC")).upper()
    if order_type not in ("ASC", "DESC"):
        raise ServiceError("order_type is ASC or DESC.", field="order_type")
    column = orders[order]
    rows = queryset.order_by(column if order_type == "ASC" else f"-{column}", "pk")
    if keep is None:
        items = [to_dict(row) for row in rows[offset : offset + limit]]
    else:
        # A filter on a state only Python derives (as Copr does): over the matching rows.
        items = [item for item in map(to_dict, rows) if keep(item)][offset : offset + limit]
    meta = {"limit": limit, "offset": offset, "order": order, "order_type": order_type}
    return {"items": items, "meta": meta}


# --- queries ------------------------------------------------------------------------------------


def projects_query() -> QuerySet[Project]:
    return Project.objects.select_related("owner").prefetch_related(
        Prefetch("chroots", queryset=Chroot.objects.only("id", "name"))
    )


def find_project(ownername: str, projectname: str) -> Project:
    project = projects_query().filter(owner__username=ownername, name=projectname).first()
    if project is None:
        raise NotFoundError(f"Project {ownername[:150]}/{projectname[:100]} does not exist.")
    return project


def builds_query() -> QuerySet[Build]:
    return Build.objects.select_related("project__owner", "submitter", "srpm").prefetch_related(
        Prefetch("build_chroots", queryset=BuildChroot.objects.select_related("chroot"))
    )


def find_build(build_id: int) -> Build:
    build = builds_query().filter(pk=build_id).first()
    if build is None:
        raise NotFoundError(f"Build {build_id} does not exist.")
    return build
