"""One handler turns service errors into JSON responses with the right status."""

from __future__ import annotations

import pytest
from rest_framework.exceptions import ValidationError

from coprssh.exceptions import ConflictError, NotFoundError, ServiceError, api_exception_handler


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (ServiceError("Not allowed.", field="hours"), 400, "invalid"),
        (ConflictError("Lease #3 has ended."), 409, "conflict"),
        (NotFoundError("No such lease."), 404, "not_found"),
    ],
)
def test_service_errors_become_json_with_their_status(error, status, code):
    response = api_exception_handler(error, {})
    assert response.status_code == status
    assert response.data["detail"] == error.message
    assert response.data["code"] == code


def test_a_field_error_names_the_field_and_per_line_details_are_kept():
    error = ServiceError("Bad key on line 2.", field="ssh_public_keys", details=[{"line": 2, "message": "x"}])
    data = api_exception_handler(error, {}).data
    assert data["ssh_public_keys"] == ["Bad key on line 2."]
    assert data["errors"] == [{"line": 2, "message": "x"}]


def test_other_exceptions_keep_drf_handling():
    response = api_exception_handler(ValidationError({"hours": ["A number is required."]}), {})
    assert response.status_code == 400
    assert response.data == {"hours": ["A number is required."]}
    assert api_exception_handler(RuntimeError("boom"), {}) is None
