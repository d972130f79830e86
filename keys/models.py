"""Keys a user keeps on their profile, to deploy to SSH builders without pasting them."""

from __future__ import annotations

import base64

from django.conf import settings
from django.db import models

from keys.parser import PublicKey


class SavedKey(models.Model):
    """A validated public key saved by a user; stored only in canonical form."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="saved_keys")
    title = models.CharField(max_length=100)
    key_type = models.CharField(max_length=64)
    bits = models.PositiveIntegerField()
    # The decoded-and-re-encoded blob; never the text the user pasted.
    data = models.TextField()
    fingerprint = models.CharField(max_length=64)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "fingerprint"],
                name="keys_savedkey_unique_per_user",
                violation_error_message="You have already saved this key.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.title} ({self.fingerprint})"

    @property
    def public_key(self) -> str:
        """Canonical line `type base64 title`."""
        return self.as_key().line

    def as_key(self) -> PublicKey:
        return PublicKey(self.key_type, base64.b64decode(self.data), self.bits).with_comment(self.title)

    @property
    def label(self) -> str:
        return self.as_key().label
