"""API v1: resubmit a finished build, as it was or with SSH access to the builders."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from builds import services
from builds.api.base import SshKeysInput, api_via, chroot_names, resolved_keys, validated
from builds.api.output import BuildOutput, build_output
from builds.http import AuthenticatedRequest
from builds.models import Build
from coprssh.exceptions import NotFoundError
from coprssh.openapi import CONFLICT, NOT_FOUND


class BuildResubmitView(APIView):
    """Submit a finished build's source again as a new build; given SSH keys, on SSH builders.

    With keys (pasted lines, `GitHub:user`/`FAS:user` references, or the saved ones) each
    rebuilt chroot runs on a fresh builder the keys can log in to; when the SRPM phase had
    failed, that phase runs again on one instead. Over the SSH quota the build is accepted
    and its builders wait, with the reason in `ssh_builder.queue_reason`. With `ssh_on_failure`
    it is a normal build instead, whose failed phases keep their builders for those keys.
    """

    class ResubmitInput(SshKeysInput):
        chroots = chroot_names(
            required=False,
            allow_empty=False,
            help_text="Leave out to build for the same chroots; with SSH, for the failed ones, "
            "or the first one when none failed (each takes an SSH builder of its own).",
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
        if data["ssh_on_failure"]:
            keys = resolved_keys(
                user=request.user, project=build.project, text=text, use_saved_keys=use_saved_keys
            )
            new = services.resubmit_build(build=build, user=request.user, chroots=chroots, keep_for_ssh=keys)
        elif text.strip() or use_saved_keys:
            keys = resolved_keys(
                user=request.user, project=build.project, text=text, use_saved_keys=use_saved_keys
            )
            new = services.resubmit_with_ssh(
                build=build,
                user=request.user,
                keys=keys,
                chroots=chroots,
                via=api_via(request),
            )
        else:
            new = services.resubmit_build(build=build, user=request.user, chroots=chroots)
        return Response(build_output(request, new.pk), status=status.HTTP_201_CREATED)
