"""State changes of the builds app. Callers import from here."""

from builds.services.notify import announce_ready, send_ssh_mail
from builds.services.notify import warn_expiring as warn_expiring_by_mail
from builds.services.phases import (
    finish_phase,
    phase_ready,
    rescue_phases,
    stop_phase,
)
from builds.services.projects import active_chroots, check_can_build, create_project
from builds.services.reports import append_log, check_phase, report_end
from builds.services.ssh import resubmit_with_ssh
from builds.services.state import update_build_state
from builds.services.submit import cancel_build, resubmit_build, submit_build

__all__ = [
    "announce_ready",
    "send_ssh_mail",
    "warn_expiring_by_mail",
    "active_chroots",
    "append_log",
    "check_phase",
    "cancel_build",
    "check_can_build",
    "create_project",
    "finish_phase",
    "phase_ready",
    "report_end",
    "rescue_phases",
    "resubmit_build",
    "resubmit_with_ssh",
    "stop_phase",
    "submit_build",
    "update_build_state",
]
