"""coprssh's own configuration checks.

Settings load without a SECRET_KEY when DEBUG is off, so that commands that sign nothing
(makemigrations, migrate, collectstatic, shell) still run. What needs the key refuses to start
without it: the WSGI and ASGI entry points call `require_secret_key()`, `manage.py qcluster` (django-q2
signs every queued task with the key and its workers check that signature) says so, and
`check --deploy` reports coprssh.E001.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, register
from django.core.exceptions import ImproperlyConfigured

MISSING_KEY = (
    "SECRET_KEY (or SECRET_KEY_FILE) must be set when DEBUG is off; for a development instance set DEBUG=1"
)


def secret_key_missing() -> bool:
    try:
        return not settings.SECRET_KEY
    except ImproperlyConfigured:  # Django refuses to hand out an empty key
        return True


def require_secret_key() -> None:
    """Stop a server process from starting without a secret key."""
    if secret_key_missing():
        raise ImproperlyConfigured(MISSING_KEY)


@register(Tags.security, deploy=True)
def secret_key_is_set(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    return [Error(MISSING_KEY, id="coprssh.E001")] if secret_key_missing() else []
