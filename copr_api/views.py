"""Copr APIv3 reads that copr-cli and python-copr call: projects, builds, build chroots.

Anonymous, as in Copr (but `auth-check`); the writes are in copr_api/writes.py.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db.models import QuerySet
from django.http import HttpRequest, JsonResponse
from rest_framework.request import Request
from rest_framework.response import Response

from builds import storage
from builds.http import AuthenticatedRequest
from builds.models import FINAL_STATES, SRPM_DIR, Build, BuildChroot
from copr_api import objects
from copr_api.base import (
    CoprView,
    WriteView,
    arg_text,
    arg_whole,
    builds_query,
    copr_page,
    find_build,
    find_project,
    projects_query,
)
from copr_api.rpm import NotAnRpm, nevra
from coprssh.exceptions import NotFoundError, ServiceError

log = logging.getLogger(__name__)


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
        project = find_project(arg_text(params, "ownername"), arg_text(params, "projectname"))
        return Response(objects.project_to_dict(request, project))


class ProjectListView(CoprView):
    def get(self, request: Request) -> Response:
        projects = projects_query()
        owner = request.query_params.get("ownername")
        if owner:
            projects = projects.filter(owner__username=owner)
        page = copr_page(
            request,
            projects,
            lambda p: objects.project_to_dict(request, p),
            orders={"id": "id", "name": "name"},
        )
        return Response(page)


# --- builds -------------------------------------------------------------------------------------


class BuildView(CoprView):
    def get(self, request: Request, build_id: int) -> Response:
        return Response(objects.build_to_dict(request, find_build(build_id)))


class BuildListView(CoprView):
    def get(self, request: Request) -> Response:
        params = request.query_params
        project = find_project(arg_text(params, "ownername"), arg_text(params, "projectname"))
        builds = builds_query().filter(project=project)
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
        page = copr_page(
            request, builds, lambda b: objects.build_to_dict(request, b), orders={"id": "id"}, keep=keep
        )
        return Response(page)


class SourceChrootView(CoprView):
    """The SRPM phase, as Copr's source build."""

    def get(self, request: Request, build_id: int) -> Response:
        build = find_build(build_id)
        owner = build.project.owner.get_username()
        return Response(
            {
                "state": build.srpm.state,
                "result_url": objects.results_url(
                    request, owner, build.project.name, SRPM_DIR, objects.build_dir(build.pk)
                ),
            }
        )


class BuiltPackagesView(CoprView):
    """NEVRA of each chroot's stored RPMs (an SSH build keeps none)."""

    def get(self, request: Request, build_id: int) -> Response:
        build = find_build(build_id)
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
    build_id = arg_whole(request.query_params, "build_id")
    if build_id is None:
        raise ServiceError("Missing argument build_id.", field="build_id")
    if not Build.objects.filter(pk=build_id).exists():
        raise NotFoundError(f"Build {build_id} does not exist.")
    return BuildChroot.objects.select_related("chroot", "build__project__owner", "build__srpm").filter(
        build_id=build_id
    )


class BuildChrootView(CoprView):
    def get(self, request: Request) -> Response:
        name = arg_text(request.query_params, "chrootname")
        build_chroot = _build_chroots(request).filter(chroot__name=name).first()
        if build_chroot is None:
            raise NotFoundError(f"The build has no chroot {name[:60]}.")
        return Response(objects.build_chroot_to_dict(request, build_chroot))


class BuildChrootListView(CoprView):
    def get(self, request: Request) -> Response:
        page = copr_page(
            request,
            _build_chroots(request),
            lambda c: objects.build_chroot_to_dict(request, c),
            orders={"name": "chroot__name", "id": "id"},
            default_order="name",
        )
        return Response(page)
