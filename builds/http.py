"""The requests of views that only logged-in users reach, typed as such.

A view behind `login_required`, or an API method behind `IsAuthenticated` (API v1's default,
and every write of /api_3/), is only ever called with a user who logged in; annotating its
request with one of these lets the type checker know `request.user` is a User.
"""

from __future__ import annotations

from django.contrib.auth.models import User
from django.http import HttpRequest
from rest_framework.request import Request


class AuthenticatedHttpRequest(HttpRequest):
    user: User


class AuthenticatedRequest(Request):
    user: User
