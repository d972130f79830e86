"""Where the client finds its server and token: a small INI file, overridden by the environment.

    [coprssh]
    url = https://coprssh.example.org
    token = 0123abcd...

The file is `$COPRSSH_CONFIG`, or `--config PATH`, or `~/.config/coprssh/config.ini`
(`$XDG_CONFIG_HOME/coprssh/config.ini` when that is set). `COPRSSH_URL` and `COPRSSH_TOKEN`
win over the file. The token is a secret: the file is written with mode 0600, and nothing
here ever prints it.
"""

from __future__ import annotations

import configparser
import os
import stat
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

SECTION = "coprssh"


class ConfigError(Exception):
    """The configuration is missing or unusable; the message says what to do."""


@dataclass(frozen=True)
class Config:
    """The server to talk to and the caller's API token ("" when there is none)."""

    url: str
    token: str = field(default="", repr=False)
    path: Path | None = None


def default_path(environ: Mapping[str, str]) -> Path:
    base = environ.get("XDG_CONFIG_HOME") or str(Path(environ.get("HOME") or Path.home()) / ".config")
    return Path(base) / "coprssh" / "config.ini"


def config_path(explicit: str | None, environ: Mapping[str, str]) -> Path:
    """The config file: `--config`, then `$COPRSSH_CONFIG`, then the default."""
    chosen = explicit or environ.get("COPRSSH_CONFIG")
    return Path(chosen).expanduser() if chosen else default_path(environ)


def normalize_url(url: str) -> str:
    """`url` as the base of the service (`https://host[:port][/prefix]`), without a final slash.

    A URL copied from the browser's API page (`…/api/v1/`) is accepted too.
    """
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"the server URL must start with http:// or https://, not {url!r}")
    if parts.username or parts.password:
        raise ConfigError("the server URL must not contain a user name or password; use a token")
    path = parts.path.rstrip("/")
    if path.endswith("/api/v1"):
        path = path[: -len("/api/v1")]
    return f"{parts.scheme}://{parts.netloc}{path}"


def _read_file(path: Path) -> dict[str, str]:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with open(path, encoding="utf-8") as handle:
            parser.read_file(handle)
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    except configparser.Error as exc:
        raise ConfigError(f"{path} is not a valid config file: {exc.message}") from None
    if not parser.has_section(SECTION):
        raise ConfigError(f"{path} has no [{SECTION}] section")
    _warn_if_readable_by_others(path)
    return dict(parser.items(SECTION))


def _warn_if_readable_by_others(path: Path) -> None:
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        print(
            f"coprssh: warning: {path} holds your API token and others may read it; run: chmod 600 {path}",
            file=sys.stderr,
        )


def load(path: Path, environ: Mapping[str, str]) -> Config:
    """The configuration from `path` and the environment; an error when no server is known."""
    values = _read_file(path)
    url = environ.get("COPRSSH_URL") or values.get("url", "")
    token = environ.get("COPRSSH_TOKEN") or values.get("token", "")
    if not url:
        where = f"{path} does not exist" if not path.exists() else f"{path} has no url"
        raise ConfigError(
            f"no server configured ({where}): run `coprssh login --url URL --token TOKEN`, "
            "or set COPRSSH_URL and COPRSSH_TOKEN"
        )
    return Config(url=normalize_url(url), token=token.strip(), path=path)


def saved_url(path: Path) -> str:
    """The url of an existing config file, or "" (a new token for the same server needs no --url)."""
    try:
        return _read_file(path).get("url", "")
    except ConfigError:
        return ""


def save(path: Path, *, url: str, token: str) -> None:
    """Write url and token to `path` (mode 0600, in a 0700 directory), keeping its other settings."""
    parser = configparser.ConfigParser(interpolation=None)
    if path.exists():
        try:
            parser.read(path, encoding="utf-8")
        except configparser.Error:
            parser = configparser.ConfigParser(interpolation=None)  # replaced as a whole below
    if not parser.has_section(SECTION):
        parser.add_section(SECTION)
    parser.set(SECTION, "url", url)
    parser.set(SECTION, "token", token)
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # mkstemp creates the file 0600 from the start: the token is never readable by others,
        # not even for a moment; the rename makes the new file appear whole.
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".config-", suffix=".part")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                parser.write(handle)
            os.chmod(temporary, 0o600)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None
