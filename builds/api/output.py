"""What API v1 answers for a build: its phases with links to their logs, results and SSH builders."""

from __future__ import annotations

from typing import Any

from django.db.models import Prefetch, QuerySet
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.reverse import reverse

from builds import storage
from builds.files import log_url, result_url, results_in
from builds.models import Build, BuildChroot, State
from builds.selectors import Phase, chroot_of
from builds.ssh_view import SshBuilderView, ssh_builder_of_phase
from coprssh.exceptions import NotFoundError


class PhaseLogs(serializers.Serializer[Any]):
    backend = serializers.URLField(help_text="backend.log: what the service did, as text/plain.")
    builder_live = serializers.URLField(help_text="builder-live.log: the build's own output, as text/plain.")


class SshBuilderLink(serializers.Serializer[Any]):
    """The SSH builder of one phase of an SSH build, or of a failed phase of a keep-on-failure build;
    its `url` has the details, prolong and release."""

    id = serializers.IntegerField(help_text="The SSH builder's id.")
    state = serializers.CharField(help_text="queued, provisioning, ready, ended or failed.")
    queue_reason = serializers.CharField(help_text="Why it waits (over quota: who holds the slots).")
    # Build reads are public; builds.ssh_view leaves this empty for all but the owner and staff.
    ssh_command = serializers.CharField(
        allow_null=True, help_text="How to log in once ready; shown to its owner (and staff) only."
    )
    expires_at = serializers.DateTimeField(allow_null=True)
    url = serializers.SerializerMethodField()

    @extend_schema_field(serializers.URLField(help_text="The SSH builder in /api/v1/ssh-builders/."))
    def get_url(self, view: SshBuilderView) -> str:
        return reverse(
            "api-ssh-builder-detail", kwargs={"lease_id": view.id}, request=self.context.get("request")
        )


class PhaseOutput(serializers.Serializer[Any]):
    """What the SRPM phase and each chroot show: state, times, links to their logs and results."""

    state = serializers.ChoiceField(choices=State.choices)
    status_reason = serializers.CharField(source="reason", help_text="Why it failed, or why it still waits.")
    not_kept_reason = serializers.CharField(
        help_text="A keep-on-failure build's failed phase whose builder was not kept for SSH: why "
        "(over the SSH quota, say); empty otherwise."
    )
    started = serializers.DateTimeField(source="started_at", allow_null=True)
    ended = serializers.DateTimeField(source="ended_at", allow_null=True)
    logs = serializers.SerializerMethodField()
    results = serializers.SerializerMethodField()
    ssh_builder = serializers.SerializerMethodField()

    def _absolute(self, url: str) -> str:
        request = self.context.get("request")
        return request.build_absolute_uri(url) if request is not None else url

    @extend_schema_field(PhaseLogs)
    def get_logs(self, phase: Phase) -> dict[str, str]:
        chroot = chroot_of(phase)
        return {
            "backend": self._absolute(log_url(phase.build_id, chroot, storage.BACKEND_LOG)),
            "builder_live": self._absolute(log_url(phase.build_id, chroot, storage.LIVE_LOG)),
        }

    @extend_schema_field(serializers.ListField(child=serializers.URLField()))
    def get_results(self, phase: Phase) -> list[str]:
        chroot = chroot_of(phase)
        return [
            self._absolute(result_url(phase.build_id, chroot, name))
            for name, _size in results_in(phase.storage_dir)
        ]

    @extend_schema_field(SshBuilderLink(allow_null=True))
    def get_ssh_builder(self, phase: Phase) -> dict[str, Any] | None:
        request = self.context.get("request")
        view = ssh_builder_of_phase(phase, viewer=request.user if request is not None else None)
        return None if view is None else SshBuilderLink(view, context=self.context).data


class SrpmOutput(PhaseOutput):
    """The SRPM phase: source in, SRPM and spec out."""


class BuildChrootOutput(PhaseOutput):
    """The RPM phase of one chroot."""

    name = serializers.CharField(source="chroot.name")


class BuildOutput(serializers.Serializer[Any]):
    id = serializers.IntegerField()
    project = serializers.CharField(source="project.full_name", help_text='"owner/name"')
    state = serializers.ChoiceField(choices=State.choices)
    # A CharField: a second enum of the same states would get a second name in the schema.
    source_state = serializers.CharField(
        source="srpm.state", allow_null=True, help_text="State of the SRPM phase (same values as state)."
    )
    source_type = serializers.ChoiceField(choices=Build.SourceType.choices)
    source_filename = serializers.CharField(help_text="The uploaded or downloaded file's name.")
    clone_url = serializers.CharField()
    committish = serializers.CharField()
    spec = serializers.CharField(help_text="Spec path in the repository (scm).")
    url = serializers.CharField()
    package_name = serializers.CharField()
    package_version = serializers.CharField()
    submitter = serializers.CharField(source="submitter.get_username")
    ssh = serializers.BooleanField()
    ssh_on_failure = serializers.BooleanField(
        help_text="A failed phase's builder is kept for SSH (it then shows as the phase's ssh_builder)."
    )
    resubmitted_from = serializers.IntegerField(source="resubmitted_from_id", allow_null=True)
    created = serializers.DateTimeField(source="created_at")
    started = serializers.DateTimeField(source="started_at", allow_null=True)
    ended = serializers.DateTimeField(source="ended_at", allow_null=True)
    chroots = BuildChrootOutput(source="build_chroots", many=True)
    srpm = SrpmOutput(allow_null=True)


def builds_for_output() -> QuerySet[Build]:
    """Builds with everything their output shows, in a fixed number of queries.

    The leases' builders are joined too: an SSH build shows each phase's SSH builder.
    """
    return Build.objects.select_related(
        "project__owner", "submitter", "srpm__lease__builder__pool"
    ).prefetch_related(
        Prefetch(
            "build_chroots", queryset=BuildChroot.objects.select_related("chroot", "lease__builder__pool")
        )
    )


def _build(build_id: int) -> Build:
    build = builds_for_output().filter(pk=build_id).first()
    if build is None:
        raise NotFoundError("No such build.")
    return build


def build_output(request: Request, build_id: int) -> dict[str, Any]:
    return BuildOutput(_build(build_id), context={"request": request}).data
