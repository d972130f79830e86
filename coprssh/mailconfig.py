"""How the service sends e-mail, from `EMAIL_URL` or the usual `EMAIL_*` variables (coprssh/settings.py).

`EMAIL_URL` names the backend and the server in one value:

    smtp://user:password@mail.example.org:25        plain SMTP (port 25)
    smtp+tls://user:password@mail.example.org:587   SMTP with STARTTLS (port 587); also submission://
    smtps://user:password@mail.example.org:465      SMTP over TLS (port 465); also smtp+ssl://
    console://                                      print mails on standard output (development)
    file:///var/lib/coprssh/mails                   write each mail to a file in that folder
    locmem:// or dummy://                           keep them in memory, or drop them (tests)

User and password are percent-decoded (write `@` as `%40`). `?timeout=N` (seconds) overrides
EMAIL_TIMEOUT. Nothing here imports Django: settings.py calls it before Django is set up.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

SMTP = "django.core.mail.backends.smtp.EmailBackend"
BACKENDS = {
    "console": "django.core.mail.backends.console.EmailBackend",
    "file": "django.core.mail.backends.filebased.EmailBackend",
    "locmem": "django.core.mail.backends.locmem.EmailBackend",
    "memory": "django.core.mail.backends.locmem.EmailBackend",
    "dummy": "django.core.mail.backends.dummy.EmailBackend",
}
# scheme: (default port, STARTTLS, implicit TLS)
SMTP_SCHEMES = {
    "smtp": (25, False, False),
    "smtp+tls": (587, True, False),
    "submission": (587, True, False),
    "smtps": (465, False, True),
    "smtp+ssl": (465, False, True),
}
MAX_TIMEOUT = 300


@dataclass(frozen=True)
class MailSettings:
    """Django's EMAIL_* settings."""

    backend: str
    host: str = "localhost"
    port: int = 25
    user: str = ""
    password: str = ""
    use_tls: bool = False
    use_ssl: bool = False
    file_path: str | None = None
    timeout: int | None = None


def parse_email_url(url: str) -> MailSettings:
    """The settings `url` stands for; ValueError saying what is wrong (never repeating the password)."""
    url = url.strip()
    if any(ord(char) < 0x21 or ord(char) == 0x7F for char in url):
        raise ValueError("has a space or a control character; percent-encode it (%20)")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ValueError(
            "not a URL with a valid port, e.g. smtp://user:password@mail.example.org:587"
        ) from None
    scheme = parts.scheme.lower()
    timeout = _timeout(parts.query)
    if scheme in BACKENDS:
        path = unquote(parts.path) if scheme == "file" else None
        if scheme == "file" and (
            parts.netloc not in ("", "localhost") or not (path and path.startswith("/"))
        ):
            raise ValueError("file:// takes an absolute folder, e.g. file:///var/lib/coprssh/mails")
        return MailSettings(backend=BACKENDS[scheme], file_path=path, timeout=timeout)
    if scheme not in SMTP_SCHEMES:
        known = ", ".join(f"{name}://" for name in [*SMTP_SCHEMES, *BACKENDS])
        raise ValueError(f"unknown scheme {scheme + '://' if scheme else '(none)'}; use one of {known}")
    if not parts.hostname:
        raise ValueError(f"{scheme}:// needs a host, e.g. {scheme}://mail.example.org")
    if parts.path not in ("", "/"):
        raise ValueError(f"{scheme}:// takes no path")
    default_port, use_tls, use_ssl = SMTP_SCHEMES[scheme]
    return MailSettings(
        backend=SMTP,
        host=parts.hostname,
        port=port or default_port,
        user=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
        use_tls=use_tls,
        use_ssl=use_ssl,
        timeout=timeout,
    )


def _timeout(query: str) -> int | None:
    values = parse_qs(query, keep_blank_values=True, strict_parsing=False)
    unknown = sorted(set(values) - {"timeout"})
    if unknown:
        raise ValueError(f"unknown option {unknown[0]!r}; only ?timeout=SECONDS is understood")
    if "timeout" not in values:
        return None
    raw = values["timeout"][-1]
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_TIMEOUT:
        raise ValueError(f"timeout must be a whole number of seconds from 1 to {MAX_TIMEOUT}")
    return int(raw)
