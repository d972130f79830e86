"""A phase waiting for a builder says why, on the build page and in the API."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from builds import services
from builds.sources import check_upload

pytestmark = pytest.mark.django_db


def test_a_phase_no_pool_serves_shows_the_reason(client, settings, tmp_path, user, demo_spec):
    settings.COPRSSH_STORAGE_DIR = tmp_path / "storage"
    # No pool at all: the SRPM phase's lease cannot be served.
    project = services.create_project(owner=user, name="lonely", chroots=["fedora-rawhide-aarch64"])
    upload = SimpleUploadedFile(demo_spec.name, demo_spec.read_bytes())
    build = services.submit_build(
        project=project, submitter=user, chroots=None, source=check_upload(upload), upload=upload
    )

    api = APIClient().get(f"/api/v1/builds/{build.pk}/").json()
    state = client.get(f"/builds/{build.pk}/state.json").json()
    page = client.get(f"/builds/{build.pk}/").content.decode()

    expected = f"No builder pool serves {settings.COPRSSH_SRPM_ARCH}"
    assert api["srpm"]["state"] == "pending"
    assert expected in api["srpm"]["status_reason"]
    assert expected in state["phases"][0]["status_reason"]
    assert expected in page
