"""`copr-builder help` on a builder reached through the SSH gateway: how its owner logs in again."""

from __future__ import annotations

from pathlib import Path

from tests.builders.test_copr_builder import lease_data, run, write_lease

LOGIN = {
    "route": "gateway",
    "ssh_command": "ssh -J coprssh-gw@gw.example.org:2222 -p 2200 root@2001:db8::10",
    "direct_command": "ssh -p 2200 root@2001:db8::10",
    "gateway_command": "ssh -J coprssh-gw@gw.example.org:2222 -p 2200 root@2001:db8::10",
    "ssh_config": (
        "Host coprssh-gateway\n    HostName gw.example.org\n    Port 2222\n    User coprssh-gw\n"
        "Host coprssh-7\n    HostName 2001:db8::10\n    Port 2200\n    User root\n    ProxyJump coprssh-gateway\n"
    ),
}


def test_help_gives_the_gateway_command_first_then_the_direct_one_and_the_config(tmp_path: Path) -> None:
    write_lease(tmp_path, lease_data("http://127.0.0.1:9", lease_id=7, login=LOGIN))

    out = run(tmp_path, "help").stdout

    assert (
        "Log in again, from your own machine\n"
        "  ssh -J coprssh-gw@gw.example.org:2222 -p 2200 root@2001:db8::10\n"
        "  or directly:\n"
        "  ssh -p 2200 root@2001:db8::10\n"
        "  or, with this in ~/.ssh/config: ssh coprssh-7\n"
        "    Host coprssh-gateway\n"
    ) in out
    assert "    ProxyJump coprssh-gateway\n" in out


def test_help_without_login_details_or_with_damaged_ones_says_nothing_of_them(tmp_path: Path) -> None:
    for login in (None, "ssh -J x", {"ssh_command": 5}, {"ssh_command": "ssh\x1b[2J root@h"}):
        write_lease(tmp_path, lease_data("http://127.0.0.1:9", login=login))

        result = run(tmp_path, "help")

        assert result.returncode == 0
        assert "Log in again" not in result.stdout
        assert "\x1b" not in result.stdout
