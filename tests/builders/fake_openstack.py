"""A stateful fake of the OpenStack HTTP APIs the openstack provider uses, so the real openstacksdk runs.

It serves, on 127.0.0.1 and a free port, the parts of four services that openstacksdk calls:
    /identity   Keystone v3: version discovery, POST /v3/auth/tokens (password or application
                credential) answering with X-Subject-Token and a catalog pointing at this server
    /compute    Nova v2.1 (microversions up to MAX_COMPUTE_MICROVERSION): servers (create, list with
                a name regex, get, delete), flavors
    /image      Glance v2: images (get by id, list by name)
    /network    Neutron v2.0: networks (get by id, list by name)

Servers start in BUILD and become ACTIVE after `active_after` reads, with a fixed IPv4, a fixed IPv6
and a floating IPv4. Knobs make the next calls fail the ways real clouds do (see `FakeOpenStack`).
Every request is recorded in `requests`; a request no route knows is answered 404 and also
recorded in `unknown`, so a test (and whoever extends the fake) sees what the SDK asked for.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger(__name__)

MAX_COMPUTE_MICROVERSION = "2.96"
REGION = "RegionOne"

USERNAME = "coprssh-service"
PASSWORD = "Pa55-word.that-must-never-leak"
PROJECT_NAME = "builds"
DOMAIN_NAME = "Default"
APP_CREDENTIAL_ID = "b4e8c5ffa3c94bd2a10c3b2e0ba1c0de"
APP_CREDENTIAL_SECRET = "app-cred-secret-that-must-never-leak"

QUOTA_MESSAGE = "Quota exceeded for instances: Requested 1, but already used 10 of 10 instances"


@dataclass
class RecordedRequest:
    """One request as the fake received it."""

    method: str
    path: str  # with the query string
    headers: dict[str, str]
    body: str

    def contains(self, text: str) -> bool:
        """Whether `text` appears anywhere in the request: path, a header or the body."""
        return text in self.path or text in self.body or any(text in v for v in self.headers.values())


@dataclass
class FakeServer:
    """A Nova server as the fake stores it."""

    id: str
    name: str
    metadata: dict[str, str]
    user_data: str | None  # decoded from base64
    image_id: str
    flavor_id: str
    network_ids: list[str]
    key_name: str | None = None
    status: str = "BUILD"
    fault: str | None = None
    reads: int = 0
    ipv4: str = "10.0.0.5"
    ipv6: str = "2001:db8::5"
    floating_ipv4: str | None = "203.0.113.5"
    task_state: str | None = None  # Nova's OS-EXT-STS:task_state once the server has left BUILD
    created: datetime = field(default_factory=lambda: datetime.now(UTC))


class _Reply(Exception):
    """Raised by a route to answer with an error status."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


def _nova_error(status: int, message: str) -> _Reply:
    kind = {400: "badRequest", 401: "unauthorized", 403: "forbidden", 404: "itemNotFound"}.get(
        status, "computeFault"
    )
    return _Reply(status, {kind: {"code": status, "message": message}})


def _keystone_error(status: int, message: str) -> _Reply:
    title = {400: "Bad Request", 401: "Unauthorized", 404: "Not Found"}.get(status, "Error")
    return _Reply(status, {"error": {"code": status, "message": message, "title": title}})


class FakeOpenStack:
    """A running fake cloud. Use as a context manager or call start()/stop().

    Knobs (plain attributes, change them any time):
        active_after          reads of a BUILD server before it turns ACTIVE
        fail_next_create      a fault message: the next server created goes to ERROR with it
        never_active          servers stay in BUILD forever
        quota_exceeded        POST /servers answers 403 with Nova's quota message
        drop_connections      every request is read and then the connection is closed unanswered
        delay                 seconds to wait before answering each request
        fail_server_reads     how many of the next GET /servers/{id} answer 503
        floating_ips          new servers get a floating IPv4 besides their fixed addresses
        echo_credentials      Keystone's 401 message repeats the credentials it got (a careless
                              proxy does that), to show that the provider's messages scrub them
    """

    def __init__(self) -> None:
        self.active_after = 1
        self.fail_next_create: str | None = None
        self.never_active = False
        self.quota_exceeded = False
        self.drop_connections = False
        self.delay = 0.0
        self.fail_server_reads = 0
        self.floating_ips = True
        self.echo_credentials = False

        self.servers: dict[str, FakeServer] = {}
        self.images = {str(uuid.uuid4()): "fedora-42", str(uuid.uuid4()): "centos-stream-10"}
        self.flavors = {"1": "m1.small", "2": "m1.large"}
        self.networks = {str(uuid.uuid4()): "builders", str(uuid.uuid4()): "other"}
        self.requests: list[RecordedRequest] = []
        self.unknown: list[RecordedRequest] = []
        self.tokens: set[str] = set()

        self.lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._routes = self._make_routes()

    # -- Running ------------------------------------------------------------------------------------

    def start(self) -> FakeOpenStack:
        handler = type("Handler", (_Handler,), {"cloud": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True  # a delayed answer must not keep stop() waiting
        # A short poll interval: stop() waits up to one interval for the serving loop to notice.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.02,), name="fake-openstack", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening: later requests get "connection refused"."""
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeOpenStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "start() the fake first"
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def auth_url(self) -> str:
        return f"{self.url}/identity"

    def password_auth(self, **overrides: str) -> dict[str, str]:
        """The `auth` settings of a provider that logs in with the fake's user and password."""
        return {
            "auth_url": self.auth_url,
            "username": USERNAME,
            "password": PASSWORD,
            "project_name": PROJECT_NAME,
            "user_domain_name": DOMAIN_NAME,
            "project_domain_name": DOMAIN_NAME,
            **overrides,
        }

    def provider_settings(self, **overrides: Any) -> dict[str, Any]:
        """Settings for an openstack provider (as a pool stores them) that uses this cloud."""
        return {
            "auth": self.password_auth(),
            "region_name": REGION,
            "image": "fedora-42",
            "flavor": "m1.small",
            "network": "builders",
            **overrides,
        }

    def app_credential_auth(self, **overrides: str) -> dict[str, str]:
        """The `auth` settings of a provider that logs in with an application credential."""
        return {
            "auth_url": self.auth_url,
            "application_credential_id": APP_CREDENTIAL_ID,
            "application_credential_secret": APP_CREDENTIAL_SECRET,
            **overrides,
        }

    # -- State helpers for tests --------------------------------------------------------------------

    def image_id(self, name: str) -> str:
        return next(i for i, n in self.images.items() if n == name)

    def network_id(self, name: str) -> str:
        return next(i for i, n in self.networks.items() if n == name)

    def add_server(
        self,
        name: str,
        metadata: dict[str, str] | None = None,
        status: str = "ACTIVE",
        task_state: str | None = None,
    ) -> FakeServer:
        """Put a server into the cloud directly, as someone else (or an earlier run) would have."""
        server = FakeServer(
            id=str(uuid.uuid4()),
            name=name,
            metadata=dict(metadata or {}),
            user_data=None,
            image_id=next(iter(self.images)),
            flavor_id=next(iter(self.flavors)),
            network_ids=[next(iter(self.networks))],
            status=status,
            task_state=task_state,
        )
        with self.lock:
            self.servers[server.id] = server
        return server

    def requests_to(self, method: str, path_pattern: str) -> list[RecordedRequest]:
        """The recorded requests with `method` whose path (without query) matches the regex."""
        return [
            r
            for r in self.requests
            if r.method == method and re.fullmatch(path_pattern, urlsplit(r.path).path)
        ]

    # -- Routing ------------------------------------------------------------------------------------

    def _make_routes(
        self,
    ) -> list[tuple[str, re.Pattern[str], Callable[..., tuple[int, Any, dict[str, str]]]]]:
        table: list[tuple[str, str, Callable[..., tuple[int, Any, dict[str, str]]]]] = [
            ("GET", r"/identity/?", self._identity_versions),
            ("GET", r"/identity/v3/?", self._identity_v3),
            ("POST", r"/identity/v3/auth/tokens", self._issue_token),
            ("GET", r"/compute/?", self._compute_versions),
            ("GET", r"/compute/v2\.1/?", self._compute_v21),
            ("POST", r"/compute/v2\.1/servers", self._create_server),
            ("GET", r"/compute/v2\.1/servers(?:/detail)?", self._list_servers),
            ("GET", r"/compute/v2\.1/servers/(?P<server_id>[^/]+)", self._get_server),
            ("DELETE", r"/compute/v2\.1/servers/(?P<server_id>[^/]+)", self._delete_server),
            ("GET", r"/compute/v2\.1/flavors(?:/detail)?", self._list_flavors),
            ("GET", r"/compute/v2\.1/flavors/(?P<flavor_id>[^/]+)", self._get_flavor),
            ("GET", r"/image/?", self._image_versions),
            ("GET", r"/image/v2/?", self._image_v2),
            ("GET", r"/image/v2/images", self._list_images),
            ("GET", r"/image/v2/images/(?P<image_id>[^/]+)", self._get_image),
            ("GET", r"/network/?", self._network_versions),
            ("GET", r"/network/v2\.0/?", self._network_v20),
            ("GET", r"/network/v2\.0/networks", self._list_networks),
            ("GET", r"/network/v2\.0/networks/(?P<network_id>[^/]+)", self._get_network),
        ]
        return [(method, re.compile(pattern), view) for method, pattern, view in table]

    def _dispatch(self, request: RecordedRequest) -> tuple[int, Any, dict[str, str]]:
        parts = urlsplit(request.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        for method, pattern, view in self._routes:
            found = pattern.fullmatch(parts.path)
            if found and method == request.method:
                try:
                    if not parts.path.startswith("/identity"):
                        self._check_token(request)
                    return view(request=request, query=query, **found.groupdict())
                except _Reply as reply:
                    return reply.status, reply.body, {}
        log.warning("fake openstack: unknown request %s %s", request.method, request.path)
        self.unknown.append(request)
        return 404, {"itemNotFound": {"code": 404, "message": "fake: no such route"}}, {}

    def _check_token(self, request: RecordedRequest) -> None:
        if request.headers.get("x-auth-token") not in self.tokens:
            raise _nova_error(401, "The request you have made requires authentication.")

    # -- Keystone -----------------------------------------------------------------------------------

    def _identity_version(self) -> dict[str, Any]:
        return {
            "id": "v3.14",
            "status": "stable",
            "updated": "2020-04-07T00:00:00Z",
            "links": [{"rel": "self", "href": f"{self.auth_url}/v3/"}],
            "media-types": [
                {"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}
            ],
        }

    def _identity_versions(self, **_: Any) -> tuple[int, Any, dict[str, str]]:
        return 300, {"versions": {"values": [self._identity_version()]}}, {}

    def _identity_v3(self, **_: Any) -> tuple[int, Any, dict[str, str]]:
        return 200, {"version": self._identity_version()}, {}

    def _issue_token(self, request: RecordedRequest, **_: Any) -> tuple[int, Any, dict[str, str]]:
        try:
            identity = json.loads(request.body)["auth"]["identity"]
            methods = identity["methods"]
        except (ValueError, KeyError, TypeError):
            raise _keystone_error(400, "Malformed auth request") from None
        if methods == ["password"]:
            user = identity["password"]["user"]
            ok = user.get("name") == USERNAME and user.get("password") == PASSWORD
        elif methods == ["application_credential"]:
            cred = identity["application_credential"]
            ok = cred.get("id") == APP_CREDENTIAL_ID and cred.get("secret") == APP_CREDENTIAL_SECRET
        else:
            ok = False
        if not ok:
            message = "The request you have made requires authentication."
            if self.echo_credentials:
                message += f" Got: {json.dumps(identity)}"
            raise _keystone_error(401, message)
        token = uuid.uuid4().hex
        with self.lock:
            self.tokens.add(token)
        now = datetime.now(UTC)
        domain = {"id": "default", "name": DOMAIN_NAME}
        body = {
            "token": {
                "methods": methods,
                "issued_at": now.strftime("%Y-%m-%dT%H:%M:%S.000000Z"),
                "expires_at": (now + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.000000Z"),
                "user": {"id": "u-1", "name": USERNAME, "domain": domain},
                "project": {"id": "p-1", "name": PROJECT_NAME, "domain": domain},
                "roles": [{"id": "r-1", "name": "member"}],
                "catalog": [
                    self._catalog_entry("identity", "keystone", "/identity"),
                    self._catalog_entry("compute", "nova", "/compute/v2.1"),
                    self._catalog_entry("image", "glance", "/image"),
                    self._catalog_entry("network", "neutron", "/network"),
                ],
            }
        }
        return 201, body, {"X-Subject-Token": token}

    def _catalog_entry(self, service_type: str, name: str, path: str) -> dict[str, Any]:
        return {
            "type": service_type,
            "name": name,
            "id": f"svc-{name}",
            "endpoints": [
                {
                    "id": f"ep-{name}-{interface}",
                    "interface": interface,
                    "region": REGION,
                    "region_id": REGION,
                    "url": self.url + path,
                }
                for interface in ("public", "internal")
            ],
        }

    # -- Nova ---------------------------------------------------------------------------------------

    def _compute_version(self) -> dict[str, Any]:
        return {
            "id": "v2.1",
            "status": "CURRENT",
            "version": MAX_COMPUTE_MICROVERSION,
            "min_version": "2.1",
            "updated": "2013-07-23T11:33:21Z",
            "links": [{"rel": "self", "href": f"{self.url}/compute/v2.1/"}],
        }

    def _compute_versions(self, **_: Any) -> tuple[int, Any, dict[str, str]]:
        return 200, {"versions": [self._compute_version()]}, {}

    def _compute_v21(self, **_: Any) -> tuple[int, Any, dict[str, str]]:
        return 200, {"version": self._compute_version()}, {}

    def _create_server(self, request: RecordedRequest, **_: Any) -> tuple[int, Any, dict[str, str]]:
        try:
            spec = json.loads(request.body)["server"]
        except (ValueError, KeyError, TypeError):
            raise _nova_error(400, "Malformed request body") from None
        if self.quota_exceeded:
            raise _nova_error(403, QUOTA_MESSAGE)
        name = spec.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 255:
            raise _nova_error(400, "Invalid input for field/attribute name.")
        image_id = spec.get("imageRef")
        if image_id not in self.images:
            raise _nova_error(400, f"Image {image_id} could not be found.")
        flavor_id = spec.get("flavorRef")
        if flavor_id not in self.flavors:
            raise _nova_error(400, f"Flavor {flavor_id} could not be found.")
        network_ids = self._requested_networks(spec.get("networks"))
        metadata = spec.get("metadata", {})
        if not isinstance(metadata, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and 0 < len(k) <= 255 and len(v) <= 255
            for k, v in metadata.items()
        ):
            raise _nova_error(400, "Invalid input for field/attribute metadata.")
        user_data = spec.get("user_data")
        if user_data is not None:
            try:
                user_data = base64.b64decode(user_data, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError, TypeError):
                raise _nova_error(400, "User data needs to be valid base 64.") from None
        server = FakeServer(
            id=str(uuid.uuid4()),
            name=name,
            metadata=metadata,
            user_data=user_data,
            image_id=image_id,
            flavor_id=flavor_id,
            network_ids=network_ids,
            key_name=spec.get("key_name"),
            floating_ipv4="203.0.113.5" if self.floating_ips else None,
        )
        with self.lock:
            if self.fail_next_create is not None:
                server.fault, self.fail_next_create = self.fail_next_create, None
            self.servers[server.id] = server
        body = {
            "server": {
                "id": server.id,
                "links": self._server_links(server.id),
                "OS-DCF:diskConfig": "MANUAL",
                "security_groups": [{"name": "default"}],
                "adminPass": "not-a-real-admin-pass",
            }
        }
        return 202, body, {"Location": f"{self.url}/compute/v2.1/servers/{server.id}"}

    def _requested_networks(self, networks: Any) -> list[str]:
        if networks in ("auto", None):
            return [next(iter(self.networks))]
        if networks == "none":
            return []
        if not isinstance(networks, list):
            raise _nova_error(400, "Invalid input for field/attribute networks.")
        ids = []
        for item in networks:
            net_id = item.get("uuid") if isinstance(item, dict) else None
            if net_id not in self.networks:
                raise _nova_error(400, f"Network {net_id} could not be found.")
            ids.append(net_id)
        return ids

    def _list_servers(
        self, request: RecordedRequest, query: dict[str, str]
    ) -> tuple[int, Any, dict[str, str]]:
        # Nova matches `name` as a regular expression (re.search), as the real API does.
        pattern = re.compile(query["name"]) if "name" in query else None
        with self.lock:
            servers = [
                self._server_view(s)
                for s in self.servers.values()
                if pattern is None or pattern.search(s.name)
            ]
        return 200, {"servers": servers}, {}

    def _get_server(self, server_id: str, **_: Any) -> tuple[int, Any, dict[str, str]]:
        with self.lock:
            server = self.servers.get(server_id)
            if server is None:
                raise _nova_error(404, f"Instance {server_id} could not be found.")
            if self.fail_server_reads > 0:
                self.fail_server_reads -= 1
                raise _nova_error(503, "Service Unavailable")
            server.reads += 1
            return 200, {"server": self._server_view(server)}, {}

    def _delete_server(self, server_id: str, **_: Any) -> tuple[int, Any, dict[str, str]]:
        with self.lock:
            if self.servers.pop(server_id, None) is None:
                raise _nova_error(404, f"Instance {server_id} could not be found.")
        return 204, None, {}

    def _server_view(self, server: FakeServer) -> dict[str, Any]:
        """The server as Nova shows it; reading it also moves it along BUILD -> ACTIVE/ERROR."""
        if server.status == "BUILD" and server.reads >= self.active_after and not self.never_active:
            server.status = "ERROR" if server.fault else "ACTIVE"
        view: dict[str, Any] = {
            "id": server.id,
            "name": server.name,
            "status": server.status,
            "metadata": dict(server.metadata),
            "addresses": self._addresses(server) if server.status == "ACTIVE" else {},
            "image": {"id": server.image_id, "links": []},
            "flavor": {"original_name": self.flavors[server.flavor_id], "vcpus": 1, "ram": 2048, "disk": 20},
            "key_name": server.key_name,
            "created": server.created.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "updated": server.created.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "tenant_id": "p-1",
            "user_id": "u-1",
            "hostId": "",
            "accessIPv4": "",
            "accessIPv6": "",
            "OS-EXT-STS:vm_state": {"BUILD": "building", "ACTIVE": "active", "ERROR": "error"}.get(
                server.status, server.status.lower()
            ),
            "OS-EXT-STS:task_state": "spawning" if server.status == "BUILD" else server.task_state,
            "OS-EXT-STS:power_state": 1 if server.status == "ACTIVE" else 0,
            "links": self._server_links(server.id),
        }
        if server.status == "ERROR":
            view["fault"] = {"code": 500, "message": server.fault, "created": view["updated"]}
        return view

    def _addresses(self, server: FakeServer) -> dict[str, list[dict[str, Any]]]:
        mac = "fa:16:3e:00:00:01"
        result: dict[str, list[dict[str, Any]]] = {}
        for net_id in server.network_ids:
            entries = [
                {
                    "version": 4,
                    "addr": server.ipv4,
                    "OS-EXT-IPS:type": "fixed",
                    "OS-EXT-IPS-MAC:mac_addr": mac,
                },
                {
                    "version": 6,
                    "addr": server.ipv6,
                    "OS-EXT-IPS:type": "fixed",
                    "OS-EXT-IPS-MAC:mac_addr": mac,
                },
            ]
            if server.floating_ipv4:
                entries.append(
                    {
                        "version": 4,
                        "addr": server.floating_ipv4,
                        "OS-EXT-IPS:type": "floating",
                        "OS-EXT-IPS-MAC:mac_addr": mac,
                    }
                )
            result[self.networks[net_id]] = entries
        return result

    def _server_links(self, server_id: str) -> list[dict[str, str]]:
        return [
            {"rel": "self", "href": f"{self.url}/compute/v2.1/servers/{server_id}"},
            {"rel": "bookmark", "href": f"{self.url}/compute/servers/{server_id}"},
        ]

    def _flavor_view(self, flavor_id: str) -> dict[str, Any]:
        return {
            "id": flavor_id,
            "name": self.flavors[flavor_id],
            "vcpus": 1,
            "ram": 2048,
            "disk": 20,
            "OS-FLV-EXT-DATA:ephemeral": 0,
            "OS-FLV-DISABLED:disabled": False,
            "os-flavor-access:is_public": True,
            "rxtx_factor": 1.0,
            "swap": 0,
            "description": None,
            "extra_specs": {},
            "links": [{"rel": "self", "href": f"{self.url}/compute/v2.1/flavors/{flavor_id}"}],
        }

    def _list_flavors(self, **_: Any) -> tuple[int, Any, dict[str, str]]:
        return 200, {"flavors": [self._flavor_view(f) for f in self.flavors]}, {}

    def _get_flavor(self, flavor_id: str, **_: Any) -> tuple[int, Any, dict[str, str]]:
        if flavor_id not in self.flavors:
            raise _nova_error(404, f"Flavor {flavor_id} could not be found.")
        return 200, {"flavor": self._flavor_view(flavor_id)}, {}

    # -- Glance -------------------------------------------------------------------------------------

    def _image_versions(self, **_: Any) -> tuple[int, Any, dict[str, str]]:
        version = {
            "id": "v2.16",
            "status": "CURRENT",
            "links": [{"rel": "self", "href": f"{self.url}/image/v2/"}],
        }
        return 300, {"versions": [version]}, {}

    def _image_v2(self, **_: Any) -> tuple[int, Any, dict[str, str]]:
        return self._image_versions()

    def _image_view(self, image_id: str) -> dict[str, Any]:
        return {
            "id": image_id,
            "name": self.images[image_id],
            "status": "active",
            "visibility": "public",
            "disk_format": "qcow2",
            "container_format": "bare",
            "min_disk": 0,
            "min_ram": 0,
            "size": 1024,
            "tags": [],
            "self": f"/v2/images/{image_id}",
            "file": f"/v2/images/{image_id}/file",
            "schema": "/v2/schemas/image",
        }

    def _list_images(self, query: dict[str, str], **_: Any) -> tuple[int, Any, dict[str, str]]:
        found = [self._image_view(i) for i, n in self.images.items() if query.get("name", n) == n]
        return 200, {"images": found, "first": "/v2/images", "schema": "/v2/schemas/images"}, {}

    def _get_image(self, image_id: str, **_: Any) -> tuple[int, Any, dict[str, str]]:
        if image_id not in self.images:
            # Glance answers a plain-text 404.
            raise _Reply(404, {"message": f"No image found with ID {image_id}", "code": "404 Not Found"})
        return 200, self._image_view(image_id), {}

    # -- Neutron ------------------------------------------------------------------------------------

    def _network_versions(self, **_: Any) -> tuple[int, Any, dict[str, str]]:
        version = {
            "id": "v2.0",
            "status": "CURRENT",
            "links": [{"rel": "self", "href": f"{self.url}/network/v2.0/"}],
        }
        return 200, {"versions": [version]}, {}

    def _network_v20(self, **_: Any) -> tuple[int, Any, dict[str, str]]:
        return 200, {"resources": []}, {}

    def _network_view(self, network_id: str) -> dict[str, Any]:
        return {
            "id": network_id,
            "name": self.networks[network_id],
            "status": "ACTIVE",
            "admin_state_up": True,
            "shared": False,
            "subnets": [],
            "project_id": "p-1",
            "tenant_id": "p-1",
        }

    def _list_networks(self, query: dict[str, str], **_: Any) -> tuple[int, Any, dict[str, str]]:
        found = [self._network_view(i) for i, n in self.networks.items() if query.get("name", n) == n]
        return 200, {"networks": found}, {}

    def _get_network(self, network_id: str, **_: Any) -> tuple[int, Any, dict[str, str]]:
        if network_id not in self.networks:
            raise _Reply(
                404,
                {
                    "NeutronError": {
                        "type": "NetworkNotFound",
                        "message": f"Network {network_id} could not be found.",
                    }
                },
            )
        return 200, {"network": self._network_view(network_id)}, {}


class _Handler(BaseHTTPRequestHandler):
    cloud: FakeOpenStack
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle's algorithm each answer would wait ~40 ms.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def do_HEAD(self) -> None:
        self._handle()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("fake openstack: " + format, *args)

    def _handle(self) -> None:
        cloud = self.cloud
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        request = RecordedRequest(
            method=self.command,
            path=self.path,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        with cloud.lock:
            cloud.requests.append(request)
        if cloud.delay and cloud._stopping.wait(cloud.delay):
            return
        if cloud.drop_connections:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        status, payload, headers = cloud._dispatch(request)
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if payload is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-openstack-request-id", f"req-{uuid.uuid4()}")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
