"""Fixtures of the keys tests: real keys from ssh-keygen and a real HTTP key server."""

from __future__ import annotations

import subprocess
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from django.core.cache import cache
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient


@dataclass(frozen=True)
class GeneratedKey:
    """A key pair made by ssh-keygen, with what `ssh-keygen -lf` says about it."""

    path: Path  # the private key file; the public one is next to it, with .pub
    public: str  # the .pub line, without the final newline
    private: str  # the private key file, as written by ssh-keygen
    fingerprint: str
    bits: int
    label: str  # ED25519, RSA, ECDSA, DSA

    @property
    def key_type(self) -> str:
        return self.public.split()[0]

    @property
    def blob(self) -> str:
        return self.public.split()[1]


class KeyMaker:
    """Makes keys with the real ssh-keygen; each distinct request is generated once per session."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._made: dict[tuple[str, str, int | None, str | None], GeneratedKey] = {}

    def __call__(
        self, name: str, key_type: str = "ed25519", bits: int | None = None, comment: str | None = None
    ) -> GeneratedKey:
        """The key called `name` of this type, size and comment (`name@test` by default)."""
        spec = (name, key_type, bits, comment)
        if spec not in self._made:
            path = self.directory / f"key-{len(self._made)}"
            command = ["ssh-keygen", "-q", "-t", key_type, "-N", "", "-f", str(path)]
            command += ["-C", comment if comment is not None else f"{name}@test"]
            if bits is not None:
                command += ["-b", str(bits)]
            subprocess.run(command, check=True, capture_output=True)
            self._made[spec] = self._describe(path, Path(f"{path}.pub"))
        return self._made[spec]

    def certificate(self, name: str) -> str:
        """A user certificate (`…-cert-v01@openssh.com`) for the key `name`, signed by a test CA."""
        ca, key = self("test-ca"), self(name)
        subprocess.run(
            ["ssh-keygen", "-q", "-s", str(ca.path), "-I", name, "-n", "alice", f"{key.path}.pub"],
            check=True,
            capture_output=True,
        )
        return Path(f"{key.path}-cert.pub").read_text().strip()

    @staticmethod
    def _describe(private: Path, public: Path) -> GeneratedKey:
        listed = subprocess.run(
            ["ssh-keygen", "-l", "-E", "sha256", "-f", str(public)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()
        # "256 SHA256:… comment (ED25519)"
        return GeneratedKey(
            path=private,
            public=public.read_text().strip(),
            private=private.read_text(),
            fingerprint=listed[1],
            bits=int(listed[0]),
            label=listed[-1].strip("()"),
        )


@pytest.fixture(scope="session")
def make_key(tmp_path_factory) -> KeyMaker:
    return KeyMaker(tmp_path_factory.mktemp("ssh-keys"))


@pytest.fixture(autouse=True)
def _clear_cache():
    """Fetched keys are cached; no test may see another test's answers."""
    cache.clear()
    yield
    cache.clear()


# --- a real HTTP server standing in for GitHub and FAS ---------------------------------


@dataclass
class Reply:
    """What the key server answers on one path."""

    body: bytes = b""
    status: int = 200
    content_type: str = "text/plain; charset=utf-8"
    # Seconds to wait before answering at all.
    delay: float = 0
    # Send the body one byte at a time, this many seconds apart.
    trickle: float = 0
    # Without a Content-Length, the body ends when the connection closes (HTTP/1.0).
    content_length: bool = True
    # More headers: Location for redirects, Content-Encoding…
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class KeyServer:
    """A loopback HTTP server: `routes` maps a path to a Reply; `requests` lists the paths asked."""

    url: str
    routes: dict[str, Reply] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def github(self, user: str, *keys: GeneratedKey, **reply: object) -> str:
        """Serve `keys` (or the Reply fields given) as GitHub:user; return the path."""
        return self._route(f"/gh/{user}.keys", keys, reply)

    def fas(self, user: str, *keys: GeneratedKey, **reply: object) -> str:
        """Serve `keys` (or the Reply fields given) as FAS:user; return the path."""
        return self._route(f"/fas/{user}/", keys, reply)

    def _route(self, path: str, keys: tuple[GeneratedKey, ...], reply: dict) -> str:
        if keys:
            reply.setdefault("body", keys_body(*keys))
        self.routes[path] = Reply(**reply)
        return path

    def hits(self, path: str) -> int:
        return self.requests.count(path)


def _handler(server: KeyServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
            server.requests.append(self.path)
            server.headers.append(dict(self.headers))
            reply = server.routes.get(self.path, Reply(b"Not Found", status=404))
            if reply.delay and server.stop.wait(reply.delay):
                return
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            if reply.content_length:
                self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            try:
                if not reply.trickle:
                    self.wfile.write(reply.body)
                    return
                for index in range(len(reply.body)):
                    self.wfile.write(reply.body[index : index + 1])
                    self.wfile.flush()
                    if server.stop.wait(reply.trickle):
                        return
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up, which is what several tests want

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    return Handler


@pytest.fixture
def key_server(settings):
    """A key server on 127.0.0.1 that the GitHub and FAS URL templates point at."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = httpd.server_address[1]
    server = KeyServer(url=f"http://127.0.0.1:{port}")
    httpd.RequestHandlerClass = _handler(server)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    settings.COPRSSH_GITHUB_KEYS_URL = f"{server.url}/gh/{{user}}.keys"
    settings.COPRSSH_FAS_KEYS_URL = f"{server.url}/fas/{{user}}/"
    yield server
    server.stop.set()
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def keys_body(*keys: GeneratedKey) -> bytes:
    """A GitHub-style `.keys` answer: one public line per key."""
    return "".join(f"{key.public}\n" for key in keys).encode()


# --- API clients ---------------------------------------------------------------------


@pytest.fixture
def token_client():
    """Make an API client that sends `Authorization: Token …` for a user."""

    def make(user) -> APIClient:
        token, _ = Token.objects.get_or_create(user=user)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        return client

    return make


@pytest.fixture
def api(user, token_client) -> APIClient:
    """An API client authenticated as `user` (alice) with her token."""
    return token_client(user)


@pytest.fixture
def other_api(other_user, token_client) -> APIClient:
    """An API client authenticated as `other_user` (bob) with his token."""
    return token_client(other_user)
