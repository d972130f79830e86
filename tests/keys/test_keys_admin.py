"""Operators delete saved keys in the admin only through keys.services, with a log line each."""

from __future__ import annotations

import logging

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.models import DELETION, LogEntry

from keys.models import SavedKey
from keys.services import add_saved_key, remove_saved_keys

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/keys/savedkey/"


@pytest.fixture
def operator(django_user_model):
    return django_user_model.objects.create_superuser("ops", "ops@example.org", "ops-password-1")


@pytest.fixture
def ops(client, operator):
    client.force_login(operator)
    return client


@pytest.fixture
def keys(user, other_user, make_key):
    return [
        add_saved_key(user=user, title="laptop", public_key=make_key("admin-a").public),
        add_saved_key(user=user, title="desktop", public_key=make_key("admin-b").public),
        add_saved_key(user=other_user, title="work", public_key=make_key("admin-c").public),
    ]


def _deletions(caplog) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "keys.services" and "deleted saved key" in r.getMessage()
    ]


def test_changelist_offers_delete_selected_keys(ops, keys):
    page = ops.get(CHANGELIST).content.decode()

    assert "Delete selected keys" in page


def test_delete_selected_keys_asks_first_then_deletes_through_the_service(ops, keys, caplog):
    chosen = [str(keys[0].pk), str(keys[2].pk)]
    caplog.set_level(logging.INFO, logger="keys.services")

    asked = ops.post(CHANGELIST, {"action": "delete_selected", ACTION_CHECKBOX_NAME: chosen})
    assert asked.status_code == 200
    assert SavedKey.objects.count() == 3
    assert "Are you sure" in asked.content.decode()

    done = ops.post(
        CHANGELIST,
        {"action": "delete_selected", ACTION_CHECKBOX_NAME: chosen, "post": "yes"},
        REMOTE_ADDR="198.51.100.4",
    )

    assert done.status_code == 302
    assert list(SavedKey.objects.values_list("title", flat=True)) == ["desktop"]
    lines = _deletions(caplog)
    assert len(lines) == 2
    assert all("(ops, from 198.51.100.4)" in line for line in lines)
    assert keys[0].fingerprint in lines[0]
    assert "'laptop'" in lines[0]
    assert LogEntry.objects.filter(action_flag=DELETION).count() == 2


def test_delete_page_of_one_key_goes_through_the_service(ops, keys, caplog):
    caplog.set_level(logging.INFO, logger="keys.services")
    url = f"{CHANGELIST}{keys[1].pk}/delete/"

    assert ops.get(url).status_code == 200
    assert ops.post(url, {"post": "yes"}).status_code == 302

    assert not SavedKey.objects.filter(pk=keys[1].pk).exists()
    [line] = _deletions(caplog)
    assert keys[1].fingerprint in line


def test_saved_keys_cannot_be_edited_or_added(ops, keys):
    url = f"{CHANGELIST}{keys[0].pk}/change/"
    ops.post(url, {"title": "renamed", "user": str(keys[2].user_id)})

    keys[0].refresh_from_db()
    assert (keys[0].title, keys[0].user_id) == ("laptop", keys[1].user_id)
    assert ops.get(f"{CHANGELIST}add/").status_code == 403


def test_remove_saved_keys_skips_keys_already_gone(operator, keys):
    first = remove_saved_keys(key_ids=[keys[0].pk], operator=operator)
    again = remove_saved_keys(key_ids=[keys[0].pk, keys[1].pk], operator=operator)

    assert [key.pk for key in first] == [keys[0].pk]
    assert [key.pk for key in again] == [keys[1].pk]
    assert SavedKey.objects.count() == 1
