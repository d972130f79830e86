"""Web pages of builds: projects, the new-build form, the build page with live logs, cancel, resubmit.

And SSH: resubmit with SSH, the SSH builder panel of the build page, prolong and release.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import AnonymousUser, User
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import OuterRef, Prefetch, Subquery
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from builders import services as builders
from builders.models import Lease
from builders.selectors import GatewayLogin
from builds import services, storage
from builds.files import LOG_NAMES, log_url, result_url, results_in
from builds.forms import BuildForm, ProjectForm, ProlongForm, ResubmitForm, ResubmitSshForm
from builds.http import AuthenticatedHttpRequest
from builds.models import Build, BuildChroot, Chroot, Project, SrpmPhase
from builds.selectors import Phase, build_of_lease, chroot_of, served_by
from builds.selectors import srpm_reruns as reruns_srpm
from builds.ssh_view import SshBuilderView, gateway_logins_of, key_count, keys_shown, ssh_builder_of_phase
from builds.templatetags.builds_tags import format_duration, format_time
from coprssh.exceptions import NotFoundError, ServiceError
from keys.models import SavedKey

PAGE_SIZE = 50
T = TypeVar("T")


def _project(owner: str, name: str) -> Project:
    return get_object_or_404(Project.objects.select_related("owner"), owner__username=owner, name=name)


def _build(build_id: int) -> Build:
    return get_object_or_404(
        Build.objects.select_related(
            "project__owner", "submitter", "srpm__lease__builder__pool", "resubmitted_from"
        ),
        pk=build_id,
    )


def _posted(request: HttpRequest) -> QueryDict | None:
    # An empty POST still binds the form, so that it says what is missing.
    return request.POST if request.method == "POST" else None


def _call_when_valid(form: forms.Form, call: Callable[[], T]) -> T | None:
    """`call()` (a service) once the posted form is valid; a ServiceError it raises becomes the form's.

    A form not posted (GET) is not bound, hence not valid: nothing is called.
    """
    if not form.is_valid():
        return None
    try:
        return call()
    except ServiceError as exc:
        form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        return None


def _form_status(request: HttpRequest) -> int:
    """A form page shown again after a POST did not go through answers 400."""
    return 400 if request.method == "POST" else 200


def _own_build(request: AuthenticatedHttpRequest, build_id: int, *, to: str) -> Build:
    """The build, when the user may change it (the project's owner or an admin); 403 otherwise."""
    build = _build(build_id)
    if not build.project.can_build(request.user):
        raise PermissionDenied(f"Only the owner of {build.project.full_name} can {to} its builds.")
    return build


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
def project_new(request: AuthenticatedHttpRequest) -> HttpResponse:
    form = ProjectForm(_posted(request))
    project = _call_when_valid(form, lambda: services.create_project(owner=request.user, **form.cleaned_data))
    if project is not None:
        messages.success(request, f"Created project {project.full_name}.")
        return redirect("project-detail", owner=project.owner.get_username(), name=project.name)
    return render(request, "builds/project_new.html", {"form": form}, status=_form_status(request))


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
def build_new(request: AuthenticatedHttpRequest, owner: str, name: str) -> HttpResponse:
    project = _project(owner, name)
    if not project.can_build(request.user):
        raise PermissionDenied(f"Only the owner of {project.full_name} can build in it.")
    chroots = project.chroots.filter(active=True).order_by("name")
    saved_keys = SavedKey.objects.filter(user=request.user).count()
    posted = (request.POST, request.FILES) if request.method == "POST" else ()
    form = BuildForm(*posted, chroots=chroots, user=request.user, saved_keys=saved_keys)
    build = _call_when_valid(
        form,
        lambda: services.submit_build(
            project=project,
            submitter=request.user,
            chroots=form.cleaned_data["chroots"],
            source=form.cleaned_data["source"],
            upload=form.cleaned_data["source_file"]
            if form.cleaned_data["source"].type == Build.SourceType.UPLOAD
            else None,
            keep_for_ssh=form.cleaned_data["keys"],
        ),
    )
    if build is not None:
        messages.success(request, f"Build #{build.pk} submitted{_kept_note(build)}.")
        return redirect("build-detail", build_id=build.pk)
    return render(
        request,
        "builds/build_new.html",
        {"project": project, "form": form, "saved_keys": saved_keys, "quota": _quota_view(request.user)},
        status=_form_status(request),
    )


def _kept_note(build: Build) -> str:
    if not build.ssh_on_failure:
        return ""
    count = len(build.ssh_keys.splitlines())
    return f"; if it fails, its builder is kept for SSH with {count} key{'s' if count != 1 else ''}"


# --- the build page ----------------------------------------------------------------------


@dataclass
class PhaseView:
    """What the build page and state.json show of one phase."""

    key: str  # "srpm" or the chroot's name: the `chroot` part of log and result URLs
    phase: SrpmPhase | BuildChroot
    logs: list[tuple[str, str]]
    results: list[tuple[str, int, str]]
    ssh: SshBuilderView | None = None  # the SSH builder of an SSH build's phase

    @property
    def title(self) -> str:
        return "SRPM" if self.key == "srpm" else self.key

    def log_sizes(self) -> dict[str, int]:
        sizes = {}
        for name in LOG_NAMES:
            path = storage.path(f"{self.phase.storage_dir}/{name}")
            sizes[name] = path.stat().st_size if path.is_file() else 0
        return sizes

    def as_json(self) -> dict[str, object]:
        phase = self.phase
        span = phase.ended_at - phase.started_at if phase.started_at and phase.ended_at else None
        return {
            "key": self.key,
            "state": phase.state,
            "status_reason": phase.reason,
            "not_kept_reason": phase.not_kept_reason,
            "finished": phase.is_finished,
            "started_at": format_time(phase.started_at),
            "ended_at": format_time(phase.ended_at),
            "duration": format_duration(span),
            "log_sizes": self.log_sizes(),
            "results": [{"name": name, "size": size, "url": url} for name, size, url in self.results],
            "ssh": self.ssh_data,
        }

    @property
    def ssh_data(self) -> dict[str, object] | None:
        return _ssh_json(self.ssh) if self.ssh else None


def _iso(moment: datetime | None) -> str | None:
    """A time for scripts: ISO 8601 in UTC, to the second."""
    return moment.astimezone(UTC).isoformat(timespec="seconds") if moment else None


def _ssh_json(ssh: SshBuilderView) -> dict[str, object]:
    # ssh_view leaves the connection details empty for anyone but the owner and staff.
    lease = ssh.lease
    return {
        "lease_id": ssh.id,
        "state": ssh.state,
        "details": ssh.details,
        "queue_reason": ssh.queue_reason,
        "ssh_command": ssh.ssh_command,
        "host": ssh.host,
        "port": ssh.port,
        "user": ssh.user,
        "ipv4": ssh.ipv4,
        "ipv6": ssh.ipv6,
        "key_fingerprints": ssh.key_fingerprints,
        "host_key_fingerprint": ssh.host_key_fingerprint,
        "expires_at": _iso(ssh.expires_at),
        "expires_at_display": format_time(ssh.expires_at),
        "max_expires_at": _iso(ssh.max_expires_at),
        "max_expires_at_display": format_time(ssh.max_expires_at),
        # "released, 2026-05-01 15:03:07 UTC"
        "end": ", ".join(part for part in (lease.end_reason, format_time(lease.ended_at)) if part),
        "route": ssh.route,
        "other_command": ssh.other_command,
        "gateway_host_key_fingerprint": ssh.gateway.host_key_fingerprint if ssh.gateway else None,
        "ssh_config": ssh.ssh_config,
        "known_hosts": "\n".join(ssh.known_hosts),
        "last_gateway_login": gateway_login_text(ssh.last_gateway_login),
    }


def gateway_login_text(login: GatewayLogin | None) -> str:
    """`12:04 UTC from 203.0.113.9` (with the date when not today)."""
    if login is None:
        return ""
    moment = timezone.localtime(login.at)
    shown = f"{moment:%H:%M %Z}" if moment.date() == timezone.localdate() else f"{moment:%Y-%m-%d %H:%M %Z}"
    return f"{shown} from {login.address}" if login.address else shown


def _phase_views(build: Build, viewer: User | AnonymousUser) -> list[PhaseView]:
    phases: list[Phase] = [build.srpm, *build.build_chroots.select_related("chroot", "lease__builder__pool")]
    logins = gateway_logins_of(phases, viewer) if build.ssh or build.ssh_on_failure else {}
    views = []
    for phase in phases:
        key = chroot_of(phase)
        results = [
            (name, size, result_url(build.pk, key, name)) for name, size in results_in(phase.storage_dir)
        ]
        logs = [(name, log_url(build.pk, key, name)) for name in (storage.BACKEND_LOG, storage.LIVE_LOG)]
        ssh = ssh_builder_of_phase(phase, viewer=viewer, last_logins=logins)
        views.append(PhaseView(key=key, phase=phase, logs=logs, results=results, ssh=ssh))
    return views


@require_GET
def build_detail(request: HttpRequest, build_id: int) -> HttpResponse:
    build = _build(build_id)
    return render(
        request,
        "builds/build_detail.html",
        {
            "build": build,
            "phases": _phase_views(build, request.user),
            "resubmissions": list(build.resubmissions.order_by("pk").values_list("pk", flat=True)),
            "can_build": build.project.can_build(request.user),
            "ssh_keys": keys_shown(build, request.user),
            "ssh_key_count": key_count(build),
            "now": _iso(timezone.now()),
            "max_prolong_hours": builders.MAX_PROLONG_HOURS,
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
            "phases": [view.as_json() for view in _phase_views(build, request.user)],
            "now": _iso(timezone.now()),
        }
    )
    response["Cache-Control"] = "no-cache"
    return response


# --- cancel and resubmit ---------------------------------------------------------------


@login_required
@require_POST
def build_cancel(request: AuthenticatedHttpRequest, build_id: int) -> HttpResponse:
    build = _own_build(request, build_id, to="cancel")
    try:
        services.cancel_build(build_id=build.pk, user=request.user, via=_via(request))
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Build #{build.pk} canceled.")
    return redirect("build-detail", build_id=build.pk)


@login_required
@require_http_methods(["GET", "POST"])
def build_resubmit(request: AuthenticatedHttpRequest, build_id: int) -> HttpResponse:
    build = _own_build(request, build_id, to="resubmit")
    build_chroots = list(build.build_chroots.select_related("chroot"))
    saved_keys = SavedKey.objects.filter(user=request.user).count()
    form = ResubmitForm(
        _posted(request), build_chroots=build_chroots, user=request.user, saved_keys=saved_keys
    )
    new = _call_when_valid(
        form,
        lambda: services.resubmit_build(
            build=build,
            user=request.user,
            chroots=form.cleaned_data["chroots"],
            keep_for_ssh=form.cleaned_data["keys"],
        ),
    )
    if new is not None:
        messages.success(request, f"Build #{new.pk} submitted again from #{build.pk}{_kept_note(new)}.")
        return redirect("build-detail", build_id=new.pk)
    return render(
        request,
        "builds/build_resubmit.html",
        {
            "build": build,
            "form": form,
            "build_chroots": build_chroots,
            "saved_keys": saved_keys,
            "quota": _quota_view(request.user),
        },
        status=_form_status(request),
    )


# --- SSH: resubmit with SSH, prolong and release -------------------------------------------


def _via(request: AuthenticatedHttpRequest) -> builders.Via:
    return builders.Via(user=request.user, source="web", remote_addr=request.META.get("REMOTE_ADDR"))


def _lifetime(span: timedelta) -> str:
    hours, rest = divmod(int(span.total_seconds()), 3600)
    if rest:
        return format_duration(span)
    return "1 hour" if hours == 1 else f"{hours} hours"


@dataclass
class QuotaView:
    """The user's SSH quota as the form shows it: "1 of 2 SSH builders in use: builds #12, #15"."""

    in_use: int
    limit: int
    default_lifetime: str
    max_lifetime: str
    builds: list[int] = field(default_factory=list)  # builds whose phases hold the slots
    leases: list[int] = field(default_factory=list)  # slots held by leases of no build

    @property
    def full(self) -> bool:
        return self.in_use >= self.limit


def _quota_view(user: User) -> QuotaView:
    quota = builders.quota_for(user)
    ids = [lease.pk for lease in builders.slot_holders(user)]
    build_of = {lease_id: build_id for lease_id, (build_id, _chroot) in served_by(ids).items()}
    return QuotaView(
        in_use=len(ids),
        limit=quota.max_ssh_builders,
        default_lifetime=_lifetime(quota.default_lifetime),
        max_lifetime=_lifetime(quota.max_lifetime),
        builds=list(dict.fromkeys(build_of[pk] for pk in ids if pk in build_of)),
        leases=[pk for pk in ids if pk not in build_of],
    )


@login_required
@require_http_methods(["GET", "POST"])
def build_resubmit_ssh(request: AuthenticatedHttpRequest, build_id: int) -> HttpResponse:
    build = _own_build(request, build_id, to="resubmit")
    build_chroots = list(build.build_chroots.select_related("chroot"))
    srpm_reruns = reruns_srpm(build)
    saved_keys = SavedKey.objects.filter(user=request.user).count()
    form = ResubmitSshForm(
        _posted(request),
        build_chroots=build_chroots,
        srpm_reruns=srpm_reruns,
        user=request.user,
        saved_keys=saved_keys,
    )
    new = _call_when_valid(
        form,
        lambda: services.resubmit_with_ssh(
            build=build,
            user=request.user,
            keys=form.cleaned_data["keys"],
            chroots=form.cleaned_data.get("chroots") or None,
            via=_via(request),
        ),
    )
    if new is not None:
        count = len(form.cleaned_data["keys"])
        messages.success(
            request,
            f"Build #{new.pk} submitted from #{build.pk} with SSH access for "
            f"{count} key{'s' if count != 1 else ''}.",
        )
        return redirect("build-detail", build_id=new.pk)
    return render(
        request,
        "builds/build_resubmit_ssh.html",
        {
            "build": build,
            "form": form,
            "build_chroots": build_chroots,
            "srpm_reruns": srpm_reruns,
            "saved_keys": saved_keys,
            "quota": _quota_view(request.user),
        },
        status=_form_status(request),
    )


def _build_of_lease(lease_id: int, user: User) -> tuple[int, Lease]:
    """The build whose page shows the user's SSH builder; someone else's does not exist (404)."""
    lease = Lease.objects.filter(pk=lease_id, owner_id=user.pk, ssh=True).first()
    build_id = build_of_lease(lease_id=lease_id) if lease is not None else None
    if lease is None or build_id is None:
        raise Http404("No such SSH builder.")
    return build_id, lease


@login_required
@require_POST
def ssh_prolong(request: AuthenticatedHttpRequest, lease_id: int) -> HttpResponse:
    build_id, _ = _build_of_lease(lease_id, request.user)
    form = ProlongForm(request.POST)
    if not form.is_valid():
        messages.error(request, f"Prolong by a whole number of hours from 1 to {builders.MAX_PROLONG_HOURS}.")
        return redirect("build-detail", build_id=build_id)
    hours = form.cleaned_data["hours"]
    try:
        lease = builders.prolong_lease(lease_id=lease_id, hours=hours, via=_via(request), owner=request.user)
    except NotFoundError:
        raise Http404("No such SSH builder.") from None
    except ServiceError as exc:  # ProlongRefused names the latest possible time
        messages.error(request, exc.message)
    else:
        messages.success(
            request,
            f"SSH builder prolonged by {hours} h: it now expires at {format_time(lease.expires_at)}.",
        )
    return redirect("build-detail", build_id=build_id)


@login_required
@require_POST
def ssh_release(request: AuthenticatedHttpRequest, lease_id: int) -> HttpResponse:
    build_id, before = _build_of_lease(lease_id, request.user)
    try:
        builders.release_lease(lease_id=lease_id, via=_via(request), owner=request.user)
    except NotFoundError:
        raise Http404("No such SSH builder.") from None
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        if before.state == Lease.State.ENDED:
            messages.info(request, "This SSH builder had already ended.")
        else:
            messages.success(request, "SSH builder released: it is being removed, with everything on it.")
    return redirect("build-detail", build_id=build_id)
