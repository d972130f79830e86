"""Projects: create and change them."""

from __future__ import annotations

import logging

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction

from builds.models import PROJECT_NAME_RE, Chroot, Project
from coprssh.exceptions import ForbiddenError, ServiceError

log = logging.getLogger(__name__)


def check_can_build(project: Project, user: User) -> None:
    """Raise ForbiddenError unless `user` may build in `project`."""
    if not project.can_build(user):
        raise ForbiddenError(f"Only the owner of {project.full_name} can build in it.")


def active_chroots(names: list[str], *, field: str = "chroots") -> list[Chroot]:
    """The active chroots named, in order; unknown or inactive names are refused by name."""
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ServiceError("Give a list of chroot names.", field=field)
    wanted = list(dict.fromkeys(n.strip() for n in names if n.strip()))
    if not wanted:
        raise ServiceError("Choose at least one chroot.", field=field)
    if len(wanted) > 100:
        raise ServiceError("At most 100 chroots.", field=field)
    found = {c.name: c for c in Chroot.objects.filter(name__in=wanted, active=True)}
    unknown = [n for n in wanted if n not in found]
    if unknown:
        shown = ", ".join(repr(n[:60]) for n in unknown[:5])
        raise ServiceError(f"Unknown or inactive chroots: {shown}.", field=field)
    return [found[n] for n in wanted]


def create_project(*, owner: User, name: str, chroots: list[str], description: str = "") -> Project:
    """Create `owner/name` building for `chroots`."""
    if not isinstance(name, str) or not PROJECT_NAME_RE.fullmatch(name):
        raise ServiceError(
            "A project name has 1 to 100 characters: letters, digits and . _ + - (not first).", field="name"
        )
    if len(description) > 5000:
        raise ServiceError("The description may have at most 5000 characters.", field="description")
    targets = active_chroots(chroots)
    try:
        with transaction.atomic():
            project = Project.objects.create(owner=owner, name=name, description=description)
            project.chroots.set(targets)
    except IntegrityError:
        raise ServiceError(f"You already have a project named {name}.", field="name") from None
    log.info("project %s created", project.full_name)
    return project
