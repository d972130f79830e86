"""Accounts that belong to no app: the health check and the demo_data command."""

from __future__ import annotations

import re
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from rest_framework.authtoken.models import Token

PASSWORD_RE = re.compile(r"^(\w+): created, .*, password: (\S+)$", re.MULTILINE)


def run_demo_data() -> str:
    out = StringIO()
    call_command("demo_data", stdout=out, no_color=True)
    return out.getvalue()


@pytest.mark.django_db
def test_healthz_answers_ok_in_json(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_healthz_refuses_post(client):
    assert client.post("/healthz").status_code == 405


@pytest.mark.django_db
def test_demo_data_creates_the_operator_and_demo_accounts():
    output = run_demo_data()

    users = get_user_model().objects
    operator, demo = users.get(username="operator"), users.get(username="demo")
    assert (operator.is_superuser, operator.is_staff) == (True, True)
    assert (demo.is_superuser, demo.is_staff) == (False, False)
    passwords = dict(PASSWORD_RE.findall(output))
    assert set(passwords) == {"operator", "demo"}
    assert operator.check_password(passwords["operator"])
    assert demo.check_password(passwords["demo"])
    assert passwords["operator"] != passwords["demo"]
    assert Token.objects.filter(user__in=[operator, demo]).count() == 2


@pytest.mark.django_db
def test_demo_data_prints_each_password_once():
    output = run_demo_data()

    for password in dict(PASSWORD_RE.findall(output)).values():
        assert output.count(password) == 1


@pytest.mark.django_db
def test_demo_data_twice_creates_nothing_and_shows_no_password():
    first = run_demo_data()
    users = {u.username: u.password for u in get_user_model().objects.all()}
    tokens = set(Token.objects.values_list("key", flat=True))

    second = run_demo_data()

    assert {u.username: u.password for u in get_user_model().objects.all()} == users
    assert set(Token.objects.values_list("key", flat=True)) == tokens
    assert "password:" not in second
    for password in dict(PASSWORD_RE.findall(first)).values():
        assert password not in second
    assert "operator: exists, password unchanged" in second
    assert "demo: exists, password unchanged" in second


@pytest.mark.django_db
def test_demo_data_leaves_an_existing_account_alone(django_user_model):
    django_user_model.objects.create_user("demo", password="my-own-password-1")

    output = run_demo_data()

    demo = django_user_model.objects.get(username="demo")
    assert demo.check_password("my-own-password-1")
    assert "demo: exists, password unchanged" in output
    assert set(dict(PASSWORD_RE.findall(output))) == {"operator"}
