"""REST API v1: /api/v1/keys/, /api/v1/keys/{id}/, /api/v1/keys/check/, and the API's front door."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from keys.models import SavedKey
from keys.services import add_saved_key

KEYS_URL = "/api/v1/keys/"
CHECK_URL = "/api/v1/keys/check/"
FIELDS = {"id", "title", "public_key", "type", "bits", "fingerprint", "created"}


def detail_url(key_id: int) -> str:
    return f"/api/v1/keys/{key_id}/"


# --- list, create, read, delete ------------------------------------------------------


@pytest.mark.django_db
def test_keys_api_create_returns_the_saved_key(api, user, make_key):
    key = make_key("api-laptop", comment="alice@laptop")

    response = api.post(KEYS_URL, {"title": "laptop", "public_key": key.public}, format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == FIELDS
    assert body["title"] == "laptop"
    assert body["public_key"] == f"ssh-ed25519 {key.blob} laptop"
    assert body["type"] == "ssh-ed25519"
    assert body["bits"] == 256
    assert body["fingerprint"] == key.fingerprint
    assert SavedKey.objects.get(pk=body["id"]).user == user


@pytest.mark.django_db
def test_keys_api_create_rsa_reports_its_bits(api, make_key):
    key = make_key("api-rsa", "rsa", 3072)

    response = api.post(KEYS_URL, {"public_key": key.public}, format="json")

    assert response.status_code == 201, response.content
    assert (response.json()["type"], response.json()["bits"]) == ("ssh-rsa", 3072)
    assert response.json()["fingerprint"] == key.fingerprint


@pytest.mark.django_db
def test_keys_api_public_key_is_the_canonical_line(api, make_key):
    key = make_key("api-canonical")
    pasted = f"  {key.key_type}\t{key.blob}   my \t  work   laptop  \n"

    response = api.post(KEYS_URL, {"public_key": pasted}, format="json")

    assert response.status_code == 201, response.content
    assert response.json()["title"] == "my work laptop"
    assert response.json()["public_key"] == f"{key.key_type} {key.blob} my work laptop"


@pytest.mark.django_db
def test_keys_api_list_get_and_delete(api, make_key):
    first = api.post(KEYS_URL, {"title": "one", "public_key": make_key("api-1").public}, format="json").json()
    second = api.post(
        KEYS_URL, {"title": "two", "public_key": make_key("api-2").public}, format="json"
    ).json()

    listed = api.get(KEYS_URL)
    assert listed.status_code == 200
    assert listed.json() == [first, second]
    assert all(set(item) == FIELDS for item in listed.json())

    one = api.get(detail_url(first["id"]))
    assert one.status_code == 200
    assert one.json() == first

    deleted = api.delete(detail_url(first["id"]))
    assert deleted.status_code == 204
    assert api.get(detail_url(first["id"])).status_code == 404
    assert api.get(KEYS_URL).json() == [second]


@pytest.mark.django_db
def test_keys_api_missing_key_is_404(api):
    assert api.get(detail_url(999999)).status_code == 404
    response = api.delete(detail_url(999999))
    assert response.status_code == 404
    assert response.json()["detail"] == "No such saved key."


@pytest.mark.django_db
def test_keys_api_lists_and_deletes_with_the_browser_session(user, make_key):
    saved = add_saved_key(user=user, title="laptop", public_key=make_key("api-session").public)
    client = APIClient()
    assert client.login(username="alice", password="alice-password-1")

    listed = client.get(KEYS_URL)
    deleted = client.delete(detail_url(saved.pk))

    assert [item["id"] for item in listed.json()] == [saved.pk]
    assert deleted.status_code == 204
    assert SavedKey.objects.count() == 0


# Regression: request.user is a lazy wrapper; the quota lock once used type(user).
@pytest.mark.django_db
def test_keys_api_creates_with_the_browser_session(user, make_key):
    client = APIClient()
    assert client.login(username="alice", password="alice-password-1")

    created = client.post(KEYS_URL, {"public_key": make_key("api-session").public}, format="json")

    assert created.status_code == 201, created.content
    assert [item["id"] for item in client.get(KEYS_URL).json()] == [created.json()["id"]]


@pytest.mark.django_db
def test_keys_api_session_post_without_csrf_token_is_refused(user, make_key):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)

    response = client.post(KEYS_URL, {"public_key": make_key("api-session").public}, format="json")

    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]
    assert SavedKey.objects.count() == 0


# --- hostile input -------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("make_input", "message_part"),
    [
        (lambda k: f'command="sh",no-pty {k("api-hostile").public}', "options in front of the key"),
        (lambda k: k("api-hostile").private, "PRIVATE key"),
        (lambda k: f"{k('api-hostile').public} {'x' * 20_000}", "no more than 16384 characters"),
        (lambda k: f"{k('api-hostile').public} {'x' * 10_000}", "a key line may have at most 8192"),
        (lambda k: k.certificate("api-certified"), "certificates are not accepted"),
        (lambda k: "\n".join(k(f"api-many-{i}").public for i in range(11)), "exactly one key"),
        (lambda k: f"{k('api-hostile').public}\x00", "Null characters are not allowed."),
        (lambda k: k("api-dsa", "dsa").public, "DSA keys (ssh-dss) are not accepted"),
        (lambda k: k("api-rsa-1024", "rsa", 1024).public, "at least 2048 bits; this one has 1024"),
        (lambda k: 42, "SSH protocol 1 keys are not accepted"),
        (lambda k: [k("api-hostile").public], "Not a valid string."),
        (lambda k: None, "This field may not be null."),
        (lambda k: "", "This field may not be blank."),
    ],
    ids=[
        "option-prefix",
        "private-key",
        "20kb-line",
        "10kb-line",
        "certificate",
        "eleven-keys",
        "nul-byte",
        "dsa",
        "short-rsa",
        "number",
        "list",
        "null",
        "blank",
    ],
)
def test_keys_api_refuses_hostile_public_key(api, make_key, make_input, message_part):
    response = api.post(KEYS_URL, {"title": "t", "public_key": make_input(make_key)}, format="json")

    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/json"
    messages = response.json()["public_key"]
    assert any(message_part in m for m in messages), messages
    assert SavedKey.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("title", "message_part"),
    [
        ("laptop\x1b[2J", "control characters"),
        ("x" * 101, "no more than 100 characters"),
        (["a"], "Not a valid string."),
    ],
    ids=["escape", "101-chars", "list"],
)
def test_keys_api_refuses_hostile_title(api, make_key, title, message_part):
    response = api.post(KEYS_URL, {"title": title, "public_key": make_key("api-1").public}, format="json")

    assert response.status_code == 400, response.content
    assert any(message_part in m for m in response.json()["title"]), response.json()
    assert SavedKey.objects.count() == 0


@pytest.mark.django_db
def test_keys_api_refuses_a_missing_public_key(api):
    response = api.post(KEYS_URL, {"title": "laptop"}, format="json")

    assert response.status_code == 400
    assert response.json() == {"public_key": ["This field is required."]}


@pytest.mark.django_db
def test_keys_api_refuses_a_body_that_is_not_json(api):
    response = api.post(KEYS_URL, data='{"public_key": "ssh-ed25519', content_type="application/json")

    assert response.status_code == 400
    assert "JSON parse error" in response.json()["detail"]
    assert SavedKey.objects.count() == 0


@pytest.mark.django_db
def test_keys_api_refuses_a_json_list_body(api):
    response = api.post(KEYS_URL, data="[1, 2]", content_type="application/json")

    assert response.status_code == 400
    assert "non_field_errors" in response.json()


@pytest.mark.django_db
def test_keys_api_refuses_a_duplicate_clearly(api, make_key):
    key = make_key("api-dup")
    assert api.post(KEYS_URL, {"public_key": key.public}, format="json").status_code == 201

    response = api.post(KEYS_URL, {"title": "again", "public_key": key.public}, format="json")

    assert response.status_code == 400
    assert response.json()["public_key"] == [f"You have already saved this key ({key.fingerprint})."]
    assert response.json()["detail"] == f"You have already saved this key ({key.fingerprint})."
    assert SavedKey.objects.count() == 1


@pytest.mark.django_db
def test_keys_api_refuses_keys_past_the_limit(api, make_key, settings):
    settings.COPRSSH_MAX_SAVED_KEYS = 2
    for i in range(2):
        assert (
            api.post(KEYS_URL, {"public_key": make_key(f"api-{i}").public}, format="json").status_code == 201
        )

    response = api.post(KEYS_URL, {"public_key": make_key("api-2").public}, format="json")

    assert response.status_code == 400
    assert response.json()["public_key"] == ["You can save at most 2 keys; delete one first."]


# --- other users and anonymous callers -----------------------------------------------


@pytest.fixture
def alice_key(user, make_key):
    return add_saved_key(user=user, title="alice's", public_key=make_key("alice-key").public)


@pytest.mark.django_db
def test_keys_api_lists_only_the_callers_keys(alice_key, other_api, other_user, make_key):
    add_saved_key(user=other_user, title="bob's", public_key=make_key("bob-key").public)

    response = other_api.get(KEYS_URL)

    assert [item["title"] for item in response.json()] == ["bob's"]


@pytest.mark.django_db
def test_keys_api_other_user_cannot_read_a_key(alice_key, other_api):
    response = other_api.get(detail_url(alice_key.pk))

    assert response.status_code == 404
    assert alice_key.fingerprint not in response.content.decode()


@pytest.mark.django_db
def test_keys_api_other_user_cannot_delete_a_key(alice_key, other_api):
    response = other_api.delete(detail_url(alice_key.pk))

    assert response.status_code == 404
    assert SavedKey.objects.filter(pk=alice_key.pk).exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", KEYS_URL),
        ("post", KEYS_URL),
        ("get", "detail"),
        ("delete", "detail"),
        ("post", CHECK_URL),
    ],
)
@pytest.mark.parametrize("authorization", [None, "Token 0123456789abcdef0123456789abcdef01234567"])
def test_keys_api_refuses_anonymous_callers(alice_key, make_key, method, path, authorization):
    client = APIClient()
    if authorization:
        client.credentials(HTTP_AUTHORIZATION=authorization)
    url = detail_url(alice_key.pk) if path == "detail" else path
    data = {"public_key": make_key("anon").public, "ssh_public_keys": make_key("anon").public}

    response = getattr(client, method)(url, data, format="json")

    assert response.status_code in (401, 403)
    assert alice_key.fingerprint not in response.content.decode()
    assert SavedKey.objects.count() == 1


# --- the checker ---------------------------------------------------------------------


@pytest.mark.django_db
def test_keys_check_reports_each_line_and_stores_nothing(api, make_key):
    ed25519, rsa = make_key("check-1"), make_key("check-rsa", "rsa", 2048)
    text = "\n".join(
        [
            ed25519.public,
            "# a comment",
            f'command="sh" {ed25519.public}',
            rsa.public,
            ed25519.public,
            "ssh-ed25519 AAA",
        ]
    )

    response = api.post(CHECK_URL, {"ssh_public_keys": text}, format="json")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["ok"] is False
    lines = body["lines"]
    assert [(item["line"], item["status"]) for item in lines] == [
        (1, "key"),
        (3, "error"),
        (4, "key"),
        (5, "duplicate"),
        (6, "error"),
    ]
    first_key = lines[0]["keys"][0]
    assert first_key["type"] == "ssh-ed25519"
    assert first_key["bits"] == 256
    assert first_key["fingerprint"] == ed25519.fingerprint
    assert first_key["public_key"] == ed25519.public
    assert (lines[2]["keys"][0]["type"], lines[2]["keys"][0]["bits"]) == ("ssh-rsa", 2048)
    assert "options in front of the key" in lines[1]["message"]
    assert lines[3]["message"] == "the same key as line 1; given once"
    assert lines[3]["keys"] == []
    assert "not valid base64" in lines[4]["message"]
    assert SavedKey.objects.count() == 0


@pytest.mark.django_db
def test_keys_check_all_good_is_ok(api, make_key):
    response = api.post(CHECK_URL, {"ssh_public_keys": make_key("check-1").public}, format="json")

    assert response.json()["ok"] is True


@pytest.mark.django_db
def test_keys_check_resolves_references(api, make_key, key_server):
    key = make_key("check-gh")
    key_server.github("alice", key)

    response = api.post(CHECK_URL, {"ssh_public_keys": "GitHub:alice\nGitHub:nobody"}, format="json")

    lines = response.json()["lines"]
    assert [(item["line"], item["status"]) for item in lines] == [(1, "reference"), (2, "error")]
    assert lines[0]["message"] == "GitHub:alice"
    assert [(k["fingerprint"], k["comment"]) for k in lines[0]["keys"]] == [(key.fingerprint, "GitHub:alice")]
    assert lines[1]["message"] == "GitHub:nobody: no such account (HTTP 404)"
    assert response.json()["ok"] is False


@pytest.mark.django_db
def test_keys_check_eleven_keys_flags_the_eleventh(api, make_key):
    text = "\n".join(make_key(f"check-many-{i}").public for i in range(11))

    response = api.post(CHECK_URL, {"ssh_public_keys": text}, format="json")

    errors = [item for item in response.json()["lines"] if item["status"] == "error"]
    assert [(e["line"], e["message"]) for e in errors] == [(11, "11 keys given; at most 10 can be deployed")]


@pytest.mark.django_db
def test_keys_check_requires_the_field(api):
    response = api.post(CHECK_URL, {}, format="json")

    assert response.status_code == 400
    assert response.json() == {"ssh_public_keys": ["This field is required."]}


# --- root, schema, docs --------------------------------------------------------------


@pytest.mark.django_db
def test_api_root_answers_with_links():
    response = APIClient().get("/api/v1/")

    assert response.status_code == 200
    body = response.json()
    assert body["keys"] == "http://testserver/api/v1/keys/"
    assert body["user"] is None


@pytest.mark.django_db
def test_api_root_names_the_caller(api):
    assert api.get("/api/v1/").json()["user"] == "alice"


@pytest.mark.django_db
def test_api_schema_is_openapi_with_the_keys_paths():
    response = APIClient().get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")

    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    assert {"/api/v1/keys/", "/api/v1/keys/{key_id}/", "/api/v1/keys/check/"} <= set(schema["paths"])
    assert set(schema["paths"]["/api/v1/keys/"]) >= {"get", "post"}
    assert set(schema["paths"]["/api/v1/keys/{key_id}/"]) >= {"get", "delete"}


@pytest.mark.django_db
def test_api_docs_render_html():
    response = APIClient().get("/api/v1/docs/")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assert b"/api/v1/schema/" in response.content
