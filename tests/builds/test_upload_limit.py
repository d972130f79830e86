"""Issue #10: a body larger than the largest upload is refused (413) before any of it is read.

Django spools an upload to a temporary file as it reads it; the limit must hold before that,
not after the whole file is on disk.
"""

from __future__ import annotations

import io

import pytest
from django.core.handlers.wsgi import WSGIRequest

from builds.models import Build
from coprssh.limits import RequestSizeLimitMiddleware
from tests.builds.test_api_builds import client_for

pytestmark = pytest.mark.django_db


class CountingStream(io.RawIOBase):
    """A request body of `size` bytes that counts how many were read."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # noqa: ANN001 - a memoryview
        count = min(len(buffer), self.size - self.read_bytes)
        buffer[:count] = b"x" * count
        self.read_bytes += count
        return count


@pytest.fixture
def small_limits(settings):
    settings.COPRSSH_MAX_SRPM_BYTES = 64 * 1024
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024


def test_an_api_upload_past_the_limit_is_413_in_json_and_nothing_is_created(user, small_limits):
    body = b"x" * (200 * 1024)

    response = client_for(user).post(
        "/api/v1/builds/",
        {"project": "alice/hello", "source_file": io.BytesIO(body)},
        format="multipart",
    )

    assert response.status_code == 413
    assert response.json()["code"] == "too_large"
    assert "an uploaded file may have at most 65536 bytes" in response.json()["detail"]
    assert Build.objects.count() == 0


def test_a_web_upload_past_the_limit_is_413_with_a_plain_message(client, user, small_limits):
    client.force_login(user)
    upload = io.BytesIO(b"x" * (200 * 1024))
    upload.name = "big.src.rpm"

    response = client.post("/projects/alice/hello/build/", {"source_file": upload})

    assert response.status_code == 413
    assert response["Content-Type"].startswith("text/plain")
    assert "too large" in response.content.decode()


def test_the_body_is_not_read_at_all(small_limits):
    stream = CountingStream(10 * 1024 * 1024)
    request = WSGIRequest(
        {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": "/api/v1/builds/",
            "CONTENT_TYPE": "multipart/form-data; boundary=x",
            "CONTENT_LENGTH": str(stream.size),
            "wsgi.input": stream,
            "SERVER_NAME": "testserver",
            "SERVER_PORT": "80",
            "wsgi.url_scheme": "http",
        }
    )

    response = RequestSizeLimitMiddleware(lambda request: pytest.fail("the view ran"))(request)

    assert response.status_code == 413
    assert stream.read_bytes == 0


def test_an_upload_within_the_limit_goes_through_to_the_sources_check(user, small_limits):
    upload = io.BytesIO(b"x" * 1024)
    upload.name = "small.src.rpm"

    response = client_for(user).post(
        "/api/v1/builds/", {"project": "alice/nope", "source_file": upload}, format="multipart"
    )

    assert response.status_code == 404  # read, parsed and answered by the view: no such project
