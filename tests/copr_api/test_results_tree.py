"""/results/: HTML directory indexes over the stored results, as wget -r walks them."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from builds import storage
from builds.models import Build
from builds.services import create_project, submit_build
from builds.sources import check_upload
from tests.copr_api.conftest import CHROOTS, HELLO_SPEC


@pytest.fixture
def build(user, chroots) -> Build:
    project = create_project(owner=user, name="hello", chroots=[CHROOTS[0]])
    upload = SimpleUploadedFile(HELLO_SPEC.name, HELLO_SPEC.read_bytes())
    build = submit_build(
        project=project, submitter=user, chroots=None, source=check_upload(upload), upload=upload
    )
    directory = storage.ensure_dir(build.build_chroots.get().storage_dir)
    (directory / "hello-coprssh-1.0-1.noarch.rpm").write_bytes(b"\xed\xab\xee\xdb rpm")
    (directory / storage.LIVE_LOG).write_text("<script>alert(1)</script>\n")
    (directory / ".upload-x.part").write_bytes(b"half")
    return build


def test_each_level_is_an_index_of_links(client, build):
    root = f"/results/alice/hello/{CHROOTS[0]}/"
    assert f'href="{CHROOTS[0]}/"' in client.get("/results/alice/hello/").content.decode()
    assert f'href="{build.pk:08d}/"' in client.get(root).content.decode()
    page = client.get(f"{root}{build.pk:08d}/").content.decode()
    assert 'href="hello-coprssh-1.0-1.noarch.rpm"' in page
    assert 'href="builder-live.log"' in page
    assert ".upload-x.part" not in page


def test_files_are_served_and_logs_never_render(client, build):
    base = f"/results/alice/hello/{CHROOTS[0]}/{build.pk:08d}/"
    rpm = client.get(base + "hello-coprssh-1.0-1.noarch.rpm")
    assert rpm["Content-Type"] == "application/x-rpm"
    assert b"".join(rpm.streaming_content).startswith(b"\xed\xab\xee\xdb")
    log = client.get(base + "builder-live.log")
    assert log["Content-Type"] == "text/plain; charset=utf-8"
    assert log["X-Content-Type-Options"] == "nosniff"


def test_unknown_builds_files_and_paths_are_404(client, build):
    base = f"/results/alice/hello/{CHROOTS[0]}/"
    assert client.get(base + "99999999/").status_code == 404
    assert client.get(base + f"{build.pk:08d}/.upload-x.part").status_code == 404
    assert client.get(base + f"{build.pk:08d}/..%2f..%2fsecret").status_code == 404
    assert client.get(f"/results/alice/hello/{CHROOTS[1]}/{build.pk:08d}/").status_code == 404
    assert client.get("/results/alice/nope/").status_code == 404


def test_coprs_web_links_lead_to_our_pages(client, build):
    assert client.get(f"/coprs/build/{build.pk}").url == f"/builds/{build.pk}/"
    assert client.get("/coprs/alice/hello/").url == "/projects/alice/hello/"
