"""Files of a new build are copied before its transaction and are gone again when it rolls back (issue #9)."""

from __future__ import annotations

from pathlib import Path

import pytest

from builders import services as builders
from builds import services, storage
from builds.models import Build
from keys.parser import parse_keys
from tests.builds import test_api_ssh
from tests.builds.test_api_ssh import failed_build

# The SSH API tests' fixtures: a storage root, a project, keys from ssh-keygen.
storage_dir, project, keys = test_api_ssh.storage_dir, test_api_ssh.project, test_api_ssh.keys


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_ssh_resubmit_copies_the_srpm_and_leaves_nothing_staged(project, user, keys, storage_dir):
    old = failed_build(project, user)
    new = services.resubmit_with_ssh(build=old, user=user, keys=parse_keys(keys["laptop"].public).keys)
    assert storage.path(new.srpm_file).read_bytes() == b"an srpm"
    assert storage.path(new.spec_file).read_bytes() == b"Name: hello-coprssh\n"
    assert not [name for name in _files(storage_dir) if name.startswith(".incoming")]


def test_a_rolled_back_ssh_resubmit_leaves_no_copy_and_no_log_line(
    project,
    user,
    keys,
    storage_dir,
    monkeypatch,
    django_capture_on_commit_callbacks,
):
    old = failed_build(project, user)
    before = _files(storage_dir)

    def refuse(**kwargs: object) -> None:
        raise RuntimeError("the lease could not be requested")

    monkeypatch.setattr(builders, "request_lease", refuse)
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError):
        services.resubmit_with_ssh(build=old, user=user, keys=parse_keys(keys["laptop"].public).keys)
    assert Build.objects.count() == 1
    assert _files(storage_dir) == before
