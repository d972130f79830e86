"""What every command shares: exit codes, the command context, output helpers and argument types."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from coprssh_cli import config
from coprssh_cli import ssh as sshlib
from coprssh_cli.client import EXIT_REFUSED, Client, ClientError
from coprssh_cli.output import dump_json, printable

EXIT_OK = 0
EXIT_BUILD_FAILED = 1
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141


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


class AddCommand(Protocol):
    """Registers one subcommand with its handler and help text; each command group gets one."""

    def __call__(
        self, name: str, handler: Callable[[Context], int], text: str, **kwargs: Any
    ) -> argparse.ArgumentParser: ...


def say(text: str = "") -> None:
    print(printable(text), flush=True)


def note(text: str) -> None:
    print(f"coprssh: {printable(text)}", file=sys.stderr, flush=True)


def error(text: str) -> None:
    print(f"coprssh: error: {printable(text)}", file=sys.stderr, flush=True)


def interrupted(text: str) -> int:
    """After Ctrl-C: end the line the terminal echoed ^C on, say `text`, and exit 130."""
    print(file=sys.stderr)
    note(text)
    return EXIT_INTERRUPTED


# --- argument types ----------------------------------------------------------------------


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
