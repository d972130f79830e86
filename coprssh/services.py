"""Account state changes that belong to no single app."""

from __future__ import annotations

import logging

from django.contrib.auth.models import User
from django.db import transaction
from rest_framework.authtoken.models import Token

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
