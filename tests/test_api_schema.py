"""The /api/v1/ OpenAPI schema says what the API does: schemathesis finds no failure (issue 16).

Requests generated from the schema (valid and invalid ones) go to the WSGI app with a user
token; every check is on. The seed and the number of examples are fixed, so a run is the
same each time and stays short.
"""

from __future__ import annotations

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token

from coprssh.wsgi import application

SEED = 16
EXAMPLES = 12

# These operations check what a schema cannot say: that the chroots are the project's, that a
# key line parses as a key, that a source URL is one the service fetches. A request the schema
# allows may get a 400 from them; every other check, and every other operation, stays as is.
CONTENT_CHECKED = r"^/api/v1/(projects|builds|builds/\{build_id\}/resubmit|keys|keys/check)/$"
config = schemathesis.Config.from_dict(
    {
        "seed": SEED,
        "generation": {"max-examples": EXAMPLES},
        "operations": [
            {
                "include-path-regex": CONTENT_CHECKED,
                "include-method": "POST",
                "checks": {
                    "positive_data_acceptance": {
                        "expected-statuses": ["2xx", "400", "401", "403", "404", "409"]
                    }
                },
            }
        ],
    }
)
schema = schemathesis.openapi.from_wsgi("/api/v1/schema/?format=json", application, config=config)


@pytest.fixture
def token(user, settings) -> str:
    # Throttles off: hundreds of requests a minute are the point here.
    settings.COPRSSH_API_RATE_ANON = ""
    settings.COPRSSH_API_RATE_USER = ""
    settings.COPRSSH_API_RATE_KEYS_CHECK = ""
    settings.COPRSSH_API_RATE_KEY_REFERENCES = ""
    return Token.objects.create(user=user).key


@pytest.fixture(autouse=True)
def _keep_test_connection():
    # Requests go through the WSGI handler, not Django's test client, which would otherwise keep
    # the test's database connection (and its transaction) open the same way.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.mark.django_db
@schema.parametrize()
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
def test_api_answers_as_its_schema_says(case, token):
    case.call_and_validate(headers={"Authorization": f"Token {token}"})


@pytest.fixture
def openapi(client) -> dict:
    return client.get("/api/v1/schema/?format=json").json()


@pytest.mark.django_db
def test_schema_lists_the_error_responses_the_docs_page_shows(openapi):
    paths = openapi["paths"]
    assert {"400", "401", "403", "404", "429"} <= set(paths["/api/v1/builds/"]["post"]["responses"])
    assert {"404", "409"} <= set(paths["/api/v1/builds/{build_id}/cancel/"]["post"]["responses"])
    assert {"401", "404", "429"} <= set(paths["/api/v1/keys/{key_id}/"]["get"]["responses"])
    assert paths["/api/v1/lease/"]["get"]["security"] == [{"leaseToken": []}]
    assert all(path.startswith("/api/v1/") for path in paths)  # /api_3/ is Copr's, not in it


@pytest.mark.django_db
@pytest.mark.parametrize(
    "query", ["project=", "project=0", "offset=null", "limit=0", "limit=201", "offset=-1"]
)
def test_a_bad_query_parameter_is_a_400_naming_it(client, query):
    response = client.get(f"/api/v1/builds/?{query}")
    assert response.status_code == 400
    assert query.split("=")[0] in response.json()
