"""Serve the site from a thread of a benchmark's own process, so that build agents can report to it."""

from __future__ import annotations

import threading


def serve_api() -> str:
    """Serve the WSGI app on a free loopback port; point COPRSSH_PUBLIC_URL at it and return the URL.

    Needs Django set up. Processes started afterwards (a qcluster) must be given the URL in their
    environment: it is what `phase_ready` writes into each agent's job.
    """
    from django.conf import settings
    from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
    from django.core.wsgi import get_wsgi_application

    class Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's name
            pass

    server = ThreadedWSGIServer(("127.0.0.1", 0), Quiet)
    server.set_app(get_wsgi_application())
    threading.Thread(target=server.serve_forever, name="bench-api", daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    settings.COPRSSH_PUBLIC_URL = url
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "127.0.0.1"]
    return url
