"""The production web server: gunicorn with DEBUG off, behind a proxy, as docs/deploy.md sets it up.

The server is real (.venv/bin/gunicorn coprssh.wsgi in a session of its own) and has a database of its
own, migrated first: a PostgreSQL database made for it and dropped afterwards when the tests run on
PostgreSQL, else a SQLite file in its data directory. Requests come as nginx forwards them: with the
public Host and X-Forwarded-Proto: https.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
GUNICORN = ROOT / ".venv" / "bin" / "gunicorn"
HOST = "coprssh.example.org"
START_TIMEOUT = 60.0

pytestmark = pytest.mark.slow


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")


@dataclass
class Server:
    port: int
    log: Path
    secret_key: str

    def get(self, path: str, **headers: str) -> Reply:
        """GET `path` as the front proxy forwards it (public host, HTTPS), unless `headers` say otherwise."""
        sent = {"Host": HOST, "X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}
        sent.update({name.replace("_", "-"): value for name, value in headers.items()})
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request("GET", path, headers={k: v for k, v in sent.items() if v})
            response = connection.getresponse()
            return Reply(response.status, response.headers, response.read())
        finally:
            connection.close()


@pytest.fixture(scope="module")
def database_url() -> Iterator[str | None]:
    """The server's own database: a new PostgreSQL database on the tests' server, or None (SQLite)."""
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://", "pgsql://")):
        yield None
        return
    parts = urlsplit(url)
    name = f"coprssh_serving_{secrets.token_hex(6)}"
    maintenance = urlunsplit(parts._replace(scheme="postgresql", path="/postgres"))
    with psycopg.connect(maintenance, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(maintenance, autocommit=True) as connection:
            connection.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def _production_env(tmp_path: Path, database_url: str | None) -> dict[str, str]:
    """Only what docs/deploy.md sets, nothing of the test run's own environment."""
    env = {name: os.environ[name] for name in ("PATH", "HOME", "LANG") if name in os.environ}
    env.update(
        DEBUG="0",
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS=HOST,
        COPRSSH_PUBLIC_URL=f"https://{HOST}",
        SECURE_PROXY_SSL_HEADER="1",
        COPRSSH_TRUSTED_PROXIES="1",
        COPRSSH_DATA_DIR=str(tmp_path / "data"),
        STATIC_ROOT=str(tmp_path / "static"),
        PYTHONUNBUFFERED="1",
    )
    if database_url:
        env["DATABASE_URL"] = database_url
    return env


def _manage(env: dict[str, str], *args: str) -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _listening_port(log: Path) -> int | None:
    found = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", log.read_text(errors="replace"))
    return int(found[1]) if found else None


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, database_url: str | None) -> Iterator[Server]:
    """One server for the tests of this file: migrating and collecting take a while."""
    tmp_path = tmp_path_factory.mktemp("serving")
    env = _production_env(tmp_path, database_url)
    _manage(env, "migrate", "--noinput")
    _manage(env, "collectstatic", "--noinput")
    _manage(env, "check", "--deploy", "--fail-level", "WARNING")
    log = tmp_path / "gunicorn.log"
    with log.open("wb") as out:
        # Port 0: the kernel picks a free one, and gunicorn logs it. No control socket in $HOME.
        process = subprocess.Popen(
            [str(GUNICORN), "coprssh.wsgi", "--bind", "127.0.0.1:0", "--workers", "2", "--no-control-socket"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while (port := _listening_port(log)) is None:
            assert process.poll() is None, f"gunicorn exited:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"gunicorn did not listen:\n{log.read_text()}"
            time.sleep(0.2)
        running = Server(port=port, log=log, secret_key=env["SECRET_KEY"])
        while True:
            with contextlib.suppress(OSError):
                if running.get("/healthz").status == 200:
                    break
            assert process.poll() is None, f"gunicorn exited:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"gunicorn does not answer:\n{log.read_text()}"
            time.sleep(0.2)
        yield running
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=15)


def _static_link(page: Reply, pattern: str) -> str:
    """The one static file of `pattern` that the page links to; its name carries a content hash."""
    found = re.findall(rf'(?:href|src)="(/static/{pattern})"', page.text)
    assert found, f"no link to /static/{pattern} in:\n{page.text[:3000]}"
    return str(found[0])


def _assert_served_for_good(server: Server, url: str, content_type: str) -> None:
    reply = server.get(url, Accept_Encoding="gzip")
    assert reply.status == 200, url
    assert reply.headers["Content-Type"].startswith(content_type), reply.headers
    # Ten years: the name changes with the content (docs/deploy.md).
    assert reply.headers["Cache-Control"] == "max-age=315360000, public, immutable"
    assert reply.headers["Content-Encoding"] == "gzip"


def test_gunicorn_serves_pages_static_files_and_the_api_with_debug_off(server: Server) -> None:
    login = server.get("/accounts/login/")
    assert login.status == 200, login.text[:2000]
    assert 'name="password"' in login.text
    assert "Strict-Transport-Security" in login.headers  # the production security headers are on
    site_css = _static_link(login, r"coprssh/site\.[0-9a-f]{12}\.css")
    _assert_served_for_good(server, site_css, "text/css")

    admin_login = server.get("/admin/login/")
    assert admin_login.status == 200
    _assert_served_for_good(
        server, _static_link(admin_login, r"admin/css/base\.[0-9a-f]{12}\.css"), "text/css"
    )

    api_root = server.get("/api/v1/", Accept="application/json")
    assert api_root.status == 200
    root = json.loads(api_root.body)
    assert root["version"] == "1"
    assert root["builds"] == f"https://{HOST}/api/v1/builds/"  # the proxy's scheme and host

    browsable = server.get("/api/v1/", Accept="text/html")
    assert browsable.status == 200
    _assert_served_for_good(
        server, _static_link(browsable, r"rest_framework/css/bootstrap\.min\.[0-9a-f]{12}\.css"), "text/css"
    )

    docs = server.get("/api/v1/docs/")
    assert docs.status == 200
    swagger = _static_link(
        docs, r"drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle\.[0-9a-f]{12}\.js"
    )
    _assert_served_for_good(server, swagger, "text/javascript")


def test_the_unhashed_static_name_is_served_too_but_cached_briefly(server: Server) -> None:
    reply = server.get("/static/admin/css/base.css")
    assert reply.status == 200
    assert "immutable" not in reply.headers["Cache-Control"]


def test_a_missing_page_is_a_plain_404_without_debug_details(server: Server) -> None:
    for path in ("/no-such-page/", "/static/no-such-file.css", "/api/v1/no-such-thing/"):
        reply = server.get(path)
        assert reply.status == 404, path
        for leak in (
            "Traceback",
            "DEBUG = True",
            "URLconf",
            "urlpatterns",
            "coprssh.urls",
            server.secret_key,
        ):
            assert leak not in reply.text, (path, leak)
    assert json.loads(server.get("/api/v1/no-such-thing/").body)["code"] == "not_found"


def test_the_server_refuses_other_hosts_and_sends_plain_http_to_https(server: Server) -> None:
    other_host = server.get("/accounts/login/", Host="attacker.example")
    assert other_host.status == 400
    assert "DisallowedHost" not in other_host.text

    plain = server.get("/accounts/login/", X_Forwarded_Proto="")
    assert plain.status == 301
    assert plain.headers["Location"] == f"https://{HOST}/accounts/login/"
    # Load balancers probe over plain HTTP.
    assert server.get("/healthz", X_Forwarded_Proto="").status == 200
