"""`coprssh`: submit, follow, cancel and resubmit builds on a coprssh server from the shell,
and log in to, prolong and release the SSH builders of builds resubmitted with SSH.

Exit codes: 0 done (for `watch`: the build succeeded), 1 the watched build failed or was
canceled, or the SSH builder never became ready (`ssh`), 2 refused (bad arguments or
configuration, or the server said no: 4xx), 3 the server could not be reached or failed
(connection, timeout, 5xx), 130 interrupted.
"""

from __future__ import annotations

import argparse
import getpass
import os
import re
import shlex
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coprssh_cli import __version__, config
from coprssh_cli import ssh as sshlib
from coprssh_cli.client import EXIT_REFUSED, ApiError, Client, ClientError
from coprssh_cli.output import (
    build_summary,
    chroot_names,
    dump_json,
    phases,
    printable,
    project_name,
    source_text,
    stamp,
    table,
    when,
)
from coprssh_cli.watch import Watcher

EXIT_OK = 0
EXIT_BUILD_FAILED = 1
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141
# Ten keys of the longest line the server accepts (8 KiB).
MAX_KEY_FILE = 10 * 8 * 1024


class UsageError(ClientError):
    """The command cannot run as given; nothing was sent."""

    exit_code = EXIT_REFUSED


@dataclass
class Context:
    """What every command needs: its arguments, the configuration, a client made on first use."""

    args: argparse.Namespace
    environ: Mapping[str, str]
    _client: Client | None = field(default=None, repr=False)

    @property
    def json(self) -> bool:
        return bool(self.args.json)

    @property
    def config_path(self) -> Path:
        return config.config_path(self.args.config, self.environ)

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = Client(config.load(self.config_path, self.environ))
        return self._client

    def show(self, data: Any, human: Callable[[], None]) -> None:
        """The API's JSON with --json, else the human rendering."""
        if self.json:
            dump_json(data)
        else:
            human()


def say(text: str = "") -> None:
    print(printable(text), flush=True)


def error(text: str) -> None:
    print(f"coprssh: error: {printable(text)}", file=sys.stderr, flush=True)


# --- arguments ---------------------------------------------------------------------------


def build_id(text: str) -> int:
    """A build number as users write it: `12` or `#12`."""
    value = text.removeprefix("#")
    if not value.isdigit() or int(value) == 0 or len(value) > 18:
        raise argparse.ArgumentTypeError(f"not a build number: {text!r}")
    return int(value)


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0.05 <= value <= 3600:
        raise argparse.ArgumentTypeError("give between 0.05 and 3600 seconds")
    return value


DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|sec|m|min|h)?$")
DURATION_UNITS = {None: 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}


def duration(text: str) -> float:
    """Seconds from `90`, `90s`, `30m` or `2h`."""
    match = DURATION.match(text.strip().lower())
    if not match:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 90, 90s, 30m, 2h)")
    value = float(match.group(1)) * DURATION_UNITS[match.group(2)]
    if not 0 < value <= 7 * 24 * 3600:
        raise argparse.ArgumentTypeError("give a duration above 0 and up to 7 days")
    return value


def hours(text: str) -> int:
    value = text.strip().lower().removesuffix("h").strip()
    if not value.isdigit() or not 1 <= int(value) <= 1000:
        raise argparse.ArgumentTypeError(f"not a whole number of hours: {text!r}")
    return int(value)


def account_of(provider: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        try:
            return sshlib.account(provider, text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = f"{provider} account"
    return parse


def project_path(ctx: Context, project: str) -> str:
    """`owner/name` for PROJECT; a bare name is one of the caller's projects."""
    owner, slash, name = project.strip().rpartition("/")
    if slash and (not owner or not name or "/" in owner):
        raise UsageError(f"give the project as OWNER/NAME or NAME, not {project!r}")
    if not name:
        raise UsageError("give a project name")
    if owner:
        return f"{owner}/{name}"
    user = ctx.client.whoami()
    if not user:
        raise UsageError(
            f"authentication needed to find your project {name!r}: no API token; "
            "run `coprssh login --url URL --token TOKEN`, set COPRSSH_TOKEN, or give OWNER/NAME"
        )
    return f"{user}/{name}"


# --- commands ----------------------------------------------------------------------------


def cmd_login(ctx: Context) -> int:
    """Check the token with the server and write the config file (mode 0600)."""
    path = ctx.config_path
    url = ctx.args.url or ctx.environ.get("COPRSSH_URL") or config.saved_url(path)
    if not url:
        raise UsageError("give the server with --url URL (e.g. --url https://coprssh.example.org)")
    url = config.normalize_url(url)
    token = ctx.args.token
    if token is None:
        token = read_token(url)
    token = token.strip()
    if not token:
        raise UsageError(f"give the API token with --token TOKEN (it is on {url}/accounts/profile/)")
    user = None
    if not ctx.args.no_verify:
        ctx._client = Client(config.Config(url=url, token=token))
        user = ctx.client.whoami()
    config.save(path, url=url, token=token)
    overridden = [name for name in ("COPRSSH_URL", "COPRSSH_TOKEN") if ctx.environ.get(name)]

    def human() -> None:
        say(f"Logged in to {url} as {user}." if user else f"Saved the server {url} (token not checked).")
        say(f"Wrote {path} (mode 0600).")
        if overridden:
            say(f"Note: {' and '.join(overridden)} set in the environment win over this file.")

    ctx.show({"url": url, "user": user, "config": str(path)}, human)
    return EXIT_OK


def read_token(url: str) -> str:
    """The token from a prompt, or from standard input when it is not a terminal."""
    if sys.stdin is None:
        return ""
    if sys.stdin.isatty():
        return getpass.getpass(f"API token (from {url}/accounts/profile/): ")
    return sys.stdin.readline()


def cmd_whoami(ctx: Context) -> int:
    """Who the token belongs to, on which server."""
    user = ctx.client.whoami()
    url = ctx.client.base
    ctx.show({"url": url, "user": user}, lambda: say(f"{user} at {url}" if user else f"anonymous at {url}"))
    return EXIT_OK


def cmd_create_project(ctx: Context) -> int:
    """Create a project of the caller."""
    name = ctx.args.name
    if "/" in name:
        raise UsageError("give a plain project name: projects are created under your own account")
    body = {"name": name, "chroots": ctx.args.chroots, "description": ctx.args.description}
    project = ctx.client.post("projects/", body)

    def human() -> None:
        chroots = ", ".join(chroot_names(project.get("chroots")))
        say(f"Created project {project_name(project)} ({chroots}).")

    ctx.show(project, human)
    return EXIT_OK


def cmd_list_projects(ctx: Context) -> int:
    """Projects, by owner and name."""
    params = {"owner": ctx.args.owner} if ctx.args.owner else {}
    projects = list(ctx.client.pages("projects/", limit=ctx.args.limit or None, **params))

    def human() -> None:
        rows = [
            [project_name(p), ", ".join(chroot_names(p.get("chroots"))), first_line(p.get("description"))]
            for p in projects
        ]
        if rows:
            table(["PROJECT", "CHROOTS", "DESCRIPTION"], rows)
        else:
            say("No projects.")

    ctx.show(projects, human)
    return EXIT_OK


def first_line(text: Any, width: int = 60) -> str:
    line = str(text or "").strip().split("\n", 1)[0]
    return line if len(line) <= width else line[: width - 1] + "…"


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
    return submitted(ctx, build, f"Submitted build #{build.get('id')} to {build.get('project') or project}")


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
        print(
            f"\ncoprssh: stopped watching build #{build}; it goes on (`coprssh watch {build}` follows it again).",
            file=sys.stderr,
            flush=True,
        )
        return EXIT_INTERRUPTED
    if ctx.json:
        watcher.emit({"event": "finished", "build": final})
    elif final.get("state") == "failed":
        failed = [c.get("name") for c in final.get("chroots") or [] if c.get("state") == "failed"]
        chroot = f" --chroot {failed[0]}" if failed else ""
        say(
            f"To debug it on the builder: coprssh resubmit {build}{chroot} --ssh, then: coprssh ssh NEW_BUILD"
        )
    return EXIT_OK if final.get("state") == "succeeded" else EXIT_BUILD_FAILED


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
    build = ctx.client.post(f"builds/{args.build}/resubmit/", body)
    ssh = " with SSH" if build.get("ssh") else ""
    if build.get("ssh"):
        notes += ssh_builder_notes(build)
        notes.append(f"Log in once it is ready with: coprssh ssh {build.get('id')}")
    return submitted(ctx, build, f"Resubmitted build #{args.build} as build #{build.get('id')}{ssh}", notes)


def ssh_keys(ctx: Context) -> tuple[list[str], list[str]]:
    """The key lines and references `resubmit` sends, and what to tell the user about them.

    Key options allow SSH by themselves; `--ssh` alone offers the caller's usual public key.
    """
    args = ctx.args
    keys = [key for key in args.ssh_keys or [] if key.strip()]
    files = [Path(name) for name in args.ssh_key_files or []]
    references = [*(args.github or []), *(args.fas or [])]
    notes: list[str] = []
    if args.ssh and not (keys or files or references or args.saved_keys):
        default = sshlib.default_key_file(ctx.environ)
        if default is None:
            raise UsageError(
                "--ssh needs a public key and none of ~/.ssh/"
                + ", ~/.ssh/".join(sshlib.DEFAULT_KEY_FILES)
                + " exists: give --key FILE (a .pub file), --github USER or --fas USER (the keys "
                "that account publishes), or --saved-keys (the keys saved on your profile)"
            )
        files.append(default)
    for path in files:
        text = read_public_keys(path)
        prints = [found for line in text.splitlines() if (found := sshlib.fingerprint(line))]
        if not text:
            raise UsageError(f"{path} holds no public key")
        keys.append(text)
        notes.append(f"SSH keys from {path}: {', '.join(prints) or 'none recognized'}")
    if references:
        keys.append(" ".join(references))
        notes.append(f"SSH keys of {', '.join(references)}")
    if args.saved_keys:
        notes.append("SSH keys saved on your profile")
    return keys, notes


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


def read_public_keys(path: Path) -> str:
    """The public keys in `path`; a private key never leaves this machine."""
    path = path.expanduser()
    try:
        if path.stat().st_size > MAX_KEY_FILE:
            raise UsageError(f"{path} is too large to be a public key file")
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    if "PRIVATE KEY" in text:
        raise UsageError(f"{path} is a private key; give the public one ({path}.pub)")
    return text.strip()


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


# --- SSH builders --------------------------------------------------------------------------


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
        print(
            f"\ncoprssh: stopped waiting; SSH builder #{ident} keeps its place "
            f"(`coprssh ssh {args.build}` waits again, `coprssh release {ident}` gives it up).",
            file=sys.stderr,
            flush=True,
        )
        return EXIT_INTERRUPTED
    argv = sshlib.ssh_argv(builder, args.extra)
    where = f" for {builder['chroot']}" if builder.get("chroot") else ""
    note(
        f"SSH builder #{ident}{where} of build #{args.build} is ready until {sshlib.expiry(builder.get('expires_at'))}."
    )
    if builder.get("host_key_fingerprint"):
        note(
            f"Its host key is {builder['host_key_fingerprint']}: if ssh asks whether to trust the host, "
            "check that it shows this fingerprint (or paste it at ssh's prompt)."
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


def note(text: str) -> None:
    print(f"coprssh: {printable(text)}", file=sys.stderr, flush=True)


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


# --- the parser --------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    # --json is accepted before or after the command; SUPPRESS keeps a later default from
    # undoing an earlier flag.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    parser = argparse.ArgumentParser(
        prog="coprssh",
        description="Build packages on a coprssh server, follow their logs, and debug them over SSH.",
        epilog=(
            "configuration: --config PATH, $COPRSSH_CONFIG or ~/.config/coprssh/config.ini "
            "(written by `coprssh login`); COPRSSH_URL and COPRSSH_TOKEN override it. "
            "exit codes: 0 ok, 1 watched build failed or canceled, 2 refused (usage, config, 4xx), "
            "3 server unreachable or failing, 130 interrupted."
        ),
    )
    parser.add_argument("--config", metavar="PATH", help="config file (default ~/.config/coprssh/config.ini)")
    parser.add_argument("--json", action="store_true", help="print the API's JSON instead of text")
    parser.add_argument("--version", action="version", version=f"coprssh {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(
        name: str, handler: Callable[[Context], int], text: str, **kwargs: Any
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, parents=[common], help=text, description=text, **kwargs)
        sub.set_defaults(handler=handler)
        return sub

    login = command("login", cmd_login, "save the server URL and your API token", aliases=["configure"])
    login.add_argument("--url", help="the server, e.g. https://coprssh.example.org")
    login.add_argument("--token", help="your API token (from your profile page; asked for when omitted)")
    login.add_argument("--no-verify", action="store_true", help="save without asking the server")

    command("whoami", cmd_whoami, "show who the token belongs to")

    create = command("create-project", cmd_create_project, "create a project of yours")
    create.add_argument("name", metavar="NAME")
    create.add_argument(
        "--chroot",
        dest="chroots",
        action="append",
        required=True,
        metavar="CHROOT",
        help="a chroot to build for, e.g. fedora-rawhide-x86_64 (repeat for more)",
    )
    create.add_argument("--description", default="", help="what the project is for")

    projects = command("list-projects", cmd_list_projects, "list projects")
    projects.add_argument("--owner", help="only this user's projects")
    projects.add_argument("--limit", type=int, default=100, help="at most this many (0: all; default 100)")

    build = command("build", cmd_build, "submit a build; prints its id on the last line")
    build.add_argument("project", metavar="PROJECT", help="OWNER/NAME, or NAME for one of yours")
    build.add_argument("file", metavar="FILE", nargs="?", help="a .spec or .src.rpm to upload")
    build.add_argument("--scm", metavar="CLONE_URL", help="build from a public git repository")
    build.add_argument("--committish", metavar="REF", help="branch, tag or commit (with --scm)")
    build.add_argument("--spec", metavar="PATH", help="the spec file's path in the repository (with --scm)")
    build.add_argument("--url", metavar="URL", help="build a .src.rpm from this public URL")
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
    resubmit.add_argument("--ssh", action="store_true", help="run it on a builder you can log in to as root")
    resubmit.add_argument(
        "--key",
        "--ssh-key-file",
        dest="ssh_key_files",
        action="append",
        metavar="FILE",
        help="a public key file such as ~/.ssh/id_ed25519.pub (repeat for more)",
    )
    resubmit.add_argument(
        "--github",
        action="append",
        type=account_of("GitHub"),
        metavar="USER",
        help="the public keys of this GitHub account (repeat for more)",
    )
    resubmit.add_argument(
        "--fas",
        action="append",
        type=account_of("FAS"),
        metavar="USER",
        help="the public keys of this Fedora account (repeat for more)",
    )
    resubmit.add_argument("--saved-keys", action="store_true", help="the keys saved on your profile")
    resubmit.add_argument(
        "--ssh-key",
        dest="ssh_keys",
        action="append",
        metavar="KEY",
        help="a public key line, or GitHub:USER / FAS:USER (repeat for more)",
    )
    add_watch_options(resubmit)

    listing = command("list-builds", cmd_list_builds, "list a project's builds, newest first")
    listing.add_argument("project", metavar="PROJECT", help="OWNER/NAME, or NAME for one of yours")
    listing.add_argument("--limit", type=int, default=50, help="at most this many (0: all; default 50)")

    ssh = command(
        "ssh",
        cmd_ssh,
        "log in to the SSH builder of a build, waiting until it is ready",
        usage="%(prog)s [-h] [--chroot CHROOT] [--timeout DURATION] [--print] BUILD [-- SSH_ARGS...]",
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
    return parser


def add_builder_target(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "target",
        nargs="?",
        metavar="ID",
        help="the SSH builder's ID (see `coprssh ssh-builders`), or build:N for build N's",
    )
    parser.add_argument("--build", type=build_id, metavar="BUILD", help="the SSH builder of this build")
    parser.add_argument("--chroot", metavar="CHROOT", help="with --build: the builder of this chroot")


def add_watch_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--chroot",
        dest="chroots",
        action="append",
        metavar="CHROOT",
        help="build only for this chroot (repeat for more; default: all of them)",
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


# --- entry point -------------------------------------------------------------------------


def main(argv: list[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = None
    # `coprssh ssh BUILD -- ARGS`: what follows `--` is ssh's, whatever it looks like.
    # (argparse of Python < 3.12 mishandles `--` after a subcommand.)
    if "--" in argv and "ssh" in argv[: argv.index("--")]:
        split = argv.index("--")
        argv, extra = argv[:split], argv[split + 1 :]
    args = build_parser().parse_args(argv)
    if extra is not None:
        args.extra = extra
    ctx = Context(args, os.environ if environ is None else environ)
    try:
        return args.handler(ctx)
    except config.ConfigError as exc:
        error(str(exc))
        return EXIT_REFUSED
    except ApiError as exc:
        for message in exc.messages:
            error(message)
        if exc.status == 401:
            error(login_hint(ctx))
        return exc.exit_code
    except ClientError as exc:
        error(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        print("\ncoprssh: interrupted", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`coprssh list-builds … | head`): say nothing more.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


def login_hint(ctx: Context) -> str:
    url = ctx._client.base if ctx._client else "the server"
    if ctx._client is not None and ctx._client.has_token:
        return f"authentication failed: the API token was refused; get a new one on {url}/accounts/profile/"
    return (
        "authentication needed: no API token; run `coprssh login --url URL --token TOKEN` "
        f"or set COPRSSH_TOKEN (your token is on {url}/accounts/profile/)"
    )
