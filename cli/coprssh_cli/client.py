"""A thin client of REST API v1: requests in, parsed JSON or a ClientError out.

Every failure becomes a ClientError whose message is fit to show as it is and whose
`exit_code` is what the command exits with: 2 when the server refused the request
(4xx), 3 when it could not be reached or failed (connection, timeout, 5xx).
"""

from __future__ import annotations

import errno
import socket
import ssl
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO, TypeVar
from urllib.parse import urljoin, urlsplit

import requests

from coprssh_cli import __version__
from coprssh_cli.config import Config

EXIT_REFUSED = 2
EXIT_UNREACHABLE = 3

# (connect, read) seconds; uploads of large SRPMs get a longer read timeout.
TIMEOUT = (10, 60)
UPLOAD_TIMEOUT = (10, 600)
# The largest page the server gives (LimitOffsetPagination's max_limit).
MAX_PAGE = 200

T = TypeVar("T")


class ClientError(Exception):
    """A request that did not succeed; `str()` is the message for the user."""

    exit_code = EXIT_UNREACHABLE


class Unreachable(ClientError):
    """No answer from the server: refused, unknown host, TLS failure, timeout."""


class ApiError(ClientError):
    """The server answered with an error status; `messages` are what it said."""

    def __init__(self, status: int, messages: list[str], data: Any = None) -> None:
        super().__init__("; ".join(messages))
        self.status = status
        self.messages = messages
        self.data = data
        self.exit_code = EXIT_REFUSED if 400 <= status < 500 else EXIT_UNREACHABLE


def error_messages(data: Any, prefix: str = "") -> list[str]:
    """DRF's error JSON as lines: `detail` first, then `field: message` for each field error."""
    if isinstance(data, str):
        return [f"{prefix}{data}"]
    if isinstance(data, list):
        lines: list[str] = []
        for item in data:
            lines += error_messages(item, prefix)
        return lines
    if not isinstance(data, dict):
        return [f"{prefix}{data}"] if data is not None else []
    lines = error_messages(data["detail"], prefix) if "detail" in data else []
    for key, value in data.items():
        if key in ("detail", "code"):
            continue
        label = "" if key in ("non_field_errors", "errors") else f"{key}: "
        for line in error_messages(value, f"{prefix}{label}"):
            # ServiceError repeats its message under its field; say it once.
            if line not in lines and line.removeprefix(f"{prefix}{label}") not in lines:
                lines.append(line)
    return lines


def _reason(exc: BaseException) -> str:
    """What went wrong under a requests.ConnectionError, in a few words."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ConnectionRefusedError):
            return "connection refused"
        if isinstance(current, socket.gaierror):
            return "unknown host"
        if isinstance(current, ssl.SSLError):
            return f"TLS error: {current.reason or current}"
        if isinstance(current, ConnectionResetError):
            return "connection reset by the server"
        if isinstance(current, TimeoutError | socket.timeout):
            return "connection timed out"
        if isinstance(current, OSError) and current.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
            return "network unreachable"
        nested = [getattr(current, "reason", None), current.__cause__, current.__context__, *current.args]
        todo += [item for item in nested if isinstance(item, BaseException)]
    return "connection failed"


class Client:
    """Talks to one coprssh server as one user (or anonymously, without a token)."""

    def __init__(self, config: Config) -> None:
        self.base = config.url
        self.session = requests.Session()
        self.session.headers["User-Agent"] = f"coprssh-cli/{__version__}"
        self.session.headers["Accept"] = "application/json"
        self._token = config.token

    @property
    def has_token(self) -> bool:
        return bool(self._token)

    # --- transport -------------------------------------------------------------------

    def api_url(self, path: str) -> str:
        return f"{self.base}/api/v1/{path.lstrip('/')}"

    def absolute(self, url: str) -> str:
        """A URL from the API (maybe relative to the server) as an absolute one."""
        return urljoin(f"{self.base}/", url)

    def _same_origin(self, url: str) -> bool:
        ours, theirs = urlsplit(self.base), urlsplit(url)
        return (ours.scheme, ours.netloc) == (theirs.scheme, theirs.netloc)

    def _send(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        headers = kwargs.pop("headers", {})
        # The token goes only to the configured server, whatever URL an answer points at.
        if self._token and self._same_origin(url):
            headers["Authorization"] = f"Token {self._token}"
        kwargs.setdefault("timeout", TIMEOUT)
        try:
            return self.session.request(method, url, headers=headers, **kwargs)
        except requests.Timeout:
            raise Unreachable(f"no answer from {self.base} within {kwargs['timeout'][1]} s") from None
        except requests.ConnectionError as exc:
            raise Unreachable(f"cannot reach {self.base}: {_reason(exc)}") from None
        except requests.RequestException as exc:
            raise Unreachable(f"request to {self.base} failed: {exc.__class__.__name__}") from None

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call the API; the parsed JSON answer (None for 204), or an ApiError."""
        url = path if path.startswith(("http://", "https://")) else self.api_url(path)
        response = self._send(method, url, **kwargs)
        if response.status_code >= 400:
            raise self._error(response)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise ApiError(
                502, [f"the server answered {method} {url} with something other than JSON"]
            ) from None

    def _error(self, response: requests.Response) -> ApiError:
        data: Any = None
        if "json" in response.headers.get("Content-Type", ""):
            try:
                data = response.json()
            except ValueError:
                data = None
        messages = error_messages(data) if data is not None else []
        if not messages:
            reason = response.reason or "error"
            where = urlsplit(response.url).path
            messages = [f"HTTP {response.status_code} {reason} ({where})"]
            if response.status_code >= 500:
                messages[0] = f"the server failed: {messages[0]}"
        return ApiError(response.status_code, messages, data)

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params or None)

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return self.request("POST", path, json=body if body is not None else {})

    def post_file(self, path: str, fields: dict[str, Any], name: str, filename: str, handle: BinaryIO) -> Any:
        """A multipart POST: `fields` (lists as repeated fields) plus one file."""
        data = [(key, item) for key, value in fields.items() for item in _as_list(value)]
        files = {name: (filename, handle, "application/octet-stream")}
        return self.request("POST", path, data=data, files=files, timeout=UPLOAD_TIMEOUT)

    def pages(self, path: str, *, limit: int | None = None, **params: Any) -> Iterator[dict[str, Any]]:
        """The items of a list, following `next` across pages (or a plain JSON list)."""
        count = 0
        if limit:
            params.setdefault("limit", min(limit, MAX_PAGE))
        data = self.get(path, **params)
        while True:
            items = data.get("results", []) if isinstance(data, dict) else data
            for item in items:
                if limit is not None and count >= limit:
                    return
                count += 1
                yield item
            following = data.get("next") if isinstance(data, dict) else None
            if not following:
                return
            # Behind a proxy the server may name itself differently: stay on our base URL.
            parts = urlsplit(following)
            data = self.request("GET", f"{self.base}{parts.path}?{parts.query}")

    def read_log(self, url: str, offset: int) -> tuple[bytes, int]:
        """What a raw log holds after byte `offset`, and its new size (`X-Log-Size`)."""
        full = self.absolute(url)
        response = self._send("GET", full, params={"offset": offset}, headers={"Accept": "text/plain"})
        if response.status_code == 404:
            return b"", offset  # no such phase yet
        if response.status_code >= 400:
            raise self._error(response)
        data = response.content
        try:
            size = int(response.headers["X-Log-Size"])
        except (KeyError, ValueError):
            size = offset + len(data)
        return data, size

    # --- the API -----------------------------------------------------------------------

    def whoami(self) -> str | None:
        """The user the token belongs to (None without a token); a 401 for a bad token."""
        return self.get("").get("user")


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


class Patience:
    """A polling loop's tolerance of outages: the server may be unreachable `limit` times in a row."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.failures = 0

    def attempt(self, step: Callable[[], T], say: Callable[[str], None]) -> T | None:
        """`step()`, or None after an outage to wait out (told through `say`); other errors are raised."""
        try:
            result = step()
        except ClientError as exc:
            self.failures += 1
            # A refusal (the object is gone, the token revoked) will not heal by waiting.
            if exc.exit_code != EXIT_UNREACHABLE or self.failures >= self.limit:
                raise
            say(f"{exc}; trying again")
            return None
        self.failures = 0
        return result
