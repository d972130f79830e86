"""Builds: `build`, `status`, `watch`, `cancel`, `resubmit` and `list-builds`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from coprssh_cli.commands.keys import add_key_options, ssh_keys
from coprssh_cli.context import (
    EXIT_BUILD_FAILED,
    EXIT_OK,
    AddCommand,
    Context,
    UsageError,
    build_id,
    interrupted,
    project_path,
    say,
    seconds,
)
from coprssh_cli.output import build_summary, chroot_names, phases, source_text, stamp, table
from coprssh_cli.watch import Watcher


def cmd_build(ctx: Context) -> int:
    """Submit a build from a file, a git repository or a URL; print its id last."""
    args = ctx.args
    given = [name for name, value in (("FILE", args.file), ("--scm", args.scm), ("--url", args.url)) if value]
    if len(given) != 1:
        raise UsageError("give exactly one source: a FILE (.spec or .src.rpm), --scm CLONE_URL, or --url URL")
    if args.scm and not args.spec:
        raise UsageError("--scm needs --spec PATH (the spec file's path in the repository)")
    if (args.committish or args.spec) and not args.scm:
        raise UsageError("--committish and --spec go with --scm")
    project = project_path(ctx, args.project)
    fields: dict[str, Any] = {"project": project}
    if args.chroots:
        fields["chroots"] = args.chroots
    keys, notes = ssh_keys(ctx)
    if (keys or args.saved_keys) and not args.ssh_on_failure:
        raise UsageError(
            "key options go with --ssh-on-failure here; to debug a finished build over SSH, "
            "use `coprssh resubmit BUILD --ssh`"
        )
    if args.ssh_on_failure:
        fields |= {
            "ssh_on_failure": True,
            "ssh_public_keys": "\n".join(keys),
            "use_saved_keys": args.saved_keys,
        }
    if args.file:
        path = Path(args.file)
        try:
            handle = open(path, "rb")  # noqa: SIM115 - closed below, after the upload
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
        with handle:
            build = ctx.client.post_file("builds/", fields, "source_file", path.name, handle)
    elif args.scm:
        fields |= {"source_type": "scm", "clone_url": args.scm, "spec": args.spec}
        fields["committish"] = args.committish or ""
        build = ctx.client.post("builds/", fields)
    else:
        build = ctx.client.post("builds/", fields | {"source_type": "url", "url": args.url})
    if build.get("ssh_on_failure"):
        notes.append(f"If it fails, its builder is kept: log in with `coprssh ssh {build.get('id')}`")
    headline = f"Submitted build #{build.get('id')} to {build.get('project') or project}"
    return submitted(ctx, build, headline, notes)


def submitted(ctx: Context, build: dict[str, Any], headline: str, notes: list[str] | None = None) -> int:
    """After build or resubmit: the new build (its id on the last line), or follow it with --watch."""
    if ctx.args.watch:
        if not ctx.json:
            say(f"{headline}.")
            for note in notes or []:
                say(note)
        return follow(ctx, int(build["id"]))

    def human() -> None:
        chroots = ", ".join(chroot_names(build.get("chroots")))
        say(f"{headline} ({chroots}): {build.get('state')}.")
        for note in notes or []:
            say(note)
        say(f"Follow it with: coprssh watch {build.get('id')}")
        say(str(build.get("id")))

    ctx.show(build, human)
    return EXIT_OK


def cmd_status(ctx: Context) -> int:
    """A build, its phases and their live logs."""
    build = ctx.client.get(f"builds/{ctx.args.build}/")
    ctx.show(build, lambda: build_summary(build, sys.stdout, ctx.client.absolute))
    return EXIT_OK


def cmd_watch(ctx: Context) -> int:
    """Follow a build until it ends: 0 when it succeeded, 1 when it failed or was canceled."""
    return follow(ctx, ctx.args.build)


def follow(ctx: Context, build: int) -> int:
    logs = ("builder_live", "backend") if ctx.args.backend_log else ("builder_live",)
    watcher = Watcher(ctx.client, build, json_lines=ctx.json, logs=logs)
    try:
        final = watcher.run(ctx.args.interval)
    except KeyboardInterrupt:
        watcher.flush_partials()
        return interrupted(
            f"stopped watching build #{build}; it goes on (`coprssh watch {build}` follows it again)."
        )
    if ctx.json:
        watcher.emit({"event": "finished", "build": final})
    elif final.get("state") == "failed":
        say_how_to_debug(final, build)
    return EXIT_OK if final.get("state") == "succeeded" else EXIT_BUILD_FAILED


def say_how_to_debug(final: dict[str, Any], build: int) -> None:
    """After a failed build: log in to the builder kept for it, or resubmit with SSH (saying why)."""
    kept = [name for name, phase in phases(final) if isinstance(phase.get("ssh_builder"), dict)]
    if final.get("ssh_on_failure") and kept:
        chroot = f" --chroot {kept[0]}" if len(kept) > 1 else ""
        say(f"The failed builder is kept for you to debug: coprssh ssh {build}{chroot}")
        return
    for name, phase in phases(final):
        if phase.get("not_kept_reason"):
            say(f"{name}: {phase['not_kept_reason']}")
    failed = [c.get("name") for c in final.get("chroots") or [] if c.get("state") == "failed"]
    chroot = f" --chroot {failed[0]}" if failed else ""
    say(f"To debug it on the builder: coprssh resubmit {build}{chroot} --ssh, then: coprssh ssh NEW_BUILD")


def cmd_cancel(ctx: Context) -> int:
    """Cancel a build that has not finished."""
    build = ctx.client.post(f"builds/{ctx.args.build}/cancel/")
    build = build if isinstance(build, dict) else {"id": ctx.args.build, "state": "canceled"}
    ctx.show(build, lambda: say(f"Build #{build.get('id', ctx.args.build)}: {build.get('state')}."))
    return EXIT_OK


def cmd_resubmit(ctx: Context) -> int:
    """Submit a finished build again, maybe to some chroots only and with SSH to the builder."""
    args = ctx.args
    body: dict[str, Any] = {}
    if args.chroots:
        body["chroots"] = args.chroots
    keys, notes = ssh_keys(ctx)
    if keys:
        body["ssh_public_keys"] = "\n".join(keys)
    if args.saved_keys:
        body["use_saved_keys"] = True
    if args.ssh_on_failure:
        if args.ssh:
            raise UsageError(
                "--ssh and --ssh-on-failure exclude each other: an SSH build keeps its builder anyway"
            )
        body["ssh_on_failure"] = True
    build = ctx.client.post(f"builds/{args.build}/resubmit/", body)
    ssh = " with SSH" if build.get("ssh") else ""
    if build.get("ssh_on_failure"):
        notes.append(f"If it fails, its builder is kept: log in with `coprssh ssh {build.get('id')}`")
    if build.get("ssh"):
        notes += ssh_builder_notes(build)
        notes.append(f"Log in once it is ready with: coprssh ssh {build.get('id')}")
    return submitted(ctx, build, f"Resubmitted build #{args.build} as build #{build.get('id')}{ssh}", notes)


def ssh_builder_notes(build: dict[str, Any]) -> list[str]:
    """A line per SSH builder of a new build that waits for a reason (over quota, no pool)."""
    notes = []
    for name, phase in phases(build):
        value = phase.get("ssh_builder")
        if isinstance(value, dict) and value.get("queue_reason"):
            notes.append(
                f"SSH builder #{value.get('id')} for {name} is {value.get('state')}: {value['queue_reason']}"
            )
    return notes


def cmd_list_builds(ctx: Context) -> int:
    """The builds of a project, newest first."""
    project = project_path(ctx, ctx.args.project)
    builds = list(ctx.client.pages("builds/", limit=ctx.args.limit or None, project=project))

    def human() -> None:
        if not builds:
            say(f"No builds in {project}.")
            return
        rows = [
            [
                b.get("id"),
                b.get("state", ""),
                source_text(b),
                ", ".join(chroot_names(b.get("chroots"))),
                stamp(b, "created"),
            ]
            for b in builds
        ]
        table(["ID", "STATE", "SOURCE", "CHROOTS", "SUBMITTED"], rows)

    ctx.show(builds, human)
    return EXIT_OK


def add_commands(command: AddCommand) -> None:
    build = command("build", cmd_build, "submit a build; prints its id on the last line")
    build.add_argument("project", metavar="PROJECT", help="OWNER/NAME, or NAME for one of yours")
    build.add_argument("file", metavar="FILE", nargs="?", help="a .spec or .src.rpm to upload")
    build.add_argument("--scm", metavar="CLONE_URL", help="build from a public git repository")
    build.add_argument("--committish", metavar="REF", help="branch, tag or commit (with --scm)")
    build.add_argument("--spec", metavar="PATH", help="the spec file's path in the repository (with --scm)")
    build.add_argument("--url", metavar="URL", help="build a .src.rpm from this public URL")
    add_key_options(build, ssh=False)
    add_watch_options(build)

    status = command("status", cmd_status, "show a build and its chroots")
    status.add_argument("build", type=build_id, metavar="BUILD")

    watch = command("watch", cmd_watch, "follow a build's live logs until it ends (exit 0 if it succeeded)")
    watch.add_argument("build", type=build_id, metavar="BUILD")
    add_follow_options(watch)

    cancel = command("cancel", cmd_cancel, "cancel a build that has not finished")
    cancel.add_argument("build", type=build_id, metavar="BUILD")

    resubmit = command(
        "resubmit",
        cmd_resubmit,
        "submit a finished build again, optionally with SSH access to its builder",
        epilog=(
            "with --ssh and no key option, your ~/.ssh/id_ed25519.pub (or id_ecdsa.pub, id_rsa.pub) is "
            "allowed; any key option allows SSH by itself. Then `coprssh ssh NEW_BUILD` logs you in."
        ),
    )
    resubmit.add_argument("build", type=build_id, metavar="BUILD")
    add_key_options(resubmit)
    add_watch_options(
        resubmit,
        chroot_default="the build's chroots; with SSH, the failed ones, or the first one if none failed",
    )

    listing = command("list-builds", cmd_list_builds, "list a project's builds, newest first")
    listing.add_argument("project", metavar="PROJECT", help="OWNER/NAME, or NAME for one of yours")
    listing.add_argument("--limit", type=int, default=50, help="at most this many (0: all; default 50)")


def add_watch_options(parser: argparse.ArgumentParser, *, chroot_default: str = "all of them") -> None:
    parser.add_argument(
        "--chroot",
        dest="chroots",
        action="append",
        metavar="CHROOT",
        help=f"build only for this chroot (repeat for more; default: {chroot_default})",
    )
    parser.add_argument("--watch", action="store_true", help="then follow it as `coprssh watch` does")
    add_follow_options(parser)


def add_follow_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--interval",
        type=seconds,
        default=2.0,
        metavar="SECONDS",
        help="how often to ask the server (default 2)",
    )
    parser.add_argument(
        "--backend-log", action="store_true", help="also show what the service did (backend.log)"
    )
