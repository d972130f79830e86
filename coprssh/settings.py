"""Settings for coprssh, read from the environment.

Every variable read here is listed in docs/configuration.md. With nothing set the
service runs on a SQLite file in ./data; production sets DATABASE_URL, SECRET_KEY,
ALLOWED_HOSTS and COPRSSH_PUBLIC_URL.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
import django_stubs_ext
from django.core.exceptions import ImproperlyConfigured

from coprssh.env import env_bool, env_choice, env_int, env_list, env_secret, env_str
from coprssh.mailconfig import BACKENDS, SMTP, MailSettings, parse_email_url

SMTP_BACKEND = SMTP
CONSOLE_BACKEND = BACKENDS["console"]

# Django's generic classes (ModelAdmin, QuerySet, forms) take type arguments at runtime too.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DEBUG", False)

# Local files: the SQLite database, build logs and results, local builders.
DATA_DIR = Path(env_str("COPRSSH_DATA_DIR", str(BASE_DIR / "data"))).resolve()

# Without a key in production, commands that sign nothing (makemigrations, a shell) still
# run; serving is refused by the system check coprssh.E001 (runserver, check), and anything
# that signs fails because Django refuses an empty SECRET_KEY when it is read.
SECRET_KEY = env_secret("SECRET_KEY")
if not SECRET_KEY and DEBUG:
    SECRET_KEY = "insecure-development-key-set-SECRET_KEY-in-production"  # noqa: S105

# How builders, the command-line client and e-mails reach this service.
COPRSSH_PUBLIC_URL = env_str("COPRSSH_PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/")


def _public_host() -> str:
    """The host of COPRSSH_PUBLIC_URL as ALLOWED_HOSTS spells it (an IPv6 address in brackets)."""
    try:
        parts = urlsplit(COPRSSH_PUBLIC_URL)
        scheme, host, _port = parts.scheme, parts.hostname or "", parts.port  # a bad port raises
    except ValueError:
        scheme = host = ""
    if scheme not in ("http", "https") or not host:
        raise ImproperlyConfigured(
            f"COPRSSH_PUBLIC_URL must be an http:// or https:// URL with a host; got {COPRSSH_PUBLIC_URL!r}"
        )
    return f"[{host}]" if ":" in host else host


# In development the site also answers at the public URL's host, so that a demo bound to every
# address (bin/run with COPRSSH_BIND=0.0.0.0:8000) can be opened from other machines.
_DEV_HOSTS = ["localhost", "127.0.0.1", "[::1]"]
if _public_host() not in _DEV_HOSTS:
    _DEV_HOSTS.append(_public_host())
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", _DEV_HOSTS if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

# E-mail (to owners of SSH builders): EMAIL_URL, else the usual EMAIL_* variables, else the
# console in development and a mail server on localhost:25 in production (coprssh/mailconfig.py).
_email_url = env_secret("EMAIL_URL")
if _email_url:
    try:
        _mail = parse_email_url(_email_url)
    except ValueError as _error:
        raise ImproperlyConfigured(f"EMAIL_URL: {_error}") from None
elif env_str("EMAIL_HOST"):
    _mail = MailSettings(
        backend=SMTP_BACKEND,
        host=env_str("EMAIL_HOST"),
        port=env_int("EMAIL_PORT", 25, minimum=1, maximum=65535),
        user=env_str("EMAIL_HOST_USER"),
        password=env_secret("EMAIL_HOST_PASSWORD"),
        use_tls=env_bool("EMAIL_USE_TLS", False),
        use_ssl=env_bool("EMAIL_USE_SSL", False),
    )
    if _mail.use_tls and _mail.use_ssl:
        raise ImproperlyConfigured(
            "EMAIL_USE_TLS (STARTTLS) and EMAIL_USE_SSL (TLS from the start) exclude each other"
        )
else:
    _mail = MailSettings(backend=CONSOLE_BACKEND if DEBUG else SMTP_BACKEND)
EMAIL_BACKEND = _mail.backend
EMAIL_HOST = _mail.host
EMAIL_PORT = _mail.port
EMAIL_HOST_USER = _mail.user
EMAIL_HOST_PASSWORD = _mail.password
EMAIL_USE_TLS = _mail.use_tls
EMAIL_USE_SSL = _mail.use_ssl
if _mail.file_path:
    EMAIL_FILE_PATH = _mail.file_path
# A mail server that does not answer must not hold a worker for long.
EMAIL_TIMEOUT = _mail.timeout or env_int("EMAIL_TIMEOUT", 10, minimum=1, maximum=300)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "coprssh <coprssh@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

INSTALLED_APPS = [
    "coprssh.apps.OperatorsAdminConfig",  # django.contrib.admin with the operators' front page
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    # Before django_q, so that our `qcluster` command (a stop with a time limit) replaces its own.
    "coprssh",
    "django_q",
    "keys",
    "builders",
    "builds",
    "copr_api",  # after builds: it is built on the builds services
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Static files from STATIC_ROOT, by the web process itself (docs/deploy.md says why).
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "coprssh.urls"
WSGI_APPLICATION = "coprssh.wsgi.application"
ASGI_APPLICATION = "coprssh.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]


def _database() -> dj_database_url.DBConfig:
    url = env_secret("DATABASE_URL")
    if url:
        try:
            config = dj_database_url.parse(url, conn_max_age=env_int("DB_CONN_MAX_AGE", 0, minimum=0))
        except Exception as exc:  # dj-database-url raises several types for bad URLs
            raise ImproperlyConfigured(f"DATABASE_URL is not a valid database URL: {exc}") from None
        if config["ENGINE"] == "django.db.backends.sqlite3":
            config.setdefault("OPTIONS", {}).update(_SQLITE_OPTIONS)
        return config
    # The embedded default: a SQLite file in the data directory, created on first use. The
    # directory holds the database and the service's SSH key: only its owner may enter it.
    DATA_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(DATA_DIR / "coprssh.sqlite3"),
        "OPTIONS": dict(_SQLITE_OPTIONS),
        # Concurrency tests need a file: an in-memory database is private to one connection.
        "TEST": {"NAME": str(DATA_DIR / "test-coprssh.sqlite3")},
    }


# IMMEDIATE takes the write lock when a transaction starts, so two writers queue on the
# busy timeout instead of failing with "database is locked" when one upgrades its lock.
_SQLITE_OPTIONS = {
    "transaction_mode": "IMMEDIATE",
    "timeout": 30,
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
}

DATABASES = {"default": _database()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "LOCATION": "coprssh",
    }
}
if env_str("REDIS_URL"):
    CACHES["default"] = {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": env_str("REDIS_URL"),
        "KEY_PREFIX": "coprssh",
    }

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "home"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(DATA_DIR / "static")))
STATICFILES_DIRS = [BASE_DIR / "static"]
# Production serves what `manage.py collectstatic` put in STATIC_ROOT: file names carry a hash of
# their content (cached for good by browsers) and come gzipped too. Development and the tests
# serve the source files as they are, with nothing to collect first. Both follow DEBUG as the
# process started with it (the test runner turns DEBUG off later).
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG

# Uploads bigger than this are refused by Django before any view sees them.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 2 * 1024 * 1024, minimum=64 * 1024)

# Security: safe by default in production; DEBUG (development) turns the HTTPS-only parts off.
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
# Joining the browsers' HSTS preload list is a commitment for a whole domain that only
# its owner can make; it stays opt-in, so the deploy check's reminder about it is off.
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]
if env_bool("SECURE_PROXY_SSL_HEADER", False):
    # Only behind a proxy that sets this header itself and strips it from clients.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_SCHEMA_CLASS": "coprssh.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "coprssh.exceptions.api_exception_handler",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
}

# --- rate and size limits (coprssh/limits.py; counters in CACHES, shared with REDIS_URL) ---
# API requests per minute (or /s, /hour, /day): anonymous per client address, signed-in per
# user; an empty value turns a limit off. Answers past it are 429 with Retry-After.
COPRSSH_API_RATE_ANON = env_str("COPRSSH_API_RATE_ANON", "120/min")
COPRSSH_API_RATE_USER = env_str("COPRSSH_API_RATE_USER", "600/min")
# /api/v1/keys/check/ per user, and the GitHub/FAS names not yet cached it looks up per user.
COPRSSH_API_RATE_KEYS_CHECK = env_str("COPRSSH_API_RATE_KEYS_CHECK", "60/min")
COPRSSH_API_RATE_KEY_REFERENCES = env_str("COPRSSH_API_RATE_KEY_REFERENCES", "30/hour")
# Reports from one build phase's agent (live log chunks, its end): it sends about one a second.
COPRSSH_API_RATE_AGENT = env_str("COPRSSH_API_RATE_AGENT", "600/min")
_PERIODS = {"s", "sec", "second", "m", "min", "minute", "h", "hour", "d", "day"}
for _name in ("ANON", "USER", "KEYS_CHECK", "KEY_REFERENCES", "AGENT"):
    _count, _, _period = globals()[f"COPRSSH_API_RATE_{_name}"].partition("/")
    if (_count or _period) and not (_count.isdigit() and _period in _PERIODS):
        raise ImproperlyConfigured(f"COPRSSH_API_RATE_{_name} must look like 600/min, or be empty")
# Failed logins per user name and per client address before the login refuses them for the window.
COPRSSH_LOGIN_FAILURES = env_int("COPRSSH_LOGIN_FAILURES", 10, minimum=1)
COPRSSH_LOGIN_WINDOW = env_int("COPRSSH_LOGIN_WINDOW", 15 * 60, minimum=1)
# Reverse proxies in front of the service that each append to X-Forwarded-For; 0 trusts no
# such header and counts clients by the connection's address.
COPRSSH_TRUSTED_PROXIES = env_int("COPRSSH_TRUSTED_PROXIES", 0, minimum=0, maximum=10)
REST_FRAMEWORK["DEFAULT_THROTTLE_CLASSES"] = ["coprssh.limits.AnonThrottle", "coprssh.limits.UserThrottle"]
REST_FRAMEWORK["NUM_PROXIES"] = COPRSSH_TRUSTED_PROXIES
AUTHENTICATION_BACKENDS = ["coprssh.limits.LoginLimitBackend", "django.contrib.auth.backends.ModelBackend"]
# Before anything reads a body: a request larger than the largest upload is refused unread (413).
MIDDLEWARE.insert(1, "coprssh.limits.RequestSizeLimitMiddleware")

SPECTACULAR_SETTINGS = {
    "TITLE": "coprssh API",
    "DESCRIPTION": "Package builds with SSH access to the builders that run them.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SWAGGER_UI_SETTINGS": {
        # Swagger UI puts a deep link inside the button that opens an operation: a control in a
        # control, which keyboards and screen readers cannot tell apart (axe: nested-interactive).
        "deepLinking": False,
        # Its highlighting colours are too faint on their dark background; examples stay plain text.
        "syntaxHighlight": {"activated": False},
    },
    "COMPONENT_SPLIT_REQUEST": True,
    # API v1 only: Copr's /api_3/ has its own clients and its own error shape.
    "PREPROCESSING_HOOKS": ["coprssh.openapi.only_api_v1"],
    # Two models have a `state` field with different choices; name their enums apart.
    "ENUM_NAME_OVERRIDES": {
        "BuildStateEnum": "builds.models.State",
        "LeaseStateEnum": "builders.models.Lease.State",
    },
}

# django-q2 on the ORM broker. The broker hands a task out again once `retry` seconds pass
# without an acknowledgement, so `timeout` (when a worker is killed) must stay below it or
# a slow task runs twice at once. Failed tasks are acknowledged (they are recorded as
# failures, not redelivered forever); missed schedules are not replayed one by one.
Q_TIMEOUT = env_int("COPRSSH_TASK_TIMEOUT", 600, minimum=10)
Q_CLUSTER = {
    "name": "coprssh",
    "orm": "default",
    "workers": env_int("COPRSSH_WORKERS", 2, minimum=1, maximum=64),
    "timeout": Q_TIMEOUT,
    "retry": Q_TIMEOUT + 60,
    "max_attempts": env_int("COPRSSH_TASK_MAX_ATTEMPTS", 3, minimum=1),
    "ack_failures": True,
    "catch_up": False,
    "save_limit": 1000,
    # How often an idle cluster asks the database for tasks: each task hop waits half of it on
    # average (a user waiting for an SSH builder waits for one such hop).
    "poll": env_int("COPRSSH_TASK_POLL_MS", 200, minimum=50, maximum=10_000) / 1000,
    "label": "Task queue",
    "sync": env_bool("COPRSSH_TASKS_SYNC", False),
}
# Seconds `manage.py qcluster` lets running tasks finish after SIGTERM before it kills its workers.
COPRSSH_STOP_GRACE = env_int("COPRSSH_STOP_GRACE", 20, minimum=0, maximum=3600)

# --- builders ---
# Sandboxes of local builders (one folder per pool).
COPRSSH_BUILDERS_DIR = Path(env_str("COPRSSH_BUILDERS_DIR", str(DATA_DIR / "builders")))
# The service's own SSH key, installed on every builder; created on first use.
COPRSSH_ADMIN_KEY_FILE = Path(env_str("COPRSSH_ADMIN_KEY_FILE", str(DATA_DIR / "ssh" / "admin_ed25519")))
# Homes of the unprivileged accounts that isolated local builders log in as (the service runs as root).
COPRSSH_LOCAL_HOMES_DIR = Path(env_str("COPRSSH_LOCAL_HOMES_DIR", "/var/lib/coprssh-builders"))
# A pool whose creates fail waits this long after the first failure, doubling up to the maximum.
COPRSSH_POOL_BACKOFF_FIRST = env_int("COPRSSH_POOL_BACKOFF_FIRST", 30, minimum=1, maximum=24 * 3600)
COPRSSH_POOL_BACKOFF_MAX = env_int("COPRSSH_POOL_BACKOFF_MAX", 30 * 60, minimum=1, maximum=7 * 24 * 3600)
# Talking to a builder: each SSH/SFTP wait, each whole call, and a whole results fetch (seconds).
COPRSSH_BUILDER_IO_TIMEOUT = env_int("COPRSSH_BUILDER_IO_TIMEOUT", 15, minimum=1, maximum=600)
COPRSSH_BUILDER_CALL_DEADLINE = env_int("COPRSSH_BUILDER_CALL_DEADLINE", 60, minimum=1, maximum=3600)
COPRSSH_BUILDER_FETCH_DEADLINE = env_int("COPRSSH_BUILDER_FETCH_DEADLINE", 1800, minimum=1, maximum=86400)
# Idle ready builders are checked over SSH when they have not been for this long (0: never).
COPRSSH_HEALTH_CHECK_SECONDS = env_int("COPRSSH_HEALTH_CHECK_SECONDS", 60, minimum=0)

# --- the SSH gateway (`manage.py gateway`; docs/operators.md) ---
# The name or address users give to `ssh -J`; empty: no gateway, builders are reached directly.
COPRSSH_GATEWAY_HOST = env_str("COPRSSH_GATEWAY_HOST", "").strip()
COPRSSH_GATEWAY_PORT = env_int("COPRSSH_GATEWAY_PORT", 2222, minimum=1, maximum=65535)
# Addresses the gateway's sshd listens on; empty: every address of the host.
COPRSSH_GATEWAY_LISTEN = env_list("COPRSSH_GATEWAY_LISTEN", [])
# The unprivileged account users log in as on the gateway (no shell, no home).
COPRSSH_GATEWAY_USER = env_str("COPRSSH_GATEWAY_USER", "coprssh-gw").strip()
# The gateway's sshd_config, host key, authorized_keys and log.
COPRSSH_GATEWAY_DIR = Path(env_str("COPRSSH_GATEWAY_DIR", str(DATA_DIR / "gateway")))
COPRSSH_GATEWAY_SSHD = env_str("COPRSSH_GATEWAY_SSHD", "/usr/sbin/sshd")
# The gateway's public host key line, for web hosts that do not share COPRSSH_GATEWAY_DIR.
COPRSSH_GATEWAY_HOST_KEY = env_str("COPRSSH_GATEWAY_HOST_KEY", "").strip()


def _check_gateway() -> None:
    import ipaddress
    import re

    host = COPRSSH_GATEWAY_HOST
    if host:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            if not re.fullmatch(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252}[A-Za-z0-9])?", host):
                raise ImproperlyConfigured(
                    f"COPRSSH_GATEWAY_HOST must be a host name or an IP address; got {host!r}"
                ) from None
    if not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", COPRSSH_GATEWAY_USER):
        raise ImproperlyConfigured(
            f"COPRSSH_GATEWAY_USER must be a user name (a-z, 0-9, _ and -); got {COPRSSH_GATEWAY_USER!r}"
        )
    for address in COPRSSH_GATEWAY_LISTEN:
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise ImproperlyConfigured(
                f"COPRSSH_GATEWAY_LISTEN must list IP addresses; got {address!r}"
            ) from None
    # The folder's paths are written into sshd_config, which splits on blanks and reads quotes, '#' and '%'.
    if host and re.search(r"""[\s"'#%\\]""", str(COPRSSH_GATEWAY_DIR.absolute())):
        raise ImproperlyConfigured(
            f"COPRSSH_GATEWAY_DIR must not contain blanks, quotes, '#', '%' or '\\': {COPRSSH_GATEWAY_DIR}"
        )
    if not os.path.isabs(COPRSSH_GATEWAY_SSHD):
        raise ImproperlyConfigured(
            f"COPRSSH_GATEWAY_SSHD must be an absolute path; got {COPRSSH_GATEWAY_SSHD!r}"
        )
    if COPRSSH_GATEWAY_HOST_KEY and not re.fullmatch(
        r"ssh-ed25519 [A-Za-z0-9+/]+={0,2}( .*)?", COPRSSH_GATEWAY_HOST_KEY
    ):
        raise ImproperlyConfigured(
            "COPRSSH_GATEWAY_HOST_KEY must be the gateway's public key line (ssh-ed25519 AAAA…)"
        )


_check_gateway()

# --- builds ---
# Build logs, SRPMs and results: one folder per project/chroot/build.
COPRSSH_STORAGE_DIR = Path(env_str("COPRSSH_STORAGE_DIR", str(DATA_DIR / "storage")))
COPRSSH_MAX_SPEC_BYTES = env_int("COPRSSH_MAX_SPEC_BYTES", 1024 * 1024, minimum=1024)
COPRSSH_MAX_SRPM_BYTES = env_int("COPRSSH_MAX_SRPM_BYTES", 512 * 1024 * 1024, minimum=1024)
# Largest single result file fetched back from a builder, and all of one phase's results.
COPRSSH_MAX_RESULT_BYTES = env_int("COPRSSH_MAX_RESULT_BYTES", 1024 * 1024 * 1024, minimum=1024)
COPRSSH_MAX_RESULTS_BYTES = env_int("COPRSSH_MAX_RESULTS_BYTES", 4 * 1024 * 1024 * 1024, minimum=1024)
# All files one project may store (SRPMs, results, logs); 0 means no limit.
COPRSSH_PROJECT_STORAGE_BYTES = env_int("COPRSSH_PROJECT_STORAGE_BYTES", 50 * 1024**3, minimum=0)
# Largest builder-live.log stored; the rest is cut with a note.
COPRSSH_MAX_LOG_BYTES = env_int("COPRSSH_MAX_LOG_BYTES", 256 * 1024 * 1024, minimum=1024)
COPRSSH_BUILD_TIMEOUT = env_int("COPRSSH_BUILD_TIMEOUT", 5 * 3600, minimum=60)
# The agent on a builder reports its live log and its end to COPRSSH_PUBLIC_URL. One report carries
# at most this many bytes of log; an agent silent for COPRSSH_AGENT_SILENCE seconds gets its builder
# checked once over SSH by the builds tick.
COPRSSH_AGENT_CHUNK_BYTES = env_int(
    "COPRSSH_AGENT_CHUNK_BYTES", 256 * 1024, minimum=1024, maximum=8 * 1024**2
)
COPRSSH_AGENT_SILENCE = env_int("COPRSSH_AGENT_SILENCE", 90, minimum=5, maximum=3600)
# Architecture of the builders that run SRPM phases (default: this machine's).
COPRSSH_SRPM_ARCH = env_str("COPRSSH_SRPM_ARCH", platform.machine())
# Let sources come from loopback and link-local addresses (tests and local demos only).
COPRSSH_ALLOW_LOCAL_SOURCES = env_bool("COPRSSH_ALLOW_LOCAL_SOURCES", False)
# Let sources come from private networks (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7),
# e.g. an internal git server the builders can reach; off by default.
COPRSSH_ALLOW_PRIVATE_SOURCES = env_bool("COPRSSH_ALLOW_PRIVATE_SOURCES", False)

# --- keys ---
# RSA keys shorter than this are refused (2048 or 3072).
COPRSSH_MIN_RSA_BITS = env_int("COPRSSH_MIN_RSA_BITS", 2048, minimum=2048, maximum=16384)
COPRSSH_MAX_KEYS = env_int("COPRSSH_MAX_KEYS", 10, minimum=1, maximum=100)
COPRSSH_MAX_SAVED_KEYS = env_int("COPRSSH_MAX_SAVED_KEYS", 50, minimum=1, maximum=1000)
# Where `GitHub:user` and `FAS:user` references are looked up; {user} is the account name.
COPRSSH_GITHUB_KEYS_URL = env_str("COPRSSH_GITHUB_KEYS_URL", "https://github.com/{user}.keys")
COPRSSH_FAS_KEYS_URL = env_str("COPRSSH_FAS_KEYS_URL", "https://fasjson.fedoraproject.org/v1/users/{user}/")
COPRSSH_KEYS_FETCH_TIMEOUT = env_int("COPRSSH_KEYS_FETCH_TIMEOUT", 5, minimum=1, maximum=60)
COPRSSH_KEYS_FETCH_MAX_BYTES = env_int("COPRSSH_KEYS_FETCH_MAX_BYTES", 64 * 1024, minimum=1024)
COPRSSH_KEYS_CACHE_SECONDS = env_int("COPRSSH_KEYS_CACHE_SECONDS", 300, minimum=0)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {
        "handlers": ["console"],
        "level": env_choice("LOG_LEVEL", "INFO", ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]),
    },
    "loggers": {"django.db.backends": {"level": "INFO"}},
}
