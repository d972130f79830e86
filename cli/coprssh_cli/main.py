"""`coprssh`: submit, follow, cancel and resubmit builds on a coprssh server from the shell,
and log in to, prolong and release the SSH builders of builds resubmitted with SSH.

Exit codes: 0 done (for `watch`: the build succeeded), 1 the watched build failed or was
canceled, or the SSH builder never became ready (`ssh`), 2 refused (bad arguments or
configuration, or the server said no: 4xx), 3 the server could not be reached or failed
(connection, timeout, 5xx), 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any

from coprssh_cli import __version__, config
from coprssh_cli.client import EXIT_REFUSED, ApiError, ClientError
from coprssh_cli.commands import account, builders, builds, projects
from coprssh_cli.context import EXIT_BROKEN_PIPE, AddCommand, Context, error, interrupted

# The command groups in the order `coprssh --help` lists them.
GROUPS = (account, projects, builds, builders)


# --- the parser --------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = top_parser()
    command = command_adder(parser)
    for group in GROUPS:
        group.add_commands(command)
    return parser


def top_parser() -> argparse.ArgumentParser:
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
    return parser


def command_adder(parser: argparse.ArgumentParser) -> AddCommand:
    """A function that adds a subcommand to `parser`, taking --json as the top parser does."""
    # --json is accepted before or after the command; SUPPRESS keeps a later default from
    # undoing an earlier flag.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(
        name: str, handler: Callable[[Context], int], text: str, **kwargs: Any
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, parents=[common], help=text, description=text, **kwargs)
        sub.set_defaults(handler=handler)
        return sub

    return command


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
        return interrupted("interrupted")
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
