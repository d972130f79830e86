"""Home, health, the site icon and the profile page (API token, e-mail settings and saved keys)."""

from __future__ import annotations

import functools
from pathlib import Path

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.staticfiles import finders
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST, require_safe

from coprssh import limits, services
from coprssh.exceptions import ServiceError
from coprssh.forms import AccountSettingsForm
from coprssh.models import AccountSettings
from coprssh.users import signed_in_user
from keys.forms import SavedKeyForm
from keys.models import SavedKey


def home(request: HttpRequest) -> HttpResponse:
    return render(request, "home.html")


class LoginView(auth_views.LoginView):
    """Django's login page, refusing (429) a user name or address with too many recent failures."""

    def post(self, request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        if limits.login_locked(request, request.POST.get("username", "")):
            # Not even checked: a right password must not tell a guesser that it was right.
            messages.error(request, limits.login_locked_message())
            form = self.get_form_class()(request, initial={"username": request.POST.get("username", "")})
            return self.render_to_response(self.get_context_data(form=form), status=429)
        return super().post(request, *args, **kwargs)


@require_GET
def healthz(request: HttpRequest) -> HttpResponse:
    """Liveness for load balancers: the process answers and the database responds."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})


FAVICON = "coprssh/favicon.svg"


@require_safe
def favicon(request: HttpRequest) -> HttpResponse:
    """/favicon.ico: browsers ask for it on pages that name no icon (a log file, JSON); the site's icon."""
    return HttpResponse(
        _favicon(), content_type="image/svg+xml", headers={"Cache-Control": "public, max-age=86400"}
    )


@functools.cache
def _favicon() -> bytes:
    # Read through the finders, from the source tree: this works whether or not the web server
    # in front serves STATIC_URL, and without collectstatic.
    found = finders.find(FAVICON)
    assert isinstance(found, str), f"{FAVICON} is missing from the static files"
    return Path(found).read_bytes()


@login_required
def profile(request: HttpRequest) -> HttpResponse:
    return profile_page(request)


def _settings_form(request: HttpRequest) -> AccountSettingsForm:
    user = signed_in_user(request)
    prefs = AccountSettings.of(user)
    return AccountSettingsForm(
        initial={
            "email": user.email,
            "email_ssh_builders": prefs.email_ssh_builders,
            "time_zone": prefs.time_zone,
        }
    )


def profile_page(
    request: HttpRequest,
    *,
    settings_form: AccountSettingsForm | None = None,
    key_form: SavedKeyForm | None = None,
    status: int = 200,
) -> HttpResponse:
    """The whole profile page; a form refused by a POST is given back with its errors (status 400)."""
    user = signed_in_user(request)
    token = services.get_api_token(user=user)
    return render(
        request,
        "profile.html",
        {
            "token": token,
            "saved_keys": SavedKey.objects.filter(user=user),
            "key_form": key_form or SavedKeyForm(),
            "settings_form": settings_form or _settings_form(request),
            "public_url": settings.COPRSSH_PUBLIC_URL,
        },
        status=status,
    )


@login_required
@require_POST
def account_settings(request: HttpRequest) -> HttpResponse:
    form = AccountSettingsForm(request.POST)
    if form.is_valid():
        try:
            services.save_account_settings(user=signed_in_user(request), **form.cleaned_data)
        except ServiceError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        else:
            messages.success(request, "Your e-mail settings were saved.")
            return redirect("profile")
    return profile_page(request, settings_form=form, status=400)


@login_required
@require_POST
def regenerate_token(request: HttpRequest) -> HttpResponse:
    services.regenerate_api_token(user=signed_in_user(request))
    messages.success(request, "A new API token was created; the old one no longer works.")
    return redirect("profile")
