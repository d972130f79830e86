"""Errors raised by services, and the one place the API turns them into responses."""

from __future__ import annotations

from typing import Any

from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler


class ServiceError(Exception):
    """A state change that is not allowed; the message is shown to the user as it is."""

    status_code: int = status.HTTP_400_BAD_REQUEST
    code: str = "invalid"

    def __init__(self, message: str, *, field: str | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.details = details

    def as_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {"detail": self.message, "code": self.code}
        if self.field:
            data[self.field] = [self.message]
        if self.details is not None:
            data["errors"] = self.details
        return data


class ConflictError(ServiceError):
    """The object is in a state that does not allow this change (HTTP 409)."""

    status_code = status.HTTP_409_CONFLICT
    code = "conflict"


class ForbiddenError(ServiceError):
    """The user may see the object but not change it this way (HTTP 403)."""

    status_code = status.HTTP_403_FORBIDDEN
    code = "permission_denied"


class NotFoundError(ServiceError):
    """The object does not exist or belongs to someone else (HTTP 404)."""

    status_code = status.HTTP_404_NOT_FOUND
    code = "not_found"


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, plus ServiceError mapped to a JSON 400/404/409."""
    if isinstance(exc, ServiceError):
        return Response(exc.as_data(), status=exc.status_code)
    return exception_handler(exc, context)
