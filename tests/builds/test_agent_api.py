"""The agent's reports (issue 11): a phase token appends to its own phase's log and reports its end,
only while the phase runs; everything it sends is untrusted input.
"""

from __future__ import annotations

import secrets

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from builds import services, storage
from builds.models import BuildChroot, SrpmPhase, State
from builds.services.phases import token_digest
from builds.sources import check_upload

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def storage_dir(settings, tmp_path):
    settings.COPRSSH_STORAGE_DIR = tmp_path / "storage"


def make_build(owner, demo_spec, name="agent"):
    project = services.create_project(owner=owner, name=name, chroots=["fedora-43-x86_64", "epel-9-x86_64"])
    upload = SimpleUploadedFile(demo_spec.name, demo_spec.read_bytes())
    return services.submit_build(
        project=project, submitter=owner, chroots=None, source=check_upload(upload), upload=upload
    )


def running(phase, state=State.RUNNING) -> str:
    """Start `phase` as phase_ready does, and return its report token."""
    token = secrets.token_urlsafe(32)
    type(phase).objects.filter(pk=phase.pk).update(
        state=state, started_at=timezone.now(), token_hash=token_digest(token), alive_at=timezone.now()
    )
    return token


class Agent:
    """An agent's HTTP client for one phase."""

    def __init__(self, phase, token: str) -> None:
        self.kind = "srpm" if isinstance(phase, SrpmPhase) else "rpm"
        self.phase = phase
        self.client = APIClient()
        self.client.credentials(HTTP_AUTHORIZATION=f"PhaseToken {token}")

    def url(self, what: str, kind: str | None = None, phase_id: int | None = None) -> str:
        return f"/api/v1/agent/{kind or self.kind}/{phase_id or self.phase.pk}/{what}/"

    def log(self, data: bytes, offset: int | str, **kwargs):
        return self.client.post(
            self.url("log", **kwargs) + f"?offset={offset}", data, content_type="application/octet-stream"
        )

    def end(self, body, **kwargs):
        return self.client.post(self.url("end", **kwargs), body, format="json")


def stored_log(phase) -> bytes:
    target = storage.path(phase.storage_dir) / storage.LIVE_LOG
    return target.read_bytes() if target.exists() else b""


@pytest.fixture
def build(user, demo_spec):
    return make_build(user, demo_spec)


@pytest.fixture
def chroot(build):
    return build.build_chroots.order_by("pk").first()


# --- the log ------------------------------------------------------------------------------------


def test_chunks_are_stored_at_their_offsets(chroot):
    agent = Agent(chroot, running(chroot))

    first = agent.log(b"line one\n", 0)
    second = agent.log(b"line two\n", 9)

    assert (first.status_code, first.json()) == (200, {"log_size": 9})
    assert (second.status_code, second.json()) == (200, {"log_size": 18})
    assert stored_log(chroot) == b"line one\nline two\n"
    chroot.refresh_from_db()
    assert chroot.log_size == 18


def test_a_chunk_sent_again_changes_nothing(chroot):
    agent = Agent(chroot, running(chroot))
    agent.log(b"line one\n", 0)
    agent.log(b"line two\n", 9)

    again = agent.log(b"line one\n", 0)
    overlapping = agent.log(b"two\nline three\n", 14)  # the tail of a resend carries new bytes

    assert (again.status_code, again.json()) == (200, {"log_size": 18})
    assert overlapping.json() == {"log_size": 29}
    assert stored_log(chroot) == b"line one\nline two\nline three\n"


def test_a_chunk_past_the_end_is_refused_with_where_the_log_ends(chroot):
    agent = Agent(chroot, running(chroot))
    agent.log(b"abc", 0)

    gap = agent.log(b"later bytes", 100)

    assert gap.status_code == 409
    assert (gap.json()["code"], gap.json()["log_size"]) == ("log_gap", 3)
    assert stored_log(chroot) == b"abc"


def test_an_oversized_chunk_is_refused_and_nothing_is_stored(chroot, settings):
    settings.COPRSSH_AGENT_CHUNK_BYTES = 1024
    agent = Agent(chroot, running(chroot))

    response = agent.log(b"x" * 1025, 0)

    assert response.status_code == 413
    assert stored_log(chroot) == b""
    assert agent.log(b"x" * 1024, 0).json() == {"log_size": 1024}


def test_the_log_stops_at_its_cap_with_a_note(chroot, settings):
    settings.COPRSSH_MAX_LOG_BYTES = 10
    agent = Agent(chroot, running(chroot))

    agent.log(b"0123456789abcdef", 0)
    later = agent.log(b"more", 16)

    log = stored_log(chroot)
    assert log.startswith(b"0123456789\n[coprssh: the log is longer than the limit")
    assert later.status_code in (200, 409)
    assert stored_log(chroot) == log


@pytest.mark.parametrize(
    "query",
    [
        "",
        "?offset=",
        "?offset=-1",
        "?offset=abc",
        "?offset=1&offset=2",
        "?offset=9" * 1 + "9" * 30,
        "?offset=٣",
    ],
)
def test_a_bad_offset_is_a_400_naming_it(chroot, query):
    agent = Agent(chroot, running(chroot))
    response = agent.client.post(agent.url("log") + query, b"x", content_type="application/octet-stream")
    assert response.status_code == 400
    assert "offset" in response.json()
    assert stored_log(chroot) == b""


def test_a_chunk_that_is_not_octet_stream_is_refused(chroot):
    agent = Agent(chroot, running(chroot))
    response = agent.client.post(agent.url("log") + "?offset=0", {"data": "x"}, format="json")
    assert response.status_code == 415
    assert stored_log(chroot) == b""


def test_a_phase_that_is_starting_may_already_report(chroot):
    agent = Agent(chroot, running(chroot, state=State.STARTING))
    assert agent.log(b"early\n", 0).status_code == 200


# --- the token's reach ----------------------------------------------------------------------------


def test_a_token_cannot_touch_another_phase(build, chroot, user, demo_spec):
    other_chroot = build.build_chroots.exclude(pk=chroot.pk).get()
    running(other_chroot)
    agent = Agent(chroot, running(chroot))
    other_build = make_build(user, demo_spec, name="other")
    foreign = other_build.build_chroots.first()
    running(foreign)

    for kind, phase_id in [("rpm", other_chroot.pk), ("rpm", foreign.pk), ("srpm", build.srpm.pk)]:
        assert agent.log(b"forged", 0, kind=kind, phase_id=phase_id).status_code == 404
        end = agent.end({"state": "succeeded", "log_size": 0}, kind=kind, phase_id=phase_id)
        assert end.status_code == 404
    assert agent.log(b"forged", 0, kind="bogus").status_code == 404
    for phase in (other_chroot, foreign, build.srpm):
        phase.refresh_from_db()
        assert (phase.log_size, phase.reported_state) == (0, "")
        assert stored_log(phase) == b""


@pytest.mark.parametrize("end_state", [State.SUCCEEDED, State.FAILED, State.CANCELED, State.PENDING])
def test_a_token_stops_working_when_its_phase_is_not_running(chroot, end_state):
    agent = Agent(chroot, running(chroot))
    BuildChroot.objects.filter(pk=chroot.pk).update(state=end_state)

    assert agent.log(b"late", 0).status_code == 401
    assert agent.end({"state": "failed", "log_size": 0}).status_code == 401
    assert stored_log(chroot) == b""


@pytest.mark.parametrize(
    "header",
    [
        "",
        "PhaseToken",
        "PhaseToken a b",
        "PhaseToken wrong-token",
        "PhaseToken " + "x" * 5000,
        "Token abc",
        "LeaseToken abc",
        "PhaseToken caf\u00e9",
    ],
)
def test_anything_but_the_phase_token_is_refused(chroot, header):
    running(chroot)
    client = APIClient()
    if header:
        client.credentials(HTTP_AUTHORIZATION=header.encode("utf-8").decode("latin-1"))
    response = client.post(
        f"/api/v1/agent/rpm/{chroot.pk}/log/?offset=0", b"x", content_type="application/octet-stream"
    )
    assert response.status_code == 401
    assert stored_log(chroot) == b""


def test_the_owners_api_token_does_not_speak_for_the_agent(chroot, user):
    running(chroot)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    response = client.post(
        f"/api/v1/agent/rpm/{chroot.pk}/end/", {"state": "succeeded", "log_size": 0}, format="json"
    )
    assert response.status_code == 401
    chroot.refresh_from_db()
    assert chroot.reported_state == ""


def test_a_phase_token_opens_no_other_endpoint(chroot, build):
    agent = Agent(chroot, running(chroot))
    for url in ("/api/v1/ssh-builders/", "/api/v1/keys/", "/api/v1/quota/"):
        assert agent.client.get(url).status_code == 401
    assert agent.client.post(f"/api/v1/builds/{build.pk}/cancel/").status_code == 401


def test_reports_are_rate_limited_per_phase(chroot, build, settings):
    settings.COPRSSH_API_RATE_AGENT = "3/min"
    agent = Agent(chroot, running(chroot))
    other = build.build_chroots.exclude(pk=chroot.pk).get()
    other_agent = Agent(other, running(other))

    answers = [agent.log(b"", 0).status_code for _ in range(4)]

    assert answers == [200, 200, 200, 429]
    assert other_agent.log(b"", 0).status_code == 200  # another phase has its own allowance


# --- the end --------------------------------------------------------------------------------------


def test_the_end_is_recorded_once_and_queues_its_collection(
    chroot, monkeypatch, django_capture_on_commit_callbacks
):
    queued = []
    monkeypatch.setattr("django_q.tasks.async_task", lambda func, *args: queued.append((func, args)))
    agent = Agent(chroot, running(chroot))

    with django_capture_on_commit_callbacks(execute=True):
        first = agent.end({"state": "failed", "reason": "exit\x1b[31m 1\nforged line", "log_size": 42})
        second = agent.end({"state": "succeeded", "reason": "", "log_size": 1})

    assert (first.status_code, first.json()) == (200, {"recorded": True})
    assert (second.status_code, second.json()) == (200, {"recorded": False})
    chroot.refresh_from_db()
    assert (chroot.state, chroot.reported_state, chroot.reported_log_size) == (State.RUNNING, "failed", 42)
    assert chroot.reported_reason == "exit 1 forged line"
    assert queued == [("builds.tasks.check_phase", ("rpm", chroot.pk))]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"state": "running", "log_size": 0},
        {"state": "won", "log_size": 0},
        {"state": "failed"},
        {"state": "failed", "log_size": -1},
        {"state": "failed", "log_size": "many"},
        {"state": "failed", "log_size": 2**70},
        {"state": "failed", "log_size": 0, "reason": "x" * 2001},
        {"state": ["failed"], "log_size": 0},
    ],
)
def test_a_malformed_end_is_a_400_and_records_nothing(chroot, body):
    agent = Agent(chroot, running(chroot))
    response = agent.end(body)
    assert response.status_code == 400
    chroot.refresh_from_db()
    assert chroot.reported_state == ""


def test_a_reported_log_size_is_clamped_to_the_log_cap(chroot, settings):
    settings.COPRSSH_MAX_LOG_BYTES = 4096
    agent = Agent(chroot, running(chroot))
    agent.end({"state": "failed", "log_size": 10**15})
    chroot.refresh_from_db()
    assert chroot.reported_log_size == 4096


def test_the_schema_lists_the_agent_endpoints_with_their_token_scheme(client):
    schema = client.get("/api/v1/schema/", HTTP_ACCEPT="application/json").json()
    log = schema["paths"]["/api/v1/agent/{kind}/{phase_id}/log/"]["post"]
    assert {"phaseToken": []} in log["security"]
    assert {"200", "401", "404", "409", "413", "429"} <= set(log["responses"])
