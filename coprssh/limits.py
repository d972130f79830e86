"""Rate limits and size limits: API throttles, the key checker's lookups, failed logins, request bodies.

Counters live in Django's cache (CACHES): per process with the default local-memory cache,
shared by every process with REDIS_URL, which a deployment with several workers should set.
Rates are read from settings on each request, so an operator's value (and a test's) holds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse, JsonResponse
from rest_framework.request import Request
from rest_framework.throttling import AnonRateThrottle, BaseThrottle, SimpleRateThrottle, UserRateThrottle

# --- the API ----------------------------------------------------------------------------------


class _RateFromSettings:
    setting = ""

    def get_rate(self) -> str | None:
        return getattr(settings, self.setting) or None  # "" turns the throttle off


class AnonThrottle(_RateFromSettings, AnonRateThrottle):
    """Anonymous API requests, per client address (COPRSSH_API_RATE_ANON)."""

    setting = "COPRSSH_API_RATE_ANON"


class UserThrottle(_RateFromSettings, UserRateThrottle):
    """Signed-in API requests, per user (COPRSSH_API_RATE_USER)."""

    setting = "COPRSSH_API_RATE_USER"


class KeyCheckThrottle(_RateFromSettings, UserRateThrottle):
    """Requests to /api/v1/keys/check/, per user (COPRSSH_API_RATE_KEYS_CHECK)."""

    scope = "keys_check"
    setting = "COPRSSH_API_RATE_KEYS_CHECK"


class KeyReferenceThrottle(_RateFromSettings, SimpleRateThrottle):
    """New GitHub/FAS names one user makes the service look up (COPRSSH_API_RATE_KEY_REFERENCES).

    Each name not in the cache is a request to GitHub or FAS, counted against the service's
    one shared allowance there; the view asks once per such name.
    """

    scope = "key_references"
    setting = "COPRSSH_API_RATE_KEY_REFERENCES"

    def get_cache_key(self, request: Any, view: Any) -> str:
        return self.cache_format % {"scope": self.scope, "ident": request.user.pk}


def client_address(request: HttpRequest) -> str:
    """The client's address, through COPRSSH_TRUSTED_PROXIES proxies (as the API throttles see it)."""
    return BaseThrottle().get_ident(Request(request))


# --- failed logins ------------------------------------------------------------------------------


def _login_keys(request: HttpRequest | None, username: str) -> list[str]:
    # Hashed: user names and addresses are any text, cache keys are not.
    keys = ["name:" + username.strip().casefold()]
    if request is not None:
        keys.append("addr:" + client_address(request))
    return ["login-failures:" + hashlib.sha256(key.encode()).hexdigest() for key in keys]


def login_locked(request: HttpRequest | None, username: str) -> bool:
    """Whether this user name, or this client address, has failed too often in the window."""
    limit = settings.COPRSSH_LOGIN_FAILURES
    return any((cache.get(key) or 0) >= limit for key in _login_keys(request, username))


def login_locked_message() -> str:
    minutes = max(1, round(settings.COPRSSH_LOGIN_WINDOW / 60))
    return (
        "Too many failed logins for this user name or from your address. "
        f"Wait {minutes} minute{'s' if minutes != 1 else ''} and try again."
    )


@receiver(user_login_failed, dispatch_uid="coprssh-login-failed")
def _count_failure(
    sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **_: Any
) -> None:
    for key in _login_keys(request, str(credentials.get("username") or "")):
        # A window from the first failure: add() starts it, incr() keeps its expiry.
        cache.add(key, 0, settings.COPRSSH_LOGIN_WINDOW)
        try:
            cache.incr(key)
        except ValueError:  # expired between the two calls
            cache.set(key, 1, settings.COPRSSH_LOGIN_WINDOW)


@receiver(user_logged_in, dispatch_uid="coprssh-logged-in")
def _forget_failures(sender: Any, request: HttpRequest | None, user: Any, **_: Any) -> None:
    # The password was right: the name's count starts again (the address's stays).
    cache.delete(_login_keys(None, user.get_username())[0])


class LoginLimitBackend:
    """First of AUTHENTICATION_BACKENDS: refuses every login attempt while its name or address is locked.

    It covers every login form (the site's and the admin's); the site's login page also says why.
    """

    def authenticate(self, request: HttpRequest | None, username: str | None = None, **kwargs: Any) -> None:
        if username is not None and login_locked(request, username):
            raise PermissionDenied(login_locked_message())
        return None

    # No get_user(): sessions stay with the backend that let the user in (and force_login
    # in tests picks that one).


# --- request bodies -------------------------------------------------------------------------------


class RequestSizeLimitMiddleware:
    """Refuse a body larger than the largest upload (plus the form's fields) before reading any of it.

    Django spools uploads to a temporary file as it reads them; without this a request of any
    size is read and stored whole before a view can look at its size. WSGI bodies are read up
    to CONTENT_LENGTH only, so checking it is enough.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit = settings.COPRSSH_MAX_SRPM_BYTES + settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length <= limit:
            return self.get_response(request)
        message = (
            f"The request is too large ({length} bytes): an uploaded file may have at most "
            f"{settings.COPRSSH_MAX_SRPM_BYTES} bytes."
        )
        if request.path.startswith("/api_3/"):  # Copr's clients read only {"error": …}
            return JsonResponse({"error": message}, status=413)
        if request.path.startswith("/api/"):
            return JsonResponse({"detail": message, "code": "too_large"}, status=413)
        return HttpResponse(message + "\n", status=413, content_type="text/plain; charset=utf-8")
