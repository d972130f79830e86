"""Calls to the coprssh service with the lease token, and reading its answers."""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from datetime import datetime
from typing import Any

from .failures import REFUSED, TIMEOUT, Failure, Unreachable, reason
from .lease import Lease
from .times import parse_time

MAX_ANSWER = 1024 * 1024
ENDED = "this lease has ended or the token is not valid"


class NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect would carry the token to wherever it points; stop and report it instead."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


OPENER = urllib.request.build_opener(NoRedirects())


def call(lease: Lease, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    """One API call: (HTTP status, decoded JSON or None). Raises Unreachable when nothing answers."""
    url = f"{lease.api_url}/api/v1/{path}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Authorization", f"LeaseToken {lease.token}")
    request.add_header("Accept", "application/json")
    request.add_header("User-Agent", "copr-builder/1")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        try:
            with OPENER.open(request, timeout=TIMEOUT) as response:
                status, raw = response.status, response.read(MAX_ANSWER)
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read(MAX_ANSWER)
            if 300 <= status < 400:
                target = exc.headers.get("Location", "elsewhere")
                raise Failure(
                    f"the coprssh service at {lease.api_url} redirected to {target}; "
                    "the api_url in the lease file may be wrong."
                ) from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        raise Unreachable(f"cannot reach the coprssh service at {lease.api_url}: {reason(exc)}") from None
    try:
        return status, json.loads(raw.decode("utf-8"))
    except ValueError:
        return status, None


def detail(answer: Any) -> str:
    """The service's message: DRF's `detail`, else the first field message."""
    if isinstance(answer, dict):
        said = answer.get("detail")
        if isinstance(said, str):
            return said
        for value in answer.values():
            if isinstance(value, list) and value and isinstance(value[0], str):
                return value[0]
    return ""


def unexpected(lease: Lease, status: int, answer: Any) -> Failure:
    said = detail(answer)
    return Failure(
        f"unexpected answer from the coprssh service at {lease.api_url}: HTTP {status}"
        + (f" ({said})" if said else "")
    )


def ended(answer: Any) -> Failure:
    said = detail(answer)
    return Failure(ENDED + (f" (the service says: {said})" if said else "") + ".", REFUSED)


def answered_time(lease: Lease, answer: Any, key: str) -> datetime:
    value = answer.get(key) if isinstance(answer, dict) else None
    try:
        return parse_time(value)
    except ValueError:
        raise Failure(
            f"unexpected answer from the coprssh service at {lease.api_url}: no valid {key}"
        ) from None


def answered_cap(lease: Lease, answer: Any) -> datetime | None:
    """The cap from the answer, else the one saved on this machine."""
    if isinstance(answer, dict) and answer.get("max_expires_at") is not None:
        return answered_time(lease, answer, "max_expires_at")
    return lease.max_expires_at
