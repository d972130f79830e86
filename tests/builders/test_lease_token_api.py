"""The lease token: copr-builder reads, prolongs and releases its own lease with it, and nothing else."""

from __future__ import annotations

from datetime import timedelta

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from builders import services
from builders.models import AuditEvent, Builder, Lease
from tests.builders.factories import make_builder, make_lease

pytestmark = pytest.mark.django_db


@pytest.fixture
def active(user):
    builder = make_builder(state=Builder.State.LEASED, sandbox="ssh-x", single_use=True)
    return make_lease(owner=user, ssh=True, state=Lease.State.ACTIVE, builder=builder, sandbox="ssh-x")


def _client(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"LeaseToken {token}")
    return client


def test_token_reads_its_lease(active):
    token = services.issue_lease_token(lease_id=active.pk)
    data = _client(token).get("/api/v1/lease/").json()
    assert data["id"] == active.pk
    assert data["state"] == "active"
    assert data["owner"] == "alice"


def test_token_is_stored_only_as_a_hash(active):
    token = services.issue_lease_token(lease_id=active.pk)
    active.refresh_from_db()
    assert token not in active.token_hash
    assert len(active.token_hash) == 64


def test_token_prolongs_its_lease_and_the_audit_log_says_from_the_builder(active):
    token = services.issue_lease_token(lease_id=active.pk)
    before = active.expires_at
    response = _client(token).post("/api/v1/lease/prolong/", {"hours": 2}, format="json")
    assert response.status_code == 200
    active.refresh_from_db()
    assert active.expires_at == before + timedelta(hours=2)
    event = AuditEvent.objects.get(action=AuditEvent.Action.PROLONGED)
    assert event.source == "builder"
    assert event.actor.username == "alice"


def test_prolong_past_the_cap_is_refused_naming_the_latest_time(active):
    token = services.issue_lease_token(lease_id=active.pk)
    response = _client(token).post("/api/v1/lease/prolong/", {"hours": 48}, format="json")
    assert response.status_code == 400
    assert "at the latest" in response.json()["detail"]


@pytest.mark.parametrize("hours", [0, 49, -1, "two", None, [1]])
def test_prolong_refuses_bad_hours(active, hours):
    token = services.issue_lease_token(lease_id=active.pk)
    before = Lease.objects.get(pk=active.pk).expires_at
    response = _client(token).post("/api/v1/lease/prolong/", {"hours": hours}, format="json")
    assert response.status_code == 400
    assert Lease.objects.get(pk=active.pk).expires_at == before


def test_token_releases_its_lease_and_then_stops_working(active):
    token = services.issue_lease_token(lease_id=active.pk)
    client = _client(token)
    assert client.post("/api/v1/lease/release/").status_code == 200
    active.refresh_from_db()
    assert active.state == Lease.State.ENDED
    assert Builder.objects.get(pk=active.builder_id).state == Builder.State.TERMINATING
    assert client.post("/api/v1/lease/release/").status_code == 401
    assert client.post("/api/v1/lease/prolong/", {"hours": 1}, format="json").status_code == 401
    assert client.get("/api/v1/lease/").status_code == 401


def test_a_token_cannot_act_on_another_lease(active, user):
    other = make_lease(owner=user, ssh=True, state=Lease.State.ACTIVE)
    token = services.issue_lease_token(lease_id=active.pk)
    services.issue_lease_token(lease_id=other.pk)
    _client(token).post("/api/v1/lease/release/")
    assert Lease.objects.get(pk=other.pk).state == Lease.State.ACTIVE


def test_a_new_token_replaces_the_old_one(active):
    old = services.issue_lease_token(lease_id=active.pk)
    new = services.issue_lease_token(lease_id=active.pk)
    assert _client(old).get("/api/v1/lease/").status_code == 401
    assert _client(new).get("/api/v1/lease/").status_code == 200


@pytest.mark.parametrize(
    "header", ["LeaseToken", "LeaseToken a b", "LeaseToken nope", "LeaseToken " + "x" * 300]
)
def test_bad_lease_tokens_are_refused(active, header):
    services.issue_lease_token(lease_id=active.pk)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    assert client.get("/api/v1/lease/").status_code == 401


def test_a_lease_token_is_not_an_api_token_anywhere_else(active):
    token = services.issue_lease_token(lease_id=active.pk)
    client = _client(token)
    assert client.get("/api/v1/keys/").status_code in (401, 403)
    assert client.post(
        "/api/v1/projects/", {"name": "x", "chroots": ["fedora-rawhide-x86_64"]}, format="json"
    ).status_code in (401, 403)


def test_an_ordinary_api_token_does_not_open_the_lease_endpoints(active, user):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    assert client.get("/api/v1/lease/").status_code == 401


def test_no_token_can_be_issued_for_an_ended_lease(user):
    ended = make_lease(owner=user, ssh=True, state=Lease.State.ENDED)
    with pytest.raises(services.LeaseNotActive):
        services.issue_lease_token(lease_id=ended.pk)
