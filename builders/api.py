"""API v1 for copr-builder: the lease token can read, prolong and release its own lease, nothing else.

The LeaseToken scheme is accepted on these views only; every other endpoint ignores it.
"""

from __future__ import annotations

from django.contrib.auth.models import User
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from builders import services
from builders.models import Lease
from coprssh.openapi import CONFLICT
from coprssh.tokens import ScopedTokenAuthentication, ScopedTokenScheme


class LeaseTokenAuthentication(ScopedTokenAuthentication):
    """`Authorization: LeaseToken <token>`: acts for the lease's owner, on that lease only."""

    keyword = "LeaseToken"
    what = "lease token"
    refused = "The lease has ended or the token is not valid."

    def resolve(self, token: str) -> tuple[User, Lease] | None:
        lease = services.lease_for_token(token)
        return None if lease is None else (lease.owner, lease)


class LeaseTokenScheme(ScopedTokenScheme):  # type: ignore[no-untyped-call]  # drf-spectacular is untyped
    target_class = "builders.api.LeaseTokenAuthentication"
    name = "leaseToken"
    keyword = "LeaseToken"


class LeaseOutput(serializers.ModelSerializer[Lease]):
    owner = serializers.CharField(source="owner.get_username")

    class Meta:
        model = Lease
        fields = [
            "id",
            "state",
            "purpose",
            "owner",
            "started_at",
            "expires_at",
            "max_expires_at",
            "end_reason",
        ]


class _LeaseTokenView(APIView):
    authentication_classes = [LeaseTokenAuthentication]

    def lease(self, request: Request) -> Lease:
        lease = request.auth
        assert isinstance(lease, Lease)
        return lease

    def via(self, request: Request) -> services.Via:
        return services.Via(user=request.user, source="builder", remote_addr=request.META.get("REMOTE_ADDR"))


class LeaseView(_LeaseTokenView):
    """The caller's lease, as it is now."""

    @extend_schema(responses=LeaseOutput)
    def get(self, request: Request) -> Response:
        return Response(LeaseOutput(self.lease(request)).data)


class LeaseProlongView(_LeaseTokenView):
    """Add hours to the lease's expiry; 400 past its cap (the message names the latest time)."""

    class ProlongInput(serializers.Serializer[dict[str, int]]):
        hours = serializers.IntegerField(min_value=1, max_value=services.MAX_PROLONG_HOURS, default=1)

    @extend_schema(request=ProlongInput, responses={200: LeaseOutput, 409: CONFLICT})
    def post(self, request: Request) -> Response:
        data = self.ProlongInput(data=request.data)
        data.is_valid(raise_exception=True)
        lease = services.prolong_lease(
            lease_id=self.lease(request).pk, hours=data.validated_data["hours"], via=self.via(request)
        )
        return Response(LeaseOutput(lease).data)


class LeaseReleaseView(_LeaseTokenView):
    """End the lease now; its builder is deleted."""

    @extend_schema(request=None, responses=LeaseOutput)
    def post(self, request: Request) -> Response:
        lease = services.release_lease(lease_id=self.lease(request).pk, via=self.via(request))
        return Response(LeaseOutput(lease).data)
