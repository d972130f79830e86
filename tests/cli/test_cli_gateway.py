"""`coprssh ssh` and the SSH gateway: it goes through the gateway when the server says so, when the builder
does not answer directly, or with --via-gateway; the CLI runs as a real process against the live server.
"""

# The SSH-build fixtures of tests/cli/test_cli_ssh.py are imported by name; tests take them as arguments.
# ruff: noqa: F811

from __future__ import annotations

import json
import socket

import pytest
from coprssh_cli import ssh as sshlib

from builders.gateway import sshd
from builders.models import SshRoute
from builders.selectors import host_key_fingerprint
from tests.builders.factories import make_pool
from tests.cli.test_cli import closed_port
from tests.cli.test_cli_ssh import failed_build, key, lease_of, make_ready, ssh_build  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def gateway_key(settings, tmp_path) -> str:
    """A configured gateway whose host key exists (as `manage.py gateway` leaves it); no sshd runs."""
    settings.COPRSSH_GATEWAY_HOST = "gw.example.org"
    settings.COPRSSH_GATEWAY_PORT = 2022
    settings.COPRSSH_GATEWAY_USER = "coprssh-gw"
    settings.COPRSSH_GATEWAY_DIR = tmp_path / "gateway"
    files = sshd.files_in(settings.COPRSSH_GATEWAY_DIR)
    sshd.make_dir(files)
    return sshd.host_key(files)


def test_ssh_goes_through_the_gateway_to_an_ipv6_only_builder(cli, ssh_build, gateway_key):
    build_id = ssh_build()
    make_ready(
        lease_of(build_id), port=2200, ipv4=None, ipv6="2001:db8::10", pool=make_pool(ssh_route=SshRoute.BOTH)
    )

    result = cli("ssh", str(build_id), "--print")
    data = json.loads(cli.ok("ssh", str(build_id), "--print", "--json").stdout)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ssh -J coprssh-gw@gw.example.org:2022 -p 2200 root@2001:db8::10"
    assert (
        f"Through the SSH gateway coprssh-gw@gw.example.org:2022, whose host key is {host_key_fingerprint(gateway_key)}"
        in result.stderr
    )
    assert data["argv"] == ["ssh", "-J", "coprssh-gw@gw.example.org:2022", "-p", "2200", "root@2001:db8::10"]


def test_via_gateway_on_a_builder_that_is_reached_directly_too(cli, ssh_build, gateway_key):
    build_id = ssh_build()
    make_ready(lease_of(build_id), port=2200, ipv4="127.0.0.1", pool=make_pool(ssh_route=SshRoute.BOTH))

    result = cli.ok("ssh", str(build_id), "--print", "--via-gateway", "--", "uptime")

    assert result.stdout.strip() == "ssh -J coprssh-gw@gw.example.org:2022 -p 2200 root@127.0.0.1 uptime"


def test_via_gateway_on_a_pool_reached_directly_only_says_so(cli, ssh_build, gateway_key):
    build_id = ssh_build()
    lease = make_ready(lease_of(build_id), port=2200, pool=make_pool(ssh_route=SshRoute.DIRECT))

    result = cli("ssh", str(build_id), "--print", "--via-gateway")

    assert result.returncode == 2
    assert f"SSH builder #{lease.pk} is not reachable through the SSH gateway" in result.stderr
    assert result.stdout == ""


# --- choosing the route ------------------------------------------------------------------


BOTH = {
    "id": 5,
    "host": "192.0.2.5",
    "port": 2200,
    "user": "root",
    "route": "direct",
    "direct_ssh_command": "ssh -p 2200 root@192.0.2.5",
    "gateway": {"proxy_jump": "coprssh-gw@gw.example.org:2022", "host_key_fingerprint": "SHA256:x"},
}


def test_the_gateway_is_taken_when_the_builder_does_not_answer_directly():
    asked = []

    def probe(host: str, port: int) -> bool:
        asked.append((host, port))
        return False

    assert sshlib.use_gateway(BOTH, asked=False, probe=probe) is True
    assert asked == [("192.0.2.5", 2200)]
    assert sshlib.use_gateway(BOTH, asked=False, probe=lambda *_: True) is False
    assert sshlib.use_gateway({**BOTH, "route": "gateway"}, asked=False, probe=lambda *_: True) is True
    assert sshlib.use_gateway({**BOTH, "gateway": None}, asked=False, probe=lambda *_: False) is False


def test_reachable_opens_a_real_connection():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        assert sshlib.reachable("127.0.0.1", server.getsockname()[1], timeout=2) is True
    assert sshlib.reachable("127.0.0.1", closed_port(), timeout=2) is False


@pytest.mark.parametrize(
    "value",
    [
        "-oProxyCommand=sh",
        "coprssh-gw@gw.example.org:2022 -o x",
        "gw.example.org",
        "root@host;id",
        "a@b:99999999",
    ],
)
def test_a_strange_gateway_name_from_the_server_is_refused(value):
    builder = {**BOTH, "gateway": {"proxy_jump": value}}

    with pytest.raises(sshlib.SshError, match="names its SSH gateway oddly"):
        sshlib.ssh_argv(builder, via_gateway=True)
