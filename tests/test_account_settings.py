"""The profile's e-mail settings: the address, the SSH builder mails (opt-out) and the time zone (issue 13)."""

from __future__ import annotations

import pytest
from django.test import Client
from django.utils.html import escape

from coprssh.exceptions import ServiceError
from coprssh.models import AccountSettings
from coprssh.services import save_account_settings

pytestmark = pytest.mark.django_db

URL = "/accounts/profile/settings/"


@pytest.fixture
def alice_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_the_profile_shows_the_mail_settings_with_the_defaults(alice_client, user):
    user.email = "alice@example.org"
    user.save()

    html = alice_client.get("/accounts/profile/").content.decode()

    assert 'value="alice@example.org"' in html
    assert 'name="email_ssh_builders" id="id_email_ssh_builders" checked' in html
    assert '<option value="" selected>UTC (not set)</option>' in html
    assert '<option value="Europe/Prague">Europe/Prague</option>' in html


def test_saving_the_settings(alice_client, user):
    response = alice_client.post(URL, {"email": " alice@example.org ", "time_zone": "Europe/Prague"})

    assert response.status_code == 302
    assert response["Location"] == "/accounts/profile/"
    user.refresh_from_db()
    assert user.email == "alice@example.org"
    prefs = AccountSettings.of(user)
    assert (prefs.email_ssh_builders, prefs.time_zone, prefs.zone.key) == (
        False,
        "Europe/Prague",
        "Europe/Prague",
    )
    html = alice_client.get("/accounts/profile/").content.decode()
    assert "Your e-mail settings were saved." in html
    assert '<option value="Europe/Prague" selected>' in html
    assert 'id="id_email_ssh_builders" checked' not in html


def test_the_settings_of_a_user_who_never_saved_any_are_the_defaults(user):
    prefs = AccountSettings.of(user)

    assert prefs.pk is None
    assert (prefs.email_ssh_builders, prefs.time_zone, prefs.zone.key) == (True, "", "UTC")


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"email": "not an address"}, "email", "Enter a valid email address."),
        ({"email": "alice@example.org\nBcc: all@example.org"}, "email", "Enter a valid email address."),
        ({"email": "a" * 250 + "@example.org"}, "email", "at most 254 characters"),
        (
            {"email": "alice@example.org", "time_zone": "Mars/Olympus_Mons"},
            "time_zone",
            "Select a valid choice.",
        ),
        (
            {"email": "alice@example.org", "time_zone": "Europe/Prague\x00"},
            "time_zone",
            "Select a valid choice.",
        ),
        (
            {"email": "alice@example.org", "time_zone": "../../etc/passwd"},
            "time_zone",
            "Select a valid choice.",
        ),
        ({"email": "alice@example.org", "email_ssh_builders": "x" * 100_000}, None, None),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(alice_client, user, data, field, message):
    user.email = "before@example.org"
    user.save()

    response = alice_client.post(URL, {"email_ssh_builders": "on", **data})

    if field is None:  # any non-empty value of a checkbox means ticked: nothing to refuse
        assert response.status_code == 302
        return
    assert response.status_code == 400
    assert escape(message) in response.content.decode()
    user.refresh_from_db()
    assert user.email == "before@example.org"
    assert not AccountSettings.objects.exists()


def test_the_service_refuses_what_the_form_would(user):
    with pytest.raises(ServiceError, match="valid e-mail"):
        save_account_settings(user=user, email="a@b@c", email_ssh_builders=True, time_zone="")
    with pytest.raises(ServiceError, match="time zone"):
        save_account_settings(user=user, email="", email_ssh_builders=True, time_zone="Nowhere/Land")
    assert not AccountSettings.objects.exists()


def test_each_user_changes_only_their_own_settings(alice_client, user, other_user):
    alice_client.post(
        URL, {"email": "alice@example.org", "email_ssh_builders": "", "time_zone": "Asia/Tokyo"}
    )

    assert AccountSettings.of(other_user).pk is None
    other_user.refresh_from_db()
    assert other_user.email == ""


def test_anonymous_users_are_sent_to_log_in_and_get_is_refused(client, alice_client):
    response = client.post(URL, {"email": "x@example.org"})

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")
    assert alice_client.get(URL).status_code == 405
    assert not AccountSettings.objects.exists()
