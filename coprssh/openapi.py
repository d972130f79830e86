"""The OpenAPI schema of API v1: error bodies on every operation, strict query parameters.

The schema at /api/v1/schema/ is a contract that scripts and generated clients trust, and
tests/test_api_schema.py holds the API to it with schemathesis. Every operation lists the
errors it can answer, in the shapes coprssh.exceptions.api_exception_handler gives them.
"""

from __future__ import annotations

from typing import Any, Literal

from drf_spectacular import openapi
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.permissions import SAFE_METHODS

# --- error bodies -----------------------------------------------------------------------------


VALIDATION_ERROR_BODY = {
    "type": "object",
    "description": "Per-field messages: each refused field names its problems (`chroots` by item index).",
    "properties": {
        "detail": {"type": "string", "description": "One message for the whole request."},
        "code": {"type": "string"},
        "errors": {"description": "Details, e.g. each bad key line with its number."},
        "non_field_errors": {"type": "array", "items": {"type": "string"}},
    },
    "additionalProperties": {
        "anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "object"}],
    },
}


class ErrorDetail(serializers.Serializer):
    """Every error but a 400: one message, and a code for the API's own errors."""

    detail = serializers.CharField()
    code = serializers.CharField(required=False, help_text="not_found, conflict, permission_denied, …")


VALIDATION_ERROR = OpenApiResponse(
    VALIDATION_ERROR_BODY, description="The request was refused; see each field."
)
UNAUTHORIZED = OpenApiResponse(ErrorDetail, description="No credentials, or they are not valid.")
FORBIDDEN = OpenApiResponse(ErrorDetail, description="Not allowed for this user (or a session without CSRF).")
NOT_FOUND = OpenApiResponse(ErrorDetail, description="No such object, or it is someone else's.")
CONFLICT = OpenApiResponse(ErrorDetail, description="The object's state does not allow this.")
TOO_LARGE = OpenApiResponse(ErrorDetail, description="The request body is larger than the largest upload.")
UNSUPPORTED = OpenApiResponse(
    ErrorDetail, description="The body's media type is not one the operation reads."
)
THROTTLED = OpenApiResponse(ErrorDetail, description="Too many requests; Retry-After says when to try again.")


class AutoSchema(openapi.AutoSchema):
    """drf-spectacular's schema, with the errors that every operation of its kind can answer.

    Views list their own 404 and 409 answers in `extend_schema(responses=...)`; this adds the
    rest: 400 where there is a body or a query to validate, 401 and 429 everywhere, 403 on
    writes, 404 where the path names an object, 413 and 415 where there is a body.
    """

    def _get_response_bodies(self, direction: Literal["request", "response"] = "response") -> dict[str, Any]:
        responses = super()._get_response_bodies(direction)
        has_body = self.method not in SAFE_METHODS and self.get_request_serializer() is not None
        has_query = any(parameter.get("in") == "query" for parameter in self._get_parameters())
        errors: dict[int, OpenApiResponse] = {401: UNAUTHORIZED, 429: THROTTLED}
        if has_body or has_query:
            errors[400] = VALIDATION_ERROR
        if self.method not in SAFE_METHODS:
            errors[403] = FORBIDDEN
        if "{" in self.path:
            errors[404] = NOT_FOUND
        if has_body:
            errors.update({413: TOO_LARGE, 415: UNSUPPORTED})
        for code, response in sorted(errors.items()):
            if str(code) not in responses:
                responses[str(code)] = self._get_response_for_code(response, str(code), direction=direction)
        return responses


def only_api_v1(endpoints: list[tuple[Any, ...]], **kwargs: Any) -> list[tuple[Any, ...]]:
    """PREPROCESSING_HOOKS: the schema is API v1's; Copr's /api_3/ is served for Copr's own clients."""
    return [endpoint for endpoint in endpoints if endpoint[0].startswith("/api/v1/")]


# --- query parameters -------------------------------------------------------------------------


class QueryFilter(serializers.Serializer):
    """Query parameters validated as the schema states them: none empty, none given twice.

    DRF reads an empty `?project=` of an optional field as absent, and the last of repeated
    ones; both would be requests the schema forbids answered as if they were fine.
    """

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        errors: dict[str, list[str]] = {}
        # keys(): the stubs type iterating the fields as Field objects; DRF yields their names.
        for name in self.fields.keys():
            values = data.getlist(name) if hasattr(data, "getlist") else [data.get(name)]
            if name not in data:
                continue
            if len(values) > 1:
                errors[name] = [f"Give {name} once."]
            elif values[0] in ("", None):
                errors[name] = ["This field may not be blank."]
        if errors:
            raise serializers.ValidationError(errors)
        return super().to_internal_value(data)


def _query_int(
    request: Any, name: str, *, default: int | None, minimum: int, maximum: int | None
) -> int | None:
    values = request.query_params.getlist(name)
    if not values:
        return default
    if len(values) > 1:
        raise serializers.ValidationError({name: [f"Give {name} once."]})
    text = values[0]
    if not (text.isascii() and text.isdigit()) or int(text) < minimum or (maximum and int(text) > maximum):
        bound = f"{minimum} to {maximum}" if maximum else f"{minimum} or more"
        raise serializers.ValidationError({name: [f"Give a whole number, {bound}."]})
    return int(text)


class Pagination(LimitOffsetPagination):
    """`limit` (1 to 200, default 50) and `offset`; any other value is a 400 naming it."""

    max_limit = 200

    def get_limit(self, request: Any) -> int | None:
        return _query_int(
            request, self.limit_query_param, default=self.default_limit, minimum=1, maximum=self.max_limit
        )

    def get_offset(self, request: Any) -> int:
        return _query_int(request, self.offset_query_param, default=0, minimum=0, maximum=None) or 0

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        bounds = {
            self.limit_query_param: {"minimum": 1, "maximum": self.max_limit, "default": self.default_limit},
            self.offset_query_param: {"minimum": 0, "default": 0},
        }
        for parameter in parameters:
            parameter["schema"].update(bounds.get(parameter["name"], {}))
        return parameters
