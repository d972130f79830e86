"""The runner against a builder that lies (Ref: #10): status, live log and results stay within their caps."""

from __future__ import annotations

import pytest

from builders.models import Builder, Pool
from builds import runner
from tests.builders.hostile_sftp import Entry, Tree, hostile_server

pytestmark = pytest.mark.django_db


@pytest.fixture
def builder_for(settings, tmp_path):
    settings.COPRSSH_ADMIN_KEY_FILE = tmp_path / "ssh" / "admin_ed25519"
    pool = Pool.objects.create(name="hostile", architectures=["x86_64"], warm_builders=0)

    def make(machine) -> Builder:
        return Builder.objects.create(
            pool=pool,
            state=Builder.State.LEASED,
            name="hostile-1",
            provider_id="coprssh-hostile-1",
            ipv4=machine.ipv4,
            port=machine.port,
            login_user=machine.user,
            host_key=machine.host_key,
        )

    return make


def test_a_status_file_that_lies_about_its_size_fails_the_phase_without_reading_it_all(builder_for):
    tree = Tree(
        files={
            "/w/status.json": Entry(data=b'{"state": "succeeded"}' * 1000, said_size=10, endless=True),
            "/w/builder-live.log": Entry(data=b"line\n", said_size=5, endless=True),
        }
    )
    with hostile_server(tree) as machine:
        progress = runner.poll(builder_for(machine), workdir="/w", log_offset=0)
    assert progress.status.state == "failed"
    assert "larger than 64 KiB" in progress.status.reason
    assert len(progress.log) == runner.LOG_CHUNK


def test_results_that_lie_about_their_size_are_refused_and_nothing_is_kept(builder_for, tmp_path):
    target = tmp_path / "stored"
    target.mkdir()
    tree = Tree(
        dirs={"/w/results"},
        files={"/w/results/hello-1.0-1.noarch.rpm": Entry(data=b"r" * 8192, said_size=10, endless=True)},
    )
    with hostile_server(tree) as machine, pytest.raises(runner.RunnerError, match="longer than it said"):
        runner.fetch_results(builder_for(machine), workdir="/w", target=target)
    assert list(target.iterdir()) == []


def test_results_past_the_projects_storage_quota_are_refused(builder_for, tmp_path):
    target = tmp_path / "stored"
    target.mkdir()
    tree = Tree(dirs={"/w/results"}, files={"/w/results/a.rpm": Entry(data=b"r" * 5000)})
    with hostile_server(tree) as machine, pytest.raises(runner.RunnerError, match="storage quota"):
        runner.fetch_results(builder_for(machine), workdir="/w", target=target, storage_left=4999)
    assert list(target.iterdir()) == []
