"""Issue #10, finding 5: what a builder reports stays the builder's word, on one line.

The final state and reason of a phase come from status.json, written on the builder. On an SSH
build the user is root there, so the reason is shown labelled as the builder's report; on any
build it is made one line (no newlines, terminal escapes, bidi or format characters) and capped,
so that nobody can write lines of their own into the public backend.log.
"""

from __future__ import annotations

import re

import pytest
from django.utils import timezone

from builders import services as builders
from builds import runner, services, storage
from builds.models import BuildChroot, State
from builds.services import phases, reports
from builds.untrusted import PREFIX, REPORT_CAP, as_reported, one_line
from tests.builds.test_api_ssh import failed_build
from tests.builds.test_ssh_privacy import give_builder, keygen, make_ssh_build

pytestmark = pytest.mark.django_db

LINE = re.compile(r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+\] ")
FORGED = "[2026-01-01 00:00:00 UTC] Finished: succeeded; kept hello-1.0-1.noarch.rpm."
HOSTILE = (
    "it broke\r\n"
    + FORGED
    + "\n\x1b[2K\x1b[1A\x1b]0;title\x07\x1b[31mred\x1b[0m"
    + "\u202eevil\u2066\u200b\u2028next\u2029\x85"
    + "x" * 500
)


@pytest.fixture(autouse=True)
def storage_dir(settings, tmp_path):
    settings.COPRSSH_STORAGE_DIR = tmp_path / "storage"


@pytest.fixture(scope="session")
def key(tmp_path_factory):
    return keygen(tmp_path_factory.mktemp("report-keys"))


def running(phase: BuildChroot) -> BuildChroot:
    """The phase runs on its (active) lease's builder, as phase_ready leaves it."""
    give_builder(phase.lease)
    builders.start_lease(lease_id=phase.lease_id)
    BuildChroot.objects.filter(pk=phase.pk).update(
        state=State.RUNNING, started_at=timezone.now(), remote_dir="/srv/jobs/x-0123"
    )
    return phases.load("rpm", phase.pk)


@pytest.fixture(params=["agent", "watchdog"])
def report(request, monkeypatch):
    """The builder says `state` and `reason`: its agent reports them to the API, or the tick's check
    reads them from status.json (the agent fell silent). Either way they are only the builder's word.
    """

    def say(phase: BuildChroot, state: str, reason: str) -> None:
        status = runner.Status(state, reason=reason)
        monkeypatch.setattr(
            runner,
            "poll",
            lambda builder, **kwargs: runner.Progress(status=status, log=b"", agent_alive=False),
        )
        monkeypatch.setattr(runner, "fetch_results", lambda *args, **kwargs: [])
        if request.param == "agent":
            reports.report_end(
                reporter=reports.Reporter(kind="rpm", phase_id=phase.pk),
                state=state,
                reason=reason,
                log_size=0,
            )
        else:
            BuildChroot.objects.filter(pk=phase.pk).update(alive_at=None)
        services.check_phase(kind="rpm", phase_id=phase.pk)

    return say


def backend_lines(phase: BuildChroot) -> list[str]:
    return (storage.path(phase.storage_dir) / storage.BACKEND_LOG).read_text().splitlines()


def assert_clean(text: str) -> None:
    assert not re.search(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069]", text), text


def test_an_ssh_builders_reason_is_shown_as_its_report_on_one_capped_line(
    user, key, report, django_capture_on_commit_callbacks
):
    build = make_ssh_build(user, key, django_capture_on_commit_callbacks)
    phase = running(build.build_chroots.select_related("lease").get())
    report(phase, "failed", HOSTILE)

    phase.refresh_from_db()
    assert phase.state == State.FAILED
    reason = phase.status_reason
    assert reason.startswith(PREFIX + "it broke " + FORGED)
    assert_clean(reason)
    assert all(word in reason for word in ("red", "evil", "next"))
    assert len(reason) <= len(PREFIX) + REPORT_CAP
    assert reason.endswith("…")
    lines = backend_lines(phase)
    assert all(LINE.match(line) for line in lines), lines
    [finished] = [line for line in lines if "Finished:" in line]
    assert f"Finished: failed ({PREFIX}it broke [2026-01-01" in finished
    assert not any(line.startswith("[2026-01-01 00:00:00 UTC]") for line in lines)
    assert_clean("".join(lines))


def test_an_ssh_builders_success_is_labelled_as_its_report_too(
    user, key, report, django_capture_on_commit_callbacks
):
    build = make_ssh_build(user, key, django_capture_on_commit_callbacks)
    phase = running(build.build_chroots.select_related("lease").get())
    report(phase, "succeeded", "")

    phase.refresh_from_db()
    assert (phase.state, phase.status_reason) == (State.SUCCEEDED, "the builder reported: succeeded")


def test_a_normal_builds_reason_is_one_line_without_a_label(user, report):
    project = services.create_project(owner=user, name="plain", chroots=["fedora-43-x86_64"])
    build = failed_build(project, user)
    phase = build.build_chroots.select_related("lease").get()
    lease = builders.request_lease(owner=user, arch="x86_64", sandbox="alice/plain--alice")
    BuildChroot.objects.filter(pk=phase.pk).update(lease=lease)
    phase = running(phases.load("rpm", phase.pk))
    report(phase, "failed", "rpmbuild failed\n" + FORGED)

    phase.refresh_from_db()
    assert phase.status_reason == "rpmbuild failed " + FORGED
    lines = backend_lines(phase)
    assert all(LINE.match(line) for line in lines), lines
    assert not any(line.startswith("[2026-01-01 00:00:00 UTC]") for line in lines)


@pytest.mark.parametrize(
    ("text", "cleaned"),
    [
        ("plain words", "plain words"),
        ("two\nlines\r\nand\ttabs", "two lines and tabs"),
        ("\x1b[31mred\x1b[0m and \x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\", "red and link"),
        ("left\u202eright\u2067x\u2069", "leftrightx"),
        ("zero\u200bwidth\ufeff", "zerowidth"),
        ("line\u2028sep\u2029para\x85nel", "line sep para nel"),
        ("nul\x00del\x7f", "nul del"),
        ("  spaced   out  ", "spaced out"),
        ("é ü 日本", "é ü 日本"),
    ],
)
def test_one_line_removes_controls_escapes_and_format_characters(text, cleaned):
    assert one_line(text) == cleaned


def test_one_line_caps_the_length():
    assert one_line("y" * 1000) == "y" * (REPORT_CAP - 1) + "…"
    assert len(one_line("z" * 50, cap=10)) == 10


def test_as_reported_labels_the_report_and_falls_back_to_the_state():
    assert as_reported("failed", "exit\n1") == "the builder reported: exit 1"
    assert as_reported("canceled", "") == "the builder reported: canceled"
