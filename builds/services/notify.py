"""E-mails to the owner of an SSH builder: when it is ready, and before it expires.

Each mail is an SshMail row first: the row claims it (one "ready" mail per lease, one warning per
expiry time), and a task sends it after commit, outside any transaction. A task delivered twice
finds the row claimed and sends nothing; a worker that dies while sending loses that mail rather
than sending it twice. Owners turn the mails off on their profile; times are given in the owner's
time zone, UTC when none is set. No secret goes into a mail: the lease token stays on the builder.
"""

from __future__ import annotations

import functools
import logging
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef
from django.urls import reverse
from django.utils import timezone

from builders.models import Lease, QuotaPolicy
from builds.models import Build, SshMail
from builds.selectors import SRPM, builds_served_by
from builds.ssh_view import view_of
from builds.untrusted import one_line
from coprssh.models import AccountSettings

log = logging.getLogger(__name__)

SEND_TASK = "builds.tasks.send_ssh_mail"
# Warnings queued per tick at most; the next tick takes the rest.
WARNINGS_PER_TICK = 200


def _queue(task: str, *args: object) -> None:
    from django_q.tasks import async_task  # django-q2 needs the app registry: import it late

    async_task(task, *args)


def announce_ready(*, lease_id: int) -> SshMail | None:
    """Queue the "your SSH builder is ready" mail of an active SSH lease; None if it was queued before."""
    lease = Lease.objects.filter(pk=lease_id, ssh=True, state=Lease.State.ACTIVE).first()
    if lease is None or lease.expires_at is None:
        return None
    return _claim(lease, SshMail.Kind.READY, lease.expires_at)


def warn_expiring(*, now: datetime | None = None) -> list[int]:
    """Queue a warning mail for each SSH builder that expires within the policy's warning time."""
    now = now or timezone.now()
    warning = QuotaPolicy.get().warning_before
    warned = SshMail.objects.filter(
        lease=OuterRef("pk"), kind=SshMail.Kind.EXPIRING, expires_at=OuterRef("expires_at")
    )
    # Served by the partial index on active leases' expiry (builders_lease_expiry_idx).
    due = (
        Lease.objects.filter(
            state=Lease.State.ACTIVE, ssh=True, expires_at__gt=now, expires_at__lte=now + warning
        )
        .filter(~Exists(warned))
        .order_by("expires_at")
    )
    queued = []
    for lease in list(due[:WARNINGS_PER_TICK]):
        assert lease.expires_at is not None  # filtered on it
        mail = _claim(lease, SshMail.Kind.EXPIRING, lease.expires_at)
        if mail is not None:
            queued.append(mail.pk)
    return queued


def _claim(lease: Lease, kind: str, expires_at: datetime) -> SshMail | None:
    try:
        with transaction.atomic():
            mail = SshMail.objects.create(lease=lease, kind=kind, expires_at=expires_at)
            transaction.on_commit(functools.partial(_queue, SEND_TASK, mail.pk))
    except IntegrityError:
        return None  # claimed by an earlier call
    return mail


def send_ssh_mail(*, mail_id: int) -> str:
    """Send one queued mail, unless its owner turned them off or it is moot now; return its status."""
    if not SshMail.objects.filter(pk=mail_id, status=SshMail.Status.PENDING).update(
        status=SshMail.Status.SENDING
    ):
        status = SshMail.objects.filter(pk=mail_id).values_list("status", flat=True).first()
        return status or "unknown"  # sent (or being sent) by an earlier delivery
    mail = SshMail.objects.select_related("lease__owner", "lease__builder").get(pk=mail_id)
    lease = mail.lease
    owner = lease.owner
    prefs = AccountSettings.of(owner)
    skipped = None
    if not prefs.email_ssh_builders:
        skipped = "the owner turned these mails off"
    elif not owner.email:
        skipped = "the owner has no e-mail address"
    elif lease.state != Lease.State.ACTIVE:
        skipped = "the SSH builder has ended"
    elif mail.kind == SshMail.Kind.EXPIRING and lease.expires_at != mail.expires_at:
        skipped = "the SSH builder was prolonged meanwhile"
    if skipped is not None:
        return _done(mail, SshMail.Status.SKIPPED, skipped)
    subject, body = compose(mail, zone=prefs.zone)
    try:
        send_mail(subject, body, None, [owner.email], fail_silently=False)
    except Exception as exc:  # SMTP errors, refused connections, timeouts: recorded, not retried
        log.warning("mail %s to user %s: %s", mail.pk, owner.pk, exc)
        return _done(mail, SshMail.Status.FAILED, one_line(f"{type(exc).__name__}: {exc}", cap=400))
    return _done(mail, SshMail.Status.SENT, "", recipient=owner.email)


def _done(mail: SshMail, status: str, detail: str, *, recipient: str = "") -> str:
    SshMail.objects.filter(pk=mail.pk, status=SshMail.Status.SENDING).update(
        status=status, detail=detail[:500], recipient=recipient, sent_at=timezone.now()
    )
    return status


# --- what the mails say -------------------------------------------------------------------


def shown_time(moment: datetime, zone: ZoneInfo) -> str:
    """`2026-05-01 15:03 CEST (Europe/Prague)`, or `2026-05-01 13:03 UTC`."""
    local = moment.astimezone(zone)
    text = f"{local:%Y-%m-%d %H:%M %Z}"
    return text if zone.key == "UTC" else f"{text} ({zone.key})"


def _minutes(span: timedelta) -> str:
    minutes = max(int(span.total_seconds() // 60), 0)
    return "1 minute" if minutes == 1 else f"{minutes} minutes"


def compose(mail: SshMail, *, zone: ZoneInfo) -> tuple[str, str]:
    """The subject and the plain-text body of a mail about an SSH builder."""
    lease = mail.lease
    build, chroot = builds_served_by([lease.pk]).get(lease.pk, (None, None))
    view = view_of(lease, build, chroot, details=True)
    what = _what(build, chroot, lease)
    base = settings.COPRSSH_PUBLIC_URL
    page = f"{base}{reverse('build-detail', args=[build.pk])}" if build is not None else ""
    expires = shown_time(mail.expires_at, zone)
    lines = [f"Hello {lease.owner.get_username()},", ""]
    if mail.kind == SshMail.Kind.READY:
        subject = f"[coprssh] SSH builder ready: {what}"
        if build is not None and build.ssh_on_failure:
            lines.append(f"{_capital(what)} failed. As you asked, its builder is kept for you to debug it.")
        else:
            lines.append(f"Your SSH builder for {what} is ready.")
        lines += ["", "Log in with:", f"    {view.ssh_command or '(see the build page)'}", ""]
        if view.host_key_fingerprint:
            lines.append(
                f"Its host key is {view.host_key_fingerprint}: check it when ssh asks the first time."
            )
        if view.key_fingerprints:
            lines.append(f"Keys that can log in: {', '.join(view.key_fingerprints)}.")
        lines += [
            "On the builder, run `copr-builder help`.",
            "",
            f"It expires at {expires}, and is then deleted with everything on it.",
        ]
        if lease.max_expires_at is not None:
            lines.append(f"It can be prolonged until {shown_time(lease.max_expires_at, zone)} at the latest.")
    else:
        left = _minutes(mail.expires_at - timezone.now())
        subject = f"[coprssh] SSH builder expires in {left}: {what}"
        lines += [
            f"Your SSH builder for {what} expires at {expires}, in {left}.",
            "It is then deleted, with everything on it: copy off what you want to keep.",
            "",
            f"To keep it longer, run `copr-builder prolong` on it, `coprssh prolong {lease.pk}`, or use the build page.",
        ]
        if view.ssh_command:
            lines += ["", "Log in with:", f"    {view.ssh_command}"]
    if page:
        lines += ["", f"Build page (prolong, release): {page}"]
    lines += [
        "",
        "--",
        f"coprssh, {base}",
        f"You get these mails about your SSH builders; turn them off on your profile: {base}{reverse('profile')}",
    ]
    return subject, "\n".join(lines) + "\n"


def _what(build: Build | None, chroot: str | None, lease: Lease) -> str:
    if build is None:
        return lease.purpose or f"lease #{lease.pk}"
    phase = "the SRPM phase" if chroot == SRPM else chroot
    return f"build #{build.pk} of {build.project.full_name} ({phase})"


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]
