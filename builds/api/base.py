"""What the API views of builds share: the project and chroot fields, project lookups, pagination."""

from __future__ import annotations

import re
from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from builds.models import CHROOT_NAME_RE, PROJECT_NAME_RE, Project
from coprssh.exceptions import NotFoundError
from coprssh.openapi import Pagination

# `owner/name`: a Django user name, then a project name.
USERNAME_PATTERN = r"[\w.@+-]{1,150}"
FULL_NAME_RE = re.compile(rf"(?P<owner>{USERNAME_PATTERN})/(?P<name>{PROJECT_NAME_RE.pattern})")


def paginated(
    view: APIView,
    request: Request,
    queryset: QuerySet[Any],
    serializer: type[serializers.BaseSerializer[Any]],
) -> Response:
    paginator = Pagination()
    page = paginator.paginate_queryset(queryset, request, view=view)
    return paginator.get_paginated_response(serializer(page, many=True, context={"request": request}).data)


def validated(serializer: type[serializers.Serializer[Any]], data: Any) -> dict[str, Any]:
    """`data` as `serializer` validates it; a ValidationError (HTTP 400) names each refused field."""
    checked = serializer(data=data)
    checked.is_valid(raise_exception=True)
    values: dict[str, Any] = checked.validated_data
    return values


def find_project(owner: str, name: str) -> Project:
    project = Project.objects.select_related("owner").filter(owner__username=owner, name=name).first()
    if project is None:
        raise NotFoundError(f"No project {owner}/{name}.", field="project")
    return project


def find_project_named(full_name: str) -> Project:
    """The project of a FullNameField's value."""
    owner, name = full_name.split("/")
    return find_project(owner, name)


@extend_schema_field(
    {
        "type": "string",
        "pattern": f"^{FULL_NAME_RE.pattern}$".replace("?P<owner>", "").replace("?P<name>", ""),
    }
)
class FullNameField(serializers.CharField):
    """A project as `owner/name` (neither part has a slash)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            max_length=300, trim_whitespace=False, help_text='The project, as "owner/name".', **kwargs
        )

    def to_internal_value(self, data: Any) -> str:
        value = super().to_internal_value(data)
        if not FULL_NAME_RE.fullmatch(value):
            raise serializers.ValidationError('Write the project as "owner/name".')
        return value


@extend_schema_field({"type": "string", "pattern": f"^{CHROOT_NAME_RE.pattern}$", "maxLength": 60})
class ChrootNameField(serializers.CharField):
    """<os>-<version>-<arch>; the service refuses a name that is not an active chroot, by name."""


def chroot_names(**kwargs: Any) -> serializers.ListField:
    chroot = ChrootNameField(max_length=60)
    if kwargs.get("allow_empty") is False:
        kwargs["min_length"] = 1
    return serializers.ListField(child=chroot, max_length=100, **kwargs)
