"""Copr APIv3 writes: create a project, submit builds (upload, URL, git), cancel a build.

Each needs HTTP Basic `login:token` (copr_api/auth.py) and stays thin over the builds services.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from rest_framework.request import Request
from rest_framework.response import Response

from builds import services, sources
from builds.api.base import api_via
from builds.http import AuthenticatedRequest
from builds.models import Build, Project
from builds.sources import Source
from copr_api import objects
from copr_api.base import WriteView, arg_names, arg_text, find_build, find_project, projects_query, truthy
from coprssh.exceptions import ForbiddenError, ServiceError

# Build options copr-cli always sends; coprssh's builders have their own settings for them.
IGNORED_BUILD_OPTIONS = ("timeout", "background", "enable_net", "bootstrap", "bootstrap_image", "isolation")


# --- projects -----------------------------------------------------------------------------------


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
        name = arg_text(data, "name")
        if data.get("additional_repos"):
            raise ServiceError("coprssh does not support additional repositories (--repo) yet.")
        if truthy(request.query_params.get("exist_ok")):
            existing = projects_query().filter(owner=user, name=name).first()
            if existing is not None:
                return Response(objects.project_to_dict(request, existing))
        project = services.create_project(
            owner=user,
            name=name,
            chroots=arg_names(data, "chroots"),
            description=arg_text(data, "description", required=False),
        )
        return Response(objects.project_to_dict(request, find_project(ownername, project.name)))


def _build_options(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ServiceError("Send the build options as a JSON object.")
    for name in ("after_build_id", "with_build_id"):
        if data.get(name) not in (None, ""):
            raise ServiceError(f"coprssh does not support build batches ({name}).", field=name)
    return data


def _target(request: AuthenticatedRequest, data: dict[str, Any]) -> tuple[Project, list[str] | None]:
    """The project to build in (the caller's to build in) and the chroots asked for (None: all)."""
    project = find_project(arg_text(data, "ownername"), arg_text(data, "projectname"))
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
    chroots = arg_names(data, "chroots")
    excluded = arg_names(data, "exclude_chroots")
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
    return objects.build_to_dict(request, find_build(build.pk))


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
        scm_type = arg_text(data, "scm_type", required=False) or "git"
        if scm_type != "git":
            raise ServiceError(f"coprssh builds from git only, not {scm_type[:20]}.", field="scm_type")
        method = arg_text(data, "source_build_method", required=False) or "rpkg"
        if method != "rpkg":
            raise ServiceError(
                f"coprssh makes the SRPM with rpmbuild -bs from the spec (the default, rpkg), not {method[:20]}.",
                field="source_build_method",
            )
        spec = arg_text(data, "spec", required=False)
        if not spec:
            raise ServiceError("Give the spec file's path in the repository (--spec).", field="spec")
        subdirectory = arg_text(data, "subdirectory", required=False).strip("/")
        source: Source = sources.check_scm(
            clone_url=arg_text(data, "clone_url"),
            committish=arg_text(data, "committish", required=False),
            spec=f"{subdirectory}/{spec}" if subdirectory else spec,
        )
        build = services.submit_build(project=project, submitter=request.user, chroots=chroots, source=source)
        return Response(_submitted(request, build))


class BuildCancelView(WriteView):
    """PUT, and POST as older clients send it."""

    def put(self, request: AuthenticatedRequest, build_id: int) -> Response:
        build = services.cancel_build(build_id=build_id, user=request.user, via=api_via(request))
        return Response(objects.build_to_dict(request, find_build(build.pk)))

    post = put
