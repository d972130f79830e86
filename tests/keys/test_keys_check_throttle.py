"""Issue #10: /api/v1/keys/check/ is throttled per user, and per GitHub/FAS name it would look up.

Each name not in the cache is a request to GitHub or FAS from the service's one allowance
there; a user may not spend it for everyone.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db

CHECK_URL = "/api/v1/keys/check/"


def check(client, text: str):
    return client.post(CHECK_URL, {"ssh_public_keys": text}, format="json")


def test_key_checks_past_the_users_rate_are_429(api, other_api, make_key, settings):
    settings.COPRSSH_API_RATE_KEYS_CHECK = "3/min"
    key = make_key("laptop")

    answers = [check(api, key.public).status_code for _ in range(4)]

    assert answers == [200, 200, 200, 429]
    refused = check(api, key.public)
    assert refused.status_code == 429
    assert "throttled" in refused.json()["detail"].lower()
    assert int(refused["Retry-After"]) > 0
    assert check(other_api, key.public).status_code == 200  # per user


def test_new_names_past_the_rate_are_429_and_not_looked_up(api, other_api, key_server, make_key, settings):
    settings.COPRSSH_API_RATE_KEY_REFERENCES = "2/hour"
    for name in ("ann", "ben", "cat"):
        key_server.github(name, make_key(name))

    first = check(api, "GitHub:ann\nGitHub:ben")
    again = check(api, "GitHub:ann GitHub:ben")  # in the cache: no lookup, nothing counted
    third = check(api, "GitHub:cat")

    assert (first.status_code, again.status_code) == (200, 200)
    assert [line["status"] for line in first.json()["lines"]] == ["reference", "reference"]
    assert third.status_code == 429
    assert "Too many new GitHub/FAS names to look up; GitHub:cat was not looked up." in third.json()["detail"]
    assert key_server.hits("/gh/cat.keys") == 0
    assert (key_server.hits("/gh/ann.keys"), key_server.hits("/gh/ben.keys")) == (1, 1)
    # Another user has an allowance of their own.
    assert check(other_api, "GitHub:cat").status_code == 200
    assert key_server.hits("/gh/cat.keys") == 1


def test_one_request_cannot_look_up_more_new_names_than_the_rate(api, key_server, make_key, settings):
    settings.COPRSSH_API_RATE_KEY_REFERENCES = "2/hour"
    for name in ("ann", "ben", "cat"):
        key_server.github(name, make_key(name))

    response = check(api, "GitHub:ann GitHub:ben FAS:cat")

    assert response.status_code == 429
    assert key_server.requests == []


def test_pasted_keys_cost_no_lookups(api, make_key, settings):
    settings.COPRSSH_API_RATE_KEY_REFERENCES = "1/hour"

    for _ in range(3):
        assert check(api, make_key("laptop").public).status_code == 200
