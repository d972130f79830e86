"""What a pool's provider settings may hold, checked before a provider is made from them.

The admin refuses a pool whose settings break these rules (Pool.clean), and
`builders.services.provider_for` refuses a row that holds them anyway (written by hand, or
before a rule existed) with a permanent error, which pauses the pool.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from .local import config_path

# The keys provider_for reads for a local pool, and what each one is.
LOCAL_OPTIONS = {
    "root_dir": "the folder of the pool's sandboxes",
    "homes_dir": "the folder of the isolated accounts' homes",
    "sshd_path": "the sshd program",
    "ipv6": "true to listen on ::1",
    "isolate": "false to log in as the service's own account",
    "boot_timeout": "seconds a builder may take to answer SSH",
}
# Paths that end up in a builder's sshd_config, which cannot spell some characters.
CONFIG_PATHS = ("root_dir", "homes_dir")
MAX_PATH_CHARS = 1024
MAX_BOOT_TIMEOUT = 24 * 3600


def problems(provider: str, options: Mapping[str, object]) -> list[str]:
    """What is wrong with `options` for a pool of `provider`, one sentence per problem."""
    if provider == "local":
        return local_problems(options)
    if provider == "openstack":
        return openstack_problems(options)
    return [f"unknown provider {provider!r}"]


def local_problems(options: Mapping[str, object]) -> list[str]:
    """Unknown keys, values of the wrong type, and paths that sshd could not use."""
    found = []
    unknown = sorted(set(options) - set(LOCAL_OPTIONS))
    if unknown:
        named = ", ".join(repr(key[:40]) for key in unknown[:5]) + (", …" if len(unknown) > 5 else "")
        found.append(f"not a setting of local pools: {named} (they take {', '.join(LOCAL_OPTIONS)})")
    for key in ("root_dir", "homes_dir", "sshd_path"):
        value = options.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or not os.path.isabs(value):
            # A relative path would depend on the folder each process of the service started in.
            found.append(f"{key} must be an absolute path")
        elif len(value) > MAX_PATH_CHARS:
            found.append(f"{key} may have at most {MAX_PATH_CHARS} characters")
        elif key in CONFIG_PATHS:
            try:
                config_path(key, value)
            except ValueError as exc:
                found.append(str(exc))
    for key in ("ipv6", "isolate"):
        if options.get(key) is not None and not isinstance(options[key], bool):
            found.append(f"{key} must be true or false")
    timeout = options.get("boot_timeout")
    if timeout is not None and (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not 1 <= timeout <= MAX_BOOT_TIMEOUT
    ):
        found.append(f"boot_timeout must be a number of seconds from 1 to {MAX_BOOT_TIMEOUT}")
    return found


def openstack_problems(options: Mapping[str, Any]) -> list[str]:
    """What the OpenStack provider refuses in `options`; it contacts nobody to say so."""
    from .openstack import OpenStackProvider

    if not isinstance(options.get("auth"), dict):
        return ["auth must be an object with auth_url and the credentials"]
    try:
        OpenStackProvider(**options)
    except TypeError as exc:
        return [f"the OpenStack provider refuses these settings: {exc}"]
    except ValueError as exc:
        return [str(exc)]
    return []
