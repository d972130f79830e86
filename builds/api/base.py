"""What the API views of builds share: the project and chroot fields, project lookups, pagination."""

from __future__ import annotations

import re
from typing import Any

from django.contrib.auth.models import User
from django.core.validators import ProhibitNullCharactersValidator
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from builders import services as builders
from builds.http import AuthenticatedRequest
from builds.models import CHROOT_NAME_RE, PROJECT_NAME_RE, Project
from coprssh.exceptions import ForbiddenError, NotFoundError
from coprssh.openapi import Pagination
from keys import services as keys
from keys.parser import MAX_INPUT_BYTES, PublicKey

# `owner/name`: a Django user name, then a project name.
USERNAME_PATTERN = r"[\w.@+-]{1,150}"
FULL_NAME_RE = re.compile(rf"(?P<owner>{USERNAME_PATTERN})/(?P<name>{PROJECT_NAME_RE.pattern})")
# How the `coprssh` command-line client names itself (cli/coprssh_cli/client.py).
CLI_USER_AGENT = "coprssh-cli/"


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


class KeyLinesField(serializers.CharField):
    """Key lines as typed; the key parser names each bad line, one with a NUL in it too."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(trim_whitespace=False, max_length=MAX_INPUT_BYTES, **kwargs)
        # DRF refuses any NUL for the whole field; the parser refuses it for its line.
        self.validators = [v for v in self.validators if not isinstance(v, ProhibitNullCharactersValidator)]


class SshKeysInput(serializers.Serializer[Any]):
    """The SSH fields of a submission: keep a failed phase's builder, and the keys to deploy."""

    ssh_on_failure = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Keep the builder of a phase that fails for SSH access by the keys given "
        "(ssh_public_keys, use_saved_keys). A phase that succeeds publishes its results as usual, "
        "and no key is deployed.",
    )
    ssh_public_keys = KeyLinesField(
        required=False,
        allow_blank=True,
        help_text="Public SSH keys, one per line, and/or GitHub:user, FAS:user references: with "
        "ssh_on_failure, the keys a failed phase's builder is kept for; on a resubmit without it, "
        "they make an SSH build.",
    )
    use_saved_keys = serializers.BooleanField(
        required=False, default=False, help_text="Deploy the keys saved on your profile too."
    )


def api_via(request: AuthenticatedRequest) -> builders.Via:
    """Who asked and from where, for the audit log: `cli` when the `coprssh` client says so in its
    User-Agent (`coprssh-cli/VERSION`), `api` for any other client."""
    agent = request.META.get("HTTP_USER_AGENT", "")
    source = "cli" if agent.startswith(CLI_USER_AGENT) else "api"
    return builders.Via(user=request.user, source=source, remote_addr=request.META.get("REMOTE_ADDR"))


def resolved_keys(*, user: User, project: Project, text: str, use_saved_keys: bool) -> list[PublicKey]:
    """The keys given (pasted, GitHub:/FAS: references, saved), checked line by line; 400 naming each bad one.

    Only for who may build in `project`: a stranger's request must not make the service fetch
    GitHub or FAS references (the services check again).
    """
    if not project.can_build(user):
        raise ForbiddenError(f"Only the owner of {project.full_name} can build in it.")
    # Outside any transaction: references are fetched over HTTP.
    return keys.resolve_keys(
        text=text, user=user, use_saved_keys=use_saved_keys, field="ssh_public_keys"
    ).keys
