"""WSGI entry point (gunicorn coprssh.wsgi)."""

import os

from django.core.wsgi import get_wsgi_application

from coprssh.checks import require_secret_key

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "coprssh.settings")
application = get_wsgi_application()
# A server must not start without a secret key (settings alone allow it, for other commands).
require_secret_key()
