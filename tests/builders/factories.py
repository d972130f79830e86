"""Rows of the builders app with sensible defaults: `make_pool`, `make_builder`, `make_lease`.

Keyword overrides win. Test modules import the helpers by name; fixtures live in conftest.py.
"""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone

from builders.models import Builder, Lease, Pool

_seq = itertools.count(1)

# A syntactically plausible host key; tests that connect or fingerprint give a real one.
FAKE_HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeFakeFakeFakeFakeFakeFakeFakeFakeFakeFake"


def make_pool(**overrides: Any) -> Pool:
    """A local pool serving x86_64 that keeps no warm builders (tests start nothing by accident)."""
    fields: dict[str, Any] = {
        "name": f"pool-{next(_seq)}",
        "provider": Pool.Provider.LOCAL,
        "architectures": ["x86_64"],
        "max_builders": 4,
        "warm_builders": 0,
        "provider_settings": {},
    }
    fields.update(overrides)
    return Pool.objects.create(**fields)


def make_builder(pool: Pool | None = None, /, **overrides: Any) -> Builder:
    """A fresh READY builder (no sandbox yet) in `pool` (positional or `pool=`), or in a new one.

    No machine is behind it unless `provider_id` names one.
    """
    pool = overrides.pop("pool", pool) or make_pool()
    now = timezone.now()
    n = next(_seq)
    fields: dict[str, Any] = {
        "pool": pool,
        "state": Builder.State.READY,
        "name": f"builder-{n}",
        "ipv4": "192.0.2.1",  # TEST-NET-1: nothing answers there
        "port": 22,
        "host_key": FAKE_HOST_KEY,
        "sandbox": None,
        "ready_at": now,
        "state_changed_at": now,
    }
    fields.update(overrides)
    return Builder.objects.create(**fields)


def make_lease(*, owner: AbstractBaseUser, **overrides: Any) -> Lease:
    """A lease of `owner`; its timestamps follow its state (an active one has an expiry and a cap)."""
    now = timezone.now()
    n = next(_seq)
    fields: dict[str, Any] = {
        "owner": owner,
        "arch": "x86_64",
        "ssh": False,
        "state": Lease.State.WAITING,
        "purpose": f"lease {n}",
    }
    fields.update(overrides)
    fields.setdefault("sandbox", f"ssh-{n}" if fields["ssh"] else f"owner/project--user-{n}")
    state = fields["state"]
    if state in (Lease.State.ASSIGNED, Lease.State.ACTIVE, Lease.State.ENDED) and fields.get("builder"):
        fields.setdefault("assigned_at", now)
    if state == Lease.State.ACTIVE:
        fields.setdefault("started_at", now)
        fields.setdefault("max_expires_at", fields["started_at"] + timedelta(hours=48))
        fields.setdefault("expires_at", fields["started_at"] + timedelta(hours=1))
        if fields["ssh"]:
            fields.setdefault("access_ready_at", fields["started_at"])  # its keys are deployed
    if state == Lease.State.ENDED:
        fields.setdefault("ended_at", now)
        fields.setdefault("end_reason", Lease.EndReason.RELEASED)
    return Lease.objects.create(**fields)


def make_ssh_lease(*, owner: AbstractBaseUser, **overrides: Any) -> Lease:
    """An active SSH lease expiring in an hour, as `start_lease` leaves one."""
    fields: dict[str, Any] = {"ssh": True, "state": Lease.State.ACTIVE, "sandbox": "ssh-fixture"}
    return make_lease(owner=owner, **(fields | overrides))
