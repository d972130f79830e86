"""API v1: builds, public to read; submitting one from an upload, a git repository or a URL; canceling it."""

from __future__ import annotations

from typing import Any

from django.core.files.uploadedfile import UploadedFile
from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import IsAuthenticatedOrReadOnly
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from builds import services, sources
from builds.api.base import (
    FullNameField,
    SshKeysInput,
    api_via,
    chroot_names,
    find_project_named,
    paginated,
    resolved_keys,
    validated,
)
from builds.api.output import BuildOutput, build_output, builds_for_output
from builds.http import AuthenticatedRequest
from builds.models import SOURCE_FIELDS, Build
from builds.sources import Source
from coprssh.exceptions import ForbiddenError
from coprssh.openapi import CONFLICT, FORBIDDEN, NOT_FOUND, Pagination, QueryFilter

REQUIRED_SOURCE_FIELDS = {
    Build.SourceType.UPLOAD: ("source_file",),
    Build.SourceType.SCM: ("clone_url", "spec"),
    Build.SourceType.URL: ("url",),
}


class _BuildFields(SshKeysInput):
    """The fields of a build whatever its source."""

    project = FullNameField()
    chroots = chroot_names(
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

    class BuildInput(_BuildFields):
        """What the post takes: the fields of every kind of source, checked in validate()."""

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
            if not data.get("ssh_on_failure") and (
                data.get("ssh_public_keys", "").strip() or data.get("use_saved_keys")
            ):
                errors["ssh_on_failure"] = (
                    "Keys go with ssh_on_failure: true (keep the builder if the build fails); to debug a "
                    "finished build over SSH, resubmit it with keys."
                )
            if errors:
                raise serializers.ValidationError(errors)
            data["source_type"] = kind
            return data

    @extend_schema(parameters=[BuildListFilter], responses={200: BuildOutput(many=True), 404: NOT_FOUND})
    def get(self, request: Request) -> Response:
        query = validated(self.BuildListFilter, request.query_params)
        builds = builds_for_output()
        if "project" in query:
            builds = builds.filter(project=find_project_named(query["project"]))
        return paginated(self, request, builds, BuildOutput)

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
    def post(self, request: AuthenticatedRequest) -> Response:
        data = validated(self.BuildInput, request.data)
        project = find_project_named(data["project"])
        if not project.can_build(request.user):
            raise ForbiddenError(f"Only the owner of {project.full_name} can build in it.")
        upload: UploadedFile[bytes] | None = data.get("source_file")
        source = _checked_source(data, upload)
        keep = None
        if data["ssh_on_failure"]:
            keep = resolved_keys(
                user=request.user,
                project=project,
                text=data.get("ssh_public_keys", ""),
                use_saved_keys=data["use_saved_keys"],
            )
        build = services.submit_build(
            project=project,
            submitter=request.user,
            chroots=data.get("chroots"),
            source=source,
            upload=upload,
            keep_for_ssh=keep,
        )
        return Response(build_output(request, build.pk), status=status.HTTP_201_CREATED)


def _checked_source(data: dict[str, Any], upload: UploadedFile[bytes] | None) -> Source:
    """The source checked by builds.sources; a SourceError names the field (HTTP 400)."""
    if upload is not None:
        return sources.check_upload(upload)
    if data["source_type"] == Build.SourceType.SCM:
        return sources.check_scm(
            clone_url=data["clone_url"], committish=data.get("committish", ""), spec=data["spec"]
        )
    return sources.check_url(url=data["url"])


class BuildDetailView(APIView):
    """One build with its chroots, and links to their logs and results; public."""

    permission_classes = [IsAuthenticatedOrReadOnly]

    @extend_schema(responses={200: BuildOutput, 404: NOT_FOUND})
    def get(self, request: Request, build_id: int) -> Response:
        return Response(build_output(request, build_id))


class BuildCancelView(APIView):
    """Cancel every unfinished phase of a build (409 once it has finished)."""

    @extend_schema(
        operation_id="builds_cancel",
        request=None,
        responses={200: BuildOutput, 404: NOT_FOUND, 409: CONFLICT},
    )
    def post(self, request: AuthenticatedRequest, build_id: int) -> Response:
        build = services.cancel_build(build_id=build_id, user=request.user, via=api_via(request))
        return Response(build_output(request, build.pk))
