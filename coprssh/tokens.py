"""`Authorization: <Keyword> <token>` schemes for tokens that speak for one object only.

The lease token (copr-builder) and the phase token (the build agent) are read the same way;
each scheme says what its token is called and how it finds the object it speaks for.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.request import Request


class ScopedTokenAuthentication(authentication.BaseAuthentication):
    """Reads `Authorization: <keyword> <token>`; other schemes are left to other classes."""

    keyword = ""
    what = "token"  # how messages name it: "lease token", "phase token"
    refused = "The token is not valid."

    def resolve(self, token: str) -> tuple[Any, Any] | None:
        """(user, auth) for a valid token, or None."""
        raise NotImplementedError

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].decode("latin-1") != self.keyword:
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed(f"Give the {self.what} after {self.keyword}.")
        try:
            token = header[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed(f"The {self.what} is not valid.") from None
        found = self.resolve(token)
        if found is None:
            raise exceptions.AuthenticationFailed(self.refused)
        return found

    def authenticate_header(self, request: Request) -> str:
        return self.keyword


class ScopedTokenScheme(OpenApiAuthenticationExtension):
    """The OpenAPI security scheme of one ScopedTokenAuthentication (subclasses name it in target_class)."""

    keyword = ""

    def get_security_definition(self, auto_schema: object) -> dict[str, str]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": f"{self.keyword} <token>",
        }
