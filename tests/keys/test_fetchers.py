"""keys.fetchers against a real HTTP server on the loopback interface."""

from __future__ import annotations

import gzip
import json
import socket
import time

import pytest
import time_machine

from keys.fetchers import MISSING_CACHE_SECONDS, USER_AGENT, FetchError, fetch_reference
from keys.parser import Reference

GITHUB_ALICE = Reference("github", "alice", 1)
FAS_ALICE = Reference("fas", "alice", 1)


@pytest.fixture(autouse=True)
def _short_limits(settings):
    settings.COPRSSH_KEYS_FETCH_TIMEOUT = 1
    settings.COPRSSH_KEYS_FETCH_MAX_BYTES = 4096
    settings.COPRSSH_KEYS_CACHE_SECONDS = 300


def fetch_error(reference: Reference) -> FetchError:
    with pytest.raises(FetchError) as caught:
        fetch_reference(reference)
    return caught.value


def test_fetch_github_returns_every_key_named_after_the_reference(key_server, make_key):
    first, second = make_key("gh-1"), make_key("gh-2", "ecdsa", 384)
    key_server.github("alice", first, second)

    keys = fetch_reference(GITHUB_ALICE)

    assert [k.fingerprint for k in keys] == [first.fingerprint, second.fingerprint]
    assert [k.comment for k in keys] == ["GitHub:alice", "GitHub:alice"]
    assert [k.bits for k in keys] == [256, 384]
    assert keys[0].line == f"{first.key_type} {first.blob} GitHub:alice"


def test_fetch_asks_for_exactly_the_account_path(key_server, make_key):
    path = key_server.github("alice", make_key("gh-1"))

    fetch_reference(GITHUB_ALICE)

    assert path == "/gh/alice.keys"
    assert key_server.requests == ["/gh/alice.keys"]
    assert key_server.headers[0]["User-Agent"] == USER_AGENT


# The cache key holds the odd name too; harmless with the locmem and Redis caches.
@pytest.mark.filterwarnings("ignore::django.core.cache.backends.base.CacheKeyWarning")
def test_fetch_quotes_the_user_name_in_the_url(key_server):
    # The parser only lets plain names through; the fetcher must not rely on it.
    fetch_error(Reference("github", "a b/../c?x", 1))

    assert key_server.requests == ["/gh/a%20b%2F..%2Fc%3Fx.keys"]


def test_fetch_follows_a_redirect(key_server, make_key):
    key = make_key("gh-1")
    key_server.github("alice", status=301, headers={"Location": f"{key_server.url}/gh/alice-renamed.keys"})
    key_server.github("alice-renamed", key)

    keys = fetch_reference(GITHUB_ALICE)

    assert [k.fingerprint for k in keys] == [key.fingerprint]
    assert key_server.requests == ["/gh/alice.keys", "/gh/alice-renamed.keys"]


def test_fetch_gives_up_on_a_redirect_loop(key_server):
    key_server.github("alice", status=302, headers={"Location": f"{key_server.url}/gh/alice.keys"})

    error = fetch_error(GITHUB_ALICE)

    assert error.message == "GitHub:alice: the key server cannot be reached"
    assert key_server.hits("/gh/alice.keys") <= 4


def test_fetch_fas_reads_the_fasjson_shape(key_server, make_key):
    key = make_key("fas-1")
    body = json.dumps({"result": {"sshpubkeys": [key.public]}}).encode()
    key_server.fas("alice", body=body, content_type="application/json")

    keys = fetch_reference(FAS_ALICE)

    assert [(k.fingerprint, k.comment) for k in keys] == [(key.fingerprint, "FAS:alice")]
    assert key_server.requests == ["/fas/alice/"]


def test_fetch_fas_json_without_key_list_is_refused(key_server):
    key_server.fas("alice", body=b'{"result": {"sshpubkeys": "not a list"}}', content_type="application/json")

    error = fetch_error(FAS_ALICE)

    assert error.message == "FAS:alice: the answer does not list SSH keys"


def test_fetch_fas_account_without_keys(key_server):
    key_server.fas("alice", body=b'{"result": {"sshpubkeys": null}}', content_type="application/json")

    error = fetch_error(FAS_ALICE)

    assert error.message == "FAS:alice: this account has no public SSH keys"


def test_fetch_fas_answer_that_is_not_json(key_server):
    key_server.fas("alice", body=b"<html>", content_type="application/json")

    error = fetch_error(FAS_ALICE)

    assert error.message == "FAS:alice: the answer is not valid JSON"


def test_fetch_unknown_account_names_the_reference(key_server):
    error = fetch_error(GITHUB_ALICE)

    assert error.message.startswith("GitHub:alice: ")
    assert "no such account" in error.message
    assert error.reference == GITHUB_ALICE


def test_fetch_server_error_gives_the_status(key_server):
    key_server.github("alice", body=b"oops", status=500)

    error = fetch_error(GITHUB_ALICE)

    assert error.message == "GitHub:alice: the key server answered HTTP 500"


def test_fetch_slow_server_times_out_quickly(key_server, make_key):
    key_server.github("alice", make_key("gh-1"), delay=4)

    started = time.monotonic()
    error = fetch_error(GITHUB_ALICE)
    elapsed = time.monotonic() - started

    assert error.message == "GitHub:alice: the key server did not answer within 1 s"
    assert elapsed < 3


def test_fetch_trickling_server_hits_the_deadline(key_server, make_key):
    # One byte every 0.3 s never trips a 1 s read timeout; the whole answer has a deadline.
    key_server.github("alice", make_key("gh-1"), trickle=0.3)

    started = time.monotonic()
    error = fetch_error(GITHUB_ALICE)
    elapsed = time.monotonic() - started

    assert error.message == "GitHub:alice: the key server did not answer within 1 s"
    assert elapsed < 3


def test_fetch_html_page_has_no_usable_key(key_server):
    key_server.github(
        "alice", body=b"<!doctype html>\n<html><body>Hello</body></html>\n", content_type="text/html"
    )

    error = fetch_error(GITHUB_ALICE)

    assert error.message.startswith("GitHub:alice: the answer holds no usable public key (line 1: ")


def test_fetch_binary_answer_is_refused(key_server):
    key_server.github("alice", body=b"\xff\xfe\x00garbage")

    error = fetch_error(GITHUB_ALICE)

    assert error.message == "GitHub:alice: the answer is not text"


def test_fetch_skips_a_dsa_key_and_keeps_the_good_one(key_server, make_key):
    dsa, good = make_key("gh-dsa", "dsa"), make_key("gh-1")
    key_server.github("alice", dsa, good)

    keys = fetch_reference(GITHUB_ALICE)

    assert [k.fingerprint for k in keys] == [good.fingerprint]


def test_fetch_only_dsa_keys_is_refused_with_the_reason(key_server, make_key):
    key_server.github("alice", make_key("gh-dsa", "dsa"))

    error = fetch_error(GITHUB_ALICE)

    assert "no usable public key" in error.message
    assert "DSA" in error.message


@pytest.mark.parametrize("content_length", [True, False], ids=["declared", "undeclared"])
def test_fetch_oversized_answer_is_refused(key_server, make_key, content_length):
    body = (make_key("gh-1").public + "\n").encode() * 200
    assert len(body) > 4096
    key_server.github("alice", body=body, content_length=content_length)

    error = fetch_error(GITHUB_ALICE)

    assert error.message == "GitHub:alice: the answer is larger than 4096 bytes"


def test_fetch_size_limit_counts_the_decompressed_answer(key_server, make_key):
    body = (make_key("gh-1").public + "\n").encode() * 2000
    compressed = gzip.compress(body)
    assert len(compressed) < 4096 < len(body)
    key_server.github("alice", body=compressed, headers={"Content-Encoding": "gzip"}, content_length=False)

    error = fetch_error(GITHUB_ALICE)

    assert error.message == "GitHub:alice: the answer is larger than 4096 bytes"


def test_fetch_reads_a_compressed_answer(key_server, make_key):
    key = make_key("gh-1")
    key_server.github("alice", body=gzip.compress(key.public.encode()), headers={"Content-Encoding": "gzip"})

    assert [k.fingerprint for k in fetch_reference(GITHUB_ALICE)] == [key.fingerprint]


def test_fetch_answer_just_under_the_size_limit_is_read(key_server, make_key, settings):
    key = make_key("gh-1")
    body = (key.public + "\n").encode()
    settings.COPRSSH_KEYS_FETCH_MAX_BYTES = len(body)
    key_server.github("alice", body=body, content_length=False)

    assert [k.fingerprint for k in fetch_reference(GITHUB_ALICE)] == [key.fingerprint]


def test_fetch_closed_port_cannot_be_reached(settings):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings.COPRSSH_GITHUB_KEYS_URL = f"http://127.0.0.1:{port}/gh/{{user}}.keys"

    error = fetch_error(GITHUB_ALICE)

    assert error.message == "GitHub:alice: the key server cannot be reached"


def test_fetch_empty_answer_means_no_keys(key_server):
    key_server.github("alice", body=b"")

    error = fetch_error(GITHUB_ALICE)

    assert error.message == "GitHub:alice: this account has no public SSH keys"


def test_fetch_second_time_comes_from_the_cache(key_server, make_key):
    key = make_key("gh-1")
    path = key_server.github("alice", key)

    first = fetch_reference(GITHUB_ALICE)
    second = fetch_reference(Reference("github", "ALICE", 3))

    assert key_server.hits(path) == 1
    assert second == first


def test_fetch_cache_expires(key_server, make_key, settings):
    path = key_server.github("alice", make_key("gh-1"))

    with time_machine.travel(time.time(), tick=True) as traveller:
        fetch_reference(GITHUB_ALICE)
        traveller.shift(settings.COPRSSH_KEYS_CACHE_SECONDS + 1)
        fetch_reference(GITHUB_ALICE)

    assert key_server.hits(path) == 2


def test_fetch_missing_account_is_remembered_briefly(key_server, make_key):
    with time_machine.travel(time.time(), tick=True) as traveller:
        first = fetch_error(GITHUB_ALICE)
        second = fetch_error(GITHUB_ALICE)
        assert key_server.hits("/gh/alice.keys") == 1
        assert second.message == first.message

        # The account is created; after a short while it is found.
        key_server.github("alice", make_key("gh-1"))
        traveller.shift(MISSING_CACHE_SECONDS + 1)
        keys = fetch_reference(GITHUB_ALICE)

    assert key_server.hits("/gh/alice.keys") == 2
    assert len(keys) == 1


def test_fetch_server_error_is_not_remembered(key_server, make_key):
    path = key_server.github("alice", body=b"oops", status=503)
    fetch_error(GITHUB_ALICE)

    key_server.github("alice", make_key("gh-1"))
    keys = fetch_reference(GITHUB_ALICE)

    assert key_server.hits(path) == 2
    assert len(keys) == 1


def test_fetch_caches_github_and_fas_separately(key_server, make_key):
    github_key, fas_key = make_key("gh-1"), make_key("fas-1")
    key_server.github("alice", github_key)
    key_server.fas("alice", fas_key, content_type="text/plain")

    assert fetch_reference(GITHUB_ALICE)[0].fingerprint == github_key.fingerprint
    assert fetch_reference(FAS_ALICE)[0].fingerprint == fas_key.fingerprint
