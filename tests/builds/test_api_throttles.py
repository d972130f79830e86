"""Issue #10: the API is throttled, anonymous clients per address and signed-in users per user."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from tests.builds.test_api_builds import client_for

pytestmark = pytest.mark.django_db

URL = "/api/v1/builds/"


def statuses(client: APIClient, count: int, **extra: str) -> list[int]:
    return [client.get(URL, **extra).status_code for _ in range(count)]


def test_anonymous_requests_past_the_rate_are_429_per_address(settings):
    settings.COPRSSH_API_RATE_ANON = "3/min"
    client = APIClient()

    assert statuses(client, 4) == [200, 200, 200, 429]
    refused = client.get(URL)
    assert refused["Content-Type"] == "application/json"
    assert "Request was throttled" in refused.json()["detail"]
    assert 0 < int(refused["Retry-After"]) <= 60
    # Another address has its own count; a forged X-Forwarded-For is no other address.
    assert statuses(client, 1, REMOTE_ADDR="192.0.2.9") == [200]
    assert statuses(client, 1, HTTP_X_FORWARDED_FOR="198.51.100.1") == [429]


def test_behind_a_trusted_proxy_the_forwarded_address_counts(settings):
    settings.COPRSSH_API_RATE_ANON = "1/min"
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    client = APIClient()

    assert statuses(client, 2, HTTP_X_FORWARDED_FOR="198.51.100.1") == [200, 429]
    assert statuses(client, 1, HTTP_X_FORWARDED_FOR="198.51.100.2") == [200]


def test_a_users_requests_past_the_rate_are_429_and_other_users_go_on(settings, user, other_user):
    settings.COPRSSH_API_RATE_USER = "3/min"
    alice, bob = client_for(user), client_for(other_user)

    assert statuses(alice, 4) == [200, 200, 200, 429]
    assert alice.post(URL, {}, format="json").status_code == 429  # writes count too
    assert statuses(bob, 1) == [200]


def test_an_empty_rate_turns_the_limit_off(settings, user):
    settings.COPRSSH_API_RATE_USER = ""

    assert set(statuses(client_for(user), 30)) == {200}
