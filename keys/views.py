"""Saved keys on the profile: add and delete (the list is on the profile page)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from coprssh.exceptions import NotFoundError, ServiceError
from coprssh.services import get_api_token
from coprssh.users import signed_in_user
from keys import services
from keys.forms import SavedKeyForm
from keys.models import SavedKey


@login_required
@require_POST
def add_key(request: HttpRequest) -> HttpResponse:
    user = signed_in_user(request)
    form = SavedKeyForm(request.POST)
    if form.is_valid():
        try:
            saved = services.add_saved_key(
                user=user,
                title=form.cleaned_data["title"],
                public_key=form.cleaned_data["public_key"],
            )
        except ServiceError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        else:
            messages.success(request, f"Saved key “{saved.title}” ({saved.fingerprint}).")
            return redirect("profile")
    response = render(
        request,
        "profile.html",
        {
            "token": get_api_token(user=user),
            "saved_keys": SavedKey.objects.filter(user=user),
            "key_form": form,
        },
    )
    response.status_code = 400
    return response


@login_required
@require_POST
def delete_key(request: HttpRequest, key_id: int) -> HttpResponse:
    try:
        saved = services.delete_saved_key(user=signed_in_user(request), key_id=key_id)
    except NotFoundError:
        raise Http404("No such saved key.") from None
    messages.success(request, f"Deleted key “{saved.title}” ({saved.fingerprint}).")
    return redirect("profile")
