"""The `openstack` provider: builders are Nova servers, made and found with openstacksdk.

A machine is a server named `<name_prefix><name>` whose metadata carries the caller's metadata (the
builder's id) and our marker `coprssh=1`. Both are set in the create request itself, so a create that
timed out on our side but succeeded in the cloud is still found by `list_owned()` and deleted.

The server's cloud-init user data installs the service's admin public key for `login_user` and the
host key the service generated, so the host key is pinned before the machine boots. The host private
key is the only secret in the user data, and it is unavoidable: root on the builder (the user) can
read user data, and it is that builder's own key. No credential of the service ever goes there.

Behaviour worth knowing:
  - `delete()` returns once Nova has accepted the delete; it does not wait for the server to be gone.
    A server being deleted (task state `deleting`, status DELETED or SOFT_DELETED) is neither alive
    nor listed. Should a delete fail in the cloud, the server comes back in `list_owned()` and the
    tick deletes it again.
  - `list_owned()` cannot know host keys (the API does not report them): its machines have
    `host_key=""`. The pinned key lives in the database.
  - `is_alive()` reads the API state only (exists, ours, ACTIVE, not being deleted); whether SSH
    answers is the service's boot check. It raises ProviderError when the API cannot be asked,
    rather than guessing "dead".
  - Every API call has `api_timeout`; the SDK retries nothing (the tick retries), so a failing cloud
    shows up within one timeout.
  - Every error from openstacksdk, keystoneauth1 or requests becomes one ProviderError (see
    `_translate`), with any configured secret scrubbed from its message.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import logging
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import openstack.connection
import requests
import yaml
from keystoneauth1 import exceptions as ks_exc
from openstack import exceptions as os_exc

from .base import HostKeyPair, Machine, Provider, ProviderError

log = logging.getLogger(__name__)

# Set in the create request's metadata: a server with our name prefix but without it is not ours.
MARKER_KEY = "coprssh"
MARKER_VALUE = "1"

# Nova's limits on server names and on metadata keys and values.
MAX_NAME = 255
MAX_METADATA = 255

# Server states in which a machine is on its way out: not alive, not listed.
GONE_STATUSES = {"DELETED", "SOFT_DELETED"}

# Auth settings whose values are secrets: never in a message, never in repr().
SECRET_AUTH_KEYS = ("password", "application_credential_secret", "token", "secret")

PASSWORD_AUTH = "password"
APP_CREDENTIAL_AUTH = "v3applicationcredential"


class OpenStackProvider(Provider):
    """Machines are Nova servers made from `image`, `flavor` and `network`, found by name and metadata."""

    name = "openstack"

    def __init__(
        self,
        *,
        auth: Mapping[str, str],
        image: str,
        flavor: str,
        network: str | None = None,
        region_name: str | None = None,
        name_prefix: str = "coprssh-",
        api_timeout: float = 30.0,
        launch_timeout: float = 600.0,
        poll_interval: float = 5.0,
        login_user: str = "root",
        port: int = 22,
        key_name: str | None = None,
        auth_type: str | None = None,
        interface: str = "public",
        verify: bool | str = True,
    ) -> None:
        if not auth.get("auth_url"):
            raise ValueError("auth needs auth_url")
        uses_app_credential = any(k.startswith("application_credential") for k in auth)
        self._auth_type = auth_type or (APP_CREDENTIAL_AUTH if uses_app_credential else PASSWORD_AUTH)
        if (
            not name_prefix
            or not name_prefix.isascii()
            or not all(c.isalnum() or c in "._-" for c in name_prefix)
        ):
            raise ValueError(f"unsafe name prefix: {name_prefix!r}")
        if not image or not flavor:
            raise ValueError("image and flavor are required")
        if api_timeout <= 0 or launch_timeout <= 0 or poll_interval <= 0:
            raise ValueError("api_timeout, launch_timeout and poll_interval must be positive")
        if not login_user or not login_user.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"unsafe login user: {login_user!r}")
        if not 0 < port < 65536:
            raise ValueError(f"bad port: {port}")
        self._auth = {str(k): str(v) for k, v in auth.items()}
        self._secrets = [
            v for k, v in self._auth.items() if v and any(word in k for word in SECRET_AUTH_KEYS)
        ]
        self.image = image
        self.flavor = flavor
        self.network = network
        self.region_name = region_name
        self.name_prefix = name_prefix
        self.api_timeout = float(api_timeout)
        self.launch_timeout = float(launch_timeout)
        self.poll_interval = float(poll_interval)
        self.login_user = login_user
        self.port = port
        self.key_name = key_name
        self.interface = interface
        self.verify = verify
        self._conn: openstack.connection.Connection | None = None
        self._conn_lock = threading.Lock()

    def __repr__(self) -> str:
        # Never the auth dict: it holds the password.
        return f"<OpenStackProvider {self._auth['auth_url']} region={self.region_name} prefix={self.name_prefix}>"

    # -- Provider interface -------------------------------------------------------------------------

    def create(
        self, *, name: str, metadata: dict[str, str], host_key: HostKeyPair, admin_public_key: str
    ) -> Machine:
        """Create a server and wait until it is ACTIVE; one that fails or times out is deleted."""
        if not name.startswith(self.name_prefix):
            name = self.name_prefix + name
        _check_name(name)
        tags = _check_metadata(metadata)
        user_data = self._user_data(host_key, _check_public_key_line(admin_public_key))
        with self._api(f"cannot create server {name}"):
            conn = self._connection()
            attrs: dict[str, Any] = {
                "name": name,
                "image_id": self._find("image", self.image, conn.image.find_image),
                "flavor_id": self._find("flavor", self.flavor, conn.compute.find_flavor),
                "networks": (
                    [{"uuid": self._find("network", self.network, conn.network.find_network)}]
                    if self.network
                    else "auto"
                ),
                "metadata": {**tags, MARKER_KEY: MARKER_VALUE},
                "user_data": base64.b64encode(user_data.encode()).decode("ascii"),
            }
            if self.key_name:
                attrs["key_name"] = self.key_name
            server_id = str(conn.compute.create_server(**attrs).id)
        log.info("created server %s (%s), waiting for ACTIVE", name, server_id)
        try:
            server = self._wait_active(server_id, name)
            machine = self._machine(server, host_key=host_key.public_line.strip())
            if machine.ipv4 is None and machine.ipv6 is None:
                raise ProviderError(f"server {name} is ACTIVE but has no IP address")
            return machine
        except BaseException:
            self._delete_quietly(server_id)
            raise

    def delete(self, provider_id: str) -> None:
        """Ask Nova to delete the server, if it exists and is ours; does not wait until it is gone."""
        with self._api(f"cannot delete server {provider_id}"):
            compute = self._connection().compute
            try:
                server = compute.get_server(provider_id)
            except os_exc.NotFoundException:
                return
            if not self._is_ours(server):
                raise ProviderError(f"server {provider_id} ({server.name}) is not ours", permanent=True)
            compute.delete_server(provider_id, ignore_missing=True)
        log.info("deleting server %s (%s)", server.name, provider_id)

    def list_owned(self) -> list[Machine]:
        """Servers with our name prefix and our metadata marker, except those being deleted."""
        # Nova matches `name` as a regular expression in the database's dialect; the prefix alphabet
        # (letters, digits, '.', '_', '-') only needs '.' escaped, and a bracket works in all of them.
        pattern = "^" + self.name_prefix.replace(".", "[.]")
        with self._api("cannot list servers"):
            servers = list(self._connection().compute.servers(details=True, name=pattern))
        return [
            self._machine(server, host_key="")
            for server in servers
            if self._is_ours(server) and not _being_deleted(server)
        ]

    def is_alive(self, provider_id: str) -> bool:
        """The server exists, is ours, is ACTIVE and is not being deleted (API state only)."""
        with self._api(f"cannot read server {provider_id}"):
            try:
                server = self._connection().compute.get_server(provider_id)
            except os_exc.NotFoundException:
                return False
        return self._is_ours(server) and server.status == "ACTIVE" and not _being_deleted(server)

    def close(self) -> None:
        """Close the SDK connection (it is opened again when needed)."""
        with self._conn_lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    # -- Creating -----------------------------------------------------------------------------------

    def _user_data(self, host_key: HostKeyPair, admin_line: str) -> str:
        """cloud-config that pins our host key and lets our admin key log in as `login_user`."""
        public = host_key.public_line.strip()
        if not public.startswith("ssh-ed25519 ") or "\n" in public:
            raise ProviderError("the host key must be one ssh-ed25519 public key line", permanent=True)
        config: dict[str, Any] = {
            # Replace the image's host keys with ours and generate none: the service knows the only one.
            "ssh_deletekeys": True,
            "ssh_genkeytypes": [],
            "ssh_keys": {"ed25519_private": host_key.private_pem, "ed25519_public": public},
            "ssh_pwauth": False,
        }
        if self.login_user == "root":
            # cloud-init gives root the top-level keys (no "login as ..." prefix) when root is not disabled.
            config["disable_root"] = False
            config["ssh_authorized_keys"] = [admin_line]
        else:
            config["users"] = [
                "default",
                {
                    "name": self.login_user,
                    "ssh_authorized_keys": [admin_line],
                    "sudo": "ALL=(ALL) NOPASSWD:ALL",
                    "lock_passwd": True,
                },
            ]
        return "#cloud-config\n" + yaml.dump(
            config, Dumper=_CloudConfigDumper, sort_keys=False, default_flow_style=False
        )

    def _find(self, kind: str, name_or_id: str, find: Any) -> str:
        try:
            return str(find(name_or_id, ignore_missing=False).id)
        except (os_exc.NotFoundException, os_exc.DuplicateResource) as exc:
            raise ProviderError(f"{kind} {name_or_id!r}: {_detail(exc)}", permanent=True) from exc

    def _wait_active(self, server_id: str, name: str) -> Any:
        """Poll the server until ACTIVE; raise on ERROR, on its disappearance, or at launch_timeout."""
        deadline = time.monotonic() + self.launch_timeout
        status, last_error = "unknown", ""
        while True:
            try:
                with self._api(f"cannot read server {name}"):
                    server = self._connection().compute.get_server(server_id)
            except ProviderError as exc:
                # One failed poll (a 503, a timeout) says nothing about the server; keep polling.
                if exc.permanent:  # gone (404), or the credentials stopped working
                    raise
                last_error = f"; last error: {exc.message}"
            else:
                status, last_error = str(server.status), ""
                if status == "ACTIVE":
                    return server
                if status == "ERROR":
                    fault = (server.fault or {}).get("message") or "no fault message"
                    raise ProviderError(self._scrub(f"server {name} went to ERROR: {fault}"))
                if status in GONE_STATUSES:
                    raise ProviderError(f"server {name} was deleted while building")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ProviderError(
                    f"server {name} not ACTIVE after {self.launch_timeout:g}s (status {status}{last_error})"
                )
            time.sleep(min(self.poll_interval, remaining))

    def _delete_quietly(self, server_id: str) -> None:
        try:
            with self._api(f"cannot delete server {server_id}"):
                self._connection().compute.delete_server(server_id, ignore_missing=True)
        except ProviderError as exc:
            # The server carries our name and marker: the tick finds it and tries again.
            log.warning("could not delete half-made server %s: %s", server_id, exc.message)

    # -- Reading servers ----------------------------------------------------------------------------

    def _is_ours(self, server: Any) -> bool:
        metadata = server.metadata or {}
        return (
            str(server.name or "").startswith(self.name_prefix) and metadata.get(MARKER_KEY) == MARKER_VALUE
        )

    def _machine(self, server: Any, *, host_key: str) -> Machine:
        ipv4, ipv6 = _pick_addresses(server.addresses or {})
        metadata = {str(k): str(v) for k, v in (server.metadata or {}).items() if k != MARKER_KEY}
        return Machine(
            provider_id=str(server.id),
            name=str(server.name),
            ipv4=ipv4,
            ipv6=ipv6,
            port=self.port,
            user=self.login_user,
            host_key=host_key,
            metadata=metadata,
        )

    # -- The SDK ------------------------------------------------------------------------------------

    def _connection(self) -> openstack.connection.Connection:
        with self._conn_lock:
            if self._conn is None:
                verify = self.verify
                extra: dict[str, Any] = {}
                if isinstance(verify, str):
                    extra["cacert"], verify = verify, True
                # No cloud name: openstacksdk reads neither clouds.yaml nor OS_* variables.
                self._conn = openstack.connection.Connection(
                    auth=dict(self._auth),
                    auth_type=self._auth_type,
                    region_name=self.region_name,
                    interface=self.interface,
                    verify=verify,
                    # keystoneauth's per-request timeout, for connect and for each read.
                    api_timeout=self.api_timeout,
                    # The SDK retries Glance 5 times by default; one try, and the tick retries.
                    connect_retries=0,
                    status_code_retries=0,
                    image_status_code_retries=0,
                    app_name="coprssh",
                    **extra,
                )
            return self._conn

    @contextlib.contextmanager
    def _api(self, action: str) -> Iterator[None]:
        """Turn whatever the SDK raises into one ProviderError, with secrets scrubbed."""
        try:
            yield
        except ProviderError as exc:
            exc.message = self._scrub(exc.message)
            exc.args = (exc.message,)
            raise
        except Exception as exc:
            error = _translate(exc, timeout=self.api_timeout)
            raise ProviderError(self._scrub(f"{action}: {error.message}"), permanent=error.permanent) from exc

    def _scrub(self, message: str) -> str:
        for secret in self._secrets:
            message = message.replace(secret, "***")
        return message


# -- Error mapping ---------------------------------------------------------------------------------


def _translate(exc: Exception, *, timeout: float) -> ProviderError:
    """The one place that says which SDK errors are permanent (retrying cannot help) and which are not."""
    if isinstance(exc, ks_exc.DiscoveryFailure) and isinstance(
        exc.__context__, (ks_exc.ConnectionError, ks_exc.HttpError)
    ):
        # keystoneauth reports an unreachable or failing auth_url as a failed version discovery.
        return _translate(exc.__context__, timeout=timeout)
    if isinstance(exc, os_exc.HttpException) and exc.status_code is not None:
        return _from_status(exc.status_code, _detail(exc))
    if isinstance(exc, ks_exc.HttpError):
        return _from_status(exc.http_status, _detail(exc))
    if isinstance(exc, (os_exc.NotFoundException, os_exc.DuplicateResource)):
        return ProviderError(_detail(exc), permanent=True)
    if isinstance(exc, ks_exc.ConnectTimeout) or isinstance(exc, requests.Timeout):
        return ProviderError(f"OpenStack API did not answer within {timeout:g}s")
    if isinstance(exc, ks_exc.SSLError) or isinstance(exc, requests.exceptions.SSLError):
        return ProviderError(f"TLS error talking to OpenStack: {exc}", permanent=True)
    if isinstance(exc, ks_exc.ConnectionError) or isinstance(exc, requests.ConnectionError):
        return ProviderError(f"cannot reach the OpenStack API: {exc}")
    if isinstance(
        exc,
        (
            ks_exc.DiscoveryFailure,
            ks_exc.EndpointNotFound,
            ks_exc.AuthPluginException,
            ks_exc.AuthorizationFailure,
            os_exc.EndpointNotFound,
            os_exc.ServiceDiscoveryException,
            os_exc.ConfigException,
        ),
    ):
        return ProviderError(f"OpenStack is not set up as configured: {exc}", permanent=True)
    if isinstance(exc, (os_exc.SDKException, ks_exc.ClientException, requests.RequestException)):
        return ProviderError(f"OpenStack API error: {exc}")
    return ProviderError(f"unexpected {type(exc).__name__} from openstacksdk: {exc}")


def _from_status(status: int, detail: str) -> ProviderError:
    lowered = detail.lower()
    if status in (403, 409, 413) and ("quota" in lowered or "limit exceeded" in lowered):
        return ProviderError(f"quota exceeded (HTTP {status}): {detail}")  # frees up when machines go
    if status == 401:
        return ProviderError(f"OpenStack refused the credentials (HTTP 401): {detail}", permanent=True)
    if status == 403:
        return ProviderError(f"forbidden by OpenStack (HTTP 403): {detail}", permanent=True)
    if status in (408, 409, 429):
        return ProviderError(f"OpenStack asked to retry later (HTTP {status}): {detail}")
    if 400 <= status < 500:
        return ProviderError(f"OpenStack rejected the request (HTTP {status}): {detail}", permanent=True)
    return ProviderError(f"OpenStack failed (HTTP {status}): {detail}")


def _detail(exc: Exception) -> str:
    details = getattr(exc, "details", None)
    if details:
        return str(details).strip()
    message = getattr(exc, "message", None)
    return str(message or exc).strip()


# -- Helpers ---------------------------------------------------------------------------------------


def _being_deleted(server: Any) -> bool:
    return server.status in GONE_STATUSES or server.task_state == "deleting"


def _pick_addresses(addresses: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """The IPv4 and IPv6 to reach a server by: floating before fixed, first network first."""
    found: dict[tuple[int, bool], str] = {}
    for network in sorted(addresses):
        for entry in addresses[network] or []:
            try:
                address = ipaddress.ip_address(str(entry.get("addr")))
            except ValueError:
                continue
            if address.is_link_local or address.is_loopback or address.is_unspecified:
                continue
            floating = entry.get("OS-EXT-IPS:type") == "floating"
            found.setdefault((address.version, floating), str(address))
    ipv4 = found.get((4, True)) or found.get((4, False))
    ipv6 = found.get((6, True)) or found.get((6, False))
    return ipv4, ipv6


def _check_name(name: str) -> None:
    if len(name) > MAX_NAME or not name.isprintable():
        raise ProviderError(f"bad server name: {name!r}", permanent=True)


def _check_metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ProviderError(f"metadata must map str to str: {key!r}={value!r}", permanent=True)
        if not key or len(key) > MAX_METADATA or len(value) > MAX_METADATA:
            raise ProviderError(f"metadata key and value must be 1-255 characters: {key!r}", permanent=True)
        if key == MARKER_KEY:
            raise ProviderError(f"metadata key {MARKER_KEY!r} is reserved for our marker", permanent=True)
    return dict(metadata)


def _check_public_key_line(line: str) -> str:
    line = line.strip()
    # One line only: anything after a newline would be a second authorized key.
    if not line or "\n" in line or "\r" in line or len(line.split()) < 2:
        raise ProviderError("admin_public_key must be one OpenSSH public key line", permanent=True)
    return line


class _CloudConfigDumper(yaml.SafeDumper):
    """Writes multi-line strings (the host private key) as literal blocks, readable in the console."""


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|" if "\n" in data else None)


_CloudConfigDumper.add_representer(str, _represent_str)
