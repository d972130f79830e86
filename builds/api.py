"""API v1: projects and builds.

Reading is public, as in Copr: anyone may list projects and builds and follow the links
to their logs and results. Writing needs a token or a session, and only a project's
owner (or an admin) may build in it; the services check that again. A resubmission
given SSH keys runs on SSH builders (builds/api_ssh.py serves those).
"""

from __future__ import annotations

import re
from typing import Any

from django.core.files.uploadedfile import UploadedFile
from django.core.validators import ProhibitNullCharactersValidator
from django.db.models import Prefetch, QuerySet
from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.permissions import IsAuthenticatedOrReadOnly
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView

from builders import services as builders
from builds import services, sources, storage
from builds.files import LOG_NAMES, log_url, result_url
from builds.models import (
    CHROOT_NAME_RE,
    PROJECT_NAME_RE,
    SOURCE_FIELDS,
    Build,
    BuildChroot,
    Chroot,
    Project,
    SrpmPhase,
    State,
)
from builds.sources import Source
from builds.ssh_view import SshBuilderView, ssh_builder_of_phase
from coprssh.exceptions import ForbiddenError, NotFoundError
from coprssh.openapi import CONFLICT, FORBIDDEN, NOT_FOUND, Pagination, QueryFilter
from keys import services as keys
from keys.parser import MAX_INPUT_BYTES

# `owner/name`: a Django user name, then a project name.
USERNAME_PATTERN = r"[\w.@+-]{1,150}"
FULL_NAME_RE = re.compile(rf"(?P<owner>{USERNAME_PATTERN})/(?P<name>{PROJECT_NAME_RE.pattern})")
REQUIRED_SOURCE_FIELDS = {
    Build.SourceType.UPLOAD: ("source_file",),
    Build.SourceType.SCM: ("clone_url", "spec"),
    Build.SourceType.URL: ("url",),
}


def _paginated(view: APIView, request: Request, queryset: QuerySet, serializer: type) -> Response:
    paginator = Pagination()
    page = paginator.paginate_queryset(queryset, request, view=view)
    return paginator.get_paginated_response(serializer(page, many=True, context={"request": request}).data)


def _project(full_name: tuple[str, str]) -> Project:
    owner, name = full_name
    project = Project.objects.select_related("owner").filter(owner__username=owner, name=name).first()
    if project is None:
        raise NotFoundError(f"No project {owner}/{name}.", field="project")
    return project


def _builds() -> QuerySet[Build]:
    """Builds with everything their output shows, in a fixed number of queries.

    The leases' builders are joined too: an SSH build shows each phase's SSH builder.
    """
    return Build.objects.select_related(
        "project__owner", "submitter", "srpm__lease__builder__pool"
    ).prefetch_related(
        Prefetch(
            "build_chroots", queryset=BuildChroot.objects.select_related("chroot", "lease__builder__pool")
        )
    )


def _build(build_id: int) -> Build:
    build = _builds().filter(pk=build_id).first()
    if build is None:
        raise NotFoundError("No such build.")
    return build


@extend_schema_field(
    {
        "type": "string",
        "pattern": f"^{FULL_NAME_RE.pattern}$".replace("?P<owner>", "").replace("?P<name>", ""),
    }
)
class FullNameField(serializers.CharField):
    """A project as `owner/name`; validated into the pair."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            max_length=300, trim_whitespace=False, help_text='The project, as "owner/name".', **kwargs
        )

    def to_internal_value(self, data: Any) -> tuple[str, str]:
        value = super().to_internal_value(data)
        match = FULL_NAME_RE.fullmatch(value)
        if match is None:
            raise serializers.ValidationError('Write the project as "owner/name".')
        return match["owner"], match["name"]


class KeyLinesField(serializers.CharField):
    """Key lines as typed; the key parser names each bad line, one with a NUL in it too."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(trim_whitespace=False, max_length=MAX_INPUT_BYTES, **kwargs)
        # DRF refuses any NUL for the whole field; the parser refuses it for its line.
        self.validators = [v for v in self.validators if not isinstance(v, ProhibitNullCharactersValidator)]


@extend_schema_field({"type": "string", "pattern": f"^{CHROOT_NAME_RE.pattern}$", "maxLength": 60})
class ChrootNameField(serializers.CharField):
    """<os>-<version>-<arch>; the service refuses a name that is not an active chroot, by name."""


@extend_schema_field({"type": "string", "pattern": f"^{PROJECT_NAME_RE.pattern}$", "maxLength": 100})
class ProjectNameField(serializers.CharField):
    """Letters, digits and . _ + -; the model's validator words the refusal."""


def _chroot_names(**kwargs: Any) -> serializers.ListField:
    chroot = ChrootNameField(max_length=60)
    if kwargs.get("allow_empty") is False:
        kwargs["min_length"] = 1
    return serializers.ListField(child=chroot, max_length=100, **kwargs)


# --- output ---------------------------------------------------------------------------


class ProjectOutput(serializers.ModelSerializer):
    owner = serializers.CharField(source="owner.get_username")
    full_name = serializers.CharField()
    chroots = serializers.SlugRelatedField(many=True, read_only=True, slug_field="name")
    created = serializers.DateTimeField(source="created_at")

    class Meta:
        model = Project
        fields = ["id", "owner", "name", "full_name", "description", "chroots", "created"]


class PhaseLogs(serializers.Serializer):
    backend = serializers.URLField(help_text="backend.log: what the service did, as text/plain.")
    builder_live = serializers.URLField(help_text="builder-live.log: the build's own output, as text/plain.")


class SshBuilderLink(serializers.Serializer):
    """The SSH builder of one phase of an SSH build; its `url` has the details, prolong and release."""

    id = serializers.IntegerField(help_text="The SSH builder's id.")
    state = serializers.CharField(help_text="queued, provisioning, ready, ended or failed.")
    queue_reason = serializers.CharField(help_text="Why it waits (over quota: who holds the slots).")
    # Build reads are public; builds.ssh_view leaves this empty for all but the owner and staff.
    ssh_command = serializers.CharField(
        allow_null=True, help_text="How to log in once ready; shown to its owner (and staff) only."
    )
    expires_at = serializers.DateTimeField(allow_null=True)
    url = serializers.SerializerMethodField()

    @extend_schema_field(serializers.URLField(help_text="The SSH builder in /api/v1/ssh-builders/."))
    def get_url(self, view: SshBuilderView) -> str:
        return reverse(
            "api-ssh-builder-detail", kwargs={"lease_id": view.id}, request=self.context.get("request")
        )


class PhaseOutput(serializers.Serializer):
    """Shared by the SRPM phase and the chroots: links to their logs and results."""

    def phase_label(self, phase: SrpmPhase | BuildChroot) -> str:
        raise NotImplementedError

    def _absolute(self, url: str) -> str:
        request = self.context.get("request")
        return request.build_absolute_uri(url) if request is not None else url

    @extend_schema_field(PhaseLogs)
    def get_logs(self, phase: SrpmPhase | BuildChroot) -> dict[str, str]:
        label = self.phase_label(phase)
        return {
            "backend": self._absolute(log_url(phase.build_id, label, storage.BACKEND_LOG)),
            "builder_live": self._absolute(log_url(phase.build_id, label, storage.LIVE_LOG)),
        }

    @extend_schema_field(serializers.ListField(child=serializers.URLField()))
    def get_results(self, phase: SrpmPhase | BuildChroot) -> list[str]:
        label = self.phase_label(phase)
        return [
            self._absolute(result_url(phase.build_id, label, name))
            for name, _size in storage.list_files(phase.storage_dir)
            if name not in LOG_NAMES and not name.startswith(".")
        ]

    @extend_schema_field(SshBuilderLink(allow_null=True))
    def get_ssh_builder(self, phase: SrpmPhase | BuildChroot) -> dict[str, Any] | None:
        request = self.context.get("request")
        view = ssh_builder_of_phase(phase, viewer=request.user if request is not None else None)
        return None if view is None else SshBuilderLink(view, context=self.context).data


class SrpmOutput(PhaseOutput):
    """The SRPM phase: source in, SRPM and spec out."""

    state = serializers.ChoiceField(choices=State.choices)
    status_reason = serializers.CharField(source="reason", help_text="Why it failed, or why it still waits.")
    started = serializers.DateTimeField(source="started_at", allow_null=True)
    ended = serializers.DateTimeField(source="ended_at", allow_null=True)
    logs = serializers.SerializerMethodField()
    results = serializers.SerializerMethodField()
    ssh_builder = serializers.SerializerMethodField()

    def phase_label(self, phase: SrpmPhase | BuildChroot) -> str:
        return "srpm"


class BuildChrootOutput(PhaseOutput):
    """The RPM phase of one chroot."""

    name = serializers.CharField(source="chroot.name")
    state = serializers.ChoiceField(choices=State.choices)
    status_reason = serializers.CharField(source="reason", help_text="Why it failed, or why it still waits.")
    started = serializers.DateTimeField(source="started_at", allow_null=True)
    ended = serializers.DateTimeField(source="ended_at", allow_null=True)
    logs = serializers.SerializerMethodField()
    results = serializers.SerializerMethodField()
    ssh_builder = serializers.SerializerMethodField()

    def phase_label(self, phase: SrpmPhase | BuildChroot) -> str:
        assert isinstance(phase, BuildChroot)
        return phase.chroot.name


class BuildOutput(serializers.Serializer):
    id = serializers.IntegerField()
    project = serializers.CharField(source="project.full_name", help_text='"owner/name"')
    state = serializers.ChoiceField(choices=State.choices)
    # A CharField: a second enum of the same states would get a second name in the schema.
    source_state = serializers.CharField(
        source="srpm.state", allow_null=True, help_text="State of the SRPM phase (same values as state)."
    )
    source_type = serializers.ChoiceField(choices=Build.SourceType.choices)
    source_filename = serializers.CharField(help_text="The uploaded or downloaded file's name.")
    clone_url = serializers.CharField()
    committish = serializers.CharField()
    spec = serializers.CharField(help_text="Spec path in the repository (scm).")
    url = serializers.CharField()
    package_name = serializers.CharField()
    package_version = serializers.CharField()
    submitter = serializers.CharField(source="submitter.get_username")
    ssh = serializers.BooleanField()
    resubmitted_from = serializers.IntegerField(source="resubmitted_from_id", allow_null=True)
    created = serializers.DateTimeField(source="created_at")
    started = serializers.DateTimeField(source="started_at", allow_null=True)
    ended = serializers.DateTimeField(source="ended_at", allow_null=True)
    chroots = BuildChrootOutput(source="build_chroots", many=True)
    srpm = SrpmOutput(allow_null=True)


# --- projects ---------------------------------------------------------------------------


class ProjectListView(APIView):
    """Projects, public; POST creates one of the caller's."""

    permission_classes = [IsAuthenticatedOrReadOnly]
    pagination_class = Pagination

    class ProjectListFilter(QueryFilter):
        owner = serializers.RegexField(
            f"^{USERNAME_PATTERN}$", required=False, help_text="Only this user's projects."
        )

    class ProjectInput(serializers.Serializer):
        name = ProjectNameField(max_length=100)
        chroots = _chroot_names()
        description = serializers.CharField(max_length=5000, required=False, allow_blank=True, default="")

    @extend_schema(parameters=[ProjectListFilter], responses=ProjectOutput(many=True))
    def get(self, request: Request) -> Response:
        query = self.ProjectListFilter(data=request.query_params)
        query.is_valid(raise_exception=True)
        projects = Project.objects.select_related("owner").prefetch_related(
            Prefetch("chroots", queryset=Chroot.objects.only("id", "name"))
        )
        if "owner" in query.validated_data:
            projects = projects.filter(owner__username=query.validated_data["owner"])
        return _paginated(self, request, projects, ProjectOutput)

    @extend_schema(request=ProjectInput, responses={201: ProjectOutput})
    def post(self, request: Request) -> Response:
        data = self.ProjectInput(data=request.data)
        data.is_valid(raise_exception=True)
        project = services.create_project(owner=request.user, **data.validated_data)
        return Response(ProjectOutput(project).data, status=status.HTTP_201_CREATED)


class ProjectDetailView(APIView):
    """One project, public."""

    permission_classes = [IsAuthenticatedOrReadOnly]

    @extend_schema(responses={200: ProjectOutput, 404: NOT_FOUND})
    def get(self, request: Request, owner: str, name: str) -> Response:
        return Response(ProjectOutput(_project((owner, name))).data)


# --- builds -----------------------------------------------------------------------------


class _BuildFields(serializers.Serializer):
    project = FullNameField()
    chroots = _chroot_names(
        required=False, allow_empty=False, help_text="Leave out to build for all of the project's."
    )


class BuildUploadInput(_BuildFields):
    """A build from an uploaded .spec or .src.rpm (multipart/form-data)."""

    source_type = serializers.ChoiceField(choices=["upload"], required=False)
    source_file = serializers.FileField(help_text="A .spec or .src.rpm file.")


class BuildScmInput(_BuildFields):
    """A build from a git repository: a spec file at a commit, branch or tag."""

    source_type = serializers.ChoiceField(choices=["scm"])
    clone_url = serializers.CharField(max_length=sources.MAX_URL, help_text="An https:// git URL.")
    committish = serializers.CharField(
        required=False, allow_blank=True, max_length=sources.MAX_COMMITTISH, help_text="Default: HEAD."
    )
    spec = serializers.CharField(
        max_length=sources.MAX_SPEC_PATH, help_text="The spec's path in the repository."
    )


class BuildUrlInput(_BuildFields):
    """A build from a .spec or .src.rpm downloaded from a URL."""

    source_type = serializers.ChoiceField(choices=["url"])
    url = serializers.CharField(max_length=sources.MAX_URL, help_text="An https:// URL of the file.")


class BuildListView(APIView):
    """Builds, newest first, public; POST submits one from an upload, a git repository or a URL."""

    permission_classes = [IsAuthenticatedOrReadOnly]
    pagination_class = Pagination

    class BuildListFilter(QueryFilter):
        project = FullNameField(required=False)

    class BuildInput(serializers.Serializer):
        project = FullNameField()
        chroots = _chroot_names(
            required=False, allow_empty=False, help_text="Leave out to build for all of the project's."
        )
        source_type = serializers.ChoiceField(
            choices=Build.SourceType.choices, required=False, help_text='"upload" when source_file is sent.'
        )
        source_file = serializers.FileField(
            required=False, allow_empty_file=True, use_url=False, help_text="A .spec or .src.rpm file."
        )
        clone_url = serializers.CharField(
            required=False, allow_blank=True, trim_whitespace=False, max_length=sources.MAX_URL
        )
        committish = serializers.CharField(
            required=False, allow_blank=True, trim_whitespace=False, max_length=sources.MAX_COMMITTISH
        )
        spec = serializers.CharField(
            required=False, allow_blank=True, trim_whitespace=False, max_length=sources.MAX_SPEC_PATH
        )
        url = serializers.CharField(
            required=False, allow_blank=True, trim_whitespace=False, max_length=sources.MAX_URL
        )

        def validate(self, data: dict[str, Any]) -> dict[str, Any]:
            """Exactly one source, with the fields of its type and no others."""
            given = [name for fields in SOURCE_FIELDS.values() for name in fields if data.get(name)]
            kind = data.get("source_type") or (Build.SourceType.UPLOAD if "source_file" in given else None)
            if kind is None:
                raise serializers.ValidationError(
                    {
                        "source_type": 'Give one source: a source_file, or source_type "scm" '
                        '(clone_url, committish, spec) or "url" (url).'
                    }
                )
            errors = {
                name: f'Give one source: source_type "{kind}" does not take {name}.'
                for name in given
                if name not in SOURCE_FIELDS[kind]
            }
            errors.update(
                {
                    name: f'This field is required with source_type "{kind}".'
                    for name in REQUIRED_SOURCE_FIELDS[kind]
                    if not data.get(name)
                }
            )
            if errors:
                raise serializers.ValidationError(errors)
            data["source_type"] = kind
            return data

    @extend_schema(parameters=[BuildListFilter], responses={200: BuildOutput(many=True), 404: NOT_FOUND})
    def get(self, request: Request) -> Response:
        query = self.BuildListFilter(data=request.query_params)
        query.is_valid(raise_exception=True)
        builds = _builds()
        if "project" in query.validated_data:
            builds = builds.filter(project=_project(query.validated_data["project"]))
        return _paginated(self, request, builds, BuildOutput)

    @extend_schema(
        request={
            # An upload is multipart; a git repository or a URL is one of the JSON bodies.
            "multipart/form-data": BuildUploadInput,
            "application/json": PolymorphicProxySerializer(
                component_name="BuildSourceJson",
                serializers=[BuildScmInput, BuildUrlInput],
                resource_type_field_name=None,
            ),
        },
        responses={201: BuildOutput, 403: FORBIDDEN, 404: NOT_FOUND},
    )
    def post(self, request: Request) -> Response:
        data = self.BuildInput(data=request.data)
        data.is_valid(raise_exception=True)
        project = _project(data.validated_data["project"])
        if not project.can_build(request.user):
            raise ForbiddenError(f"Only the owner of {project.full_name} can build in it.")
        upload: UploadedFile | None = data.validated_data.get("source_file")
        build = services.submit_build(
            project=project,
            submitter=request.user,
            chroots=data.validated_data.get("chroots"),
            source=_checked_source(data.validated_data, upload),
            upload=upload,
        )
        return Response(_output(request, build.pk), status=status.HTTP_201_CREATED)


def _checked_source(data: dict[str, Any], upload: UploadedFile | None) -> Source:
    """The source checked by builds.sources; a SourceError names the field (HTTP 400)."""
    if upload is not None:
        return sources.check_upload(upload)
    if data["source_type"] == Build.SourceType.SCM:
        return sources.check_scm(
            clone_url=data["clone_url"], committish=data.get("committish", ""), spec=data["spec"]
        )
    return sources.check_url(url=data["url"])


def _output(request: Request, build_id: int) -> dict[str, Any]:
    return BuildOutput(_build(build_id), context={"request": request}).data


class BuildDetailView(APIView):
    """One build with its chroots, and links to their logs and results; public."""

    permission_classes = [IsAuthenticatedOrReadOnly]

    @extend_schema(responses={200: BuildOutput, 404: NOT_FOUND})
    def get(self, request: Request, build_id: int) -> Response:
        return Response(_output(request, build_id))


class BuildCancelView(APIView):
    """Cancel every unfinished phase of a build (409 once it has finished)."""

    @extend_schema(
        operation_id="builds_cancel",
        request=None,
        responses={200: BuildOutput, 404: NOT_FOUND, 409: CONFLICT},
    )
    def post(self, request: Request, build_id: int) -> Response:
        build = services.cancel_build(build_id=build_id, user=request.user)
        return Response(_output(request, build.pk))


class BuildResubmitView(APIView):
    """Submit a finished build's source again as a new build; given SSH keys, on SSH builders.

    With keys (pasted lines, `GitHub:user`/`FAS:user` references, or the saved ones) each
    rebuilt chroot runs on a fresh builder the keys can log in to; when the SRPM phase had
    failed, that phase runs again on one instead. Over the SSH quota the build is accepted
    and its builders wait, with the reason in `ssh_builder.queue_reason`.
    """

    class ResubmitInput(serializers.Serializer):
        chroots = _chroot_names(
            required=False,
            allow_empty=False,
            help_text="Leave out to build for the same chroots (with SSH: the failed ones, or all).",
        )
        ssh_public_keys = KeyLinesField(
            required=False,
            allow_blank=True,
            help_text="Public SSH keys, one per line, and/or GitHub:user, FAS:user references.",
        )
        use_saved_keys = serializers.BooleanField(
            required=False, default=False, help_text="Deploy the keys saved on your profile too."
        )

    @extend_schema(
        operation_id="builds_resubmit",
        request=ResubmitInput,
        responses={201: BuildOutput, 404: NOT_FOUND, 409: CONFLICT},
    )
    def post(self, request: Request, build_id: int) -> Response:
        data = self.ResubmitInput(data=request.data)
        data.is_valid(raise_exception=True)
        build = Build.objects.select_related("project__owner").filter(pk=build_id).first()
        if build is None:
            raise NotFoundError("No such build.")
        chroots = data.validated_data.get("chroots")
        text = data.validated_data.get("ssh_public_keys", "")
        use_saved_keys = data.validated_data["use_saved_keys"]
        if text.strip() or use_saved_keys:
            new = _resubmit_with_ssh(request, build, chroots, text, use_saved_keys)
        else:
            new = services.resubmit_build(build=build, user=request.user, chroots=chroots)
        return Response(_output(request, new.pk), status=status.HTTP_201_CREATED)


def _resubmit_with_ssh(
    request: Request, build: Build, chroots: list[str] | None, text: str, use_saved_keys: bool
) -> Build:
    # Refused before the keys are resolved: a stranger's request must not make us fetch
    # GitHub or FAS references (the service checks again).
    if not build.project.can_build(request.user):
        raise ForbiddenError(f"Only the owner of {build.project.full_name} can build in it.")
    # Outside any transaction: references are fetched over HTTP.
    resolved = keys.resolve_keys(
        text=text, user=request.user, use_saved_keys=use_saved_keys, field="ssh_public_keys"
    )
    return services.resubmit_with_ssh(
        build=build,
        user=request.user,
        keys=resolved.keys,
        chroots=chroots,
        via=builders.Via(user=request.user, source="api", remote_addr=request.META.get("REMOTE_ADDR")),
    )
