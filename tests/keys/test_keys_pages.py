"""Web pages: log in, the profile (API token, saved keys) and the saved-key forms."""

from __future__ import annotations

import pytest
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from keys.models import SavedKey
from keys.services import add_saved_key

LOGIN_URL = "/accounts/login/"
PROFILE_URL = "/accounts/profile/"
TOKEN_URL = "/accounts/profile/token/"
ADD_URL = "/keys/add/"


def delete_url(key_id: int) -> str:
    return f"/keys/{key_id}/delete/"


@pytest.fixture
def logged_in_client(client, user) -> Client:
    """Django's test client, logged in as alice."""
    client.force_login(user)
    return client


# --- logging in ----------------------------------------------------------------------


@pytest.mark.django_db
def test_login_page_renders(client):
    response = client.get(LOGIN_URL)

    assert response.status_code == 200
    assert b'name="username"' in response.content
    assert b'name="password"' in response.content


@pytest.mark.django_db
def test_login_with_the_right_password_logs_in(client, user):
    response = client.post(LOGIN_URL, {"username": "alice", "password": "alice-password-1"})

    assert response.status_code == 302
    assert response["Location"] == "/"
    assert client.session["_auth_user_id"] == str(user.pk)
    assert client.get(PROFILE_URL).status_code == 200


@pytest.mark.django_db
def test_login_goes_back_to_the_page_asked_for(client, user):
    response = client.post(
        f"{LOGIN_URL}?next={PROFILE_URL}",
        {"username": "alice", "password": "alice-password-1", "next": PROFILE_URL},
    )

    assert response.status_code == 302
    assert response["Location"] == PROFILE_URL


@pytest.mark.django_db
def test_login_with_a_wrong_password_shows_an_error(client, user):
    response = client.post(LOGIN_URL, {"username": "alice", "password": "wrong-password"})

    assert response.status_code == 200
    assert b"Please enter a correct username and password" in response.content
    assert "_auth_user_id" not in client.session


# --- the profile ---------------------------------------------------------------------


@pytest.mark.django_db
def test_profile_requires_login(client):
    response = client.get(PROFILE_URL)

    assert response.status_code == 302
    assert response["Location"] == f"{LOGIN_URL}?next={PROFILE_URL}"


@pytest.mark.django_db
def test_profile_shows_the_api_token(logged_in_client, user):
    response = logged_in_client.get(PROFILE_URL)

    assert response.status_code == 200
    token = Token.objects.get(user=user)
    assert f'<code id="api-token">{token.key}</code>'.encode() in response.content


@pytest.mark.django_db
def test_profile_shows_the_same_token_every_time(logged_in_client, user):
    logged_in_client.get(PROFILE_URL)
    logged_in_client.get(PROFILE_URL)

    assert Token.objects.filter(user=user).count() == 1


@pytest.mark.django_db
def test_regenerate_token_replaces_the_token(logged_in_client, user):
    old = Token.objects.create(user=user).key
    old_client = APIClient()
    old_client.credentials(HTTP_AUTHORIZATION=f"Token {old}")
    assert old_client.get("/api/v1/keys/").status_code == 200

    response = logged_in_client.post(TOKEN_URL)

    assert response.status_code == 302
    assert response["Location"] == PROFILE_URL
    new = Token.objects.get(user=user).key
    assert new != old
    assert old_client.get("/api/v1/keys/").status_code == 401
    new_client = APIClient()
    new_client.credentials(HTTP_AUTHORIZATION=f"Token {new}")
    assert new_client.get("/api/v1/keys/").status_code == 200
    page = logged_in_client.get(PROFILE_URL)
    assert new.encode() in page.content
    assert old.encode() not in page.content


@pytest.mark.django_db
def test_profile_lists_saved_keys_with_their_fingerprints(logged_in_client, user, other_user, make_key):
    mine, theirs = make_key("page-mine"), make_key("page-theirs")
    add_saved_key(user=user, title="work laptop", public_key=mine.public)
    add_saved_key(user=other_user, title="bob's laptop", public_key=theirs.public)

    response = logged_in_client.get(PROFILE_URL)

    content = response.content.decode()
    assert "work laptop" in content
    assert mine.fingerprint in content
    assert "ED25519 · 256 bits" in content
    assert theirs.fingerprint not in content
    assert "bob" not in content


# --- adding and deleting saved keys --------------------------------------------------


# Regression: request.user is a lazy wrapper; the quota lock once used type(user).
@pytest.mark.django_db
def test_add_key_form_saves_and_lists_the_key(logged_in_client, user, make_key):
    key = make_key("page-add")

    response = logged_in_client.post(ADD_URL, {"title": "desk", "public_key": key.public}, follow=True)

    assert response.redirect_chain == [(PROFILE_URL, 302)]
    assert key.fingerprint in response.content.decode()
    assert SavedKey.objects.get(user=user).fingerprint == key.fingerprint


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("make_input", "shown"),
    [
        (lambda k: {"public_key": f'command="sh" {k("page-bad").public}'}, "options in front of the key"),
        (lambda k: {"public_key": k("page-bad").private}, "this is a PRIVATE key"),
        (lambda k: {"public_key": k("page-dsa", "dsa").public}, "DSA keys (ssh-dss) are not accepted"),
        (lambda k: {"public_key": k.certificate("page-cert")}, "certificates are not accepted"),
        (lambda k: {"public_key": f"{k('page-bad').public} {'x' * 20_000}"}, "at most 16384 characters"),
        (
            lambda k: {"title": "desk\x1b[2J", "public_key": k("page-bad").public},
            "The title contains control characters.",
        ),
        (lambda k: {"public_key": ""}, "This field is required."),
    ],
    ids=["option-prefix", "private-key", "dsa", "certificate", "20kb", "title-escape", "empty"],
)
def test_add_key_form_shows_why_a_key_is_refused(logged_in_client, make_key, make_input, shown):
    response = logged_in_client.post(ADD_URL, make_input(make_key))

    assert response.status_code == 400
    assert shown in response.content.decode()
    assert SavedKey.objects.count() == 0


@pytest.mark.django_db
def test_a_refused_key_gives_back_the_whole_profile(logged_in_client, user, make_key):
    """The e-mail form and the copr-cli configuration stay on the page that says why."""
    user.email = "alice@example.org"
    user.save(update_fields=["email"])

    response = logged_in_client.post(ADD_URL, {"public_key": make_key("page-whole").private})

    page = response.content.decode()
    assert response.status_code == 400
    assert "this is a PRIVATE key" in page
    assert 'name="email"' in page
    assert 'value="alice@example.org"' in page
    assert 'name="time_zone"' in page
    assert "copr_url = http" in page


@pytest.mark.django_db
def test_add_key_form_escapes_what_was_typed(logged_in_client):
    response = logged_in_client.post(
        ADD_URL, {"title": "<b>x</b>", "public_key": "<script>alert(1)</script>"}
    )

    assert response.status_code == 400
    assert b"<script>alert(1)" not in response.content
    assert b"&lt;script&gt;alert(1)" in response.content
    assert b"<b>x</b>" not in response.content


@pytest.mark.django_db
def test_delete_key_removes_own_key(logged_in_client, user, make_key):
    saved = add_saved_key(user=user, title="old laptop", public_key=make_key("page-del").public)

    response = logged_in_client.post(delete_url(saved.pk), follow=True)

    assert response.redirect_chain == [(PROFILE_URL, 302)]
    assert f"Deleted key “old laptop” ({saved.fingerprint})." in response.content.decode()
    assert not SavedKey.objects.filter(pk=saved.pk).exists()


@pytest.mark.django_db
def test_delete_key_of_another_user_is_404(logged_in_client, other_user, make_key):
    saved = add_saved_key(user=other_user, title="bob's", public_key=make_key("page-bob").public)

    response = logged_in_client.post(delete_url(saved.pk))

    assert response.status_code == 404
    assert SavedKey.objects.filter(pk=saved.pk).exists()


@pytest.mark.django_db
def test_delete_key_requires_login(client, user, make_key):
    saved = add_saved_key(user=user, title="", public_key=make_key("page-del").public)

    response = client.post(delete_url(saved.pk))

    assert response.status_code == 302
    assert response["Location"].startswith(f"{LOGIN_URL}?next=")
    assert SavedKey.objects.filter(pk=saved.pk).exists()


@pytest.mark.django_db
@pytest.mark.parametrize("url", [ADD_URL, "/keys/1/delete/", TOKEN_URL])
def test_post_only_urls_refuse_get(logged_in_client, url):
    assert logged_in_client.get(url).status_code == 405


# --- CSRF ----------------------------------------------------------------------------


@pytest.fixture
def csrf_browser(user) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_forms_refuse_a_post_without_csrf_token(csrf_browser, user, make_key):
    saved = add_saved_key(user=user, title="", public_key=make_key("page-csrf").public)
    token = Token.objects.create(user=user).key

    assert csrf_browser.post(ADD_URL, {"public_key": make_key("page-new").public}).status_code == 403
    assert csrf_browser.post(delete_url(saved.pk)).status_code == 403
    assert csrf_browser.post(TOKEN_URL).status_code == 403
    assert list(SavedKey.objects.values_list("pk", flat=True)) == [saved.pk]
    assert Token.objects.get(user=user).key == token


@pytest.mark.django_db
def test_forms_accept_a_post_with_the_page_csrf_token(csrf_browser, user, make_key):
    saved = add_saved_key(user=user, title="", public_key=make_key("page-csrf").public)
    csrf_browser.get(PROFILE_URL)
    csrf_token = csrf_browser.cookies["csrftoken"].value

    response = csrf_browser.post(delete_url(saved.pk), {"csrfmiddlewaretoken": csrf_token})

    assert response.status_code == 302
    assert not SavedKey.objects.filter(pk=saved.pk).exists()
