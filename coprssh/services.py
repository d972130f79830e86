"""Account state changes that belong to no single app."""

from __future__ import annotations

import logging

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from rest_framework.authtoken.models import Token

from coprssh.exceptions import ServiceError
from coprssh.models import AccountSettings, time_zones

log = logging.getLogger(__name__)


def get_api_token(*, user: User) -> Token:
    """The user's API token, created on first use."""
    token, _ = Token.objects.get_or_create(user=user)
    return token


@transaction.atomic
def regenerate_api_token(*, user: User) -> Token:
    """Replace the user's API token; the old one stops working at once."""
    Token.objects.filter(user=user).delete()
    token = Token.objects.create(user=user)
    log.info("user %s regenerated their API token", user.pk)
    return token


def save_account_settings(
    *, user: User, email: str, email_ssh_builders: bool, time_zone: str
) -> AccountSettings:
    """Store the user's e-mail address, whether to mail them about SSH builders, and their time zone."""
    email = email.strip()
    if email:
        if len(email) > 254:
            raise ServiceError("An e-mail address has at most 254 characters.", field="email")
        try:
            validate_email(email)
        except ValidationError:
            raise ServiceError("Enter a valid e-mail address.", field="email") from None
    if time_zone and time_zone not in time_zones():
        raise ServiceError("Not a known time zone; choose one from the list.", field="time_zone")
    with transaction.atomic():
        get_user_model().objects.filter(pk=user.pk).update(email=email)
        settings, _ = AccountSettings.objects.update_or_create(
            user=user, defaults={"email_ssh_builders": email_ssh_builders, "time_zone": time_zone}
        )
    user.email = email
    log.info("user %s changed their account settings", user.pk)
    return settings
