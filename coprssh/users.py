"""The signed-in user of a request, as the services expect it."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from rest_framework.request import Request


def signed_in_user(request: HttpRequest | Request) -> User:
    """The request's user; views behind login_required or IsAuthenticated never see an anonymous one."""
    user = request.user
    if not isinstance(user, User):
        # Only a view that forgot its login check gets here: refuse rather than act for nobody.
        raise PermissionDenied("Sign in first.")
    return user
