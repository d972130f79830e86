"""System checks of the builders app (`manage.py check --deploy`)."""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
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


NO_GATEWAY = (
    "Pool(s) {names} are reached through the SSH gateway, but COPRSSH_GATEWAY_HOST is not set: their users are "
    "shown the builders' own addresses. Set COPRSSH_GATEWAY_HOST and run `manage.py gateway`, or set the pools' "
    "SSH route to direct."
)


@register(Tags.compatibility)
def gateway_pools_have_a_gateway(app_configs: Any = None, **kwargs: Any) -> list[Warning]:
    from builders.models import Pool, SshRoute

    if settings.COPRSSH_GATEWAY_HOST:
        return []
    try:
        names = list(
            Pool.objects.filter(enabled=True, ssh_route__in=[SshRoute.GATEWAY, SshRoute.BOTH])
            .order_by("name")
            .values_list("name", flat=True)
        )
    except DatabaseError:  # not migrated yet
        return []
    if not names:
        return []
    return [Warning(NO_GATEWAY.format(names=", ".join(names)), id="coprssh.W010")]
