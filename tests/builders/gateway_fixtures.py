"""A real SSH gateway, real local builders behind it, and the real OpenSSH client, for the gateway tests.

`gateway` runs the gateway's sshd as `manage.py gateway` does (builders.services.gateway.start_gateway)
on a free loopback port, with its folder under the test's tmp_path. `lend` makes an SSH lease active on
a fresh builder of a real local pool and deploys a key to it, through the same services as a build.
`ssh_client` writes an OpenSSH client configuration that trusts nothing but the host keys it is given
(StrictHostKeyChecking, BatchMode, only the given key) and runs `ssh` with it.

Test modules take the fixtures with `from tests.builders.gateway_fixtures import *` (`__all__` keeps
that to the fixtures) and import the helpers by name.
"""

from __future__ import annotations

import os
import pwd
import shlex
import socket
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from builders import services
from builders.gateway.sshd import Sshd
from builders.models import Builder, Lease, Pool, SshRoute
from builders.providers import accounts
from builders.services.gateway import start_gateway
from keys.parser import PublicKey, parse_single_key
from tests.builders.factories import make_pool

__all__ = ["gateway", "gateway_settings", "lend", "route_pool", "ssh_client"]

# The gateway's account in the tests (made and removed by the `gateway` fixture when run as root).
TEST_ACCOUNT = "coprssh-gw-test"
INFO = services.LeaseInfo(
    project="alice/hello", build_id=1, chroot="x", workdir="/srv/w", rerun="true", results="/srv/w/results"
)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class UserKey:
    """A key pair made by ssh-keygen, and what `ssh-keygen -lf` says its fingerprint is."""

    path: Path
    public: PublicKey
    fingerprint: str


def new_key(directory: Path, name: str) -> UserKey:
    path = directory / name
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{name}@laptop", "-f", str(path)],
        check=True,
        capture_output=True,
        timeout=30,
    )
    listed = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", f"{path}.pub"],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    )
    return UserKey(path, parse_single_key(Path(f"{path}.pub").read_text()), listed.stdout.split()[1])


@pytest.fixture
def gateway_settings(settings: Any, tmp_path: Path) -> Any:
    """A gateway on a free loopback port, its folder under tmp_path."""
    settings.COPRSSH_GATEWAY_HOST = "127.0.0.1"
    settings.COPRSSH_GATEWAY_PORT = free_port()
    settings.COPRSSH_GATEWAY_LISTEN = ["127.0.0.1"]
    settings.COPRSSH_GATEWAY_USER = TEST_ACCOUNT if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
    settings.COPRSSH_GATEWAY_DIR = tmp_path / "gateway"
    return settings


@pytest.fixture
def gateway(gateway_settings: Any) -> Iterator[Sshd]:
    """The gateway's sshd, running; stopped (with every connection it serves) after the test."""
    created = os.geteuid() == 0 and accounts.lookup(TEST_ACCOUNT) is None
    server = start_gateway()
    try:
        yield server
    finally:
        server.stop()
        if created:
            accounts.remove(TEST_ACCOUNT, home=Path("/nonexistent"))


@pytest.fixture
def route_pool(db: Any, builders_root: Path) -> Callable[..., Pool]:
    """Make a local pool with an SSH route; `ipv6=True` makes its builders listen on ::1 only."""
    made = 0

    def make(route: str = SshRoute.GATEWAY, *, ipv6: bool = True) -> Pool:
        nonlocal made
        made += 1
        return make_pool(
            name=f"gw-pool-{made}",
            max_builders=2,
            ssh_route=route,
            provider_settings={"root_dir": str(builders_root / f"pool-{made}"), "ipv6": ipv6},
        )

    return make


@pytest.fixture
def lend(queued: Any) -> Callable[..., Lease]:
    """Make an SSH lease of `owner` active on a fresh builder of `pool`, with `keys` deployed as a build would."""

    def make(*, pool: Pool, owner: Any, keys: list[UserKey]) -> Lease:
        lease = queued.call(
            services.request_lease, owner=owner, arch="x86_64", ssh=True, purpose="gateway test", pool=pool
        )
        for builder_id in queued.call(services.ensure_capacity):
            builder = queued.call(services.provision_builder, builder_id=builder_id)
            assert builder.state == Builder.State.READY, builder.last_error
        queued.take()
        queued.call(services.assign_waiting_leases)
        queued.call(services.start_lease, lease_id=lease.pk)
        queued.call(
            services.deploy_ssh_access,
            lease_id=lease.pk,
            keys=[key.public for key in keys],
            info=INFO,
            via=services.TASK,
        )
        queued.take()
        lease = Lease.objects.select_related("builder__pool").get(pk=lease.pk)
        assert lease.state == Lease.State.ACTIVE
        return lease

    return make


@dataclass
class Client:
    """The OpenSSH client with a configuration of its own: one key, pinned host keys, no questions."""

    directory: Path

    def config(self, key: UserKey, known_hosts: list[str], snippet: str = "") -> Path:
        """A config file: `snippet` (Host blocks from the API), then options for every host.

        ProxyJump starts a second ssh for the gateway that gets only `-F`, so everything the jump
        must obey (the key, the known hosts, IPv4 only) is in the file, not on the command line.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        known = self.directory / f"known_hosts-{key.path.name}"
        known.write_text("".join(f"{line}\n" for line in known_hosts))
        path = self.directory / f"config-{key.path.name}"
        path.write_text(
            snippet
            + "Host *\n"
            + f"    IdentityFile {key.path}\n"
            + "    IdentitiesOnly yes\n"
            + f"    UserKnownHostsFile {known}\n"
            + "    GlobalKnownHostsFile /dev/null\n"
            + "    StrictHostKeyChecking yes\n"
            + "    BatchMode yes\n"
            + "    AddressFamily inet\n"
            + "    ConnectTimeout 10\n"
            + "    ControlMaster no\n"
        )
        return path

    def run(
        self, config: Path, command: str | list[str], *extra: str, timeout: float = 40
    ) -> subprocess.CompletedProcess[str]:
        """Run an ssh command line (as the API gives it) with `-F config -4` added, and `extra` after it."""
        argv = shlex.split(command) if isinstance(command, str) else list(command)
        assert argv[0] == "ssh", argv
        argv = ["ssh", "-F", str(config), "-4", *argv[1:], *extra]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.fixture
def ssh_client(tmp_path: Path) -> Client:
    return Client(tmp_path / "client")
