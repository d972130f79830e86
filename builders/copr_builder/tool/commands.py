"""copr-builder help, show, prolong and release."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from typing import Any

from .failures import OK, REFUSED, Failure, Unreachable
from .lease import Lease
from .service import answered_cap, answered_time, call, detail, ended, unexpected
from .times import UTC, local_time, when

MAX_HOURS = 48


def cmd_help(lease: Lease, args: argparse.Namespace) -> int:
    expiry = [
        f"  {when(lease.expires_at)}, as last recorded on this machine;",
        "  `copr-builder show` asks the service for the current time.",
    ]
    if lease.max_expires_at:
        expiry.append(f"  Prolonging cannot go past {local_time(lease.max_expires_at)}.")
    if lease.released_at:
        expiry.append(f"  This lease was released at {local_time(lease.released_at)}.")
    owner, build, lease_id = lease.field("owner"), lease.field("build_id"), lease.field("lease_id")
    print(
        f"This machine is a coprssh builder lent to {owner} for build #{build}\n"
        f"(chroot {lease.field('chroot')}, project {lease.field('project')}, lease #{lease_id}).\n"
        "\n"
        "Rules\n"
        "  - This builder is yours alone: you are root here, it ran no one else's build before yours,\n"
        "    and it is never given to anyone after you.\n"
        "  - It is deleted, with everything on it, when the lease ends (at expiry, or when you release\n"
        "    it). Copy off anything you want to keep before then.\n"
        "  - Nothing built here is ever published: only the spec file and the logs were fetched back\n"
        "    from this builder; its packages are never stored or published.\n"
        "  - Ten minutes before expiry you get a warning on your terminal.\n"
        "\n"
        "Rerun the build\n"
        f"  {lease.field('rerun')}\n"
        "\n"
        "Results\n"
        f"  {lease.field('results')}\n"
        f"  (work directory: {lease.field('workdir')})\n"
        "\n"
        "Expiry\n" + "\n".join(expiry) + "\n"
        "\n" + login_lines(lease) + "Commands\n"
        "  copr-builder help                 this text\n"
        "  copr-builder show                 the lease as the service sees it now: expiry, time left\n"
        f"  copr-builder prolong [--hours N]  add N hours to the expiry (default 1, 1 to {MAX_HOURS})\n"
        "  copr-builder release [--yes]      end the lease now; the builder is then deleted"
    )
    return OK


def login_lines(lease: Lease) -> str:
    """How the owner logs in from their own machine (directly, or through the SSH gateway), if the file says."""
    login = lease.data.get("login")
    if not isinstance(login, dict):
        return ""

    def text(key: str) -> str:
        value = login.get(key)
        return value if isinstance(value, str) and value.isprintable() else ""

    lines = ["Log in again, from your own machine"]
    first, direct, through = text("ssh_command"), text("direct_command"), text("gateway_command")
    if not first:
        return ""
    lines.append(f"  {first}")
    other = direct if first == through else through
    if other and other != first:
        label = "directly" if other == direct else "through the SSH gateway (no IPv6, or behind a firewall)"
        lines.append(f"  or {label}:")
        lines.append(f"  {other}")
    config = login.get("ssh_config")
    if isinstance(config, str) and all(line.isprintable() for line in config.splitlines()):
        lines.append(f"  or, with this in ~/.ssh/config: ssh coprssh-{lease.field('lease_id')}")
        lines += [f"    {line}" for line in config.splitlines()]
    return "\n".join(lines) + "\n\n"


def show_lines(
    lease: Lease, current: dict[str, Any], expires: datetime | None, latest: datetime | None
) -> None:
    def pick(key: str, file_key: str) -> str:
        value = current.get(key)
        return lease.field(file_key) if value in (None, "") else str(value)

    state = current.get("state")
    print(f"Build:     #{pick('build', 'build_id')}")
    print(f"Chroot:    {pick('chroot', 'chroot')}")
    print(f"Project:   {lease.field('project')}")
    print(f"Owner:     {pick('owner', 'owner')}")
    print(f"Lease:     #{pick('id', 'lease_id')}" + (f", {state}" if state else ""))
    print(f"Expires:   {when(expires)}")
    print(f"Cap:       {when(latest)}" + (", prolonging cannot go past it" if latest else ""))


def cmd_show(lease: Lease, args: argparse.Namespace) -> int:
    try:
        status, answer = call(lease, "GET", "lease/")
    except Unreachable as exc:
        show_lines(lease, {}, lease.expires_at, lease.max_expires_at)
        print(
            f"copr-builder: {exc.message}; these are the values saved on this machine, "
            "and may be stale (a prolongation made elsewhere is not shown).",
            file=sys.stderr,
        )
        return OK
    if status in (401, 403, 409):
        show_lines(lease, {}, lease.expires_at, lease.max_expires_at)
        raise ended(answer)
    if status != 200 or not isinstance(answer, dict):
        raise unexpected(lease, status, answer)
    # The service answers null for an expiry it has not set yet.
    expires = None if answer.get("expires_at") is None else answered_time(lease, answer, "expires_at")
    latest = answered_cap(lease, answer)
    show_lines(lease, answer, expires, latest)
    if answer.get("state") not in (None, "active"):
        print("This lease is no longer active: the builder is deleted within a couple of minutes.")
    if expires != lease.expires_at or latest != lease.max_expires_at:
        # Keep `help` current after a prolongation made on the web page or with the CLI.
        lease.try_save(
            expires_at=expires.isoformat() if expires else None,
            max_expires_at=latest.isoformat() if latest else None,
        )
    return OK


def hours_arg(text: str) -> int:
    try:
        hours = int(text)
    except ValueError:
        hours = 0
    if not 1 <= hours <= MAX_HOURS:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to {MAX_HOURS}, not {text!r}")
    return hours


def cmd_prolong(lease: Lease, args: argparse.Namespace) -> int:
    status, answer = call(lease, "POST", "lease/prolong/", {"hours": args.hours})
    if status == 400:
        raise Failure(detail(answer) or "the service refused to prolong this lease.", REFUSED)
    if status in (401, 403, 409):
        raise ended(answer)
    if status != 200:
        raise unexpected(lease, status, answer)
    expires = answered_time(lease, answer, "expires_at")
    latest = answered_cap(lease, answer)
    print(f"Prolonged by {args.hours} h: this builder now expires at {when(expires)}.")
    if latest:
        print(f"It cannot be prolonged past {local_time(latest)}.")
    problem = lease.try_save(
        expires_at=expires.isoformat(), max_expires_at=latest.isoformat() if latest else None
    )
    if problem:
        print(f"copr-builder: {problem}; `copr-builder show` still asks the service.", file=sys.stderr)
    return OK


def confirmed(lease: Lease) -> bool:
    prompt = (
        f"Release this builder (build #{lease.field('build_id')}, {lease.field('chroot')}) now? "
        "It is deleted, with everything on it, within a couple of minutes. [y/N] "
    )
    try:
        answer = input(prompt)
    except EOFError:
        answer = ""
    return answer.strip().lower() in ("y", "yes")


def cmd_release(lease: Lease, args: argparse.Namespace) -> int:
    if not args.yes:
        if not sys.stdin.isatty():
            raise Failure(
                "release ends the lease now and deletes this builder; without a terminal to confirm "
                "on, run `copr-builder release --yes`.",
                REFUSED,
            )
        if not confirmed(lease):
            print("Not released; the lease is unchanged.")
            return REFUSED
    status, answer = call(lease, "POST", "lease/release/")
    if status == 200:
        if not lease.released_at:
            lease.try_save(released_at=datetime.now(UTC).isoformat(timespec="seconds"))
        print("Released: the lease has ended, and this builder will be deleted within a couple of minutes.")
        return OK
    if status == 409 or (status in (401, 403) and lease.released_at):
        # Releasing twice is harmless: the lease had already ended, perhaps from here.
        print("This lease had already ended; the builder is deleted within a couple of minutes.")
        return OK
    if status in (401, 403):
        raise ended(answer)
    raise unexpected(lease, status, answer)


COMMANDS = {"help": cmd_help, "show": cmd_show, "prolong": cmd_prolong, "release": cmd_release}
