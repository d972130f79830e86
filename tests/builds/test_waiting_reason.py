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


def test_a_phase_whose_pool_is_paused_shows_the_pools_reason(client, settings, tmp_path, user, demo_spec):
    """Ref: #8 — a waiting build says which pool is failing and why, instead of just "pending"."""
    from django.utils import timezone

    from builders import services as builder_services
    from builders.models import Pool

    settings.COPRSSH_STORAGE_DIR = tmp_path / "storage"
    arch = settings.COPRSSH_SRPM_ARCH
    Pool.objects.create(
        name="farm",
        architectures=[arch],
        warm_builders=0,
        paused_at=timezone.now(),
        consecutive_failures=1,
        failing_since=timezone.now(),
        last_error="cannot create: no sshd at /usr/sbin/sshd; install OpenSSH's server",
    )
    project = services.create_project(owner=user, name="paused", chroots=[f"fedora-rawhide-{arch}"])
    upload = SimpleUploadedFile(demo_spec.name, demo_spec.read_bytes())
    build = services.submit_build(
        project=project, submitter=user, chroots=None, source=check_upload(upload), upload=upload
    )
    builder_services.assign_waiting_leases()

    api = APIClient().get(f"/api/v1/builds/{build.pk}/").json()
    page = client.get(f"/builds/{build.pk}/").content.decode()

    assert api["srpm"]["state"] == "pending"
    reason = api["srpm"]["status_reason"]
    assert reason.startswith("Pool farm is paused since ")
    assert "no sshd at /usr/sbin/sshd" in reason
    assert "an operator must resume it" in reason
    assert "Pool farm is paused since" in page
