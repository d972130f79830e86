"""Web pages of builds: projects, the new-build form, the build page with live logs, cancel, resubmit."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import OuterRef, Prefetch, Subquery
from django.http import HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from builds import services, storage
from builds.files import LOG_NAMES, log_url, result_url
from builds.forms import BuildForm, ProjectForm, ResubmitForm
from builds.models import Build, BuildChroot, Chroot, Project, SrpmPhase
from builds.templatetags.builds_tags import format_duration, format_time
from coprssh.exceptions import ServiceError

PAGE_SIZE = 50


def _project(owner: str, name: str) -> Project:
    return get_object_or_404(Project.objects.select_related("owner"), owner__username=owner, name=name)


def _build(build_id: int) -> Build:
    return get_object_or_404(
        Build.objects.select_related("project__owner", "submitter", "srpm__lease", "resubmitted_from"), pk=build_id
    )


def _posted(request: HttpRequest) -> QueryDict | None:
    # An empty POST still binds the form, so that it says what is missing.
    return request.POST if request.method == "POST" else None


def _form_error(form: BuildForm | ProjectForm | ResubmitForm, exc: ServiceError) -> None:
    form.add_error(exc.field if exc.field in form.fields else None, exc.message)


# --- projects --------------------------------------------------------------------------


@require_GET
def project_list(request: HttpRequest) -> HttpResponse:
    last_build = Build.objects.filter(project=OuterRef("pk")).order_by("-pk")
    projects = (
        Project.objects.select_related("owner")
        .prefetch_related(Prefetch("chroots", queryset=Chroot.objects.order_by("name")))
        .annotate(
            last_build_id=Subquery(last_build.values("pk")[:1]),
            last_build_state=Subquery(last_build.values("state")[:1]),
        )
        .order_by("-created_at", "-pk")
    )
    page = Paginator(projects, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "builds/project_list.html", {"page": page})


@login_required
@require_http_methods(["GET", "POST"])
def project_new(request: HttpRequest) -> HttpResponse:
    form = ProjectForm(_posted(request))
    if request.method == "POST":
        if form.is_valid():
            try:
                project = services.create_project(
                    owner=request.user,
                    name=form.cleaned_data["name"],
                    description=form.cleaned_data["description"],
                    chroots=form.cleaned_data["chroots"],
                )
            except ServiceError as exc:
                _form_error(form, exc)
            else:
                messages.success(request, f"Created project {project.full_name}.")
                return redirect("project-detail", owner=project.owner.get_username(), name=project.name)
        return render(request, "builds/project_new.html", {"form": form}, status=400)
    return render(request, "builds/project_new.html", {"form": form})


@require_GET
def project_detail(request: HttpRequest, owner: str, name: str) -> HttpResponse:
    project = _project(owner, name)
    builds = (
        project.builds.select_related("submitter")
        .prefetch_related(Prefetch("build_chroots", queryset=BuildChroot.objects.select_related("chroot")))
        .order_by("-pk")
    )
    return render(
        request,
        "builds/project_detail.html",
        {
            "project": project,
            "chroots": list(project.chroots.order_by("name")),
            "page": Paginator(builds, PAGE_SIZE).get_page(request.GET.get("page")),
            "can_build": project.can_build(request.user),
        },
    )


# --- submitting a build ----------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def build_new(request: HttpRequest, owner: str, name: str) -> HttpResponse:
    project = _project(owner, name)
    if not project.can_build(request.user):
        raise PermissionDenied(f"Only the owner of {project.full_name} can build in it.")
    chroots = project.chroots.filter(active=True).order_by("name")
    form = (
        BuildForm(request.POST, request.FILES, chroots=chroots)
        if request.method == "POST"
        else BuildForm(chroots=chroots)
    )
    if request.method == "POST":
        if form.is_valid():
            source = form.cleaned_data["source"]
            try:
                build = services.submit_build(
                    project=project,
                    submitter=request.user,
                    chroots=form.cleaned_data["chroots"],
                    source=source,
                    upload=form.cleaned_data["source_file"]
                    if source.type == Build.SourceType.UPLOAD
                    else None,
                )
            except ServiceError as exc:
                _form_error(form, exc)
            else:
                messages.success(request, f"Build #{build.pk} submitted.")
                return redirect("build-detail", build_id=build.pk)
        status = 400
    else:
        status = 200
    return render(request, "builds/build_new.html", {"project": project, "form": form}, status=status)


# --- the build page ----------------------------------------------------------------------


@dataclass
class PhaseView:
    """What the build page and state.json show of one phase."""

    key: str  # "srpm" or the chroot's name: the `chroot` part of log and result URLs
    phase: SrpmPhase | BuildChroot
    logs: list[tuple[str, str]]
    results: list[tuple[str, int, str]]

    @property
    def title(self) -> str:
        return "SRPM" if self.key == "srpm" else self.key

    def log_sizes(self) -> dict[str, int]:
        sizes = {}
        for name in LOG_NAMES:
            path = storage.path(f"{self.phase.storage_dir}/{name}")
            sizes[name] = path.stat().st_size if path.is_file() else 0
        return sizes

    def as_json(self) -> dict:
        phase = self.phase
        span = phase.ended_at - phase.started_at if phase.started_at and phase.ended_at else None
        return {
            "key": self.key,
            "state": phase.state,
            "status_reason": phase.reason,
            "finished": phase.is_finished,
            "started_at": format_time(phase.started_at),
            "ended_at": format_time(phase.ended_at),
            "duration": format_duration(span),
            "log_sizes": self.log_sizes(),
            "results": [{"name": name, "size": size, "url": url} for name, size, url in self.results],
        }


def _phase_views(build: Build) -> list[PhaseView]:
    phases: list[tuple[str, SrpmPhase | BuildChroot]] = [("srpm", build.srpm)]
    phases += [(bc.chroot.name, bc) for bc in build.build_chroots.select_related("chroot", "lease")]
    views = []
    for key, phase in phases:
        results = [
            (name, size, result_url(build.pk, key, name))
            for name, size in storage.list_files(phase.storage_dir)
            if name not in LOG_NAMES and not name.startswith(".")
        ]
        logs = [(name, log_url(build.pk, key, name)) for name in (storage.BACKEND_LOG, storage.LIVE_LOG)]
        views.append(PhaseView(key=key, phase=phase, logs=logs, results=results))
    return views


@require_GET
def build_detail(request: HttpRequest, build_id: int) -> HttpResponse:
    build = _build(build_id)
    return render(
        request,
        "builds/build_detail.html",
        {
            "build": build,
            "phases": _phase_views(build),
            "resubmissions": list(build.resubmissions.order_by("pk").values_list("pk", flat=True)),
            "can_build": build.project.can_build(request.user),
        },
    )


@require_GET
def build_state(request: HttpRequest, build_id: int) -> JsonResponse:
    """What the build page polls: the states of the build and its phases."""
    build = _build(build_id)
    nvr = f"{build.package_name}-{build.package_version}" if build.package_version else build.package_name
    response = JsonResponse(
        {
            "id": build.pk,
            "state": build.state,
            "finished": build.is_finished,
            "package": nvr,
            "started_at": format_time(build.started_at),
            "ended_at": format_time(build.ended_at),
            "phases": [view.as_json() for view in _phase_views(build)],
        }
    )
    response["Cache-Control"] = "no-cache"
    return response


# --- cancel and resubmit ---------------------------------------------------------------


@login_required
@require_POST
def build_cancel(request: HttpRequest, build_id: int) -> HttpResponse:
    build = _build(build_id)
    if not build.project.can_build(request.user):
        raise PermissionDenied(f"Only the owner of {build.project.full_name} can cancel its builds.")
    try:
        services.cancel_build(build_id=build.pk, user=request.user)
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Build #{build.pk} canceled.")
    return redirect("build-detail", build_id=build.pk)


@login_required
@require_http_methods(["GET", "POST"])
def build_resubmit(request: HttpRequest, build_id: int) -> HttpResponse:
    build = _build(build_id)
    if not build.project.can_build(request.user):
        raise PermissionDenied(f"Only the owner of {build.project.full_name} can resubmit its builds.")
    build_chroots = list(build.build_chroots.select_related("chroot"))
    form = ResubmitForm(_posted(request), build_chroots=build_chroots)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                new = services.resubmit_build(
                    build=build, user=request.user, chroots=form.cleaned_data["chroots"]
                )
            except ServiceError as exc:
                messages.error(request, exc.message)
            else:
                messages.success(request, f"Build #{new.pk} submitted again from #{build.pk}.")
                return redirect("build-detail", build_id=new.pk)
        status = 400
    return render(
        request,
        "builds/build_resubmit.html",
        {"build": build, "form": form, "build_chroots": build_chroots},
        status=status,
    )
