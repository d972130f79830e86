"""HTTP Basic `login:token`, as copr-cli and python-copr send it on every write.

`login` is the user name and `token` the user's API token (the one on the profile page, which
API v1 takes as `Authorization: Token …`). A refusal is a 403, which the client reports as its
authentication error; no `WWW-Authenticate` challenge is sent, so browsers do not prompt.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from django.utils.crypto import constant_time_compare
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.authtoken.models import Token
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

REFUSED = (
    "Login invalid or expired: copy login, username and token from your profile page on coprssh "
    "into the [copr-cli] section of ~/.config/copr."
)


class CoprTokenAuthentication(BaseAuthentication):
    """`Authorization: Basic base64(login:token)`; no header means an anonymous read."""

    def authenticate(self, request: Request) -> tuple[Any, Token] | None:
        header = get_authorization_header(request)
        if not header:
            return None
        scheme, _, encoded = header.partition(b" ")
        if scheme.lower() != b"basic":
            raise AuthenticationFailed(REFUSED)
        try:
            login, sep, key = base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise AuthenticationFailed(REFUSED) from None
        if not sep or not login or not key:
            raise AuthenticationFailed(REFUSED)
        token = (
            Token.objects.select_related("user").filter(user__username=login, user__is_active=True).first()
        )
        # Compared in constant time whether or not the user exists.
        if not constant_time_compare(token.key if token else "-", key) or token is None:
            raise AuthenticationFailed(REFUSED)
        return token.user, token

    def authenticate_header(self, request: Request) -> None:
        return None  # 403, not 401: the client retries a 401 and then reports a generic error
