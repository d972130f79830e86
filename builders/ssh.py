"""SSH to builders with the host key the service pinned, and nothing else from the local machine.

A builder lent to a user is the user's: its host key must be the one the service generated, and the
service must not offer its agent, its other keys or its own SSH configuration to it.
"""

from __future__ import annotations

import base64
import binascii
import os
import shlex

import paramiko
from fabric import Config, Connection
from fabric.runners import Remote, Result

from .providers.base import Machine


def connect(
    machine: Machine,
    *,
    key_filename: str | os.PathLike[str] | None = None,
    pkey: paramiko.PKey | None = None,
    timeout: float = 10.0,
) -> Connection:
    """A fabric Connection (not yet opened) that only accepts `machine.host_key`.

    Authenticates with exactly one of `key_filename` or `pkey`; never the agent, never ~/.ssh keys.
    """
    if (key_filename is None) == (pkey is None):
        raise ValueError("give exactly one of key_filename or pkey")
    connect_kwargs: dict[str, object] = {
        "look_for_keys": False,
        "allow_agent": False,
        "timeout": timeout,  # fabric's own connect_timeout is truncated to whole seconds
        "banner_timeout": timeout,
        "auth_timeout": timeout,
    }
    if key_filename is not None:
        connect_kwargs["key_filename"] = os.fspath(key_filename)
    else:
        connect_kwargs["pkey"] = pkey
    # An explicit, empty SSHConfig stops fabric from reading ~/.ssh/config and /etc/ssh/ssh_config
    # (a Host block there could change the address, port, user, keys or add a ProxyCommand); lazy
    # skips fabric's own config files and environment variables.
    config = Config(lazy=True, ssh_config=paramiko.SSHConfig(), overrides={"runners": {"remote": _Remote}})
    conn = Connection(
        host=machine.host,
        user=machine.user,
        port=machine.port,
        config=config,
        forward_agent=False,
        connect_kwargs=connect_kwargs,
    )
    # fabric installs AutoAddPolicy, which trusts any key on first sight. We never load
    # known_hosts files, so the pinned key is the only one the client knows; any other is refused.
    conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
    key_type, key = _parse_host_key(machine.host_key)
    conn.client.get_host_keys().add(_known_hosts_name(machine.host, machine.port), key_type, key)
    return conn


def run(conn: Connection, command: str, timeout: float = 60.0, *, warn: bool = False) -> Result:
    """Run `command` without a pty, without output on our terminal, and without our stdin.

    Fabric mirrors the local stdin into the command by default (slowly, and a worker's stdin is not
    ours to give); `in_stream=False` turns that off, and the command reads EOF. Raises invoke's
    CommandTimedOut after `timeout` seconds and UnexpectedExit on a non-zero exit unless `warn`.
    """
    result: Result = conn.run(command, hide=True, in_stream=False, pty=False, timeout=timeout, warn=warn)
    return result


def format_ssh_command(user: str, host: str, port: int = 22) -> str:
    """The command a user types to reach a builder: `ssh root@HOST`, plus `-p PORT` when not 22.

    IPv6 addresses stay bare (`root@2001:db8::1`): ssh takes everything after the last '@' as the
    host name, and `[...]` would be looked up literally ("Could not resolve hostname [::1]").
    """
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    target = shlex.quote(f"{user}@{host}")
    return f"ssh {target}" if port == 22 else f"ssh -p {int(port)} {target}"


class _Remote(Remote):
    """fabric's runner, except that a command given no stdin reads EOF instead of waiting forever."""

    def send_start_message(self, command: str) -> None:
        super().send_start_message(command)
        # With in_stream=False fabric leaves the channel's write side open: `cat` would never end.
        if self.streams["in"] is False:
            self.channel.shutdown_write()


def _known_hosts_name(host: str, port: int) -> str:
    # The same spelling paramiko's SSHClient.connect looks the server's key up by.
    return host if port == 22 else f"[{host}]:{port}"


def _parse_host_key(line: str) -> tuple[str, paramiko.PKey]:
    """Parse "ssh-ed25519 AAAA... [comment]" into paramiko's key type and key."""
    fields = line.split()
    if len(fields) < 2:
        raise ValueError(f"not an OpenSSH public key line: {line!r}")
    key_type, blob = fields[0], fields[1]
    try:
        key = paramiko.PKey.from_type_string(key_type, base64.b64decode(blob, validate=True))
    except (binascii.Error, paramiko.SSHException, paramiko.UnknownKeyType, ValueError) as exc:
        raise ValueError(f"cannot read pinned host key {key_type}: {exc}") from exc
    return key.get_name(), key
