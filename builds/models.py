"""Projects, chroots, builds and build chroots.

A build runs in two phases, each on a leased builder: the SRPM phase turns the source
into an SRPM; the RPM phase builds it once per chroot. State changes happen only in
builds/services/.
"""

from __future__ import annotations

import re

from django.conf import settings
from django.contrib.auth.models import AnonymousUser, User
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q

PROJECT_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}")
CHROOT_NAME_RE = re.compile(
    r"(?P<os>[a-z][a-z0-9]*)-(?P<version>[a-z0-9][a-z0-9.]*)-(?P<arch>x86_64|aarch64|ppc64le|s390x|i686)"
)


class Chroot(models.Model):
    """A build target `<os>-<version>-<arch>`, e.g. fedora-rawhide-x86_64."""

    name = models.CharField(
        max_length=60,
        unique=True,
        validators=[RegexValidator(f"^{CHROOT_NAME_RE.pattern}$", "Write <os>-<version>-<arch>.")],
    )
    os = models.CharField(max_length=30)
    version = models.CharField(max_length=20)
    arch = models.CharField(max_length=20)
    active = models.BooleanField(default=True, help_text="Inactive chroots take no new builds.")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Project(models.Model):
    """`owner/name`: where builds of some packages live, and which chroots they target."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="projects")
    name = models.CharField(
        max_length=100,
        validators=[RegexValidator(f"^{PROJECT_NAME_RE.pattern}$", "Use letters, digits and . _ + -")],
    )
    description = models.TextField(blank=True, max_length=5000)
    chroots = models.ManyToManyField(Chroot, related_name="projects")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["owner__username", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "name"],
                name="builds_project_unique_per_owner",
                violation_error_message="You already have a project with this name.",
            ),
        ]

    def __str__(self) -> str:
        return self.full_name

    @property
    def full_name(self) -> str:
        return f"{self.owner.get_username()}/{self.name}"

    def can_build(self, user: User | AnonymousUser) -> bool:
        """Who may submit, cancel and resubmit builds here: the owner and admins."""
        return bool(user.is_authenticated and (user.pk == self.owner_id or user.is_superuser))


class State(models.TextChoices):
    """States of a build, its SRPM phase and each of its chroots."""

    PENDING = "pending"
    STARTING = "starting"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    SKIPPED = "skipped"


FINAL_STATES = {State.SUCCEEDED, State.FAILED, State.CANCELED, State.SKIPPED}
# The SRPM phase's directory beside those of the chroots (Copr's name, which copr-cli knows).
SRPM_DIR = "srpm-builds"


class Build(models.Model):
    """One submission of a source to a project, for some chroots."""

    class SourceType(models.TextChoices):
        UPLOAD = "upload", "uploaded file"
        SCM = "scm", "git repository"
        URL = "url", "URL of a .src.rpm"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="builds")
    submitter = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="builds")
    state = models.CharField(max_length=20, choices=State.choices, default=State.PENDING)
    source_type = models.CharField(max_length=10, choices=SourceType.choices)
    # upload: the stored file, relative to the storage root; scm/url: what to fetch.
    source_file = models.CharField(max_length=300, blank=True)
    source_filename = models.CharField(max_length=255, blank=True)
    clone_url = models.CharField(max_length=1000, blank=True)
    committish = models.CharField(max_length=200, blank=True)
    spec = models.CharField(max_length=300, blank=True, help_text="Spec file path inside the repository.")
    url = models.CharField(max_length=1000, blank=True)
    # What the SRPM phase produced (relative to the storage root).
    srpm_file = models.CharField(max_length=300, blank=True)
    spec_file = models.CharField(max_length=300, blank=True)
    package_name = models.CharField(max_length=200, blank=True)
    package_version = models.CharField(max_length=200, blank=True)
    resubmitted_from = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="resubmissions"
    )
    ssh = models.BooleanField(default=False)
    # A normal build that keeps a failed phase's builder for SSH (issue 13): on success nothing
    # changes; on failure its lease becomes an SSH lease and `ssh_keys` are deployed then.
    ssh_on_failure = models.BooleanField(default=False)
    # SSH builds and keep-on-failure builds: the public keys to deploy, as canonical
    # `type base64 comment` lines.
    ssh_keys = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["project", "-id"], name="builds_build_project_idx"),
        ]
        constraints = [
            # An SSH build keeps its builders anyway; keeping on failure is for normal builds.
            models.CheckConstraint(
                condition=Q(ssh=False) | Q(ssh_on_failure=False), name="builds_build_ssh_or_keep_on_failure"
            ),
            models.CheckConstraint(
                condition=Q(ssh_on_failure=False) | ~Q(ssh_keys=""),
                name="builds_build_keep_on_failure_has_keys",
            ),
        ]

    def __str__(self) -> str:
        return f"build #{self.pk}"

    @property
    def has_ssh_keys(self) -> bool:
        """Whether the build carries keys to deploy: an SSH build, or one kept for SSH if it fails."""
        return self.ssh or self.ssh_on_failure

    @property
    def sandbox(self) -> str:
        """Builders are reused only for the same project and submitter."""
        return f"{self.project.owner.get_username()}/{self.project.name}--{self.submitter.get_username()}"

    @property
    def is_finished(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def storage_dir(self) -> str:
        return f"{self.project.owner.get_username()}/{self.project.name}"

    def phase_dir(self, directory: str) -> str:
        """Where a phase of this build keeps its files: `<owner>/<project>/<directory>/<8-digit id>`."""
        return f"{self.storage_dir}/{directory}/{self.pk:08d}"


# The fields that say where each kind of source comes from (the build form and the API take these names).
SOURCE_FIELDS: dict[str, tuple[str, ...]] = {
    Build.SourceType.UPLOAD: ("source_file",),
    Build.SourceType.SCM: ("clone_url", "committish", "spec"),
    Build.SourceType.URL: ("url",),
}


class Phase(models.Model):
    """Work done for a build on one leased builder: the SRPM phase, or the RPM phase of a chroot."""

    state = models.CharField(max_length=20, choices=State.choices, default=State.PENDING)
    status_reason = models.CharField(max_length=500, blank=True)
    lease = models.ForeignKey(
        "builders.Lease", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    # Where the agent works on the builder, and how much of its live log is stored here.
    remote_dir = models.CharField(max_length=300, blank=True)
    log_size = models.PositiveBigIntegerField(default=0)
    # A task checking or collecting the phase holds it until this time (a claim); None: unclaimed.
    watch_until = models.DateTimeField(null=True, blank=True)
    # The agent on the builder reports with a token of this phase (its SHA-256 is kept, never the
    # token); `reports` is False when the pool's builders cannot reach the service, and the tick then
    # checks the builder over SSH instead.
    token_hash = models.CharField(max_length=64, blank=True, db_index=True)
    reports = models.BooleanField(default=True)
    # The agent's last sign of life: a report, or a check over SSH that found it working.
    alive_at = models.DateTimeField(null=True, blank=True)
    # The end as the agent reported it, until the service has collected the results.
    reported_state = models.CharField(max_length=20, blank=True)
    reported_reason = models.CharField(max_length=500, blank=True)
    reported_log_size = models.PositiveBigIntegerField(null=True, blank=True)
    # Since when the builder has not answered; the phase fails when this lasts too long.
    unreachable_since = models.DateTimeField(null=True, blank=True)
    # A keep-on-failure build's failed phase whose builder was not kept for SSH: why (over quota).
    not_kept_reason = models.CharField(max_length=500, blank=True)

    class Meta:
        abstract = True

    @property
    def is_finished(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def reason(self) -> str:
        """Why the phase is where it is: its own reason, or why its lease still waits."""
        if self.status_reason or self.state != State.PENDING or self.lease is None:
            return self.status_reason
        return self.lease.queue_reason


def sweep_indexes(prefix: str) -> list[models.Index]:
    """The partial indexes of the builds tick's sweeps (builds.services.phases.rescue_phases), per phase table."""
    return [
        # rescue_phases: running phases that are unclaimed (watch_until) and silent (alive_at) or reported.
        models.Index(
            fields=["watch_until"], condition=Q(state=State.RUNNING), name=f"builds_{prefix}_running_idx"
        ),
        # rescue_phases: phases left starting by a worker that died, past their claim (watch_until).
        models.Index(
            fields=["watch_until"], condition=Q(state=State.STARTING), name=f"builds_{prefix}_starting_idx"
        ),
        # rescue_phases: pending phases whose lease has ended (joined on the lease).
        models.Index(fields=["lease"], condition=Q(state=State.PENDING), name=f"builds_{prefix}_pending_idx"),
    ]


class SrpmPhase(Phase):
    """The SRPM phase of a build: source in, SRPM and spec out."""

    build = models.OneToOneField(Build, on_delete=models.CASCADE, related_name="srpm")

    class Meta:
        indexes = sweep_indexes("srpm")

    def __str__(self) -> str:
        return f"{self.build} srpm"

    @property
    def storage_dir(self) -> str:
        return self.build.phase_dir(SRPM_DIR)


class BuildChroot(Phase):
    """The RPM phase of one build for one chroot."""

    build = models.ForeignKey(Build, on_delete=models.CASCADE, related_name="build_chroots")
    chroot = models.ForeignKey(Chroot, on_delete=models.PROTECT, related_name="+")

    class Meta:
        ordering = ["chroot__name"]
        constraints = [
            models.UniqueConstraint(fields=["build", "chroot"], name="builds_buildchroot_unique"),
        ]
        indexes = sweep_indexes("chroot")

    def __str__(self) -> str:
        return f"{self.build} {self.chroot}"

    @property
    def storage_dir(self) -> str:
        return self.build.phase_dir(self.chroot.name)


class SshMail(models.Model):
    """An e-mail to the owner of an SSH builder: it is ready, or it expires soon.

    The row is written before the mail is sent and claims it: a task delivered twice, or two
    ticks, never send the same mail twice. At most one "ready" mail per lease, and one warning
    per expiry time (a prolonged builder is warned again before its new expiry).
    """

    class Kind(models.TextChoices):
        READY = "ready"
        EXPIRING = "expiring"

    class Status(models.TextChoices):
        PENDING = "pending"
        SENDING = "sending"
        SENT = "sent"
        SKIPPED = "skipped", "skipped (opted out, or no address)"
        FAILED = "failed"

    lease = models.ForeignKey("builders.Lease", on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    # The expiry the mail announces.
    expires_at = models.DateTimeField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    recipient = models.EmailField(blank=True)
    detail = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["lease"], condition=Q(kind="ready"), name="builds_sshmail_one_ready_per_lease"
            ),
            models.UniqueConstraint(
                fields=["lease", "expires_at"],
                condition=Q(kind="expiring"),
                name="builds_sshmail_one_warning_per_expiry",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} mail about lease #{self.lease_id}"
