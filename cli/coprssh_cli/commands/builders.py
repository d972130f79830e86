"""SSH builders: `ssh`, `prolong`, `release`, `ssh-builders` and `quota`."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from typing import Any

from coprssh_cli import ssh as sshlib
from coprssh_cli.context import (
    EXIT_BUILD_FAILED,
    EXIT_OK,
    AddCommand,
    Context,
    UsageError,
    build_id,
    duration,
    hours,
    interrupted,
    note,
    say,
    seconds,
)
from coprssh_cli.output import table, when


def cmd_ssh(ctx: Context) -> int:
    """Wait until the build's SSH builder is ready, then run ssh to it (or print the command)."""
    args = ctx.args
    ident = sshlib.find_builder(ctx.client, args.build, args.chroot)
    progress = sshlib.Progress(out=sys.stderr, tty=sys.stderr.isatty())
    try:
        builder = sshlib.wait_until_ready(
            ctx.client, ident, timeout=args.timeout, interval=args.interval, progress=progress
        )
    except KeyboardInterrupt:
        progress.clear()
        return interrupted(
            f"stopped waiting; SSH builder #{ident} keeps its place "
            f"(`coprssh ssh {args.build}` waits again, `coprssh release {ident}` gives it up)."
        )
    via_gateway = sshlib.use_gateway(builder, asked=args.via_gateway)
    argv = sshlib.ssh_argv(builder, args.extra, via_gateway=via_gateway)
    where = f" for {builder['chroot']}" if builder.get("chroot") else ""
    note(
        f"SSH builder #{ident}{where} of build #{args.build} is ready until {sshlib.expiry(builder.get('expires_at'))}."
    )
    if builder.get("host_key_fingerprint"):
        note(
            f"Its host key is {builder['host_key_fingerprint']}: if ssh asks whether to trust the host, "
            "check that it shows this fingerprint (or paste it at ssh's prompt)."
        )
    gateway = sshlib.gateway_of(builder)
    if via_gateway and gateway is not None:
        note(
            f"Through the SSH gateway {gateway.get('proxy_jump')}, whose host key is "
            f"{gateway.get('host_key_fingerprint')}."
        )
    if args.print:
        ctx.show(
            {"argv": argv, "command": shlex.join(argv), "ssh_builder": builder}, lambda: say(shlex.join(argv))
        )
        return EXIT_OK
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvp(argv[0], argv)
    except OSError as exc:
        raise UsageError(
            f"cannot run {argv[0]}: {exc.strerror or exc}; the command is: {shlex.join(argv)}"
        ) from None
    return EXIT_OK  # not reached: ssh has replaced this process


def target_builder(ctx: Context) -> int:
    """The SSH builder a command acts on: `ID`, `build:N`, or `--build N` (with `--chroot`)."""
    args = ctx.args
    build = args.build
    ident = None
    if args.target:
        text = args.target.strip()
        if text.lower().startswith("build:"):
            if build is not None:
                raise UsageError("give build:N or --build N, not both")
            try:
                build = build_id(text[len("build:") :])
            except argparse.ArgumentTypeError as exc:
                raise UsageError(str(exc)) from None
        elif build is not None:
            raise UsageError("give an SSH builder ID or --build N, not both")
        else:
            value = text.removeprefix("#")
            if not value.isdigit() or int(value) == 0 or len(value) > 18:
                raise UsageError(
                    f"not an SSH builder ID: {args.target!r} (give its number from `coprssh ssh-builders`, "
                    "or build:N for the builder of build N)"
                )
            ident = int(value)
    if build is not None:
        return sshlib.find_builder(ctx.client, build, args.chroot)
    if args.chroot:
        raise UsageError("--chroot goes with --build N or build:N")
    if ident is None:
        raise UsageError("give the SSH builder's ID (see `coprssh ssh-builders`), or --build N for a build's")
    return ident


def cmd_prolong(ctx: Context) -> int:
    """Keep an SSH builder longer: add hours to its expiry, up to its cap."""
    ident = target_builder(ctx)
    builder = ctx.client.post(f"ssh-builders/{ident}/prolong/", {"hours": ctx.args.hours})

    def human() -> None:
        say(f"SSH builder #{ident} now expires at {sshlib.expiry(builder.get('expires_at'))}.")
        if builder.get("max_expires_at"):
            say(f"It may be prolonged until {when(builder['max_expires_at'])} at the latest.")

    ctx.show(builder, human)
    return EXIT_OK


def cmd_release(ctx: Context) -> int:
    """End an SSH builder now (its machine is deleted); releasing one that has ended is fine."""
    ident = target_builder(ctx)
    builder = ctx.client.get(f"ssh-builders/{ident}/")
    if builder.get("state") in sshlib.GONE_STATES:
        ctx.show(builder, lambda: say(f"SSH builder #{ident} has already {builder.get('state')}."))
        return EXIT_OK
    if not ctx.args.yes:
        what = describe_builder(builder)
        if not sys.stdin.isatty():
            raise UsageError(f"releasing ends {what} for good; confirm with --yes")
        try:
            answer = input(f"Release {what}? Its machine is deleted. [y/N] ")
        except EOFError:
            answer = ""
        if answer.strip().lower() not in ("y", "yes"):
            say(f"Kept SSH builder #{ident}.")
            return EXIT_BUILD_FAILED
    builder = ctx.client.post(f"ssh-builders/{ident}/release/")
    builder = builder if isinstance(builder, dict) else {"id": ident, "state": "ended"}
    ctx.show(builder, lambda: say(f"Released SSH builder #{ident}."))
    return EXIT_OK


def describe_builder(builder: dict[str, Any]) -> str:
    parts = [f"SSH builder #{builder.get('id')}"]
    if builder.get("build"):
        parts.append(f"of build #{builder['build']}")
    if builder.get("chroot"):
        parts.append(f"({builder['chroot']}, {builder.get('state')})")
    else:
        parts.append(f"({builder.get('state')})")
    return " ".join(parts)


def cmd_ssh_builders(ctx: Context) -> int:
    """Your SSH builders: waiting and ready ones, or all with --all."""
    builders = list(ctx.client.pages("ssh-builders/"))
    if not ctx.args.all:
        builders = [b for b in builders if b.get("state") not in sshlib.GONE_STATES]

    def human() -> None:
        if not builders:
            say("No SSH builders." if ctx.args.all else "No SSH builders in use (--all shows ended ones).")
            return
        rows = [
            [
                b.get("id"),
                f"#{b['build']}" if b.get("build") else "",
                b.get("chroot") or "",
                b.get("state", ""),
                sshlib.expiry(b.get("expires_at"))
                if b.get("state") == "ready"
                else when(b.get("expires_at")),
                b.get("ssh_command") or "",
            ]
            for b in builders
        ]
        table(["ID", "BUILD", "CHROOT", "STATE", "EXPIRES", "COMMAND"], rows)
        waiting = [b for b in builders if b.get("queue_reason") and b.get("state") not in sshlib.GONE_STATES]
        if waiting:
            say()
            for b in waiting:
                say(f"#{b.get('id')} {b.get('state')}: {b['queue_reason']}")

    ctx.show(builders, human)
    return EXIT_OK


def cmd_quota(ctx: Context) -> int:
    """How many SSH builders you may hold at once, which ones count, and how long they live."""
    quota = ctx.client.get("quota/")

    def human() -> None:
        held = [holder_text(holder) for holder in quota.get("holders") or []]
        line = f"SSH builders: {quota.get('in_use')} of {quota.get('max_ssh_builders')} in use"
        say(f"{line}: {', '.join(held)}." if held else f"{line}.")
        say(
            f"Each is kept {hours_text(quota.get('default_lifetime_hours'))} after its build ends; "
            f"`coprssh prolong` adds hours, up to {hours_text(quota.get('max_lifetime_hours'))} "
            "from when it became ready."
        )

    ctx.show(quota, human)
    return EXIT_OK


def holder_text(holder: Any) -> str:
    """One SSH builder counted against the quota: `#12 (build #15 fedora-rawhide-x86_64, ready)`."""
    if not isinstance(holder, dict):
        return f"#{holder}"
    ident = holder.get("id") or holder.get("ssh_builder") or holder.get("lease")
    details = []
    if holder.get("build"):
        details.append(" ".join(filter(None, [f"build #{holder['build']}", holder.get("chroot")])))
    elif holder.get("purpose"):
        details.append(str(holder["purpose"]))
    if holder.get("state"):
        details.append(str(holder["state"]))
    return f"#{ident}" + (f" ({', '.join(details)})" if details else "")


def hours_text(value: Any) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:g} h"
    return "?"


def add_commands(command: AddCommand) -> None:
    ssh = command(
        "ssh",
        cmd_ssh,
        "log in to the SSH builder of a build, waiting until it is ready",
        usage="%(prog)s [-h] [--chroot CHROOT] [--timeout DURATION] [--print] [--via-gateway] BUILD [-- SSH_ARGS...]",
        epilog="after --, arguments go to ssh: options (e.g. -L 8080:localhost:80) or a command to run.",
    )
    ssh.add_argument("build", type=build_id, metavar="BUILD", help="a build resubmitted with SSH")
    ssh.add_argument("--chroot", metavar="CHROOT", help="the builder of this chroot (or srpm)")
    ssh.add_argument(
        "--timeout",
        type=duration,
        default=1800.0,
        metavar="DURATION",
        help="give up waiting after this long (e.g. 90s, 10m; default 30m)",
    )
    ssh.add_argument(
        "--interval", type=seconds, default=2.0, metavar="SECONDS", help="how often to ask (default 2)"
    )
    ssh.add_argument("--print", action="store_true", help="print the ssh command instead of running it")
    ssh.add_argument(
        "--via-gateway",
        action="store_true",
        help="go through the server's SSH gateway (ssh -J); the default when the builder does not answer directly",
    )
    ssh.set_defaults(extra=[])

    prolong = command("prolong", cmd_prolong, "keep an SSH builder longer (up to its cap)")
    add_builder_target(prolong)
    prolong.add_argument(
        "--hours", type=hours, default=1, metavar="N", help="hours to add to its expiry (default 1)"
    )

    release = command("release", cmd_release, "end an SSH builder now; its machine is deleted")
    add_builder_target(release)
    release.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")

    builders = command("ssh-builders", cmd_ssh_builders, "list your SSH builders")
    builders.add_argument("--all", action="store_true", help="also those that have ended")

    command("quota", cmd_quota, "show your SSH builder quota and what counts against it")


def add_builder_target(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "target",
        nargs="?",
        metavar="ID",
        help="the SSH builder's ID (see `coprssh ssh-builders`), or build:N for build N's",
    )
    parser.add_argument("--build", type=build_id, metavar="BUILD", help="the SSH builder of this build")
    parser.add_argument("--chroot", metavar="CHROOT", help="with --build: the builder of this chroot")
