"""`check --deploy` refuses local pools whose builders would be the service's own account (Ref: #10)."""

from __future__ import annotations

import pytest

from builders import checks
from builders.models import Pool

pytestmark = pytest.mark.django_db


def _errors(settings) -> list[str]:
    settings.DEBUG = False
    return [error.id for error in checks.local_pools_are_isolated()]


def test_a_local_pool_without_root_is_an_error_in_production(settings, monkeypatch):
    Pool.objects.create(name="local", architectures=["x86_64"], warm_builders=0)
    monkeypatch.setattr(checks.os, "geteuid", lambda: 1000)
    assert _errors(settings) == ["coprssh.E002"]
    [error] = checks.local_pools_are_isolated()
    assert "local" in error.msg


def test_a_local_pool_with_isolation_turned_off_is_an_error_even_as_root(settings, monkeypatch):
    Pool.objects.create(
        name="local", architectures=["x86_64"], warm_builders=0, provider_settings={"isolate": False}
    )
    monkeypatch.setattr(checks.os, "geteuid", lambda: 0)
    assert _errors(settings) == ["coprssh.E002"]


def test_isolated_disabled_and_cloud_pools_pass(settings, monkeypatch):
    Pool.objects.create(name="local", architectures=["x86_64"], warm_builders=0)
    Pool.objects.create(name="off", architectures=["x86_64"], warm_builders=0, enabled=False)
    Pool.objects.create(
        name="cloud", provider=Pool.Provider.OPENSTACK, architectures=["x86_64"], warm_builders=0
    )
    monkeypatch.setattr(checks.os, "geteuid", lambda: 0)
    assert _errors(settings) == []
    monkeypatch.setattr(checks.os, "geteuid", lambda: 1000)
    Pool.objects.filter(name="local").update(enabled=False)
    assert _errors(settings) == []


def test_development_instances_are_not_held_to_it(settings, monkeypatch):
    Pool.objects.create(name="local", architectures=["x86_64"], warm_builders=0)
    monkeypatch.setattr(checks.os, "geteuid", lambda: 1000)
    settings.DEBUG = True
    assert checks.local_pools_are_isolated() == []
