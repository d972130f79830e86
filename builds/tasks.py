"""Tasks of the builds app: each takes ids, calls one service and logs what happened."""

from __future__ import annotations

import logging

from builds import services

log = logging.getLogger(__name__)

BUILDS_TICK_NAME = "coprssh-builds-tick"
BUILDS_TICK_FUNC = "builds.tasks.tick"


def phase_ready(lease_id: int) -> str | None:
    """Queued by the builders app when a build's lease gets its builder."""
    phase = services.phase_ready(lease_id=lease_id)
    return phase.state if phase else None


def check_phase(kind: str, phase_id: int) -> str | None:
    """Queued when an agent reports its end, and by the tick for a silent agent."""
    phase = services.check_phase(kind=kind, phase_id=phase_id)
    return phase.state if phase else None


def watch_phase(kind: str, phase_id: int) -> str | None:
    """The name this task had before agents reported: runs still queued under it are checks."""
    return check_phase(kind, phase_id)


def stop_phase(kind: str, phase_id: int) -> None:
    services.stop_phase(kind=kind, phase_id=phase_id)


def send_ssh_mail(mail_id: int) -> str:
    """Queued after commit when an SSH builder is ready or about to expire."""
    status = services.send_ssh_mail(mail_id=mail_id)
    log.info("ssh mail %s: %s", mail_id, status)
    return status


def tick() -> dict[str, list[int]]:
    """Every minute: check silent agents, collect lost reports, fail phases whose lease ended; warn by mail."""
    summary = services.rescue_phases()
    summary["mails"] = services.warn_expiring_by_mail()
    log.info("builds tick: %s", summary)
    return summary
