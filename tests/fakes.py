"""Stand-ins every app's tests share; tests/conftest.py offers them as fixtures.

- `KeyServer` (fixture `key_server`): a real HTTP server on 127.0.0.1 in place of GitHub's
  and FAS's key endpoints, which cannot be reached from here.
- `TaskQueue` (fixture `queued`): records the tasks services queue instead of handing them to
  django-q, and runs them by their dotted names when a test plays the worker.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from django.utils.module_loading import import_string

# --- a real HTTP server standing in for GitHub and FAS ---------------------------------


class PublicKey(Protocol):
    """Any test key with its `.pub` line."""

    @property
    def public(self) -> str: ...


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
    """A loopback HTTP server: `routes` maps a path to a Reply; `requests` lists the paths asked.

    GitHub:USER is served at /gh/USER.keys and FAS:USER at /fas/USER/ (the fixture points the
    settings' URL templates there); any other path answers 404.
    """

    url: str
    routes: dict[str, Reply] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def github_url(self) -> str:
        """The COPRSSH_GITHUB_KEYS_URL template that reaches this server."""
        return f"{self.url}/gh/{{user}}.keys"

    @property
    def fas_url(self) -> str:
        """The COPRSSH_FAS_KEYS_URL template that reaches this server."""
        return f"{self.url}/fas/{{user}}/"

    def github(self, user: str, *keys: PublicKey, **reply: Any) -> str:
        """Serve `keys` (or the Reply fields given) as GitHub:user; return the path."""
        return self._route(f"/gh/{user}.keys", keys, reply)

    def fas(self, user: str, *keys: PublicKey, **reply: Any) -> str:
        """Serve `keys` (or the Reply fields given) as FAS:user; return the path."""
        return self._route(f"/fas/{user}/", keys, reply)

    def _route(self, path: str, keys: tuple[PublicKey, ...], reply: dict[str, Any]) -> str:
        if keys:
            reply.setdefault("body", keys_body(*keys))
        self.routes[path] = Reply(**reply)
        return path

    def hits(self, path: str) -> int:
        return self.requests.count(path)


def keys_body(*keys: PublicKey) -> bytes:
    """A GitHub-style `.keys` answer: one public line per key."""
    return "".join(f"{key.public}\n" for key in keys).encode()


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


@contextmanager
def serving_keys() -> Iterator[KeyServer]:
    """A KeyServer listening on 127.0.0.1 until the block ends (a reply still waiting is cut short)."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    server = KeyServer(url=f"http://127.0.0.1:{httpd.server_address[1]}")
    httpd.RequestHandlerClass = _handler(server)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stop.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


# --- the task recorder -------------------------------------------------------------------


@dataclass
class TaskQueue:
    """What services queued with `transaction.on_commit(async_task(...))`, in order.

    `call` runs a service and its on-commit callbacks (which record tasks here instead of
    reaching django-q); `run` plays a worker, executing the recorded tasks by their dotted names.
    """

    capture: Callable[..., AbstractContextManager[Any]]
    tasks: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)

    def record(self, func: str, *args: Any, **kwargs: Any) -> str:
        self.tasks.append((func, args))
        return f"task-{len(self.tasks)}"

    def call(self, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        with self.capture(execute=True):
            return func(*args, **kwargs)

    def take(self) -> list[tuple[str, tuple[Any, ...]]]:
        """The tasks queued since the last take, and forget them."""
        taken, self.tasks = self.tasks, []
        return taken

    def names(self) -> list[str]:
        return [func for func, _ in self.tasks]

    def run(self, *, only: str | None = None, limit: int = 50) -> list[tuple[str, tuple[Any, ...]]]:
        """Run queued tasks (and those they queue) oldest first until none is left; return them."""
        done = []
        while self.tasks:
            index = next((i for i, (func, _) in enumerate(self.tasks) if only in (None, func)), None)
            if index is None:
                break
            func, args = self.tasks.pop(index)
            self.call(import_string(func), *args)
            done.append((func, args))
            if len(done) >= limit:
                raise AssertionError(f"tasks keep queueing tasks: {done[-10:]}")
        return done
