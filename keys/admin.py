from django.contrib import admin

from keys.models import SavedKey


@admin.register(SavedKey)
class SavedKeyAdmin(admin.ModelAdmin):
    """Saved keys are the users' own: operators can look and delete, not edit."""

    list_display = ["title", "user", "key_type", "bits", "fingerprint", "created"]
    list_filter = ["key_type"]
    search_fields = ["title", "fingerprint", "user__username"]
    raw_id_fields = ["user"]
    readonly_fields = ["user", "title", "key_type", "bits", "data", "fingerprint", "created"]

    def has_add_permission(self, request) -> bool:
        return False
