"""The command line: parse the arguments, load the lease, run one command, exit with its code."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TextIO

from .commands import COMMANDS, MAX_HOURS, hours_arg
from .failures import OK, Failure
from .lease import Lease, lease_path


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="copr-builder",
        description="Your lease on this coprssh builder: see it, prolong it, release it.",
    )
    commands = top.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("help", help="what this machine is, the rules, how to rerun the build")
    commands.add_parser("show", help="build, chroot, owner and expiry, as the service sees them now")
    prolong = commands.add_parser("prolong", help="add hours to the expiry")
    prolong.add_argument(
        "--hours", type=hours_arg, default=1, metavar="N", help=f"hours to add, 1 to {MAX_HOURS} (default 1)"
    )
    release = commands.add_parser("release", help="end the lease now; the builder is deleted")
    release.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    return top


class Redacting:
    """An output stream that never shows the token, whatever the service puts in its answers."""

    def __init__(self, stream: TextIO, token: str) -> None:
        self.stream = stream
        self.token = token

    def write(self, text: str) -> int:
        return self.stream.write(text.replace(self.token, "[lease token]"))

    def flush(self) -> None:
        self.stream.flush()


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    command = COMMANDS[args.command or "help"]
    try:
        lease = Lease.load(lease_path())
        sys.stdout = Redacting(sys.stdout, lease.token)
        sys.stderr = Redacting(sys.stderr, lease.token)
        return command(lease, args)
    except Failure as failure:
        print(f"copr-builder: {failure.message}", file=sys.stderr)
        return failure.code
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`copr-builder help | head`); say nothing more on the closed pipe.
        if sys.__stdout__ is not None:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.__stdout__.fileno())
        return OK


def run() -> None:
    """The archive's entry point: exit with main's code."""
    sys.exit(main())
