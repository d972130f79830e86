"""Web pages: "Keep the builder for SSH if this build fails" on the new-build and resubmit forms (issue 13).

The keys part is the SSH resubmit form's (pasted lines, GitHub:/FAS:, saved keys, the preview),
checked the same way; the farm tests (tests/builds/test_keep_on_failure.py) show what follows a failure.
"""

from __future__ import annotations

import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils.html import escape

from builds.models import Build
from keys.services import add_saved_key
from tests.builds.test_pages_ssh import (
    DEMO_SPEC,
    build_url,
    failed_build,
    finish,
    key,
    keys_dir,
    logged_in_client,
    other_client,
    project,
    second_key,
    storage_dir,
    submit,
)

# The fixtures above are used by name.
__all__ = [
    "failed_build",
    "finish",
    "key",
    "keys_dir",
    "logged_in_client",
    "other_client",
    "project",
    "second_key",
    "storage_dir",
    "submit",
]

pytestmark = pytest.mark.django_db

NEW_BUILD_URL = "/projects/alice/hello/build/"


def new_build(client, **fields):
    upload = SimpleUploadedFile("hello-coprssh.spec", DEMO_SPEC.read_bytes())
    data = {"source_type": "upload", "source_file": upload, "chroots": ["fedora-42-x86_64"], **fields}
    return client.post(NEW_BUILD_URL, data)


def test_the_new_build_form_offers_to_keep_the_builder_with_the_keys_field(
    logged_in_client, project, user, key
):
    add_saved_key(user=user, title="office", public_key=key.public)

    html = logged_in_client.get(NEW_BUILD_URL).content.decode()

    assert 'name="ssh_on_failure"' in html
    assert "Keep the builder for SSH if this build fails" in html
    # The keys appear with the box (ssh.js hides them while it is not ticked), with the preview.
    assert re.search(r'data-shown-by="id_ssh_on_failure">\s*<label for="id_ssh_public_keys"', html)
    assert 'id="key-preview" data-check-url="/api/v1/keys/check/"' in html
    assert "Use my saved keys (1 key)" in html
    assert "0 of 2 SSH builders in use now" in html
    assert "coprssh/ssh.js" in html


def test_a_build_submitted_keeping_its_builder_stores_the_keys(logged_in_client, project, key, second_key):
    response = new_build(
        logged_in_client, ssh_on_failure="on", ssh_public_keys=f"{key.public}\n{second_key.public}"
    )

    build = Build.objects.get()
    assert response.status_code == 302
    assert response["Location"] == build_url(build.pk)
    assert (build.ssh, build.ssh_on_failure) == (False, True)
    assert build.ssh_keys.splitlines() == [key.public, second_key.public]
    page = logged_in_client.get(build_url(build.pk)).content.decode()
    assert "submitted; if it fails, its builder is kept for SSH with 2 keys" in page
    assert 'id="keep-note"' in page
    assert "if a phase fails, its builder is kept, for 2 keys" in page
    assert key.fingerprint in page


def test_saved_keys_alone_are_enough(logged_in_client, project, user, key):
    add_saved_key(user=user, title="office", public_key=key.public)

    response = new_build(logged_in_client, ssh_on_failure="on", use_saved_keys="on")

    assert response.status_code == 302
    assert Build.objects.get().ssh_keys.split()[:2] == key.public.split()[:2]


def test_a_github_reference_is_resolved_at_submission(logged_in_client, project, key, key_server):
    key_server.github("alice", key)

    response = new_build(logged_in_client, ssh_on_failure="on", ssh_public_keys="GitHub:alice")

    assert response.status_code == 302
    assert key_server.requests == ["/gh/alice.keys"]
    assert Build.objects.get().ssh_keys.split()[:2] == key.public.split()[:2]


def test_without_the_box_the_keys_are_ignored_and_the_build_is_normal(logged_in_client, project, key_server):
    response = new_build(logged_in_client, ssh_on_failure="", ssh_public_keys="not a key\nGitHub:alice")

    assert response.status_code == 302
    build = Build.objects.get()
    assert (build.ssh_on_failure, build.ssh_keys) == (False, "")
    assert key_server.requests == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('command="sh" {key}', "line 1: options in front of the key"),
        ("{key}\nssh-dss AAAAB3NzaC1kc3MAAACBAP8= old", "line 2: DSA keys (ssh-dss) are not accepted"),
        ("{key}\nssh-ed25519 \x1b[2J", "line 2: the line contains a forbidden character U+001B"),
        ("{key}\x00", "line 1: the line contains a forbidden character U+0000"),
        ("{private}", "this is a PRIVATE key"),
        ("", "Give at least one public SSH key"),
        ("# only a comment", "Give at least one public SSH key"),
        ("ssh-ed25519 " + "A" * 9000, "at most 8192"),
        ("x" * 300_000, "Ensure this value has at most"),
    ],
)
def test_bad_keys_are_refused_line_by_line_and_nothing_is_created(
    logged_in_client, project, key, text, message
):
    typed = text.format(key=key.public, private=key.private)

    response = new_build(logged_in_client, ssh_on_failure="on", ssh_public_keys=typed)

    assert response.status_code == 400
    assert escape(message) in response.content.decode()
    assert Build.objects.count() == 0


def test_the_resubmit_form_may_keep_the_builder(logged_in_client, failed_build, key):
    html = logged_in_client.get(build_url(failed_build.pk, "resubmit/")).content.decode()
    assert "Keep the builder for SSH if this build fails" in html

    response = logged_in_client.post(
        build_url(failed_build.pk, "resubmit/"),
        {"chroots": ["fedora-42-x86_64"], "ssh_on_failure": "on", "ssh_public_keys": key.public},
    )

    new = Build.objects.get(resubmitted_from=failed_build)
    assert response.status_code == 302
    assert (new.ssh, new.ssh_on_failure, new.ssh_keys) == (False, True, key.public)
    assert [bc.chroot.name for bc in new.build_chroots.all()] == ["fedora-42-x86_64"]


def test_the_resubmit_form_refuses_bad_keys(logged_in_client, failed_build, key):
    response = logged_in_client.post(
        build_url(failed_build.pk, "resubmit/"),
        {"chroots": ["fedora-42-x86_64"], "ssh_on_failure": "on", "ssh_public_keys": f"no-pty {key.public}"},
    )

    assert response.status_code == 400
    assert "options in front of the key" in response.content.decode()
    assert not Build.objects.filter(resubmitted_from=failed_build).exists()


def test_another_user_can_neither_submit_nor_resubmit_keeping_a_builder(
    other_client, project, failed_build, key, key_server
):
    key_server.github("alice", key)

    submitted = new_build(other_client, ssh_on_failure="on", ssh_public_keys="GitHub:alice")
    resubmitted = other_client.post(
        build_url(failed_build.pk, "resubmit/"),
        {"chroots": ["fedora-42-x86_64"], "ssh_on_failure": "on", "ssh_public_keys": "GitHub:alice"},
    )

    assert (submitted.status_code, resubmitted.status_code) == (403, 403)
    assert key_server.requests == []
    assert Build.objects.count() == 1


def test_the_keys_of_a_keep_build_are_for_its_owner_only(logged_in_client, other_client, project, key):
    new_build(logged_in_client, ssh_on_failure="on", ssh_public_keys=key.public)
    build = Build.objects.get()

    for page in (Client().get(build_url(build.pk)), other_client.get(build_url(build.pk))):
        public = page.content.decode()
        assert "if a phase fails, its builder is kept, for 1 key" in public
        assert key.fingerprint not in public
        assert "alice@laptop" not in public
