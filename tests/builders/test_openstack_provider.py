"""The openstack provider: the real openstacksdk against the fake Keystone/Nova/Glance/Neutron (no database)."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from builders.providers import HostKeyPair, Machine, ProviderError, generate_host_key
from builders.providers.openstack import OpenStackProvider

from . import fake_openstack
from .fake_openstack import FakeOpenStack

if TYPE_CHECKING:
    from .conftest import AdminKey

pytestmark = pytest.mark.slow

SECRETS = (fake_openstack.PASSWORD, fake_openstack.APP_CREDENTIAL_SECRET)


@pytest.fixture
def cloud() -> Iterator[FakeOpenStack]:
    with FakeOpenStack() as fake:
        yield fake
    assert not fake.unknown, f"requests the fake does not know: {fake.unknown}"


@pytest.fixture
def provider(cloud: FakeOpenStack) -> Iterator[OpenStackProvider]:
    provider = _provider(cloud)
    yield provider
    provider.close()


def _provider(cloud: FakeOpenStack, **overrides: Any) -> OpenStackProvider:
    settings = {"api_timeout": 2.0, "launch_timeout": 2.0, "poll_interval": 0.02, **overrides}
    return OpenStackProvider(**cloud.provider_settings(**settings))


def _create(
    provider: OpenStackProvider,
    admin_key: AdminKey,
    name: str = "builder-1",
    host_key: HostKeyPair | None = None,
    **metadata: str,
) -> Machine:
    return provider.create(
        name=name,
        metadata={"builder_id": name, **metadata},
        host_key=host_key or generate_host_key(),
        admin_public_key=admin_key.public_line,
    )


def _only_server(cloud: FakeOpenStack) -> fake_openstack.FakeServer:
    (server,) = cloud.servers.values()
    return server


def _cloud_config(server: fake_openstack.FakeServer) -> dict[str, Any]:
    assert server.user_data is not None
    assert server.user_data.startswith("#cloud-config\n")
    config: dict[str, Any] = yaml.safe_load(server.user_data)
    return config


def _raises(call: Any, *args: Any, **kwargs: Any) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        call(*args, **kwargs)
    return info.value


# -- create -----------------------------------------------------------------------------------------


def test_create_returns_the_active_server_with_both_addresses_and_the_pinned_key(
    cloud, provider, admin_key, host_key
):
    machine = _create(provider, admin_key, name="builder-7", host_key=host_key)

    server = _only_server(cloud)
    assert server.status == "ACTIVE"
    assert machine == Machine(
        provider_id=server.id,
        name="coprssh-builder-7",
        ipv4="203.0.113.5",  # the floating address, not the fixed 10.0.0.5
        ipv6="2001:db8::5",
        port=22,
        user="root",
        host_key=host_key.public_line,
        metadata={"builder_id": "builder-7"},
    )


def test_create_uses_the_fixed_ipv4_when_there_is_no_floating_one(cloud, provider, admin_key):
    cloud.floating_ips = False

    machine = _create(provider, admin_key)

    assert (machine.ipv4, machine.ipv6) == ("10.0.0.5", "2001:db8::5")


def test_create_waits_for_active(cloud, provider, admin_key):
    cloud.active_after = 3

    _create(provider, admin_key)

    server = _only_server(cloud)
    assert len(cloud.requests_to("GET", rf"/compute/v2\.1/servers/{server.id}")) == 3


def test_create_survives_a_failed_poll(cloud, provider, admin_key):
    cloud.fail_server_reads = 1

    machine = _create(provider, admin_key)

    assert provider.is_alive(machine.provider_id)


def test_user_data_installs_the_admin_key_for_root_and_the_pinned_host_key(
    cloud, provider, admin_key, host_key
):
    _create(provider, admin_key, host_key=host_key)

    config = _cloud_config(_only_server(cloud))
    assert config["ssh_authorized_keys"] == [admin_key.public_line]
    assert config["disable_root"] is False
    assert config["ssh_keys"] == {
        "ed25519_private": host_key.private_pem,
        "ed25519_public": host_key.public_line,
    }
    assert config["ssh_deletekeys"] is True
    assert config["ssh_genkeytypes"] == []
    assert config["ssh_pwauth"] is False


def test_user_data_gives_another_login_user_the_admin_key_and_sudo(cloud, admin_key):
    provider = _provider(cloud, login_user="builder")

    machine = _create(provider, admin_key)

    assert machine.user == "builder"
    config = _cloud_config(_only_server(cloud))
    assert "ssh_authorized_keys" not in config
    assert config["users"][0] == "default"
    assert config["users"][1]["name"] == "builder"
    assert config["users"][1]["ssh_authorized_keys"] == [admin_key.public_line]


def test_user_data_holds_no_secret_but_the_host_key(cloud, provider, admin_key, host_key):
    _create(provider, admin_key, host_key=host_key)

    user_data = _only_server(cloud).user_data
    assert user_data is not None
    assert user_data.count("PRIVATE KEY-----") == 2  # BEGIN and END of the host key only
    for secret in SECRETS:
        assert secret not in user_data


def test_create_names_and_marks_the_server_as_ours(cloud, provider, admin_key):
    _create(provider, admin_key, name="builder-3", pool="demo")

    server = _only_server(cloud)
    assert server.name == "coprssh-builder-3"
    assert server.metadata == {"builder_id": "builder-3", "pool": "demo", "coprssh": "1"}


def test_create_resolves_image_flavor_and_network_by_name(cloud, provider, admin_key):
    _create(provider, admin_key)

    server = _only_server(cloud)
    assert server.image_id == cloud.image_id("fedora-42")
    assert server.flavor_id == "1"
    assert server.network_ids == [cloud.network_id("builders")]


def test_create_accepts_image_flavor_and_network_ids(cloud, admin_key):
    provider = _provider(
        cloud,
        image=cloud.image_id("centos-stream-10"),
        flavor="2",
        network=cloud.network_id("other"),
        key_name="ops",
    )

    _create(provider, admin_key)

    server = _only_server(cloud)
    assert server.image_id == cloud.image_id("centos-stream-10")
    assert server.flavor_id == "2"
    assert server.network_ids == [cloud.network_id("other")]
    assert server.key_name == "ops"


def test_create_keeps_a_name_that_already_has_the_prefix(cloud, provider, admin_key):
    machine = _create(provider, admin_key, name="coprssh-builder-9")

    assert machine.name == "coprssh-builder-9"


@pytest.mark.parametrize(
    "metadata",
    [{"coprssh": "2"}, {"builder_id": "x" * 256}, {"": "empty key"}, {"builder_id": 7}],
    ids=["marker", "long-value", "empty-key", "not-a-string"],
)
def test_create_refuses_bad_metadata_before_calling_the_cloud(cloud, provider, admin_key, metadata):
    error = _raises(
        provider.create,
        name="builder-1",
        metadata=metadata,
        host_key=generate_host_key(),
        admin_public_key=admin_key.public_line,
    )

    assert error.permanent
    assert cloud.requests == []


def test_create_refuses_an_admin_key_that_is_not_one_line(cloud, provider, admin_key):
    error = _raises(
        provider.create,
        name="builder-1",
        metadata={},
        host_key=generate_host_key(),
        admin_public_key=admin_key.public_line + "\nssh-ed25519 AAAA intruder",
    )

    assert error.permanent
    assert cloud.requests == []


# -- create failures --------------------------------------------------------------------------------


def test_server_in_error_raises_the_fault_and_is_deleted(cloud, provider, admin_key):
    cloud.fail_next_create = "No valid host was found. There are not enough hosts available."

    error = _raises(_create, provider, admin_key)

    assert "No valid host was found" in error.message
    assert not error.permanent  # another try may land on another host
    assert len(cloud.requests_to("DELETE", r"/compute/v2\.1/servers/[^/]+")) == 1
    assert cloud.servers == {}


def test_server_never_active_raises_after_the_launch_timeout_and_is_deleted(cloud, admin_key):
    cloud.never_active = True
    provider = _provider(cloud, launch_timeout=1.0)

    started = time.monotonic()
    error = _raises(_create, provider, admin_key)

    assert 1.0 <= time.monotonic() - started < 3.0
    assert "not ACTIVE after 1s" in error.message
    assert "BUILD" in error.message
    assert not error.permanent
    assert cloud.servers == {}


def test_quota_exceeded_is_a_transient_error(cloud, provider, admin_key):
    cloud.quota_exceeded = True

    error = _raises(_create, provider, admin_key)

    assert "quota" in error.message.lower()
    assert not error.permanent
    assert cloud.servers == {}


@pytest.mark.parametrize("setting", ["image", "flavor", "network"])
def test_unknown_image_flavor_or_network_is_a_permanent_error(cloud, admin_key, setting):
    provider = _provider(cloud, **{setting: "no-such-thing"})

    error = _raises(_create, provider, admin_key)

    assert error.permanent
    assert setting in error.message
    assert "no-such-thing" in error.message
    assert cloud.requests_to("POST", r"/compute/v2\.1/servers") == []


def test_wrong_password_is_a_permanent_error(cloud, admin_key):
    provider = _provider(cloud, auth=cloud.password_auth(password="not-the-password"))

    error = _raises(_create, provider, admin_key)

    assert error.permanent
    assert "401" in error.message
    assert "not-the-password" not in error.message


def test_credentials_are_scrubbed_even_when_the_cloud_repeats_them(cloud):
    cloud.echo_credentials = True
    provider = _provider(cloud, auth=cloud.password_auth(password="wrong-Pa55word"))

    error = _raises(provider.list_owned)

    assert "Got:" in error.message  # the cloud did repeat what it got...
    assert "wrong-Pa55word" not in error.message  # ...and the provider scrubbed it
    assert "wrong-Pa55word" not in str(error)


def test_unreachable_api_is_a_transient_error(cloud, provider, admin_key):
    cloud.stop()

    error = _raises(_create, provider, admin_key)

    assert not error.permanent
    assert "cannot reach" in error.message


def test_dropped_connections_are_a_transient_error(cloud, provider):
    provider.list_owned()  # logged in already: the drop hits Nova, not Keystone
    cloud.drop_connections = True

    error = _raises(provider.list_owned)

    assert not error.permanent
    assert "cannot reach" in error.message


@pytest.mark.parametrize("logged_in", [False, True], ids=["keystone", "nova"])
def test_api_timeout_bounds_a_slow_api(cloud, logged_in):
    provider = _provider(cloud, api_timeout=0.5)
    if logged_in:
        provider.list_owned()
    cloud.delay = 10

    started = time.monotonic()
    error = _raises(provider.list_owned)

    assert time.monotonic() - started < 2.0
    assert "did not answer within 0.5s" in error.message
    assert not error.permanent


def test_no_error_message_contains_a_secret(cloud, admin_key):
    """Whatever goes wrong, the password and the application credential secret stay out of messages."""
    errors = []
    for auth in (cloud.password_auth(), cloud.app_credential_auth()):
        provider = _provider(cloud, auth=auth, launch_timeout=0.2)
        cloud.fail_next_create = "boom"
        errors.append(_raises(_create, provider, admin_key))
        cloud.quota_exceeded = True
        errors.append(_raises(_create, provider, admin_key))
        cloud.quota_exceeded = False
        cloud.never_active = True
        errors.append(_raises(_create, provider, admin_key))
        cloud.never_active = False
        errors.append(_raises(_provider(cloud, auth={**auth, "auth_url": cloud.url + "/nowhere"}).list_owned))
        cloud.delay = 5
        errors.append(_raises(_provider(cloud, auth=auth, api_timeout=0.2).list_owned))
        cloud.delay = 0

    assert len(errors) == 10
    for error in errors:
        for secret in SECRETS:
            assert secret not in str(error)
    cloud.unknown.clear()  # the "/nowhere" auth_url


# -- delete, list_owned, is_alive -------------------------------------------------------------------


def test_delete_removes_the_server_and_a_second_delete_is_harmless(cloud, provider, admin_key):
    machine = _create(provider, admin_key)

    provider.delete(machine.provider_id)
    provider.delete(machine.provider_id)

    assert cloud.servers == {}
    assert not provider.is_alive(machine.provider_id)
    assert provider.list_owned() == []


def test_delete_of_an_unknown_server_is_harmless(cloud, provider):
    provider.delete(str(uuid.uuid4()))

    assert cloud.requests_to("DELETE", r"/compute/v2\.1/servers/[^/]+") == []


def test_delete_refuses_a_server_that_is_not_ours(cloud, provider):
    foreign = cloud.add_server("coprssh-lookalike", {"owner": "someone else"})

    error = _raises(provider.delete, foreign.id)

    assert error.permanent
    assert foreign.id in cloud.servers


def test_list_owned_needs_our_prefix_and_our_marker(cloud, provider, admin_key):
    machine = _create(provider, admin_key, name="builder-1", pool="demo")
    cloud.add_server("coprssh-no-marker", {"builder_id": "x"})
    cloud.add_server("coprssh-other-marker", {"coprssh": "yes"})
    cloud.add_server("web-1", {"coprssh": "1"})
    cloud.add_server("xcoprssh-1", {"coprssh": "1"})
    orphan = cloud.add_server("coprssh-orphan", {"coprssh": "1", "builder_id": "41"}, status="ERROR")

    owned = provider.list_owned()

    assert {m.provider_id for m in owned} == {machine.provider_id, orphan.id}
    listed = next(m for m in owned if m.provider_id == machine.provider_id)
    assert listed == Machine(
        provider_id=machine.provider_id,
        name="coprssh-builder-1",
        ipv4=machine.ipv4,
        ipv6=machine.ipv6,
        port=22,
        user="root",
        host_key="",  # the API does not know host keys; the database does
        metadata={"builder_id": "builder-1", "pool": "demo"},
    )
    assert _provider(cloud, name_prefix="other-").list_owned() == []


def test_list_owned_asks_nova_to_filter_by_prefix(cloud, provider):
    provider.list_owned()

    (listing,) = cloud.requests_to("GET", r"/compute/v2\.1/servers/detail")
    assert "name=%5Ecoprssh-" in listing.path


def test_list_owned_and_is_alive_skip_servers_being_deleted(cloud, provider):
    going = cloud.add_server("coprssh-going", {"coprssh": "1"}, task_state="deleting")
    gone = cloud.add_server("coprssh-gone", {"coprssh": "1"}, status="SOFT_DELETED")

    assert provider.list_owned() == []
    assert not provider.is_alive(going.id)
    assert not provider.is_alive(gone.id)


@pytest.mark.parametrize(
    ("status", "metadata", "alive"),
    [
        ("ACTIVE", {"coprssh": "1"}, True),
        ("BUILD", {"coprssh": "1"}, False),
        ("ERROR", {"coprssh": "1"}, False),
        ("SHUTOFF", {"coprssh": "1"}, False),
        ("ACTIVE", {}, False),
    ],
)
def test_is_alive_follows_the_api_state(cloud, provider, status, metadata, alive):
    cloud.never_active = True  # keep BUILD servers building
    server = cloud.add_server("coprssh-builder-1", metadata, status=status)

    assert provider.is_alive(server.id) is alive


def test_is_alive_raises_when_the_api_cannot_tell(cloud, provider):
    server = cloud.add_server("coprssh-builder-1", {"coprssh": "1"})
    cloud.stop()

    with pytest.raises(ProviderError):
        provider.is_alive(server.id)


# -- credentials and configuration ------------------------------------------------------------------


def test_the_password_goes_to_keystone_only(cloud, provider, admin_key):
    machine = _create(provider, admin_key)
    provider.list_owned()
    provider.is_alive(machine.provider_id)
    provider.delete(machine.provider_id)

    carrying = [r for r in cloud.requests if r.contains(fake_openstack.PASSWORD)]
    assert [(r.method, r.path) for r in carrying] == [("POST", "/identity/v3/auth/tokens")]
    compute = cloud.requests_to("POST", r"/compute/v2\.1/servers")[0]
    assert "x-auth-token" in compute.headers


def test_application_credentials_log_in_and_go_to_keystone_only(cloud, admin_key):
    provider = _provider(cloud, auth=cloud.app_credential_auth())

    machine = _create(provider, admin_key)
    provider.delete(machine.provider_id)

    (auth,) = cloud.requests_to("POST", r"/identity/v3/auth/tokens")
    assert json.loads(auth.body)["auth"]["identity"]["methods"] == ["application_credential"]
    carrying = [r for r in cloud.requests if r.contains(fake_openstack.APP_CREDENTIAL_SECRET)]
    assert carrying == [auth]


def test_provider_ignores_clouds_yaml_and_os_variables(cloud, provider, tmp_path, monkeypatch):
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text("clouds:\n  envvars:\n    auth:\n      auth_url: http://127.0.0.1:9/\n")
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(clouds))
    monkeypatch.setenv("OS_CLOUD", "envvars")
    monkeypatch.setenv("OS_AUTH_URL", "http://127.0.0.1:9/")
    monkeypatch.setenv("OS_PASSWORD", "from-the-environment")

    assert provider.list_owned() == []
    assert not any(r.contains("from-the-environment") for r in cloud.requests)


def test_repr_hides_the_password(cloud, provider):
    assert fake_openstack.PASSWORD not in repr(provider)
    assert cloud.auth_url in repr(provider)


@pytest.mark.parametrize(
    "overrides",
    [
        {"auth": {"username": "u", "password": "p"}},
        {"name_prefix": "bad prefix"},
        {"name_prefix": ""},
        {"image": ""},
        {"api_timeout": 0},
        {"port": 0},
        {"login_user": "root; rm -rf /"},
    ],
)
def test_provider_refuses_bad_settings(cloud, overrides):
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        OpenStackProvider(**cloud.provider_settings(**overrides))


def test_user_data_is_base64_in_the_create_request(cloud, provider, admin_key):
    _create(provider, admin_key)

    (request,) = cloud.requests_to("POST", r"/compute/v2\.1/servers")
    encoded = json.loads(request.body)["server"]["user_data"]
    assert base64.b64decode(encoded).decode() == _only_server(cloud).user_data
