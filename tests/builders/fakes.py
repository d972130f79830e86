"""A fake provider for fault injection: machines live in a dict, every failure is a knob.

It stands in for a cloud that times out, refuses and leaks. Its `check_ssh` and `wait_for_ssh`
replace the real ones in `builders.services.machines`, so no network is ever touched.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from builders.providers.base import HostKeyPair, Machine, Provider, ProviderError, generate_host_key

TRANSIENT = "transient"
PERMANENT = "permanent"
TIMEOUT = "timeout"  # the call fails, but the machine was made and is listed


@dataclass
class FakeProvider(Provider):
    """An in-memory cloud; `calls` records every create, delete and list in order."""

    name = "fake"

    machines: dict[str, Machine] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    dead: set[str] = field(default_factory=set)
    create_faults: list[str] = field(default_factory=list)
    delete_failures: int = 0
    boot_failures: int = 0
    list_failures: int = 0
    # While set ("transient" or "permanent"), every create fails that way: a cloud that is down.
    outage: str | None = None
    # Called at the start of create(): what happens elsewhere while the cloud is busy.
    during_create: Callable[[], object] | None = None
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    # -- knobs -------------------------------------------------------------------------

    def fail_next_create(self, *, permanent: bool = False, times: int = 1) -> None:
        self.create_faults += [PERMANENT if permanent else TRANSIENT] * times

    def time_out_next_create(self, *, times: int = 1) -> None:
        """The next creates raise after the machine exists, as a cloud API timing out does."""
        self.create_faults += [TIMEOUT] * times

    def fail_next_deletes(self, times: int) -> None:
        self.delete_failures += times

    def fail_next_boots(self, times: int = 1) -> None:
        """The next machines never answer SSH while booting."""
        self.boot_failures += times

    def add_machine(self, name: str, metadata: dict[str, str]) -> Machine:
        """A machine the service did not make in this test: a leftover, an orphan, a stranger's."""
        return self._make(name, metadata, generate_host_key().public_line)

    def kill(self, provider_id: str) -> None:
        """The machine still exists, but SSH no longer answers."""
        self.dead.add(provider_id)

    def created(self) -> list[str]:
        return [arg for call, arg in self.calls if call == "create"]

    def deleted(self) -> list[str]:
        return [arg for call, arg in self.calls if call == "delete"]

    # -- Provider ----------------------------------------------------------------------

    def create(
        self, *, name: str, metadata: dict[str, str], host_key: HostKeyPair, admin_public_key: str
    ) -> Machine:
        self.calls.append(("create", name))
        if self.during_create is not None:
            self.during_create()
        fault = self.create_faults.pop(0) if self.create_faults else self.outage
        if fault in (TRANSIENT, PERMANENT):
            raise ProviderError(f"create {name}: quota exceeded ({fault})", permanent=fault == PERMANENT)
        machine = self._make(name, metadata, host_key.public_line)
        if fault == TIMEOUT:
            raise ProviderError(f"create {name}: timed out waiting for ACTIVE")
        return machine

    def delete(self, provider_id: str) -> None:
        self.calls.append(("delete", provider_id))
        if self.delete_failures:
            self.delete_failures -= 1
            raise ProviderError(f"delete {provider_id}: 503 Service Unavailable")
        self.machines.pop(provider_id, None)
        self.dead.discard(provider_id)

    def list_owned(self) -> list[Machine]:
        self.calls.append(("list", ""))
        if self.list_failures:
            self.list_failures -= 1
            raise ProviderError("list: 503 Service Unavailable")
        return list(self.machines.values())

    def is_alive(self, provider_id: str) -> bool:
        return provider_id in self.machines and provider_id not in self.dead

    # -- stand-ins for builders.services.machines.check_ssh / wait_for_ssh -------------

    def check_ssh(self, machine: Machine, *, timeout: float = 10.0) -> None:
        if not self.is_alive(machine.provider_id):
            raise ProviderError(f"NoValidConnectionsError: {machine.provider_id} does not answer")

    def wait_for_ssh(self, machine: Machine, *, timeout: float) -> None:
        if self.boot_failures:
            self.boot_failures -= 1
            raise ProviderError(f"SSH did not answer within {timeout:.0f} s: connection refused")
        self.check_ssh(machine)

    # -- helpers -----------------------------------------------------------------------

    def _make(self, name: str, metadata: dict[str, str], host_key: str) -> Machine:
        number = next(self._ids)
        machine = Machine(
            provider_id=f"fake-{number}",
            name=name,
            ipv4=f"192.0.2.{number % 250 + 1}",
            ipv6=None,
            port=22,
            user="root",
            host_key=host_key.strip(),
            metadata=dict(metadata),
        )
        self.machines[machine.provider_id] = machine
        return machine


def install(monkeypatch: pytest.MonkeyPatch, provider: FakeProvider) -> FakeProvider:
    """Make every pool use `provider`, and SSH checks ask it instead of the network."""
    from builders.services import machines

    monkeypatch.setattr(machines, "provider_for", lambda pool: provider)
    monkeypatch.setattr(machines, "wait_for_ssh", provider.wait_for_ssh)
    monkeypatch.setattr(machines, "check_ssh", provider.check_ssh)
    return provider
