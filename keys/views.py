"""Saved keys on the profile: add and delete (the list is on the profile page)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from coprssh.exceptions import NotFoundError, ServiceError
from coprssh.users import signed_in_user
from coprssh.views import profile_page
from keys import services
from keys.forms import SavedKeyForm


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
    # The whole profile again, its other parts included, with the refused key and why.
    return profile_page(request, key_form=form, status=400)


@login_required
@require_POST
def delete_key(request: HttpRequest, key_id: int) -> HttpResponse:
    try:
        saved = services.delete_saved_key(user=signed_in_user(request), key_id=key_id)
    except NotFoundError:
        raise Http404("No such saved key.") from None
    messages.success(request, f"Deleted key “{saved.title}” ({saved.fingerprint}).")
    return redirect("profile")
