"""ASGI entry point."""

import os

from django.core.asgi import get_asgi_application

from coprssh.checks import require_secret_key

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "coprssh.settings")
application = get_asgi_application()
# A server must not start without a secret key (settings alone allow it, for other commands).
require_secret_key()
