"""`coprssh`: submit, follow, cancel and resubmit builds on a coprssh server from the shell.

Exit codes: 0 done (for `watch`: the build succeeded), 1 the watched build failed or was
canceled, 2 refused (bad arguments or configuration, or the server said no: 4xx),
3 the server could not be reached or failed (connection, timeout, 5xx), 130 interrupted.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coprssh_cli import __version__, config
from coprssh_cli.client import EXIT_REFUSED, ApiError, Client, ClientError
from coprssh_cli.output import (
    build_summary,
    chroot_names,
    dump_json,
    printable,
    project_name,
    source_text,
    stamp,
    table,
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


def submitted(ctx: Context, build: dict[str, Any], headline: str) -> int:
    """After build or resubmit: the new build (its id on the last line), or follow it with --watch."""
    if ctx.args.watch:
        if not ctx.json:
            say(f"{headline}.")
        return follow(ctx, int(build["id"]))

    def human() -> None:
        chroots = ", ".join(chroot_names(build.get("chroots")))
        say(f"{headline} ({chroots}): {build.get('state')}.")
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
            f"To debug it on the builder: coprssh resubmit {build}{chroot} --ssh-key-file ~/.ssh/id_ed25519.pub"
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
    keys = list(args.ssh_keys or [])
    for name in args.ssh_key_files or []:
        keys.append(read_public_keys(Path(name)))
    if keys:
        body["ssh_public_keys"] = "\n".join(keys)
    if args.saved_keys:
        body["use_saved_keys"] = True
    build = ctx.client.post(f"builds/{args.build}/resubmit/", body)
    ssh = " with SSH" if build.get("ssh") else ""
    return submitted(ctx, build, f"Resubmitted build #{args.build} as build #{build.get('id')}{ssh}")


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

    resubmit = command("resubmit", cmd_resubmit, "submit a finished build again, optionally with SSH access")
    resubmit.add_argument("build", type=build_id, metavar="BUILD")
    resubmit.add_argument(
        "--ssh-key",
        dest="ssh_keys",
        action="append",
        metavar="KEY",
        help="a public key line, or GitHub:USER / FAS:USER; allows SSH (repeat for more)",
    )
    resubmit.add_argument(
        "--ssh-key-file",
        dest="ssh_key_files",
        action="append",
        metavar="FILE",
        help="a public key file such as ~/.ssh/id_ed25519.pub; allows SSH",
    )
    resubmit.add_argument(
        "--saved-keys", action="store_true", help="allow SSH with the keys saved on your profile"
    )
    add_watch_options(resubmit)

    listing = command("list-builds", cmd_list_builds, "list a project's builds, newest first")
    listing.add_argument("project", metavar="PROJECT", help="OWNER/NAME, or NAME for one of yours")
    listing.add_argument("--limit", type=int, default=50, help="at most this many (0: all; default 50)")
    return parser


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
    args = build_parser().parse_args(argv)
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
