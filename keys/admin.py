from __future__ import annotations

from collections.abc import Callable

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from coprssh.users import signed_in_user
from keys import services
from keys.models import SavedKey


@admin.register(SavedKey)
class SavedKeyAdmin(admin.ModelAdmin[SavedKey]):
    """Saved keys are the users' own: operators can look and delete, not edit.

    Both ways to delete (the change page's Delete and the bulk action, each after Django's
    confirmation page) end in keys.services.remove_saved_keys, which logs who deleted what.
    """

    list_display = ["title", "user", "key_type", "bits", "fingerprint", "created"]
    list_filter = ["key_type"]
    search_fields = ["title", "fingerprint", "user__username"]
    raw_id_fields = ["user"]
    readonly_fields = ["user", "title", "key_type", "bits", "data", "fingerprint", "created"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def get_actions(self, request: HttpRequest) -> dict[str, tuple[Callable[..., str], str, str] | None]:
        actions = super().get_actions(request)
        # Django's own action (it checks the delete permission and asks to confirm) under our
        # name; its confirmation posts back "delete_selected", so the name must stay.
        delete_selected = actions.get("delete_selected")
        if delete_selected is not None:
            func, name, _ = delete_selected
            actions["delete_selected"] = (func, name, "Delete selected keys")
        return actions

    def delete_model(self, request: HttpRequest, obj: SavedKey) -> None:
        _remove(request, [obj.pk])

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[SavedKey]) -> None:
        _remove(request, list(queryset.values_list("pk", flat=True)))


def _remove(request: HttpRequest, key_ids: list[int]) -> None:
    services.remove_saved_keys(
        key_ids=key_ids, operator=signed_in_user(request), remote_addr=request.META.get("REMOTE_ADDR")
    )
