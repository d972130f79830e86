"""What every provider promises (builders/providers/base.py), checked against each of them (no database).

`local` runs real sshd sandboxes; `openstack` runs the real openstacksdk against the fake cloud. For
openstack, "alive" is the API's word (ACTIVE): no SSH server answers in the fake.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

from builders.providers import HostKeyPair, Machine, Provider, ProviderError
from builders.providers.local import LocalProvider
from builders.providers.openstack import OpenStackProvider

from .fake_openstack import FakeOpenStack

if TYPE_CHECKING:
    from pathlib import Path

    from .conftest import AdminKey

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Case:
    """A provider under test and an id it never made."""

    provider: Provider
    unknown_id: str


@pytest.fixture(params=["local", "openstack"])
def case(request: pytest.FixtureRequest) -> Iterator[Case]:
    if request.param == "local":
        root: Path = request.getfixturevalue("builders_root")
        yield Case(LocalProvider(root, stop_timeout=2.0), unknown_id="coprssh-never-made")
        return
    with FakeOpenStack() as cloud:
        provider = OpenStackProvider(
            **cloud.provider_settings(api_timeout=2.0, launch_timeout=2.0, poll_interval=0.02)
        )
        yield Case(provider, unknown_id=str(uuid.uuid4()))
        provider.close()


def _create(case: Case, admin_key: AdminKey, host_key: HostKeyPair, name: str = "builder-5") -> Machine:
    return case.provider.create(
        name=name,
        metadata={"builder_id": "5", "pool": "contract"},
        host_key=host_key,
        admin_public_key=admin_key.public_line,
    )


def _listed(case: Case, machine: Machine) -> Machine | None:
    return next((m for m in case.provider.list_owned() if m.provider_id == machine.provider_id), None)


def test_create_returns_a_machine_with_an_address_a_port_and_the_pinned_host_key(case, admin_key, host_key):
    machine = _create(case, admin_key, host_key)

    assert machine.provider_id
    assert machine.host in (machine.ipv4, machine.ipv6)
    assert 0 < machine.port < 65536
    assert machine.user
    assert machine.host_key == host_key.public_line


def test_the_machine_name_carries_the_given_name(case, admin_key, host_key):
    machine = _create(case, admin_key, host_key, name="builder-5")

    assert machine.name.endswith("builder-5")
    assert machine.name.startswith("coprssh-")


def test_list_owned_includes_the_machine_with_its_metadata(case, admin_key, host_key):
    machine = _create(case, admin_key, host_key)

    listed = _listed(case, machine)

    assert listed is not None
    assert listed.name == machine.name
    assert listed.metadata == {"builder_id": "5", "pool": "contract"}
    assert (listed.ipv4, listed.ipv6, listed.port) == (machine.ipv4, machine.ipv6, machine.port)


def test_a_new_machine_is_alive(case, admin_key, host_key):
    machine = _create(case, admin_key, host_key)

    assert case.provider.is_alive(machine.provider_id)


def test_a_deleted_machine_is_neither_alive_nor_listed(case, admin_key, host_key):
    machine = _create(case, admin_key, host_key)

    case.provider.delete(machine.provider_id)

    assert not case.provider.is_alive(machine.provider_id)
    assert _listed(case, machine) is None


def test_delete_twice_is_harmless(case, admin_key, host_key):
    machine = _create(case, admin_key, host_key)

    case.provider.delete(machine.provider_id)
    case.provider.delete(machine.provider_id)

    assert _listed(case, machine) is None


def test_delete_of_an_unknown_machine_is_harmless(case):
    case.provider.delete(case.unknown_id)

    assert not case.provider.is_alive(case.unknown_id)


def test_list_owned_is_empty_before_any_create(case):
    assert case.provider.list_owned() == []


def test_an_admin_key_of_two_lines_is_a_permanent_provider_error(case, admin_key, host_key):
    with pytest.raises(ProviderError) as info:
        case.provider.create(
            name="builder-5",
            metadata={},
            host_key=host_key,
            admin_public_key=admin_key.public_line + "\n" + admin_key.public_line,
        )

    assert info.value.permanent
    assert case.provider.list_owned() == []
