"""`login` and `whoami`: the server, the token, and whom it belongs to."""

from __future__ import annotations

import getpass
import sys

from coprssh_cli import config
from coprssh_cli.client import Client
from coprssh_cli.context import EXIT_OK, AddCommand, Context, UsageError, say


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


def add_commands(command: AddCommand) -> None:
    login = command("login", cmd_login, "save the server URL and your API token", aliases=["configure"])
    login.add_argument("--url", help="the server, e.g. https://coprssh.example.org")
    login.add_argument("--token", help="your API token (from your profile page; asked for when omitted)")
    login.add_argument("--no-verify", action="store_true", help="save without asking the server")

    command("whoami", cmd_whoami, "show who the token belongs to")
