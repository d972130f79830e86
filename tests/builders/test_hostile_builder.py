"""A builder's root controls its SFTP server: reads stop at their caps, calls at their deadlines (Ref: #10).

An in-process paramiko SFTP server (tests/builders/hostile_sftp.py) lies about sizes and swaps files;
a real sshd whose SFTP subsystem never answers shows the deadlines on the real client path.
"""

from __future__ import annotations

import errno
import os
import signal
import stat
import time
from pathlib import Path

import pytest

from builders import ssh
from builders.providers.base import generate_host_key
from builders.providers.local import LocalProvider
from tests.builders.hostile_sftp import Entry, Tree, hostile_server

MIB = 1024 * 1024


@pytest.fixture
def out(tmp_path: Path) -> Path:
    """Where fetched results go (the admin key lives in tmp_path itself)."""
    folder = tmp_path / "results"
    folder.mkdir()
    return folder


def _session(machine, admin_key):
    return ssh.connect(machine, key_filename=admin_key.path, timeout=3)


def test_a_file_that_says_10_bytes_and_streams_8_mib_is_cut_at_the_cap(admin_key):
    tree = Tree(files={"/w/status.json": Entry(data=b"x" * 4096, said_size=10, endless=True)})
    with hostile_server(tree) as machine, _session(machine, admin_key) as conn:
        sftp = ssh.open_sftp(conn, timeout=5)
        with pytest.raises(ssh.BuilderReplyTooLarge):
            ssh.read_capped(sftp, "/w/status.json", cap=64 * 1024)
        # Truncating reads (the live log) take exactly the cap, never more.
        data = ssh.read_capped(sftp, "/w/status.json", cap=100_000, truncate=True)
        assert len(data) == 100_000


def test_fetch_of_a_result_longer_than_it_said_stores_nothing(admin_key, out):
    tree = Tree(files={"/w/results/a.rpm": Entry(data=b"y" * 65536, said_size=10, endless=True)})
    target = out / "a.rpm"
    with hostile_server(tree) as machine, _session(machine, admin_key) as conn:
        sftp = ssh.open_sftp(conn, timeout=5)
        with pytest.raises(ssh.BuilderIOError, match="longer than it said"):
            ssh.fetch_capped(sftp, "/w/results/a.rpm", target, expected_size=10, cap=8 * MIB)
    assert list(out.iterdir()) == []  # no result, no .part


def test_fetch_refuses_a_size_over_the_cap_before_reading(admin_key, out):
    tree = Tree(files={"/w/big.rpm": Entry(data=b"z", said_size=10 * MIB)})
    with hostile_server(tree) as machine, _session(machine, admin_key) as conn:
        sftp = ssh.open_sftp(conn, timeout=5)
        with pytest.raises(ssh.BuilderReplyTooLarge):
            ssh.fetch_capped(sftp, "/w/big.rpm", out / "big.rpm", expected_size=10 * MIB, cap=MIB)
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("swapped_to", [stat.S_IFCHR | 0o666, stat.S_IFIFO | 0o644])
def test_a_result_swapped_for_a_device_between_lstat_and_open_is_refused(admin_key, out, swapped_to):
    entry = Entry(data=b"\0" * 4096, said_size=4096, endless=True, opened_mode=swapped_to)
    tree = Tree(files={"/w/results/a.rpm": entry, "/w/status.json": entry})
    with hostile_server(tree) as machine, _session(machine, admin_key) as conn:
        sftp = ssh.open_sftp(conn, timeout=5)
        with pytest.raises(ssh.BuilderIOError, match="changed while it was fetched"):
            ssh.fetch_capped(sftp, "/w/results/a.rpm", out / "a.rpm", expected_size=4096, cap=MIB)
        with pytest.raises(ssh.BuilderIOError, match="replaced while it was read"):
            ssh.read_capped(sftp, "/w/status.json", cap=MIB)
    assert list(out.iterdir()) == []


def test_a_builder_answering_a_byte_at_a_time_is_cut_at_the_deadline(admin_key):
    tree = Tree(files={"/w/log": Entry(data=b"a", said_size=1, endless=True, delay=0.3)})
    with hostile_server(tree) as machine, _session(machine, admin_key) as conn:
        started = time.monotonic()
        with pytest.raises(ssh.BuilderDeadline):
            _read_within(conn, "/w/log", seconds=2)
        assert time.monotonic() - started < 5


def _read_within(conn, path: str, *, seconds: float) -> bytes:
    with ssh.deadline(conn, seconds) as until:
        sftp = ssh.open_sftp(conn, timeout=5)
        return ssh.read_capped(sftp, path, cap=MIB, truncate=True, until=until)


def test_a_full_disk_while_fetching_leaves_no_partial_file(admin_key, out, monkeypatch):
    tree = Tree(files={"/w/results/a.rpm": Entry(data=b"r" * 200_000)})
    real_fdopen = os.fdopen

    class FullDisk:
        def __init__(self, handle):
            self.handle = handle
            self.written = 0

        def write(self, data):
            self.written += len(data)
            if self.written > 50_000:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.handle.write(data)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

    monkeypatch.setattr(ssh.os, "fdopen", lambda fd, mode: FullDisk(real_fdopen(fd, mode)))
    with hostile_server(tree) as machine, _session(machine, admin_key) as conn:
        sftp = ssh.open_sftp(conn, timeout=5)
        with pytest.raises(ssh.BuilderIOError, match="no space left"):
            ssh.fetch_capped(sftp, "/w/results/a.rpm", out / "a.rpm", expected_size=200_000, cap=MIB)
    assert list(out.iterdir()) == []


def test_an_honest_file_is_fetched_whole(admin_key, out):
    payload = os.urandom(300_000)
    tree = Tree(files={"/w/results/a.rpm": Entry(data=payload)})
    with hostile_server(tree) as machine, _session(machine, admin_key) as conn:
        sftp = ssh.open_sftp(conn, timeout=5)
        size = ssh.fetch_capped(sftp, "/w/results/a.rpm", out / "a.rpm", expected_size=len(payload), cap=MIB)
    assert size == len(payload)
    assert (out / "a.rpm").read_bytes() == payload
    assert [p.name for p in out.iterdir()] == ["a.rpm"]


def silence_sftp(provider: LocalProvider, provider_id: str) -> None:
    """Make a running local builder's sshd accept SFTP sessions and then never answer them."""
    box = Path(provider.root_dir) / provider_id
    config = box / "sshd_config"
    config.write_text(
        config.read_text().replace("Subsystem sftp internal-sftp", "Subsystem sftp /bin/sleep 3600")
    )
    log = box / "sshd.log"
    seen = log.stat().st_size
    os.kill(int((box / "sshd.pid").read_text()), signal.SIGHUP)  # sshd re-executes with the new config
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if b"Server listening on" in log.read_bytes()[seen:] and provider.is_alive(provider_id):
            return
        time.sleep(0.05)
    raise AssertionError("sshd did not come back after SIGHUP")


@pytest.mark.slow
def test_a_real_sshd_whose_sftp_never_answers_costs_a_bounded_time(local_provider, admin_key):
    machine = local_provider.create(
        name="silent", metadata={}, host_key=generate_host_key(), admin_public_key=admin_key.public_line
    )
    silence_sftp(local_provider, machine.provider_id)
    started = time.monotonic()
    with _session(machine, admin_key) as conn, pytest.raises(ssh.BuilderIOError, match="did not answer"):
        ssh.open_sftp(conn, timeout=2)
    assert time.monotonic() - started < 6
    # Commands still work: the machine is up, only its SFTP is silent.
    with _session(machine, admin_key) as conn:
        assert ssh.run(conn, "echo up", timeout=5).stdout == "up\n"
