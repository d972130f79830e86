"""The results tree, `/results/<owner>/<project>/<chroot>/<build>/`, as HTML directory indexes.

copr-cli's download-build runs `wget -r --no-parent` on a build chroot's `result_url`: it needs
an index page whose links are the files, below that URL. Each directory maps to rows (project,
build chroot or SRPM phase), never to a path taken from the request; the files listed are the
regular files stored for that phase. An SSH build's directories hold its spec and logs only:
nothing built on a user's builder is ever published.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Sequence

from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET

from builds import storage
from builds.models import CHROOT_NAME_RE, SRPM_DIR, BuildChroot, Project, SrpmPhase
from copr_api.objects import build_dir

LOGS = {storage.BACKEND_LOG, storage.LIVE_LOG}


def _project(owner: str, project: str) -> Project:
    found = Project.objects.filter(owner__username=owner, name=project).first()
    if found is None:
        raise Http404("No such project.")
    return found


def _phases(project: Project, chroot: str) -> list[SrpmPhase | BuildChroot]:
    if chroot == SRPM_DIR:
        return list(SrpmPhase.objects.filter(build__project=project).select_related("build__project__owner"))
    if not CHROOT_NAME_RE.fullmatch(chroot):
        raise Http404("No such chroot.")
    return list(
        BuildChroot.objects.filter(build__project=project, chroot__name=chroot).select_related(
            "build__project__owner", "chroot"
        )
    )


def _phase(project: Project, chroot: str, build: str) -> SrpmPhase | BuildChroot:
    if len(build) != 8 or not build.isdigit():
        raise Http404("No such build.")
    build_id = int(build)
    phase: SrpmPhase | BuildChroot | None
    if chroot == SRPM_DIR:
        phase = SrpmPhase.objects.filter(build_id=build_id, build__project=project).first()
    elif CHROOT_NAME_RE.fullmatch(chroot):
        phase = (
            BuildChroot.objects.filter(build_id=build_id, build__project=project, chroot__name=chroot)
            .select_related("chroot")
            .first()
        )
    else:
        phase = None
    if phase is None:
        raise Http404("No such build in this directory.")
    return phase


def _index(request: HttpRequest, title: str, entries: Sequence[tuple[str, int | None]]) -> HttpResponse:
    return render(request, "copr_api/results_index.html", {"title": title, "entries": entries})


@require_GET
def project_index(request: HttpRequest, owner: str, project: str) -> HttpResponse:
    found = _project(owner, project)
    chroots = sorted(
        set(BuildChroot.objects.filter(build__project=found).values_list("chroot__name", flat=True))
    )
    has_srpms = SrpmPhase.objects.filter(build__project=found).exists()
    entries = [(f"{name}/", None) for name in chroots] + ([(f"{SRPM_DIR}/", None)] if has_srpms else [])
    return _index(request, f"/results/{found.full_name}/", entries)


@require_GET
def chroot_index(request: HttpRequest, owner: str, project: str, chroot: str) -> HttpResponse:
    found = _project(owner, project)
    phases = _phases(found, chroot)
    if not phases:
        raise Http404("No builds in this chroot.")
    entries = [(f"{build_dir(phase.build_id)}/", None) for phase in sorted(phases, key=lambda p: p.build_id)]
    return _index(request, f"/results/{found.full_name}/{chroot}/", entries)


@require_GET
def build_index(request: HttpRequest, owner: str, project: str, chroot: str, build: str) -> HttpResponse:
    found = _project(owner, project)
    phase = _phase(found, chroot, build)
    entries = [
        (name, size) for name, size in storage.list_files(phase.storage_dir) if not name.startswith(".")
    ]
    return _index(request, f"/results/{found.full_name}/{chroot}/{build}/", entries)


@require_GET
def result_file(
    request: HttpRequest, owner: str, project: str, chroot: str, build: str, name: str
) -> FileResponse:
    phase = _phase(_project(owner, project), chroot, build)
    if name.startswith(".") or "/" in name or name not in dict(storage.list_files(phase.storage_dir)):
        raise Http404("No such file.")
    if name in LOGS or name.endswith((".log", ".spec")):
        # Logs and specs are the build's own text: never rendered as a page of this site.
        content_type = "text/plain; charset=utf-8"
    elif name.endswith(".rpm"):
        content_type = "application/x-rpm"
    else:
        content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        if content_type.startswith("text/") or "html" in content_type or "xml" in content_type:
            content_type = "text/plain; charset=utf-8"
    response = FileResponse(
        open(storage.path(f"{phase.storage_dir}/{name}"), "rb"), content_type=content_type
    )  # noqa: SIM115
    response["X-Content-Type-Options"] = "nosniff"
    return response


@require_GET
def build_page(request: HttpRequest, build_id: int) -> HttpResponse:
    return redirect("build-detail", build_id=build_id)


@require_GET
def project_page(request: HttpRequest, owner: str, project: str) -> HttpResponse:
    return redirect("project-detail", owner=owner, name=project)
