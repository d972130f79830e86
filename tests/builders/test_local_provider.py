"""The local provider against the real OpenSSH sshd, and SSH with a pinned host key (no database)."""

from __future__ import annotations

import dataclasses
import io
import os
import pwd
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import paramiko
import pytest

from builders import ssh
from builders.providers import HostKeyPair, Machine, ProviderError, generate_host_key, local, sandbox
from builders.providers.local import LocalProvider

if TYPE_CHECKING:
    from .conftest import AdminKey

slow = pytest.mark.slow


def _create(
    provider: LocalProvider, admin_key: AdminKey, name: str = "builder-1", **metadata: str
) -> Machine:
    return provider.create(
        name=name,
        metadata={"builder_id": name, **metadata},
        host_key=generate_host_key(),
        admin_public_key=admin_key.public_line,
    )


def _listener_pid(provider: LocalProvider, machine: Machine) -> int:
    return int((provider.root_dir / machine.provider_id / "sshd.pid").read_text())


def _process_running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")  # our sshd's parent is init, which may never reap it


def _port_refuses(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def _ipv6_loopback_works() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


def _run_echo(machine: Machine, admin_key: AdminKey) -> str:
    with ssh.connect(machine, key_filename=admin_key.path, timeout=5) as conn:
        stdout: str = ssh.run(conn, "echo hello", timeout=10).stdout
        return stdout


@slow
def test_create_starts_sshd_that_serves_the_pinned_key(local_provider, admin_key, host_key):
    machine = local_provider.create(
        name="builder-7",
        metadata={"builder_id": "7"},
        host_key=host_key,
        admin_public_key=admin_key.public_line,
    )

    assert machine.name == machine.provider_id == "coprssh-builder-7"
    assert (machine.ipv4, machine.ipv6) == ("127.0.0.1", None)
    if local_provider.isolate:
        account = pwd.getpwnam(machine.user)
        assert machine.user.startswith("csb-")
        assert account.pw_uid not in (0, os.geteuid())
    else:
        assert machine.user == pwd.getpwuid(os.geteuid()).pw_name
    assert machine.host_key == host_key.public_line
    assert machine.metadata == {"builder_id": "7"}
    assert local_provider.is_alive(machine.provider_id)
    assert _run_echo(machine, admin_key) == "hello\n"


@slow
def test_sandbox_is_private_to_its_owner(local_provider, admin_key):
    machine = _create(local_provider, admin_key)
    box = local_provider.root_dir / machine.provider_id

    assert stat.S_IMODE(box.stat().st_mode) == 0o700
    for name in ("ssh_host_ed25519_key", "machine.json", "sshd_config"):
        assert stat.S_IMODE((box / name).stat().st_mode) == 0o600, name
    keys = Path(local_provider.authorized_keys_path(machine))
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600
    assert keys.read_text() == admin_key.public_line + "\n"
    if local_provider.isolate:
        # The keys live in the builder account's own home, which only that account can enter.
        home = keys.parent
        assert home == Path(local_provider.state_dir(machine))
        assert stat.S_IMODE(home.stat().st_mode) == 0o700
        assert home.stat().st_uid == keys.stat().st_uid == pwd.getpwnam(machine.user).pw_uid
        assert not home.is_relative_to(local_provider.root_dir)
    else:
        assert keys == box / "authorized_keys"


@slow
def test_delete_stops_sshd_and_removes_the_sandbox(local_provider, admin_key):
    machine = _create(local_provider, admin_key)
    pid = _listener_pid(local_provider, machine)
    assert _process_running(pid)

    local_provider.delete(machine.provider_id)

    assert _port_refuses(machine.host, machine.port)
    assert not _process_running(pid)
    assert not (local_provider.root_dir / machine.provider_id).exists()
    assert not local_provider.is_alive(machine.provider_id)
    assert local_provider.list_owned() == []


@slow
def test_delete_twice_is_harmless(local_provider, admin_key):
    machine = _create(local_provider, admin_key)

    local_provider.delete(machine.provider_id)
    local_provider.delete(machine.provider_id)
    local_provider.delete("coprssh-never-existed")

    assert local_provider.list_owned() == []


@slow
def test_delete_ends_open_sessions(local_provider, admin_key):
    """Sessions call setsid() and would outlive the listener; a deleted machine keeps nothing running."""
    machine = _create(local_provider, admin_key)
    with ssh.connect(machine, key_filename=admin_key.path, timeout=5) as conn:
        conn.open()
        channel = conn.client.get_transport().open_session()
        channel.exec_command("echo $$; exec sleep 300")
        session_pid = int(channel.makefile("r").readline())
        assert _process_running(session_pid)

        local_provider.delete(machine.provider_id)

    assert not _process_running(session_pid)


@slow
def test_connect_refuses_a_host_key_other_than_the_pinned_one(local_provider, admin_key, host_key):
    machine = local_provider.create(
        name="builder-1", metadata={}, host_key=host_key, admin_public_key=admin_key.public_line
    )
    impostor_pin = dataclasses.replace(machine, host_key=generate_host_key().public_line)

    conn = ssh.connect(impostor_pin, key_filename=admin_key.path, timeout=5)
    with pytest.raises(paramiko.BadHostKeyException) as excinfo:
        conn.open()

    # The server showed its real key, and we expected only the pinned one.
    assert excinfo.value.key.get_base64() == host_key.public_line.split()[1]
    assert excinfo.value.expected_key.get_base64() == impostor_pin.host_key.split()[1]
    conn.close()


@slow
def test_connect_refuses_when_the_pinned_key_has_another_type(local_provider, admin_key):
    machine = _create(local_provider, admin_key)
    ecdsa_line = "ecdsa-sha2-nistp256 " + paramiko.ECDSAKey.generate().get_base64()

    conn = ssh.connect(dataclasses.replace(machine, host_key=ecdsa_line), key_filename=admin_key.path)
    with pytest.raises(paramiko.BadHostKeyException):
        conn.open()
    conn.close()


@slow
def test_connect_rejects_a_host_it_has_no_pinned_key_for(local_provider, admin_key):
    """fabric's default policy would add an unknown key; ours must refuse it."""
    machine = _create(local_provider, admin_key)

    conn = ssh.connect(machine, key_filename=admin_key.path)
    conn.client.get_host_keys().clear()
    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        conn.open()
    conn.close()


@slow
def test_connect_ignores_the_users_ssh_config_and_known_hosts(
    local_provider, admin_key, tmp_path, monkeypatch
):
    machine = _create(local_provider, admin_key)
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    # Both would break the connection if read: a wrong port, and a different key for the host.
    (home / ".ssh" / "config").write_text(f"Host {machine.host}\n    Port 1\n    User nobody\n")
    (home / ".ssh" / "known_hosts").write_text(
        f"[{machine.host}]:{machine.port} {generate_host_key().public_line}\n"
    )
    monkeypatch.setenv("HOME", str(home))

    assert _run_echo(machine, admin_key) == "hello\n"


@slow
def test_run_gives_the_command_eof_on_stdin(local_provider, admin_key):
    machine = _create(local_provider, admin_key)
    with ssh.connect(machine, key_filename=admin_key.path, timeout=5) as conn:
        result = ssh.run(conn, "cat; echo done", timeout=10)
    assert result.stdout == "done\n"


@slow
def test_list_owned_finds_our_machines_only(local_provider, admin_key):
    machine = _create(local_provider, admin_key, name="builder-1", pool="demo")
    root = local_provider.root_dir
    (root / "unrelated").mkdir()
    (root / "coprssh-no-state").mkdir()
    (root / "coprssh-junk-state").mkdir()
    (root / "coprssh-junk-state" / "machine.json").write_text("{not json")
    (root / "coprssh-file").write_text("")

    assert local_provider.list_owned() == [machine]
    assert LocalProvider(root, name_prefix="other-").list_owned() == []


@slow
def test_list_owned_still_lists_a_machine_whose_sshd_died(local_provider, admin_key):
    """The tick finds crashed machines this way and deletes them."""
    machine = _create(local_provider, admin_key)
    os.kill(_listener_pid(local_provider, machine), 9)

    assert local_provider.list_owned() == [machine]
    assert not local_provider.is_alive(machine.provider_id)


@slow
def test_two_creates_get_different_ports(local_provider, admin_key):
    first = _create(local_provider, admin_key, name="builder-1")
    second = _create(local_provider, admin_key, name="builder-2")

    assert first.port != second.port
    assert {m.provider_id for m in local_provider.list_owned()} == {first.provider_id, second.provider_id}
    assert _run_echo(second, admin_key) == "hello\n"


@slow
def test_create_with_a_taken_name_fails_and_keeps_the_running_machine(local_provider, admin_key):
    machine = _create(local_provider, admin_key, name="builder-1")

    with pytest.raises(ProviderError, match="already exists"):
        _create(local_provider, admin_key, name="builder-1")

    assert local_provider.is_alive(machine.provider_id)


@slow
def test_create_retries_on_another_port_when_its_port_was_taken(local_provider, admin_key, monkeypatch):
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    taken = squatter.getsockname()[1]
    free = LocalProvider._pick_port(local_provider)
    ports = iter([taken, free])
    monkeypatch.setattr(local_provider, "_pick_port", lambda: next(ports))
    try:
        machine = _create(local_provider, admin_key)
    finally:
        squatter.close()

    assert machine.port == free
    assert _run_echo(machine, admin_key) == "hello\n"


@slow
def test_create_gives_up_after_its_attempts_and_cleans_up(builders_root, admin_key, monkeypatch):
    provider = LocalProvider(builders_root, start_attempts=2, stop_timeout=2.0)
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    monkeypatch.setattr(provider, "_pick_port", lambda: squatter.getsockname()[1])
    try:
        with pytest.raises(ProviderError, match="no free port"):
            _create(provider, admin_key)
    finally:
        squatter.close()

    assert list(builders_root.iterdir()) == []


@slow
def test_create_cleans_up_when_sshd_cannot_start(builders_root, admin_key):
    provider = LocalProvider(builders_root, sshd_path=shutil.which("false") or "/bin/false")

    with pytest.raises(ProviderError, match="did not start"):
        _create(provider, admin_key)

    assert list(builders_root.iterdir()) == []


def test_create_without_sshd_is_a_permanent_error_that_says_what_to_install(builders_root, admin_key):
    provider = LocalProvider(builders_root, sshd_path=str(builders_root / "no-such-sshd"))

    with pytest.raises(ProviderError) as raised:
        _create(provider, admin_key)

    assert raised.value.permanent
    assert "apt-get install openssh-server" in raised.value.message
    assert "dnf install openssh-server" in raised.value.message
    assert not builders_root.exists() or list(builders_root.iterdir()) == []


# Where distributions put sshd's privilege separation directory (compiled into sshd).
PRIVSEP_CANDIDATES = [Path("/run/sshd"), Path("/var/run/sshd"), Path("/var/empty/sshd"), Path("/var/empty")]


def _system_sshd_running() -> bool:
    """Any sshd that is not one of ours (ours always run with -f CONFIG)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            words = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").split()
        except OSError:
            continue
        if words and words[0].endswith(b"sshd") and b"-f" not in words:
            return True
    return False


def _privsep_error(tmp_path: Path) -> str:
    """What `sshd -t` says about a minimal configuration (empty when it is happy)."""
    key = generate_host_key()
    key_path = tmp_path / "probe_host_key"
    key_path.write_text(key.private_pem)
    key_path.chmod(0o600)
    config = tmp_path / "probe_sshd_config"
    config.write_text(f"HostKey {key_path}\nUsePAM no\nListenAddress 127.0.0.1\n")
    probe = subprocess.run(
        ["/usr/sbin/sshd", "-t", "-f", str(config)], capture_output=True, text=True, timeout=30, check=False
    )
    return probe.stderr


@slow
def test_create_makes_the_missing_privilege_separation_directory(builders_root, admin_key, tmp_path):
    """A machine whose system sshd never ran has no /run/sshd; sshd refuses to start as root without it."""
    if os.geteuid() != 0:
        pytest.skip("only sshd running as root needs its privilege separation directory")
    existing = next((path for path in PRIVSEP_CANDIDATES if path.is_dir()), None)
    if existing is not None:
        if any(existing.iterdir()) or _system_sshd_running():
            pytest.skip(f"{existing} is in use: not removing it")
        existing.rmdir()
    try:
        said = _privsep_error(tmp_path)
        assert "Missing privilege separation directory" in said, said

        machine = _create(LocalProvider(builders_root, stop_timeout=2.0), admin_key)

        assert _run_echo(machine, admin_key) == "hello\n"
        assert _privsep_error(tmp_path) == ""
    finally:
        if existing is not None:
            existing.mkdir(mode=0o755, exist_ok=True)


@slow
def test_create_cleans_up_when_the_host_key_is_unusable(builders_root, admin_key):
    provider = LocalProvider(builders_root)
    broken = HostKeyPair(private_pem="not a key\n", public_line=generate_host_key().public_line)

    with pytest.raises(ProviderError, match="did not start"):
        provider.create(name="b", metadata={}, host_key=broken, admin_public_key=admin_key.public_line)

    assert list(builders_root.iterdir()) == []


@slow
def test_stale_sandbox_with_a_dead_pid_is_deleted(local_provider, admin_key):
    machine = _create(local_provider, admin_key)
    box = local_provider.root_dir / machine.provider_id
    local_provider._stop(local_provider._sandbox(machine.provider_id))  # sshd gone, sandbox left behind
    dead = subprocess.Popen(["true"])
    dead.wait()
    (box / "sshd.pid").write_text(f"{dead.pid}\n")

    assert not local_provider.is_alive(machine.provider_id)
    local_provider.delete(machine.provider_id)

    assert not box.exists()


@slow
def test_delete_leaves_alone_a_process_that_reuses_the_recorded_pid(local_provider, admin_key):
    machine = _create(local_provider, admin_key)
    local_provider._stop(local_provider._sandbox(machine.provider_id))
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        (local_provider.root_dir / machine.provider_id / "sshd.pid").write_text(f"{bystander.pid}\n")

        assert not local_provider.is_alive(machine.provider_id)
        local_provider.delete(machine.provider_id)

        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


@slow
def test_ipv6_machine_listens_on_ipv6_loopback(builders_root, admin_key):
    if not _ipv6_loopback_works():
        pytest.skip("this machine has no IPv6 loopback (::1)")
    provider = LocalProvider(builders_root, ipv6=True, stop_timeout=2.0)

    machine = _create(provider, admin_key)

    assert (machine.ipv4, machine.ipv6, machine.host) == (None, "::1", "::1")
    assert _run_echo(machine, admin_key) == "hello\n"
    provider.delete(machine.provider_id)
    assert _port_refuses("::1", machine.port)


@pytest.fixture(params=["ipv4", "ipv6"])
def any_family_provider(request, builders_root):
    if request.param == "ipv6" and not _ipv6_loopback_works():
        pytest.skip("this machine has no IPv6 loopback (::1)")
    return LocalProvider(builders_root, ipv6=request.param == "ipv6", stop_timeout=2.0)


def _ssh_client_command(machine: Machine, admin_key: AdminKey, known_hosts: Path) -> list[str]:
    """The user's command from format_ssh_command, with options that trust only `known_hosts`."""
    words = shlex.split(ssh.format_ssh_command(machine.user, machine.host, machine.port))
    options = [
        "-F", "/dev/null",
        "-o", "StrictHostKeyChecking=yes",
        "-o", f"UserKnownHostsFile={known_hosts}",
        "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", "BatchMode=yes",
        "-o", "IdentitiesOnly=yes",
        "-o", "ConnectTimeout=5",
        "-i", str(admin_key.path),
    ]  # fmt: skip
    return [words[0], *options, *words[1:], "true"]


@slow
@pytest.mark.skipif(shutil.which("ssh") is None, reason="no OpenSSH client installed")
def test_real_ssh_client_logs_in_with_the_advertised_command(any_family_provider, admin_key, tmp_path):
    machine = _create(any_family_provider, admin_key)
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[{machine.host}]:{machine.port} {machine.host_key}\n")

    done = subprocess.run(
        _ssh_client_command(machine, admin_key, known_hosts), capture_output=True, text=True, timeout=30
    )

    assert done.returncode == 0, done.stderr


@slow
@pytest.mark.skipif(shutil.which("ssh") is None, reason="no OpenSSH client installed")
def test_real_ssh_client_refuses_a_machine_with_another_host_key(local_provider, admin_key, tmp_path):
    machine = _create(local_provider, admin_key)
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[{machine.host}]:{machine.port} {generate_host_key().public_line}\n")

    done = subprocess.run(
        _ssh_client_command(machine, admin_key, known_hosts), capture_output=True, text=True, timeout=30
    )

    assert done.returncode == 255
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in done.stderr


# -- Without sshd --------------------------------------------------------------------------------


def test_generate_host_key_gives_a_matching_openssh_pair():
    pair = generate_host_key()

    private = paramiko.Ed25519Key.from_private_key(io.StringIO(pair.private_pem))

    assert pair.private_pem.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert pair.public_line == f"ssh-ed25519 {private.get_base64()}"
    assert generate_host_key().public_line != pair.public_line


@pytest.mark.parametrize(
    ("user", "host", "port", "expected"),
    [
        ("root", "192.0.2.10", 22, "ssh root@192.0.2.10"),
        ("root", "127.0.0.1", 2222, "ssh -p 2222 root@127.0.0.1"),
        ("root", "2001:db8::5", 22, "ssh root@2001:db8::5"),
        ("root", "::1", 2222, "ssh -p 2222 root@::1"),
        ("root", "[::1]", 2222, "ssh -p 2222 root@::1"),
    ],
)
def test_format_ssh_command(user, host, port, expected):
    assert ssh.format_ssh_command(user, host, port) == expected


@pytest.mark.skipif(shutil.which("ssh") is None, reason="no OpenSSH client installed")
@pytest.mark.parametrize(("host", "port"), [("127.0.0.1", 2222), ("::1", 2222), ("2001:db8::5", 22)])
def test_format_ssh_command_is_parsed_by_ssh_as_intended(host, port):
    """`ssh -G` prints what ssh would connect to; `root@[::1]` would give hostname `[::1]`."""
    words = shlex.split(ssh.format_ssh_command("root", host, port))
    printed = subprocess.run(
        [words[0], "-F", "/dev/null", "-G", *words[1:]],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    ).stdout
    settings = dict(line.split(" ", 1) for line in printed.splitlines() if " " in line)

    assert (settings["user"], settings["hostname"], settings["port"]) == ("root", host, str(port))


def test_connect_needs_exactly_one_key(admin_key):
    machine = Machine(
        provider_id="x", name="x", ipv4="127.0.0.1", ipv6=None, port=2222, user="root",
        host_key=generate_host_key().public_line, metadata={},
    )  # fmt: skip
    with pytest.raises(ValueError, match="exactly one"):
        ssh.connect(machine)
    with pytest.raises(ValueError, match="exactly one"):
        ssh.connect(machine, key_filename=admin_key.path, pkey=paramiko.Ed25519Key(filename=admin_key.path))


def test_connect_pins_the_key_under_the_name_paramiko_looks_up(admin_key):
    pinned = generate_host_key().public_line
    machine = Machine(
        provider_id="x", name="x", ipv4=None, ipv6="::1", port=2222, user="root", host_key=pinned, metadata={}
    )

    conn = ssh.connect(machine, key_filename=admin_key.path)

    keys = conn.client.get_host_keys()
    assert list(keys.keys()) == ["[::1]:2222"]
    assert keys.lookup("[::1]:2222")["ssh-ed25519"].get_base64() == pinned.split()[1]
    assert isinstance(conn.client._policy, paramiko.RejectPolicy)


@pytest.mark.parametrize("bad", ["../etc", "coprssh-../x", "other-1", "coprssh-a/b", ""])
def test_delete_refuses_names_outside_the_sandbox_root(tmp_path, bad):
    with pytest.raises(ProviderError) as excinfo:
        LocalProvider(tmp_path).delete(bad)
    assert excinfo.value.permanent


def test_create_refuses_an_admin_key_that_is_not_one_line(tmp_path, admin_key):
    with pytest.raises(ProviderError) as excinfo:
        LocalProvider(tmp_path).create(
            name="b",
            metadata={},
            host_key=generate_host_key(),
            admin_public_key=admin_key.public_line + "\nx y",
        )
    assert excinfo.value.permanent
    assert list(tmp_path.iterdir()) == [admin_key.path]


@pytest.mark.skipif(os.geteuid() != 0, reason="only an sshd running as root reads /etc/shadow")
def test_create_refuses_an_account_that_root_sshd_would_call_locked(tmp_path, admin_key, monkeypatch):
    user = pwd.getpwuid(os.geteuid()).pw_name
    shadow = tmp_path / "shadow"
    shadow.write_text(f"daemon:*:1::::::\n{user}:!:20000:0:99999:7:::\n")
    monkeypatch.setattr(sandbox, "SHADOW_PATH", shadow)

    with pytest.raises(ProviderError, match="locked account") as excinfo:
        _create(LocalProvider(tmp_path / "builders", isolate=False), admin_key)
    assert excinfo.value.permanent


@pytest.mark.parametrize("root", ["/tmp/with space", "/tmp/100%", "relative\nnewline"])
def test_provider_refuses_a_root_that_sshd_config_cannot_spell(root):
    with pytest.raises(ValueError, match="root_dir"):
        LocalProvider(Path(root))


def test_provider_needs_an_absolute_sshd_path(tmp_path):
    with pytest.raises(ValueError, match="absolute"):
        LocalProvider(tmp_path, sshd_path="sshd")


@slow
@pytest.mark.skipif(os.geteuid() != 0, reason="isolation needs the service to run as root")
def test_root_of_an_isolated_builder_reads_nothing_of_the_service_or_of_other_builders(
    local_provider, admin_key, tmp_path
):
    """Ref: #10 — a local builder's users were the service's own account on the host."""
    first = _create(local_provider, admin_key, "builder-a")
    other = _create(local_provider, admin_key, "builder-b")
    database = tmp_path / "coprssh.sqlite3"
    database.write_bytes(b"SQLite format 3\0 service data")
    database.chmod(0o600)
    secret = os.environ.get("SECRET_KEY", "")
    assert secret, "the test process carries SECRET_KEY in its environment"
    probes = {
        "the service's private key": f"cat {admin_key.path}",
        "the database file": f"cat {database}",
        "the service's environment": f"cat /proc/{os.getpid()}/environ",
        "another builder's home": f"ls -a {local_provider.state_dir(other)}",
        "another builder's keys": f"cat {local_provider.authorized_keys_path(other)}",
        "its own sandbox (host key, config)": f"cat {local_provider.root_dir / first.provider_id}/ssh_host_ed25519_key",
        "the host's shadow file": "cat /etc/shadow",
    }
    with ssh.connect(first, key_filename=admin_key.path, timeout=5) as conn:
        assert ssh.run(conn, "id -u", timeout=10).stdout.strip() not in ("0", str(os.geteuid()))
        # Its own home is its own.
        assert ssh.run(conn, "touch ~/mine && echo ok", timeout=10).stdout == "ok\n"
        for what, command in probes.items():
            result = ssh.run(conn, command, timeout=10, warn=True)
            assert result.exited != 0, f"{what} was readable: {result.stdout[:200]!r}"
            assert secret not in result.stdout
            assert "service data" not in result.stdout


def test_isolation_without_root_is_refused(tmp_path, admin_key, monkeypatch):
    monkeypatch.setattr(local.os, "geteuid", lambda: 1000)
    provider = LocalProvider(tmp_path / "builders", isolate=True)
    with pytest.raises(ProviderError, match="need the service to run as root") as raised:
        _create(provider, admin_key)
    assert raised.value.permanent


@slow
def test_a_create_killed_half_way_leaves_a_sandbox_that_list_owned_finds_and_delete_removes(
    builders_root, admin_key
):
    """Ref: #8 (bench/faults.py provisioning-kill) — a worker killed during create left a sandbox
    without its state file, invisible to list_owned(), so every retry failed on "already exists"."""
    script = f"""
import os, signal
from builders.providers import generate_host_key
from builders.providers import sandbox
from builders.providers.local import LocalProvider
write = sandbox.write_private
def die_at_the_host_key(path, text):
    if path.name == "ssh_host_ed25519_key":
        os.kill(os.getpid(), signal.SIGKILL)
    write(path, text)
sandbox.write_private = die_at_the_host_key
provider = LocalProvider({str(builders_root)!r})
provider.create(name="half", metadata={{"coprssh-builder": "7"}}, host_key=generate_host_key(),
                admin_public_key={admin_key.public_line!r})
"""
    root = Path(__file__).resolve().parents[2]
    killed = subprocess.run([sys.executable, "-c", script], cwd=root, timeout=60, check=False)
    assert killed.returncode == -signal.SIGKILL

    provider = LocalProvider(builders_root)
    [machine] = provider.list_owned()
    assert machine.metadata == {"coprssh-builder": "7"}
    provider.delete(machine.provider_id)
    assert provider.list_owned() == []
    assert list(builders_root.iterdir()) == []
    assert provider.delete_stray_accounts() == []
