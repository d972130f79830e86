"""Raw logs and results, served to anyone (build output is public, as in Copr).

Logs are served as text/plain with nosniff, whatever they contain: a build can print
HTML, and it must never render as a page of this site.
"""

from __future__ import annotations

import mimetypes
import os

from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.views.decorators.http import require_GET

from builds import storage
from builds.models import Build, BuildChroot

LOG_NAMES = {storage.BACKEND_LOG, storage.LIVE_LOG}


def is_result(name: str) -> bool:
    """Whether a file stored for a phase is one of its results: not a log, not a hidden file."""
    return name not in LOG_NAMES and not name.startswith(".")


def results_in(directory: str) -> list[tuple[str, int]]:
    """The results (name, size) that a phase stored in `directory` of the storage."""
    return [(name, size) for name, size in storage.list_files(directory) if is_result(name)]


def _phase_dir(build: Build, chroot: str) -> str:
    if chroot == "srpm":
        return build.srpm.storage_dir
    build_chroot = get_object_or_404(
        BuildChroot.objects.select_related("chroot"), build=build, chroot__name=chroot
    )
    return build_chroot.storage_dir


def log_url(build_id: int, chroot: str, name: str) -> str:
    return reverse("build-log", kwargs={"build_id": build_id, "chroot": chroot, "name": name})


def result_url(build_id: int, chroot: str, name: str) -> str:
    return reverse("build-result", kwargs={"build_id": build_id, "chroot": chroot, "name": name})


@require_GET
def build_log(request: HttpRequest, build_id: int, chroot: str, name: str) -> HttpResponse:
    """A phase's backend.log or builder-live.log; `?offset=N` returns what follows byte N (live view)."""
    if name not in LOG_NAMES:
        raise Http404("No such log.")
    build = get_object_or_404(Build.objects.select_related("project__owner", "srpm"), pk=build_id)
    path = storage.path(f"{_phase_dir(build, chroot)}/{name}")
    offset_text = request.GET.get("offset", "0")
    if not offset_text.isdigit() or len(offset_text) > 15:
        return HttpResponse("offset must be a whole number of bytes\n", status=400, content_type="text/plain")
    offset = int(offset_text)
    data = b""
    size = 0
    if path.is_file():
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            handle.seek(min(offset, size))
            data = handle.read(4 * 1024 * 1024)
    response = HttpResponse(data, content_type="text/plain; charset=utf-8")
    # Where the next read should start: never past what exists.
    response["X-Log-Size"] = str(min(offset, size) + len(data))
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "no-cache"
    return response


@require_GET
def build_result(request: HttpRequest, build_id: int, chroot: str, name: str) -> FileResponse:
    """One result file (SRPM, spec, RPM) of a phase, as a download."""
    build = get_object_or_404(Build.objects.select_related("project__owner", "srpm"), pk=build_id)
    directory = _phase_dir(build, chroot)
    if not is_result(name) or "/" in name:
        raise Http404("No such result.")
    stored = dict(storage.list_files(directory))
    if name not in stored:
        raise Http404("No such result.")
    content_type = (
        "text/plain; charset=utf-8"
        if name.endswith(".spec")
        else (mimetypes.guess_type(name)[0] or "application/octet-stream")
    )
    if name.endswith(".rpm"):
        content_type = "application/x-rpm"
    response = FileResponse(open(storage.path(f"{directory}/{name}"), "rb"), content_type=content_type)  # noqa: SIM115
    response["X-Content-Type-Options"] = "nosniff"
    if not name.endswith(".spec"):
        response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response
