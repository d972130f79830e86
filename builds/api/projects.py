"""API v1: projects, public to read; creating one makes it the caller's."""

from __future__ import annotations

from typing import Any

from django.db.models import Prefetch
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.permissions import IsAuthenticatedOrReadOnly
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from builds import services
from builds.api.base import USERNAME_PATTERN, chroot_names, find_project, paginated, validated
from builds.http import AuthenticatedRequest
from builds.models import PROJECT_NAME_RE, Chroot, Project
from coprssh.openapi import NOT_FOUND, Pagination, QueryFilter


@extend_schema_field({"type": "string", "pattern": f"^{PROJECT_NAME_RE.pattern}$", "maxLength": 100})
class ProjectNameField(serializers.CharField):
    """Letters, digits and . _ + -; the model's validator words the refusal."""


class ProjectOutput(serializers.ModelSerializer[Project]):
    owner = serializers.CharField(source="owner.get_username")
    full_name = serializers.CharField()
    chroots: serializers.SlugRelatedField[Chroot] = serializers.SlugRelatedField(
        many=True, read_only=True, slug_field="name"
    )
    created = serializers.DateTimeField(source="created_at")

    class Meta:
        model = Project
        fields = ["id", "owner", "name", "full_name", "description", "chroots", "created"]


class ProjectListView(APIView):
    """Projects, public; POST creates one of the caller's."""

    permission_classes = [IsAuthenticatedOrReadOnly]
    pagination_class = Pagination

    class ProjectListFilter(QueryFilter):
        owner = serializers.RegexField(
            f"^{USERNAME_PATTERN}$", required=False, help_text="Only this user's projects."
        )

    class ProjectInput(serializers.Serializer[Any]):
        name = ProjectNameField(max_length=100)
        chroots = chroot_names()
        description = serializers.CharField(max_length=5000, required=False, allow_blank=True, default="")

    @extend_schema(parameters=[ProjectListFilter], responses=ProjectOutput(many=True))
    def get(self, request: Request) -> Response:
        query = validated(self.ProjectListFilter, request.query_params)
        projects = Project.objects.select_related("owner").prefetch_related(
            Prefetch("chroots", queryset=Chroot.objects.only("id", "name"))
        )
        if "owner" in query:
            projects = projects.filter(owner__username=query["owner"])
        return paginated(self, request, projects, ProjectOutput)

    @extend_schema(request=ProjectInput, responses={201: ProjectOutput})
    def post(self, request: AuthenticatedRequest) -> Response:
        project = services.create_project(owner=request.user, **validated(self.ProjectInput, request.data))
        return Response(ProjectOutput(project).data, status=status.HTTP_201_CREATED)


class ProjectDetailView(APIView):
    """One project, public."""

    permission_classes = [IsAuthenticatedOrReadOnly]

    @extend_schema(responses={200: ProjectOutput, 404: NOT_FOUND})
    def get(self, request: Request, owner: str, name: str) -> Response:
        return Response(ProjectOutput(find_project(owner, name)).data)
