"""Copr APIv3 endpoints that copr-cli and python-copr call, thin over the builds services.

Reads are anonymous, as in Copr; writes need HTTP Basic `login:token` (copr_api/auth.py). Every
answer is JSON, an error an object with an `error` key: the client reads that message and maps
403 to its authentication error and 404 to "not found" (it ignores other status codes).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db.models import Prefetch, QuerySet
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from builds import services, sources, storage
from builds.http import AuthenticatedRequest
from builds.models import FINAL_STATES, Build, BuildChroot, Chroot, Project
from builds.sources import Source
from copr_api import objects
from copr_api.auth import CoprTokenAuthentication
from copr_api.rpm import NotAnRpm, nevra
from coprssh.exceptions import ForbiddenError, NotFoundError, ServiceError

log = logging.getLogger(__name__)

# Copr answers every item by default; we cap a page (the client pages by offset until empty).
MAX_LIMIT = 100
# Build options copr-cli always sends; coprssh's builders have their own settings for them.
IGNORED_BUILD_OPTIONS = ("timeout", "background", "enable_net", "bootstrap", "bootstrap_image", "isolation")
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


def _text(data: Any, name: str, *, required: bool = True) -> str:
    value = data.get(name) if hasattr(data, "get") else None
    if value is None or value == "":
        if required:
            raise ServiceError(f"Missing argument {name}.", field=name)
        return ""
    if not isinstance(value, str):
        raise ServiceError(f"{name} must be a string.", field=name)
    return value


def _whole(data: Any, name: str, default: int | None = None) -> int | None:
    value = data.get(name)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ServiceError(f"{name} must be a whole number.", field=name) from None


def _names(data: dict[str, Any], name: str) -> list[str]:
    value = data.get(name)
    if value in (None, ""):
        return []
    if isinstance(value, str):
        value = value.split()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ServiceError(f"{name} must be a list of chroot names.", field=name)
    return value


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"))


def _page(
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
    limit = _whole(params, "limit", MAX_LIMIT) or MAX_LIMIT
    offset = _whole(params, "offset", 0) or 0
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


def _projects() -> QuerySet[Project]:
    return Project.objects.select_related("owner").prefetch_related(
        Prefetch("chroots", queryset=Chroot.objects.only("id", "name"))
    )


def _project(ownername: str, projectname: str) -> Project:
    project = _projects().filter(owner__username=ownername, name=projectname).first()
    if project is None:
        raise NotFoundError(f"Project {ownername[:150]}/{projectname[:100]} does not exist.")
    return project


def _builds() -> QuerySet[Build]:
    return Build.objects.select_related("project__owner", "submitter", "srpm").prefetch_related(
        Prefetch("build_chroots", queryset=BuildChroot.objects.select_related("chroot"))
    )


def _build(build_id: int) -> Build:
    build = _builds().filter(pk=build_id).first()
    if build is None:
        raise NotFoundError(f"Build {build_id} does not exist.")
    return build


# --- general ------------------------------------------------------------------------------------


class HomeView(CoprView):
    def get(self, request: Request) -> Response:
        return Response({"version": 3})


class AuthCheckView(WriteView):
    """Who the login and token belong to (python-copr's `auth_check()`)."""

    def get(self, request: AuthenticatedRequest) -> Response:
        return Response({"id": request.user.pk, "name": request.user.get_username()})


def not_found(request: HttpRequest, path: str = "") -> JsonResponse:
    return JsonResponse(
        {"error": f"coprssh does not offer /api_3/{path[:200]} (a subset of Copr's APIv3)."}, status=404
    )


# --- projects -----------------------------------------------------------------------------------


class ProjectView(CoprView):
    def get(self, request: Request) -> Response:
        params = request.query_params
        project = _project(_text(params, "ownername"), _text(params, "projectname"))
        return Response(objects.project_to_dict(request, project))


class ProjectListView(CoprView):
    def get(self, request: Request) -> Response:
        projects = _projects()
        owner = request.query_params.get("ownername")
        if owner:
            projects = projects.filter(owner__username=owner)
        page = _page(
            request,
            projects,
            lambda p: objects.project_to_dict(request, p),
            orders={"id": "id", "name": "name"},
        )
        return Response(page)


class ProjectAddView(WriteView):
    """Create a project of the caller's own (coprssh has no groups)."""

    def post(self, request: AuthenticatedRequest, ownername: str) -> Response:
        user = request.user
        if ownername.startswith("@"):
            raise ServiceError("coprssh has no groups: create the project under your own user name.")
        if ownername != user.get_username():
            raise ForbiddenError(
                f"You can create projects of your own only ({user.get_username()}/…), not of {ownername[:150]}."
            )
        data = request.data if isinstance(request.data, dict) else {}
        name = _text(data, "name")
        if data.get("additional_repos"):
            raise ServiceError("coprssh does not support additional repositories (--repo) yet.")
        if _truthy(request.query_params.get("exist_ok")):
            existing = _projects().filter(owner=user, name=name).first()
            if existing is not None:
                return Response(objects.project_to_dict(request, existing))
        project = services.create_project(
            owner=user,
            name=name,
            chroots=_names(data, "chroots"),
            description=_text(data, "description", required=False),
        )
        return Response(objects.project_to_dict(request, _project(ownername, project.name)))


# --- builds -------------------------------------------------------------------------------------


def _build_options(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ServiceError("Send the build options as a JSON object.")
    for name in ("after_build_id", "with_build_id"):
        if data.get(name) not in (None, ""):
            raise ServiceError(f"coprssh does not support build batches ({name}).", field=name)
    return data


def _target(request: AuthenticatedRequest, data: dict[str, Any]) -> tuple[Project, list[str] | None]:
    """The project to build in (the caller's to build in) and the chroots asked for (None: all)."""
    project = _project(_text(data, "ownername"), _text(data, "projectname"))
    dirname = data.get("project_dirname")
    if dirname not in (None, "", project.name):
        raise ServiceError(
            f"coprssh has no project directories ({str(dirname)[:100]}): build in {project.full_name} itself.",
            field="project_dirname",
        )
    if not project.can_build(request.user):
        raise ForbiddenError(
            f"User {request.user.get_username()} is not allowed to build in {project.full_name}."
        )
    chroots = _names(data, "chroots")
    excluded = _names(data, "exclude_chroots")
    if not chroots and not excluded:
        return project, None
    project_chroots = [c.name for c in project.chroots.all() if c.active]
    wanted = chroots or project_chroots
    outside = [name for name in wanted if name not in project_chroots]
    if outside:
        shown = ", ".join(repr(name[:60]) for name in outside[:5])
        raise ServiceError(f"Not chroots of {project.full_name}: {shown}.", field="chroots")
    wanted = [name for name in wanted if name not in excluded]
    if not wanted:
        raise ServiceError("Every chroot is excluded: nothing would be built.", field="exclude_chroots")
    return project, wanted


def _submitted(request: Request, build: Build) -> dict[str, Any]:
    return objects.build_to_dict(request, _build(build.pk))


class CheckBeforeBuildView(WriteView):
    """copr-cli asks before it uploads: project, permission, chroots."""

    def post(self, request: AuthenticatedRequest) -> Response:
        _target(request, _build_options(request.data))
        return Response({"message": "The build can be submitted like this."})


class BuildUploadView(WriteView):
    """A `.spec` or `.src.rpm` in the `pkgs` part, the options in the `json` part."""

    def post(self, request: AuthenticatedRequest) -> Response:
        part = request.FILES.get("json")
        raw: Any = part.read(settings.DATA_UPLOAD_MAX_MEMORY_SIZE) if part else request.POST.get("json")
        if raw is None:
            raise ServiceError(
                'The upload has no "json" part: send ownername, projectname and the build options '
                "in a part named json, as python-copr does."
            )
        try:
            data = json.loads(raw)
        except ValueError:
            raise ServiceError('The "json" part is not valid JSON.') from None
        project, chroots = _target(request, _build_options(data))
        upload = request.FILES.get("pkgs")
        if upload is None:
            raise ServiceError('The upload has no "pkgs" part with the .spec or .src.rpm file.', field="pkgs")
        build = services.submit_build(
            project=project,
            submitter=request.user,
            chroots=chroots,
            source=sources.check_upload(upload),
            upload=upload,
        )
        return Response(_submitted(request, build))


class BuildUrlView(WriteView):
    """One build per URL of a `.src.rpm`; answered as a list, as Copr does."""

    def post(self, request: AuthenticatedRequest) -> Response:
        data = _build_options(request.data)
        project, chroots = _target(request, data)
        urls = data.get("pkgs")
        if isinstance(urls, str):
            urls = urls.split()
        if not urls or not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
            raise ServiceError("Give the URLs of the .src.rpm files in pkgs.", field="pkgs")
        if len(urls) > 20:
            raise ServiceError("At most 20 URLs at once.", field="pkgs")
        # Every URL is checked before the first build is submitted.
        checked = [sources.check_url(url=url.strip()) for url in urls]
        builds = [
            services.submit_build(project=project, submitter=request.user, chroots=chroots, source=source)
            for source in checked
        ]
        return Response({"items": [_submitted(request, b) for b in builds], "meta": {}})


class BuildScmView(WriteView):
    """A public git repository: clone URL, committish, and the spec path (under subdirectory)."""

    def post(self, request: AuthenticatedRequest) -> Response:
        data = _build_options(request.data)
        project, chroots = _target(request, data)
        scm_type = _text(data, "scm_type", required=False) or "git"
        if scm_type != "git":
            raise ServiceError(f"coprssh builds from git only, not {scm_type[:20]}.", field="scm_type")
        method = _text(data, "source_build_method", required=False) or "rpkg"
        if method != "rpkg":
            raise ServiceError(
                f"coprssh makes the SRPM with rpmbuild -bs from the spec (the default, rpkg), not {method[:20]}.",
                field="source_build_method",
            )
        spec = _text(data, "spec", required=False)
        if not spec:
            raise ServiceError("Give the spec file's path in the repository (--spec).", field="spec")
        subdirectory = _text(data, "subdirectory", required=False).strip("/")
        source: Source = sources.check_scm(
            clone_url=_text(data, "clone_url"),
            committish=_text(data, "committish", required=False),
            spec=f"{subdirectory}/{spec}" if subdirectory else spec,
        )
        build = services.submit_build(project=project, submitter=request.user, chroots=chroots, source=source)
        return Response(_submitted(request, build))


class BuildView(CoprView):
    def get(self, request: Request, build_id: int) -> Response:
        return Response(objects.build_to_dict(request, _build(build_id)))


class BuildCancelView(WriteView):
    """PUT, and POST as older clients send it."""

    def put(self, request: AuthenticatedRequest, build_id: int) -> Response:
        build = services.cancel_build(build_id=build_id, user=request.user)
        return Response(objects.build_to_dict(request, _build(build.pk)))

    post = put


class BuildListView(CoprView):
    def get(self, request: Request) -> Response:
        params = request.query_params
        project = _project(_text(params, "ownername"), _text(params, "projectname"))
        builds = _builds().filter(project=project)
        packagename = params.get("packagename")
        if packagename:
            builds = builds.filter(package_name=packagename)
        status = params.get("status")
        keep = None
        if status:
            if status not in objects.COPR_STATES:
                raise ServiceError(
                    f"Unknown state {status[:20]}; Copr's are {', '.join(objects.COPR_STATES)}."
                )
            if status in FINAL_STATES:
                builds = builds.filter(state=status)
            else:
                builds = builds.exclude(state__in=FINAL_STATES)
                keep = lambda item: item["state"] == status  # noqa: E731
        page = _page(
            request, builds, lambda b: objects.build_to_dict(request, b), orders={"id": "id"}, keep=keep
        )
        return Response(page)


class SourceChrootView(CoprView):
    """The SRPM phase, as Copr's source build."""

    def get(self, request: Request, build_id: int) -> Response:
        build = _build(build_id)
        owner = build.project.owner.get_username()
        return Response(
            {
                "state": build.srpm.state,
                "result_url": objects.results_url(
                    request, owner, build.project.name, objects.SRPM_DIR, objects.build_dir(build.pk)
                ),
            }
        )


class BuiltPackagesView(CoprView):
    """NEVRA of each chroot's stored RPMs (an SSH build keeps none)."""

    def get(self, request: Request, build_id: int) -> Response:
        build = _build(build_id)
        result: dict[str, Any] = {}
        for build_chroot in build.build_chroots.all():
            packages = []
            for name, _size in storage.list_files(build_chroot.storage_dir):
                if not name.endswith(".rpm") or name.endswith(".src.rpm") or name.startswith("."):
                    continue
                try:
                    packages.append(nevra(storage.path(f"{build_chroot.storage_dir}/{name}")))
                except (NotAnRpm, OSError) as exc:
                    log.warning("build %s: cannot read %s: %s", build.pk, name, exc)
            result[build_chroot.chroot.name] = {"packages": packages}
        return Response(result)


# --- build chroots ------------------------------------------------------------------------------


def _build_chroots(request: Request) -> QuerySet[BuildChroot]:
    build_id = _whole(request.query_params, "build_id")
    if build_id is None:
        raise ServiceError("Missing argument build_id.", field="build_id")
    if not Build.objects.filter(pk=build_id).exists():
        raise NotFoundError(f"Build {build_id} does not exist.")
    return BuildChroot.objects.select_related("chroot", "build__project__owner", "build__srpm").filter(
        build_id=build_id
    )


class BuildChrootView(CoprView):
    def get(self, request: Request) -> Response:
        name = _text(request.query_params, "chrootname")
        build_chroot = _build_chroots(request).filter(chroot__name=name).first()
        if build_chroot is None:
            raise NotFoundError(f"The build has no chroot {name[:60]}.")
        return Response(objects.build_chroot_to_dict(request, build_chroot))


class BuildChrootListView(CoprView):
    def get(self, request: Request) -> Response:
        page = _page(
            request,
            _build_chroots(request),
            lambda c: objects.build_chroot_to_dict(request, c),
            orders={"name": "chroot__name", "id": "id"},
            default_order="name",
        )
        return Response(page)
