"""API v1: the caller's SSH builders (read, prolong, release) and SSH quota.

An SSH builder is an SSH lease and the build phase it serves (builds/ssh_view.py). Only the
caller's own SSH leases exist here: anyone else's id, and the id of a lease that is not an
SSH one (a normal build's builder), answers 404 and changes nothing.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import timedelta
from typing import Any

from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from builders import services as builders
from builds.api.base import api_via, validated
from builds.http import AuthenticatedRequest
from builds.selectors import served_by
from builds.ssh_view import SshBuilderView, public_state, ssh_builders_of
from coprssh.exceptions import NotFoundError
from coprssh.openapi import CONFLICT, NOT_FOUND


class GatewayOutput(serializers.Serializer[Any]):
    host = serializers.CharField(help_text="The SSH gateway's name or address.")
    port = serializers.IntegerField()
    user = serializers.CharField(help_text="The account to give the gateway (it has no shell).")
    host_key_fingerprint = serializers.CharField(help_text="SHA256 of the gateway's host key.")
    proxy_jump = serializers.CharField(
        help_text="The argument of ssh -J (and ProxyJump), e.g. coprssh-gw@gw:2222."
    )
    ssh_command = serializers.CharField(
        source="command", help_text="The builder through the gateway: ssh -J GW -p PORT USER@BUILDER."
    )


class GatewayLoginOutput(serializers.Serializer[Any]):
    at = serializers.DateTimeField(help_text="When the gateway accepted the login.")
    address = serializers.CharField(allow_null=True, help_text="Where it came from.")


class SshBuilderOutput(serializers.Serializer[Any]):
    id = serializers.IntegerField(help_text="The SSH builder's id.")
    build = serializers.IntegerField(source="build_id", allow_null=True)
    chroot = serializers.CharField(allow_null=True, help_text='The chroot it builds, or "srpm".')
    state = serializers.CharField(help_text="queued, provisioning, ready, ended or failed.")
    queue_reason = serializers.CharField(help_text="Why it waits (over quota: who holds the slots).")
    host = serializers.CharField(allow_null=True, help_text="Set while ready.")
    port = serializers.IntegerField(allow_null=True)
    user = serializers.CharField(allow_null=True, help_text="The account to log in as.")
    ipv4 = serializers.CharField(allow_null=True)
    ipv6 = serializers.CharField(allow_null=True)
    ssh_command = serializers.CharField(allow_null=True, help_text="e.g. ssh -p 2222 root@192.0.2.1")
    host_key_fingerprint = serializers.CharField(
        allow_null=True, help_text="SHA256 of the builder's host key, to check on first login."
    )
    expires_at = serializers.DateTimeField(allow_null=True)
    max_expires_at = serializers.DateTimeField(allow_null=True, help_text="Prolonging stops here.")
    key_fingerprints = serializers.ListField(
        child=serializers.CharField(), help_text="The keys that can log in (SHA256:…)."
    )
    route = serializers.CharField(
        allow_null=True,
        help_text='What ssh_command does: "direct", or "gateway" (ssh -J through the SSH gateway).',
    )
    direct_ssh_command = serializers.CharField(
        source="direct_command",
        allow_null=True,
        help_text="The builder at its own address; null when its pool is reached through the gateway only.",
    )
    gateway = serializers.SerializerMethodField()
    known_hosts = serializers.ListField(
        child=serializers.CharField(),
        help_text="known_hosts lines that pin the builder's host key (and the gateway's, on a gateway route).",
    )
    ssh_config = serializers.CharField(allow_null=True, help_text="A ~/.ssh/config snippet: ssh coprssh-ID.")
    last_gateway_login = GatewayLoginOutput(allow_null=True, help_text="The last login through the gateway.")

    @extend_schema_field(GatewayOutput(allow_null=True))
    def get_gateway(self, view: SshBuilderView) -> dict[str, object] | None:
        """How to go through the gateway, when the builder's pool is reached through it."""
        if view.gateway is None or view.gateway_command is None:
            return None
        return GatewayOutput({**asdict(view.gateway), "command": view.gateway_command}).data


def _ssh_builder(request: AuthenticatedRequest, lease_id: int) -> SshBuilderView:
    """The caller's SSH builder, or 404 (someone else's, unknown, or not an SSH lease)."""
    found = ssh_builders_of(request.user, lease_id=lease_id)
    if not found:
        raise NotFoundError("No such SSH builder.")
    return found[0]


class SshBuilderListView(APIView):
    """The caller's SSH builders, newest first (the latest 200)."""

    @extend_schema(responses=SshBuilderOutput(many=True))
    def get(self, request: AuthenticatedRequest) -> Response:
        return Response(SshBuilderOutput(ssh_builders_of(request.user), many=True).data)


class SshBuilderDetailView(APIView):
    """One of the caller's SSH builders: how to log in, until when, with which keys."""

    @extend_schema(responses={200: SshBuilderOutput, 404: NOT_FOUND})
    def get(self, request: AuthenticatedRequest, lease_id: int) -> Response:
        return Response(SshBuilderOutput(_ssh_builder(request, lease_id)).data)


class SshBuilderProlongView(APIView):
    """Add hours to the expiry; 400 past the cap (naming the latest time), 409 once it has ended."""

    class SshBuilderProlongInput(serializers.Serializer[Any]):
        hours = serializers.IntegerField(min_value=1, max_value=builders.MAX_PROLONG_HOURS, default=1)

    @extend_schema(
        operation_id="ssh_builders_prolong",
        request=SshBuilderProlongInput,
        responses={200: SshBuilderOutput, 404: NOT_FOUND, 409: CONFLICT},
    )
    def post(self, request: AuthenticatedRequest, lease_id: int) -> Response:
        hours = validated(self.SshBuilderProlongInput, request.data)["hours"]
        _ssh_builder(request, lease_id)
        builders.prolong_lease(lease_id=lease_id, hours=hours, via=api_via(request), owner=request.user)
        return Response(SshBuilderOutput(_ssh_builder(request, lease_id)).data)


class SshBuilderReleaseView(APIView):
    """End the SSH builder now (it is deleted); releasing it again changes nothing."""

    @extend_schema(
        operation_id="ssh_builders_release", request=None, responses={200: SshBuilderOutput, 404: NOT_FOUND}
    )
    def post(self, request: AuthenticatedRequest, lease_id: int) -> Response:
        _ssh_builder(request, lease_id)
        builders.release_lease(lease_id=lease_id, via=api_via(request), owner=request.user)
        return Response(SshBuilderOutput(_ssh_builder(request, lease_id)).data)


# --- quota ----------------------------------------------------------------------------


class QuotaHolder(serializers.Serializer[Any]):
    id = serializers.IntegerField(help_text="The SSH builder holding the slot.")
    build = serializers.IntegerField(allow_null=True)
    chroot = serializers.CharField(allow_null=True, help_text='A chroot, or "srpm".')
    state = serializers.CharField(help_text="provisioning or ready.")


class QuotaOutput(serializers.Serializer[Any]):
    max_ssh_builders = serializers.IntegerField(help_text="SSH builders you may hold at once.")
    in_use = serializers.IntegerField(help_text="SSH builders holding a slot now.")
    default_lifetime_hours = serializers.FloatField(help_text="How long a new SSH builder lives.")
    max_lifetime_hours = serializers.FloatField(help_text="The cap, counted from when it became ready.")
    holders = QuotaHolder(many=True, help_text="Who holds the slots, oldest first.")


def _hours(duration: timedelta) -> float:
    return duration.total_seconds() / 3600


class QuotaView(APIView):
    """The caller's SSH quota: the limits, and which SSH builders hold the slots."""

    @extend_schema(responses=QuotaOutput)
    def get(self, request: AuthenticatedRequest) -> Response:
        quota = builders.quota_for(request.user)
        holders = builders.slot_holders(request.user)
        served = served_by([lease.pk for lease in holders])
        return Response(
            QuotaOutput(
                {
                    "max_ssh_builders": quota.max_ssh_builders,
                    "in_use": len(holders),
                    "default_lifetime_hours": _hours(quota.default_lifetime),
                    "max_lifetime_hours": _hours(quota.max_lifetime),
                    "holders": [
                        {
                            "id": lease.pk,
                            "build": served.get(lease.pk, (None, None))[0],
                            "chroot": served.get(lease.pk, (None, None))[1],
                            "state": public_state(lease),
                        }
                        for lease in holders
                    ],
                }
            ).data
        )
