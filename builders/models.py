"""Pools of builders, the builders themselves, leases on them, the SSH quota and the audit log.

Nothing here knows about builds: a lease has an owner, a sandbox, an SSH flag and a
free-form purpose. State changes happen only in builders/services/.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from builders.providers import options as provider_options

ARCH_CHOICES = ["x86_64", "aarch64", "ppc64le", "s390x", "i686", "noarch"]


class SshRoute(models.TextChoices):
    DIRECT = "direct", "reachable directly"
    GATEWAY = "gateway", "through the gateway"
    BOTH = "both", "both"


class Pool(models.Model):
    """Builders of one provider and configuration, serving some architectures."""

    class Provider(models.TextChoices):
        LOCAL = "local", "Local (sshd on loopback)"
        OPENSTACK = "openstack", "OpenStack"

    name = models.SlugField(max_length=50, unique=True)
    provider = models.CharField(max_length=20, choices=Provider.choices, default=Provider.LOCAL)
    architectures = models.JSONField(default=list, help_text='Architectures served, e.g. ["x86_64"].')
    max_builders = models.PositiveIntegerField(default=4, help_text="Builders alive at once, any state.")
    warm_builders = models.PositiveIntegerField(
        default=1, help_text="Fresh builders kept ready for new leases (at most max builders)."
    )
    provider_settings = models.JSONField(
        default=dict,
        blank=True,
        help_text='Provider options: for local {"ipv6": false}; for openstack auth, image, flavor, network…',
    )
    enabled = models.BooleanField(default=True, help_text="A disabled pool starts no builders.")
    reaches_service = models.BooleanField(
        default=True,
        help_text="Its builders can open HTTP(S) connections to COPRSSH_PUBLIC_URL, so work on them "
        "reports its progress itself. Off: the service checks each builder over SSH once a minute.",
    )
    ssh_route = models.CharField(
        "SSH route",
        max_length=10,
        choices=SshRoute.choices,
        default=SshRoute.DIRECT,
        help_text="How users reach this pool's SSH builders: at their own address, through the service's "
        "SSH gateway (ssh -J), or both (the gateway is shown first for builders without a public IPv4 address).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # Failure containment, written only by builders.services.pools: consecutive provisioning
    # failures back the pool off exponentially; a permanent error pauses it until resumed.
    consecutive_failures = models.PositiveIntegerField(default=0, editable=False)
    failing_since = models.DateTimeField(null=True, blank=True, editable=False)
    backoff_until = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="No machine is created before this time."
    )
    paused_at = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="Paused by a permanent error until resumed."
    )
    last_error = models.TextField(blank=True, editable=False)
    last_error_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(warm_builders__lte=F("max_builders")),
                name="builders_pool_warm_within_max",
                violation_error_message="Warm builders cannot exceed max builders.",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        arches = self.architectures
        if not isinstance(arches, list) or not arches or not all(isinstance(a, str) for a in arches):
            raise ValidationError({"architectures": 'Give a list of architecture names, e.g. ["x86_64"].'})
        unknown = sorted(set(arches) - set(ARCH_CHOICES))
        if unknown:
            raise ValidationError({"architectures": f"Unknown architectures: {', '.join(unknown)}."})
        if not isinstance(self.provider_settings, dict):
            raise ValidationError({"provider_settings": "Give a JSON object."})
        # The rules provider_for applies: a pool saved here can make its provider.
        problems = provider_options.problems(self.provider, self.provider_settings)
        if problems:
            raise ValidationError({"provider_settings": problems})


class BuilderQuerySet(models.QuerySet["Builder"]):
    def alive(self) -> BuilderQuerySet:
        return self.exclude(state__in=[Builder.State.TERMINATED, Builder.State.FAILED])

    def ready(self) -> BuilderQuerySet:
        return self.filter(state=Builder.State.READY)


class Builder(models.Model):
    """One machine of a pool, from provisioning to termination."""

    class State(models.TextChoices):
        PROVISIONING = "provisioning"
        READY = "ready"
        LEASED = "leased"
        TERMINATING = "terminating"
        TERMINATED = "terminated"
        FAILED = "failed"

    pool = models.ForeignKey(Pool, on_delete=models.PROTECT, related_name="builders")
    state = models.CharField(max_length=20, choices=State.choices, default=State.PROVISIONING)
    name = models.CharField(max_length=100, blank=True)
    provider_id = models.CharField(max_length=200, blank=True)
    ipv4 = models.GenericIPAddressField(protocol="IPv4", null=True, blank=True)
    ipv6 = models.GenericIPAddressField(protocol="IPv6", null=True, blank=True)
    port = models.PositiveIntegerField(default=22)
    login_user = models.CharField(max_length=32, default="root")
    # The host key the service generated for this builder; connections trust nothing else.
    host_key = models.TextField(blank=True)
    # Set by the first lease; afterwards the builder serves only leases of this sandbox.
    sandbox = models.CharField(max_length=200, null=True, blank=True)
    # An SSH builder's root belongs to a user: it is terminated after its lease, never reused.
    single_use = models.BooleanField(default=False)
    reuse_count = models.PositiveIntegerField(default=0)
    attempts = models.PositiveIntegerField(default=0, help_text="Provisioning attempts so far.")
    # A failed attempt is retried once its pool's backoff is over; the tick queues it then.
    retry_at = models.DateTimeField(null=True, blank=True)
    # When the tick last checked this idle builder over SSH.
    checked_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    state_changed_at = models.DateTimeField(default=timezone.now)
    ready_at = models.DateTimeField(null=True, blank=True)
    terminated_at = models.DateTimeField(null=True, blank=True)

    objects = BuilderQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        indexes = [
            # assign_waiting_leases: ready builders of a pool, by sandbox.
            models.Index(
                fields=["pool", "sandbox"], condition=Q(state="ready"), name="builders_builder_ready_idx"
            ),
            # tick: transitions stuck by age (provisioning, terminating).
            models.Index(
                fields=["state", "state_changed_at"],
                condition=Q(state__in=["provisioning", "terminating"]),
                name="builders_builder_moving_idx",
            ),
            # retry_due_provisions: failed attempts waiting for their pool's backoff.
            models.Index(
                fields=["retry_at"], condition=Q(state="provisioning"), name="builders_builder_retry_idx"
            ),
            # check_idle_builders: ready builders, least recently checked first.
            models.Index(
                fields=["checked_at", "state_changed_at"],
                condition=Q(state="ready"),
                name="builders_builder_health_idx",
            ),
        ]

    def __str__(self) -> str:
        return self.name or f"builder #{self.pk}"

    @property
    def host(self) -> str | None:
        return self.ipv4 or self.ipv6


class LeaseQuerySet(models.QuerySet["Lease"]):
    def open(self) -> LeaseQuerySet:
        """Leases that are not over: waiting for a slot or a builder, or holding one."""
        return self.exclude(state=Lease.State.ENDED)

    def active(self) -> LeaseQuerySet:
        return self.filter(state=Lease.State.ACTIVE)

    def holding_ssh_slot(self) -> LeaseQuerySet:
        """SSH leases that count against their owner's quota."""
        return self.filter(ssh=True, state__in=Lease.SLOT_STATES)


class Lease(models.Model):
    """A claim on one builder for an owner, in a sandbox, for a purpose."""

    class State(models.TextChoices):
        QUEUED = "queued", "queued (over quota)"
        WAITING = "waiting", "waiting for a builder"
        ASSIGNED = "assigned"
        ACTIVE = "active"
        ENDED = "ended"

    class EndReason(models.TextChoices):
        RELEASED = "released"
        EXPIRED = "expired"
        MAX_LIFETIME = "max-lifetime"
        BUILD_FINISHED = "build-finished"
        CANCELED = "canceled"
        TERMINATED = "terminated"
        FAILED = "failed"

    SLOT_STATES = [State.WAITING, State.ASSIGNED, State.ACTIVE]

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="leases")
    sandbox = models.CharField(max_length=200)
    ssh = models.BooleanField(default=False)
    purpose = models.CharField(max_length=200, blank=True)
    # Task queued with the lease id once a builder is assigned (e.g. "builds.tasks.lease_ready");
    # without one the lease starts at once. Keeps builders ignorant of who leases.
    on_assigned = models.CharField(max_length=200, blank=True)
    arch = models.CharField(max_length=20)
    pool = models.ForeignKey(
        Pool, null=True, blank=True, on_delete=models.PROTECT, help_text="Only this pool, when set."
    )
    state = models.CharField(max_length=20, choices=State.choices, default=State.WAITING)
    queue_reason = models.TextField(blank=True)
    builder = models.ForeignKey(
        Builder, null=True, blank=True, on_delete=models.PROTECT, related_name="leases"
    )
    created_at = models.DateTimeField(default=timezone.now)
    assigned_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    max_expires_at = models.DateTimeField(null=True, blank=True)
    warned_at = models.DateTimeField(null=True, blank=True)
    # SHA-256 of the lease token given to copr-builder; the token itself is never stored.
    token_hash = models.CharField(max_length=64, blank=True, db_index=True)
    # When the user's keys were on the builder: from then on an SSH lease is ready to log in to.
    access_ready_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=20, choices=EndReason.choices, blank=True)

    objects = LeaseQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["builder"],
                condition=~Q(state="ended") & Q(builder__isnull=False),
                name="builders_lease_one_open_per_builder",
            ),
            models.CheckConstraint(
                condition=Q(expires_at__isnull=True)
                | Q(max_expires_at__isnull=True)
                | Q(expires_at__lte=F("max_expires_at")),
                name="builders_lease_expiry_within_cap",
            ),
            models.CheckConstraint(
                condition=Q(state="ended", ended_at__isnull=False)
                | (~Q(state="ended") & Q(ended_at__isnull=True)),
                name="builders_lease_ended_has_time",
            ),
        ]
        indexes = [
            # expire_leases: active leases by expiry.
            models.Index(
                fields=["expires_at"], condition=Q(state="active"), name="builders_lease_expiry_idx"
            ),
            # request_lease / promote_queued_leases: an owner's SSH leases holding or awaiting a slot.
            models.Index(
                fields=["owner", "state"],
                condition=Q(ssh=True) & ~Q(state="ended"),
                name="builders_lease_ssh_idx",
            ),
            # assign_waiting_leases: the queue, oldest first.
            models.Index(
                fields=["created_at"], condition=Q(state="waiting"), name="builders_lease_waiting_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"lease #{self.pk}"

    @property
    def remaining(self) -> timedelta | None:
        if self.expires_at is None:
            return None
        return max(self.expires_at - timezone.now(), timedelta(0))


class QuotaPolicy(models.Model):
    """The global SSH quota and lifetimes: a single row, edited in the admin."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1, editable=False)
    max_ssh_builders = models.PositiveIntegerField(default=2, help_text="SSH builders per user at once.")
    default_lifetime = models.DurationField(
        default=timedelta(hours=1), help_text="How long an SSH builder is kept after its build (HH:MM:SS)."
    )
    max_lifetime = models.DurationField(
        default=timedelta(hours=48), help_text="Hard cap from the start of the lease (HH:MM:SS)."
    )
    warning_before = models.DurationField(
        default=timedelta(minutes=10), help_text="Warn logged-in users this long before expiry."
    )

    class Meta:
        verbose_name = "quota policy"
        verbose_name_plural = "quota policy"
        constraints = [
            models.CheckConstraint(condition=Q(id=1), name="builders_quotapolicy_single_row"),
            models.CheckConstraint(
                condition=Q(default_lifetime__gt=timedelta(0)) & Q(default_lifetime__lte=F("max_lifetime")),
                name="builders_quotapolicy_default_within_max",
                violation_error_message="The default lifetime must be positive and at most the maximum lifetime.",
            ),
        ]

    def __str__(self) -> str:
        return "Quota policy"

    @classmethod
    def get(cls) -> QuotaPolicy:
        policy, _ = cls.objects.get_or_create(pk=1)
        return policy


class QuotaOverride(models.Model):
    """Per-user exceptions to the quota policy; empty fields fall back to the policy."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="quota_override"
    )
    max_ssh_builders = models.PositiveIntegerField(null=True, blank=True)
    default_lifetime = models.DurationField(null=True, blank=True)
    max_lifetime = models.DurationField(null=True, blank=True)
    note = models.CharField(max_length=200, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(default_lifetime__isnull=True) | Q(default_lifetime__gt=timedelta(0)),
                name="builders_quotaoverride_positive_lifetime",
            ),
        ]

    def __str__(self) -> str:
        return f"quota override for {self.user}"

    def clean(self) -> None:
        policy = QuotaPolicy.get()
        default = self.default_lifetime or policy.default_lifetime
        maximum = self.max_lifetime or policy.max_lifetime
        if default > maximum:
            raise ValidationError(
                f"The default lifetime ({default}) would be longer than the maximum lifetime ({maximum}); "
                "set both so that default ≤ maximum."
            )


class AuditEvent(models.Model):
    """Something that happened to a lease or builder: who, when, from where."""

    class Action(models.TextChoices):
        LEASE_REQUESTED = "lease-requested"
        LEASE_QUEUED = "lease-queued"
        LEASE_ASSIGNED = "lease-assigned"
        LEASE_STARTED = "lease-started"
        KEPT_FOR_SSH = "kept-for-ssh"
        KEEP_REFUSED = "keep-refused"
        KEYS_DEPLOYED = "keys-deployed"
        PROLONGED = "prolonged"
        PROLONG_REFUSED = "prolong-refused"
        RELEASED = "released"
        EXPIRED = "expired"
        WARNED = "warned"
        BUILDER_READY = "builder-ready"
        BUILDER_FAILED = "builder-failed"
        TERMINATED = "terminated"
        ORPHAN_DELETED = "orphan-deleted"
        BUILDER_RECOVERED = "builder-recovered"
        POOL_FAILING = "pool-failing"
        POOL_PAUSED = "pool-paused"
        POOL_RESUMED = "pool-resumed"
        POOL_RECOVERED = "pool-recovered"
        QUOTA_CHANGED = "quota-changed"
        GATEWAY_LOGIN = "gateway-login"

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    action = models.CharField(max_length=30, choices=Action.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # web, api, cli, builder (copr-builder), admin, tick, task
    source = models.CharField(max_length=20, blank=True)
    remote_addr = models.GenericIPAddressField(null=True, blank=True)
    lease = models.ForeignKey(Lease, null=True, blank=True, on_delete=models.SET_NULL, related_name="events")
    builder = models.ForeignKey(
        Builder, null=True, blank=True, on_delete=models.SET_NULL, related_name="events"
    )
    detail = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.action}"


class LeaseKey(models.Model):
    """A public key deployed for an SSH lease; the gateway lets it through to the lease's builder."""

    lease = models.ForeignKey(Lease, on_delete=models.CASCADE, related_name="keys")
    key_type = models.CharField(max_length=50)
    # The key blob in base64, as keys.parser re-emitted it: never what the user typed.
    data = models.TextField()
    fingerprint = models.CharField(max_length=60, help_text="SHA256:… as ssh-keygen -lf prints it.")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["lease", "fingerprint"], name="builders_leasekey_once_per_lease"),
        ]
        indexes = [
            # record_gateway_logins: the leases a fingerprint that logged in belongs to.
            models.Index(fields=["fingerprint"], name="builders_leasekey_fp_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.fingerprint} of lease #{self.lease_id}"


class GatewayLogCursor(models.Model):
    """How far the service has read the SSH gateway's log (a single row): each login is recorded once."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1, editable=False)
    # "device:inode" of the log file the offset belongs to; another file starts again from 0.
    file_id = models.CharField(max_length=100, blank=True)
    offset = models.BigIntegerField(default=0)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(id=1), name="builders_gatewaylogcursor_single_row")]

    def __str__(self) -> str:
        return f"gateway log read to {self.offset}"
