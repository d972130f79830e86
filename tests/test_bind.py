"""bin/run's web address: COPRSSH_BIND checked, and a wildcard bind turned into this machine's address."""

from __future__ import annotations

import ipaddress
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from coprssh import bind

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("address", "url"),
    [
        ("127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("8000", "http://127.0.0.1:8000"),
        ("[::1]:8080", "http://[::1]:8080"),
        ("localhost:80", "http://localhost:80"),
        ("10.1.2.3:8000", "http://10.1.2.3:8000"),
        ("coprssh.example.org:8000", "http://coprssh.example.org:8000"),
    ],
)
def test_a_concrete_bind_is_its_own_url(address, url):
    assert bind.public_url(address) == url


@pytest.mark.parametrize("address", ["0.0.0.0:8000", "0:8000", "[::]:8000", "[0:0::0]:8000"])
def test_a_wildcard_bind_becomes_this_machines_address(monkeypatch, address):
    monkeypatch.setattr(bind, "machine_address", lambda *, ipv6: "192.0.2.2")
    assert bind.public_url(address) == "http://192.0.2.2:8000"


def test_an_ipv6_machine_address_is_bracketed(monkeypatch):
    monkeypatch.setattr(bind, "machine_address", lambda *, ipv6: "2001:db8::2" if ipv6 else None)
    assert bind.public_url("[::]:8000") == "http://[2001:db8::2]:8000"


def test_a_machine_with_only_loopback_falls_back_to_it_and_says_so(monkeypatch, capsys):
    monkeypatch.setattr(bind, "machine_address", lambda *, ipv6: None)
    assert bind.public_url("0.0.0.0:8000") == "http://127.0.0.1:8000"
    assert "set COPRSSH_PUBLIC_URL" in capsys.readouterr().err


def test_the_machine_address_is_one_of_this_hosts_own_and_not_loopback():
    address = bind.machine_address(ipv6=True)
    if address is None:
        pytest.skip("this machine has no address besides loopback")
    ip = ipaddress.ip_address(address)
    assert not ip.is_loopback
    assert not ip.is_unspecified
    assert not ip.is_link_local
    # Only a local address can be bound to.
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((address, 0))


@pytest.mark.parametrize(
    "address",
    [
        "",
        "host:",
        "host:port",
        "0.0.0.0:0",
        "0.0.0.0:65536",
        "0.0.0.0:123456",
        "[zz]:80",
        "[::1]",
        "a b:80",
        "0.0.0.0:8000; rm -rf /",
        "$(id):80",
        "x" * 300 + ":80:80",
    ],
)
def test_a_bad_bind_is_refused_naming_the_variable(address):
    with pytest.raises(bind.BadBind, match="COPRSSH_BIND"):
        bind.public_url(address)


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "coprssh.bind", *args], cwd=ROOT, capture_output=True, text=True, timeout=30
    )


def test_the_command_prints_the_url_of_a_wildcard_bind():
    result = _run("0.0.0.0:8123")
    assert result.returncode == 0, result.stderr
    url = result.stdout.strip()
    host = url.removeprefix("http://").removesuffix(":8123")
    assert url == f"http://{host}:8123"
    if ipaddress.ip_address(host.strip("[]")).is_loopback:
        assert "set COPRSSH_PUBLIC_URL" in result.stderr
    else:
        assert host == bind.machine_address(ipv6=False)


def test_the_command_refuses_a_bad_bind_with_status_2():
    result = _run("0.0.0.0:http")
    assert result.returncode == 2
    assert result.stdout == ""
    assert "COPRSSH_BIND must be PORT, HOST:PORT or [IPV6]:PORT" in result.stderr


@pytest.mark.parametrize(
    ("address", "url", "expected"),
    [
        ("127.0.0.1:8000", "http://127.0.0.1:8000", ("127.0.0.1", "127.0.0.1")),
        ("8000", "http://127.0.0.1:8000", ("127.0.0.1", "127.0.0.1")),
        ("0.0.0.0:8000", "http://192.0.2.2:8000", ("192.0.2.2", "0.0.0.0")),
        ("0:8000", "http://build.example.org:8000", ("build.example.org", "0.0.0.0")),
        ("[::]:8000", "http://[2001:db8::2]:8000", ("2001:db8::2", "::")),
    ],
)
def test_the_demo_gateway_listens_where_the_site_does_and_is_named_like_it(address, url, expected):
    assert bind.gateway_defaults(address, url) == expected


def test_the_gateway_command_prints_host_and_listen_address():
    done = subprocess.run(
        [sys.executable, "-m", "coprssh.bind", "--gateway", "0.0.0.0:8000", "http://192.0.2.2:8000"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["192.0.2.2", "0.0.0.0"]
