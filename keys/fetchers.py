"""Fetch the public keys of a `GitHub:user` or `FAS:user` reference.

The URL of each provider is a template in settings (`{user}` is replaced by the account
name, which the parser has already checked). Fetches have a timeout, a size cap and a
short cache; every failure raises FetchError with a message that names the reference.
Keys found in a response go through the same parser as pasted keys.
"""

from __future__ import annotations

import json
import logging
import time
from urllib.parse import quote

import requests
from django.conf import settings
from django.core.cache import cache
from urllib3.exceptions import ProtocolError, ReadTimeoutError

from coprssh.exceptions import ServiceError
from keys.parser import PublicKey, Reference, parse_keys

log = logging.getLogger(__name__)

USER_AGENT = "coprssh-keys/1"
# How long a reference that does not exist is remembered, so a typo is not re-fetched
# on every keystroke of a preview; shorter than for found keys.
MISSING_CACHE_SECONDS = 60
MAX_REDIRECTS = 3


class FetchError(ServiceError):
    """Keys of a reference could not be fetched; the message names the reference."""

    def __init__(self, reference: Reference, reason: str, *, remember: bool = False) -> None:
        super().__init__(f"{reference}: {reason}", field="ssh_public_keys")
        self.reference = reference
        self.reason = reason
        # Worth caching for a short while (the account does not exist).
        self.remember = remember


def reference_url(reference: Reference) -> str:
    template = {
        "github": settings.COPRSSH_GITHUB_KEYS_URL,
        "fas": settings.COPRSSH_FAS_KEYS_URL,
    }[reference.provider]
    return template.replace("{user}", quote(reference.username, safe=""))


def _cache_key(reference: Reference) -> str:
    return f"keys:ref:{reference.provider}:{reference.username.lower()}"


def is_cached(reference: Reference) -> bool:
    """Whether `reference` would be answered from the cache (keys or "no such account"), unfetched."""
    return cache.get(_cache_key(reference)) is not None


def fetch_reference(reference: Reference) -> list[PublicKey]:
    """Keys published for `reference`, from the cache or the provider; raise FetchError."""
    key = _cache_key(reference)
    cached = cache.get(key)
    if cached is not None:
        if isinstance(cached, str):
            raise FetchError(reference, cached)
        return [PublicKey(*fields) for fields in cached]
    try:
        keys = _fetch(reference)
    except FetchError as exc:
        if exc.remember:
            cache.set(key, exc.reason, MISSING_CACHE_SECONDS)
        raise
    cache.set(
        key,
        [(k.key_type, k.blob, k.bits, k.comment) for k in keys],
        settings.COPRSSH_KEYS_CACHE_SECONDS,
    )
    return keys


def _fetch(reference: Reference) -> list[PublicKey]:
    url = reference_url(reference)
    timeout = settings.COPRSSH_KEYS_FETCH_TIMEOUT
    limit = settings.COPRSSH_KEYS_FETCH_MAX_BYTES
    deadline = time.monotonic() + timeout
    started = time.monotonic()
    try:
        with requests.Session() as session:
            session.max_redirects = MAX_REDIRECTS
            with session.get(
                url,
                timeout=(timeout, timeout),
                stream=True,
                headers={"User-Agent": USER_AGENT, "Accept": "text/plain, application/json"},
            ) as response:
                body = _read_body(reference, response, limit=limit, deadline=deadline)
                content_type = response.headers.get("Content-Type", "")
    except requests.RequestException as exc:
        raise _request_error(reference, url, exc) from None
    except (ReadTimeoutError, TimeoutError):
        raise FetchError(reference, f"the key server did not answer within {timeout} s") from None
    except (ProtocolError, OSError) as exc:
        log.warning("reading keys of %s from %s failed: %s", reference, url, exc)
        raise FetchError(reference, "the key server closed the connection early") from None
    log.info("fetched keys of %s (%d bytes, %.2f s)", reference, len(body), time.monotonic() - started)
    return _keys_from_body(reference, bytes(body), content_type)


def _read_body(reference: Reference, response: requests.Response, *, limit: int, deadline: float) -> bytes:
    if response.status_code == 404:
        raise FetchError(reference, "no such account (HTTP 404)", remember=True)
    if response.status_code != 200:
        raise FetchError(reference, f"the key server answered HTTP {response.status_code}")
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:
        raise FetchError(reference, f"the answer is larger than {limit} bytes")
    body = bytearray()
    # read1 returns after each network read, so a server that trickles bytes (and so
    # never trips the read timeout) still hits the deadline for the whole answer.
    while chunk := response.raw.read1(8192, decode_content=True):
        body += chunk
        if len(body) > limit:
            raise FetchError(reference, f"the answer is larger than {limit} bytes")
        if time.monotonic() > deadline:
            raise FetchError(
                reference, f"the key server did not answer within {settings.COPRSSH_KEYS_FETCH_TIMEOUT} s"
            )
    return bytes(body)


def _request_error(reference: Reference, url: str, exc: requests.RequestException) -> FetchError:
    # A read timeout while streaming arrives wrapped in a ConnectionError.
    if isinstance(exc, requests.Timeout) or any(isinstance(arg, ReadTimeoutError) for arg in exc.args):
        return FetchError(
            reference, f"the key server did not answer within {settings.COPRSSH_KEYS_FETCH_TIMEOUT} s"
        )
    log.warning("fetching keys of %s from %s failed: %s", reference, url, exc)
    return FetchError(reference, "the key server cannot be reached")


def _keys_from_body(reference: Reference, body: bytes, content_type: str) -> list[PublicKey]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise FetchError(reference, "the answer is not text") from None
    if "json" in content_type.lower():
        text = _lines_from_json(reference, text)
    result = parse_keys(
        text, allow_references=False, max_keys=None, min_rsa_bits=settings.COPRSSH_MIN_RSA_BITS
    )
    if not result.keys:
        if result.errors:
            raise FetchError(reference, f"the answer holds no usable public key ({result.errors[0]})")
        raise FetchError(reference, "this account has no public SSH keys")
    # Keys of a type we refuse (DSA, short RSA) are dropped; the usable ones are taken.
    for error in result.errors:
        log.info("skipped a key of %s: %s", reference, error)
    return [key.with_comment(str(reference)) for key in result.keys]


def _lines_from_json(reference: Reference, text: str) -> str:
    """FASJSON shape: {"result": {"sshpubkeys": [...]}}; also a plain list of lines."""
    try:
        data = json.loads(text)
    except ValueError:
        raise FetchError(reference, "the answer is not valid JSON") from None
    if isinstance(data, dict):
        data = data.get("result", data)
        if isinstance(data, dict):
            data = data.get("sshpubkeys") or data.get("ssh_keys") or []
    if not isinstance(data, list) or not all(isinstance(item, str) for item in data):
        raise FetchError(reference, "the answer does not list SSH keys")
    return "\n".join(item.replace("\n", " ") for item in data)
