"""What goes wrong, told as a message and an exit code instead of a traceback."""

from __future__ import annotations

import socket
import urllib.error

TIMEOUT = 15  # seconds for each call to the service

OK, REFUSED, BROKEN = 0, 1, 2


class Failure(Exception):
    """Something to tell the user instead of a traceback, and the exit code that goes with it."""

    def __init__(self, message: str, code: int = BROKEN) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class Unreachable(Failure):
    """The service did not answer at all."""


def reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        return reason(exc.reason) if isinstance(exc.reason, BaseException) else str(exc.reason)
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return f"no answer within {TIMEOUT} s"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[0].lower() + exc.strerror[1:]
    return str(exc) or type(exc).__name__
