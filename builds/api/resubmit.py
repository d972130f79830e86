"""API v1: resubmit a finished build, as it was or with SSH access to the builders."""

from __future__ import annotations

from typing import Any

from django.core.validators import ProhibitNullCharactersValidator
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from builders import services as builders
from builds import services
from builds.api.base import chroot_names, validated
from builds.api.output import BuildOutput, build_output
from builds.http import AuthenticatedRequest
from builds.models import Build
from coprssh.exceptions import ForbiddenError, NotFoundError
from coprssh.openapi import CONFLICT, NOT_FOUND
from keys import services as keys
from keys.parser import MAX_INPUT_BYTES


class KeyLinesField(serializers.CharField):
    """Key lines as typed; the key parser names each bad line, one with a NUL in it too."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(trim_whitespace=False, max_length=MAX_INPUT_BYTES, **kwargs)
        # DRF refuses any NUL for the whole field; the parser refuses it for its line.
        self.validators = [v for v in self.validators if not isinstance(v, ProhibitNullCharactersValidator)]


class BuildResubmitView(APIView):
    """Submit a finished build's source again as a new build; given SSH keys, on SSH builders.

    With keys (pasted lines, `GitHub:user`/`FAS:user` references, or the saved ones) each
    rebuilt chroot runs on a fresh builder the keys can log in to; when the SRPM phase had
    failed, that phase runs again on one instead. Over the SSH quota the build is accepted
    and its builders wait, with the reason in `ssh_builder.queue_reason`.
    """

    class ResubmitInput(serializers.Serializer[Any]):
        chroots = chroot_names(
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
    def post(self, request: AuthenticatedRequest, build_id: int) -> Response:
        data = validated(self.ResubmitInput, request.data)
        build = Build.objects.select_related("project__owner").filter(pk=build_id).first()
        if build is None:
            raise NotFoundError("No such build.")
        chroots = data.get("chroots")
        text = data.get("ssh_public_keys", "")
        use_saved_keys = data["use_saved_keys"]
        if text.strip() or use_saved_keys:
            new = _resubmit_with_ssh(request, build, chroots, text, use_saved_keys)
        else:
            new = services.resubmit_build(build=build, user=request.user, chroots=chroots)
        return Response(build_output(request, new.pk), status=status.HTTP_201_CREATED)


def _resubmit_with_ssh(
    request: AuthenticatedRequest, build: Build, chroots: list[str] | None, text: str, use_saved_keys: bool
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
