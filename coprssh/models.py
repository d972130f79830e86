"""Account preferences that belong to no single app."""

from __future__ import annotations

import zoneinfo
from functools import cache

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import models


@cache
def time_zones() -> frozenset[str]:
    """The IANA time zone names this machine knows (Europe/Prague, UTC, …)."""
    return frozenset(zoneinfo.available_timezones())


def validate_time_zone(value: str) -> None:
    if value and value not in time_zones():
        raise ValidationError("Not a known time zone; give an IANA name such as Europe/Prague or UTC.")


class AccountSettings(models.Model):
    """A user's preferences: the e-mails about SSH builders, and the time zone of the times in them."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="account_settings"
    )
    email_ssh_builders = models.BooleanField(
        default=True,
        help_text="Mail me when an SSH builder of mine is ready, and before it expires.",
    )
    # Empty: unknown, and times are given in UTC.
    time_zone = models.CharField(max_length=64, blank=True, validators=[validate_time_zone])

    class Meta:
        verbose_name_plural = "account settings"

    def __str__(self) -> str:
        return f"settings of {self.user}"

    @classmethod
    def of(cls, user: AbstractBaseUser) -> AccountSettings:
        """The user's settings; the defaults (not saved) when they never changed any."""
        found = cls.objects.filter(user_id=user.pk).first()
        return found if found is not None else cls(user_id=user.pk)

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        """The time zone to show times in: the user's, or UTC when unknown."""
        name = self.time_zone if self.time_zone in time_zones() else "UTC"
        return zoneinfo.ZoneInfo(name)
