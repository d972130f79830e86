"""System checks of the builders app (`manage.py check --deploy`)."""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, register
from django.db import DatabaseError

UNISOLATED = (
    "Local pool(s) {names} would lend builders that log in as the service's own account: a user of one "
    "could read the service's keys, database and secrets. Run the service as root (each local builder then "
    "gets an unprivileged account of its own), disable the pool, or use an OpenStack pool."
)


def unisolated_local_pools() -> list[str]:
    """Names of enabled local pools whose builders would not be isolated from the service."""
    from builders.models import Pool

    root = os.geteuid() == 0
    names = []
    for pool in Pool.objects.filter(enabled=True, provider=Pool.Provider.LOCAL).order_by("name"):
        isolate = (pool.provider_settings or {}).get("isolate")
        if not root or isolate is False:
            names.append(pool.name)
    return names


@register(Tags.security, deploy=True)
def local_pools_are_isolated(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    if settings.DEBUG:
        return []
    try:
        names = unisolated_local_pools()
    except DatabaseError:  # not migrated yet: nothing to lend
        return []
    if not names:
        return []
    return [Error(UNISOLATED.format(names=", ".join(names)), id="coprssh.E002")]
