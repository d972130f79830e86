"""API v1 for the agent on a builder: its phase's live log and end, with that phase's token, nothing else.

`Authorization: PhaseToken <token>` is accepted on these views only, and only while its phase is
starting or running. Everything the agent sends is untrusted input (builds/services/reports.py).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, parsers, permissions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import SimpleRateThrottle
from rest_framework.views import APIView

from builds.services import reports
from coprssh.openapi import CONFLICT, TOO_LARGE, ErrorDetail
from coprssh.tokens import ScopedTokenAuthentication, ScopedTokenScheme


class PhaseTokenAuthentication(ScopedTokenAuthentication):
    """`Authorization: PhaseToken <token>`: speaks for one phase's agent while the phase is open."""

    keyword = "PhaseToken"
    what = "phase token"
    refused = "The phase is over or the token is not valid."

    def resolve(self, token: str) -> tuple[AnonymousUser, reports.Reporter] | None:
        reporter = reports.reporter_for_token(token)
        return None if reporter is None else (AnonymousUser(), reporter)


class PhaseTokenScheme(ScopedTokenScheme):
    target_class = "builds.api.agent.PhaseTokenAuthentication"
    name = "phaseToken"
    keyword = "PhaseToken"


class HasPhaseToken(permissions.BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.auth, reports.Reporter)


class AgentThrottle(SimpleRateThrottle):
    """Reports per phase (COPRSSH_API_RATE_AGENT): builders share addresses, phases do not."""

    scope = "agent"

    def get_rate(self) -> str | None:
        return settings.COPRSSH_API_RATE_AGENT or None

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        reporter = request.auth
        if not isinstance(reporter, reports.Reporter):
            return None
        return self.cache_format % {"scope": self.scope, "ident": f"{reporter.kind}-{reporter.phase_id}"}


class TooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "too_large"


class LogChunkParser(parsers.BaseParser):
    """A chunk of the live log as raw bytes, read only up to the chunk cap."""

    media_type = "application/octet-stream"

    def parse(  # type: ignore[override]  # DRF hands request.data whatever a parser returns
        self, stream: Any, media_type: str | None = None, parser_context: Any = None
    ) -> bytes:
        cap = settings.COPRSSH_AGENT_CHUNK_BYTES
        request = (parser_context or {}).get("request")
        length = request.META.get("CONTENT_LENGTH") if request is not None else None
        if length and str(length).isdigit() and int(length) > cap:
            raise TooLarge(f"A chunk holds at most {cap} bytes.")
        data = stream.read(cap + 1) if stream is not None else b""
        if len(data) > cap:
            raise TooLarge(f"A chunk holds at most {cap} bytes.")
        return bytes(data)


class _AgentView(APIView):
    authentication_classes = [PhaseTokenAuthentication]
    permission_classes = [HasPhaseToken]
    throttle_classes = [AgentThrottle]

    def reporter(self, request: Request) -> reports.Reporter:
        """The phase in the path, which must be the token's: any other is not found."""
        reporter = request.auth
        assert isinstance(reporter, reports.Reporter)
        if (reporter.kind, reporter.phase_id) != (self.kwargs["kind"], self.kwargs["phase_id"]):
            raise exceptions.NotFound("No such phase for this token.")
        return reporter


class LogSize(serializers.Serializer[dict[str, int]]):
    log_size = serializers.IntegerField(help_text="Bytes of the live log the service holds.")


class LogGapBody(ErrorDetail):
    log_size = serializers.IntegerField(help_text="Where the next chunk must start.")


class AgentLogView(_AgentView):
    """Append a chunk of the live log at byte `offset`; a chunk sent again changes nothing."""

    parser_classes = [LogChunkParser]

    @extend_schema(
        operation_id="agent_log_append",
        request={"application/octet-stream": OpenApiTypes.BINARY},
        parameters=[
            OpenApiParameter("offset", int, required=True, description="Where the chunk starts in the log.")
        ],
        responses={
            200: LogSize,
            409: OpenApiResponse(
                LogGapBody, description="The chunk starts past the log's end, or the phase is over."
            ),
            413: TOO_LARGE,
        },
    )
    def post(self, request: Request, kind: str, phase_id: int) -> Response:
        reporter = self.reporter(request)
        values = request.query_params.getlist("offset")
        if len(values) != 1 or not (values[0].isascii() and values[0].isdigit()) or len(values[0]) > 18:
            raise serializers.ValidationError(
                {"offset": ["Give the chunk's offset in the log once, 0 or more."]}
            )
        offset = int(values[0])
        body: object = request.data
        if not isinstance(body, bytes):
            if body:
                raise serializers.ValidationError({"data": ["Send the chunk as application/octet-stream."]})
            body = b""  # an empty body: a sign of life with nothing new to log
        try:
            size = reports.append_log(reporter=reporter, offset=offset, data=body)
        except reports.LogGap as gap:
            return Response(
                {"detail": gap.message, "code": gap.code, "log_size": gap.log_size},
                status=status.HTTP_409_CONFLICT,
            )
        return Response({"log_size": size})


class AgentEndView(_AgentView):
    """Report the phase's end; the service then collects the results itself."""

    class EndInput(serializers.Serializer[dict[str, Any]]):
        state = serializers.ChoiceField(choices=reports.END_STATES)
        reason = serializers.CharField(max_length=2000, allow_blank=True, default="", trim_whitespace=False)
        log_size = serializers.IntegerField(min_value=0, max_value=2**62)

    class EndOutput(serializers.Serializer[dict[str, bool]]):
        recorded = serializers.BooleanField(help_text="False when an end was recorded before.")

    @extend_schema(operation_id="agent_end", request=EndInput, responses={200: EndOutput, 409: CONFLICT})
    def post(self, request: Request, kind: str, phase_id: int) -> Response:
        reporter = self.reporter(request)
        data = self.EndInput(data=request.data)
        data.is_valid(raise_exception=True)
        recorded = reports.report_end(reporter=reporter, **data.validated_data)
        return Response({"recorded": recorded})
