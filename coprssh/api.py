"""API v1 root: what a client can reach from here."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.defaults import page_not_found
from drf_spectacular.utils import extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView


class ApiRootView(APIView):
    """Entry point of API v1: links to the collections, the schema and the docs."""

    permission_classes = [AllowAny]

    @extend_schema(exclude=True)
    def get(self, request: Request) -> Response:
        def link(name: str) -> str:
            return reverse(name, request=request)

        return Response(
            {
                "version": "1",
                "user": request.user.get_username() if request.user.is_authenticated else None,
                "projects": link("api-projects"),
                "builds": link("api-builds"),
                "keys": link("api-keys"),
                "ssh_builders": link("api-ssh-builders"),
                "quota": link("api-quota"),
                "schema": link("api-schema"),
                "docs": link("api-docs"),
            }
        )


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """handler404: under /api/v1/ a path that names nothing is a JSON 404 like the API's others."""
    if request.path.startswith("/api/v1/"):
        return JsonResponse({"detail": "Not found.", "code": "not_found"}, status=404)
    return page_not_found(request, exception)
