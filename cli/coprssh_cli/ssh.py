"""SSH builders from the shell: the keys a resubmission allows, finding a build's builder,
waiting until it is ready, and the `ssh` command that reaches it.

Nothing here knows about argparse: main.py turns arguments into calls of these helpers.
An SSH builder is the API's `ssh-builders/{id}` object (the id is the lease's); a build
names its builders in each phase's `ssh_builder` (`{id, state, queue_reason, url}`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import itertools
import os
import pwd
import re
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from coprssh_cli.client import Client, ClientError, Patience
from coprssh_cli.output import phases, printable, when

# The keys `resubmit --ssh` offers when no key is named, in the order ssh-keygen suggests them.
DEFAULT_KEY_FILES = ("id_ed25519.pub", "id_ecdsa.pub", "id_rsa.pub")
LIVE_STATES = ("queued", "provisioning", "ready")
GONE_STATES = ("ended", "failed")
# An account name as GitHub and FAS allow it; the server checks again, this only catches typos
# (a stray `GitHub:` prefix, a space) before anything is sent.
ACCOUNT = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,62})$")
# A short server restart does not end a wait: give up after this many failed polls in a row.
MAX_FAILED_POLLS = 10
SPINNER = "|/-\\"


class SshError(ClientError):
    """An SSH builder that cannot be used as asked; `exit_code` says how the command ends."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# --- keys -------------------------------------------------------------------------------


def ssh_folder() -> Path | None:
    """~/.ssh as ssh finds it: in the home of the caller's account in the passwd database, whatever
    $HOME says (ssh ignores it). None for a uid that has no account, which ssh refuses too."""
    try:
        return Path(pwd.getpwuid(os.getuid()).pw_dir) / ".ssh"
    except KeyError:
        return None


def default_key_file() -> Path | None:
    """The caller's usual public key (id_ed25519.pub, id_ecdsa.pub or id_rsa.pub in ~/.ssh), if any:
    the one ssh logs in with when no key is named."""
    folder = ssh_folder()
    if folder is None:
        return None
    found = (folder / name for name in DEFAULT_KEY_FILES)
    return next((candidate for candidate in found if candidate.is_file()), None)


def fingerprint(line: str) -> str:
    """`type SHA256:…` of a public key line (the fingerprint as `ssh-keygen -lf` shows it), or "" if it is no key."""
    fields = line.split()
    for index, value in enumerate(fields[:-1]):
        # Skip an options prefix (the server refuses it, but say which key it was).
        if value.startswith(("ssh-", "ecdsa-", "sk-")):
            try:
                blob = base64.b64decode(fields[index + 1], validate=True)
            except (binascii.Error, ValueError):
                return ""
            digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
            return f"{value} SHA256:{digest}"
    return ""


def account(provider: str, name: str) -> str:
    """`GitHub:user` / `FAS:user` for an account name given on the command line."""
    bare = name.strip()
    prefix = f"{provider.lower()}:"
    if bare.lower().startswith(prefix):
        bare = bare[len(prefix) :]
    if not ACCOUNT.match(bare):
        raise ValueError(f"not a {provider} account name: {name!r}")
    return f"{provider}:{bare}"


# --- finding a build's builder ----------------------------------------------------------


def builder_id(value: Any) -> int | None:
    """The id in a phase's `ssh_builder` (an object, or a bare id from older servers)."""
    if isinstance(value, dict):
        value = value.get("id")
    if isinstance(value, bool):
        return None
    return value if isinstance(value, int) else None


@dataclass(frozen=True)
class Candidate:
    id: int
    phase: str
    state: str


def candidates_of(build: dict[str, Any]) -> list[Candidate]:
    """The SSH builders the build's phases name (SRPM phase first, then each chroot)."""
    found = []
    for name, phase in phases(build):
        value = phase.get("ssh_builder")
        ident = builder_id(value)
        if ident is not None:
            state = str(value.get("state", "")) if isinstance(value, dict) else ""
            found.append(Candidate(ident, name, state))
    return found


def find_builder(client: Client, build_id: int, chroot: str | None = None) -> int:
    """The id of the SSH builder of build `build_id` (of its phase `chroot` when given)."""
    build = client.get(f"builds/{build_id}/")
    found = candidates_of(build)
    if not found and build.get("ssh"):
        # A server that does not name builders in its phases: look in the caller's list.
        found = [
            Candidate(int(item["id"]), str(item.get("chroot") or "?"), str(item.get("state", "")))
            for item in client.pages("ssh-builders/")
            if item.get("build") == build_id and isinstance(item.get("id"), int)
        ]
    if not found:
        if build.get("ssh"):
            raise SshError(f"Build #{build_id} has no SSH builder yet.", 2)
        if build.get("ssh_on_failure"):
            raise SshError(
                f"Build #{build_id} keeps a builder for SSH only when a phase fails, and none was kept "
                f"(`coprssh status {build_id}` says why); resubmit it with one: coprssh resubmit {build_id} --ssh",
                2,
            )
        raise SshError(
            f"Build #{build_id} was built without SSH access; "
            f"resubmit it with one: coprssh resubmit {build_id} --ssh",
            2,
        )
    if chroot:
        chosen = [c for c in found if c.phase == chroot]
        if not chosen:
            names = ", ".join(c.phase for c in found)
            raise SshError(f"Build #{build_id} has no SSH builder for {chroot}; it has one for: {names}.", 2)
        found = chosen
    if len(found) > 1:
        live = [c for c in found if c.state not in GONE_STATES]
        found = live or found
    if len(found) > 1:
        names = ", ".join(c.phase for c in found)
        raise SshError(
            f"Build #{build_id} has SSH builders for {names}; choose one with --chroot {found[0].phase}.", 2
        )
    return found[0].id


# --- times ------------------------------------------------------------------------------


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def span(seconds: float) -> str:
    """A duration in words: `2 h 5 min`, `45 min`, `less than a minute`."""
    minutes = int(seconds // 60)
    if minutes < 1:
        return "less than a minute"
    hours, minutes = divmod(minutes, 60)
    if not hours:
        return f"{minutes} min"
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def remaining(value: Any, now: datetime | None = None) -> str:
    """How long until the API time `value`: `in 59 min`, or `expired`."""
    moment = parse_time(value)
    if moment is None:
        return ""
    left = (moment - (now or datetime.now(UTC))).total_seconds()
    return "expired" if left <= 0 else f"in {span(left)}"


def expiry(value: Any) -> str:
    """`2025-01-31 15:05 CET (in 59 min)`: local time with its zone, and what is left."""
    shown = when(value)
    left = remaining(value)
    return f"{shown} ({left})" if shown and left else shown


# --- the command ------------------------------------------------------------------------


def ssh_argv(
    builder: dict[str, Any], extra: list[str] | None = None, *, via_gateway: bool = False
) -> list[str]:
    """`ssh [-J GATEWAY] -p PORT USER@HOST [extra…]` for a ready builder; an IPv6 address stays bare."""
    host = str(builder.get("host") or builder.get("ipv4") or builder.get("ipv6") or "")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]  # ssh would look "[::1]" up as a name
    user = str(builder.get("user") or "root")
    port = int(builder.get("port") or 22)
    if not host:
        raise SshError(f"SSH builder #{builder.get('id')} has no address yet.", 1)
    jump = []
    if via_gateway:
        jump = ["-J", proxy_jump(builder)]
    # Options after the destination are still options to OpenSSH; the rest is the remote command.
    return ["ssh", *jump, "-p", str(port), f"{user}@{host}", *(extra or [])]


# `user@host`, `user@host:port` or `user@[v6]:port`, as the server spells the gateway for ssh -J.
PROXY_JUMP = re.compile(r"[a-z_][a-z0-9_-]{0,31}@(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?")


def gateway_of(builder: dict[str, Any]) -> dict[str, Any] | None:
    """The builder's `gateway` object, when its pool is reached through the server's SSH gateway."""
    gateway = builder.get("gateway")
    return gateway if isinstance(gateway, dict) and gateway.get("proxy_jump") else None


def proxy_jump(builder: dict[str, Any]) -> str:
    gateway = gateway_of(builder)
    if gateway is None:
        raise SshError(
            f"SSH builder #{builder.get('id')} is not reachable through the SSH gateway: its pool is reached directly.",
            2,
        )
    value = str(gateway["proxy_jump"])
    if not PROXY_JUMP.fullmatch(value):
        raise SshError(f"the server names its SSH gateway oddly: {printable(value)!r}", 1)
    return value


def reachable(host: str, port: int, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the builder's own address opens from here."""
    try:
        with socket.create_connection((host.strip("[]"), port), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def use_gateway(
    builder: dict[str, Any], *, asked: bool, probe: Callable[[str, int], bool] = reachable
) -> bool:
    """Through the gateway when asked, when the server says so, or when the builder does not answer here."""
    if asked:
        return True
    if gateway_of(builder) is None:
        return False
    if builder.get("route") == "gateway" or not builder.get("direct_ssh_command"):
        return True
    host = str(builder.get("host") or "")
    return not probe(host, int(builder.get("port") or 22))


# --- waiting until it is ready ---------------------------------------------------------


@dataclass
class Progress:
    """What a wait shows on stderr: a line per change; on a terminal, a spinner under it."""

    out: TextIO = field(default_factory=lambda: sys.stderr)
    tty: bool = False
    started: float = field(default_factory=time.monotonic)
    _last: tuple[str, str] | None = None
    _spin: Any = field(default_factory=lambda: itertools.cycle(SPINNER))
    _spinning: bool = False

    def update(self, builder: dict[str, Any]) -> None:
        state = str(builder.get("state", ""))
        reason = str(builder.get("queue_reason") or "")
        if (state, reason) == self._last:
            return
        self._last = (state, reason)
        if state == "ready":
            return  # what the caller says next
        where = f" for {builder['chroot']}" if builder.get("chroot") else ""
        text = f"SSH builder #{builder.get('id')}{where}: {state}"
        if reason:
            text += f" — {reason}"
        self.line(text)

    def line(self, text: str) -> None:
        self.clear()
        print(f"coprssh: {printable(text)}", file=self.out, flush=True)

    def tick(self) -> None:
        """Move the spinner (on a terminal only)."""
        if not self.tty or self._last is None:
            return
        waited = int(time.monotonic() - self.started)
        minutes, seconds = divmod(waited, 60)
        print(
            f"\r\x1b[K{next(self._spin)} still {self._last[0]}, waiting {minutes}:{seconds:02d}",
            end="",
            file=self.out,
            flush=True,
        )
        self._spinning = True

    def clear(self) -> None:
        if self._spinning:
            print("\r\x1b[K", end="", file=self.out, flush=True)
            self._spinning = False


def wait_until_ready(
    client: Client,
    ident: int,
    *,
    timeout: float,
    interval: float,
    progress: Progress,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Poll SSH builder `ident` until it is ready; SshError (exit 1) when it ended or time ran out."""
    deadline = time.monotonic() + timeout
    patience = Patience(MAX_FAILED_POLLS)
    builder: dict[str, Any] = {}
    while True:
        answer = patience.attempt(lambda: client.get(f"ssh-builders/{ident}/"), progress.line)
        if answer is not None:
            builder = answer
            progress.update(builder)
            state = builder.get("state")
            if state == "ready" and (builder.get("host") or builder.get("ipv4") or builder.get("ipv6")):
                progress.clear()
                return builder
            if state in GONE_STATES:
                progress.clear()
                raise SshError(f"SSH builder #{ident} has {'failed' if state == 'failed' else 'ended'}.", 1)
        left = deadline - time.monotonic()
        if left <= 0:
            progress.clear()
            state = builder.get("state", "unknown")
            reason = builder.get("queue_reason")
            message = f"SSH builder #{ident} is still {state} after {span_seconds(timeout)}"
            raise SshError(f"{message}: {reason}" if reason else f"{message}.", 1)
        # Sleep in small steps so the spinner turns; ask the server every `interval`.
        until = time.monotonic() + min(interval, left)
        while (step := until - time.monotonic()) > 0:
            progress.tick()
            sleep(min(step, 0.1 if progress.tty else step))


def span_seconds(seconds: float) -> str:
    return f"{seconds:g} s" if seconds < 120 else span(seconds)
