"""Lease tokens: the secret copr-builder holds, good for prolonging or releasing its own lease only.

Only the token's SHA-256 is stored; a new token replaces the one before, and none works once its
lease has ended.
"""

from __future__ import annotations

import hashlib
import secrets

from django.db import transaction

from builders.models import Lease
from builders.services.common import LeaseNotActive


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def issue_lease_token(*, lease_id: int) -> str:
    """A new secret that can prolong or release this one lease (and nothing else); replaces any earlier one."""
    token = secrets.token_urlsafe(32)
    with transaction.atomic():
        if not Lease.objects.open().filter(pk=lease_id).update(token_hash=_token_hash(token)):
            raise LeaseNotActive(f"Lease #{lease_id} has ended.")
    return token


def lease_for_token(token: str) -> Lease | None:
    """The open lease this token belongs to; None once the lease has ended."""
    if not token or len(token) > 200:
        return None
    return Lease.objects.open().select_related("owner").filter(token_hash=_token_hash(token)).first()
