"""Our rows as Copr APIv3 objects: the field names and meanings of Copr's frontend.

Fields whose meaning carries over are filled in; Copr-only settings (homepage, bootstrap,
isolation, modules, dist-git directories…) are left out. Times are Unix seconds, as in Copr.
Every URL is absolute, built from the request.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.http import HttpRequest
from django.urls import reverse

from builds.models import FINAL_STATES, SRPM_DIR, Build, BuildChroot, Project, State

# Copr's states (copr_common.enums.StatusEnum), which the client knows.
COPR_STATES = [
    "importing",
    "pending",
    "starting",
    "running",
    "succeeded",
    "failed",
    "canceled",
    "skipped",
    "forked",
    "waiting",
    "unknown",
]


def timestamp(when: datetime | None) -> int | None:
    return None if when is None else int(when.timestamp())


def results_url(request: HttpRequest, owner: str, project: str, *parts: str) -> str:
    """The results tree (HTML directory indexes), as copr-cli download-build walks it with wget."""
    path = reverse("copr-results", kwargs={"owner": owner, "project": project})
    return request.build_absolute_uri(path + "".join(f"{part}/" for part in parts))


def build_dir(build_id: int) -> str:
    return f"{build_id:08d}"


def project_to_dict(request: HttpRequest, project: Project) -> dict[str, Any]:
    owner = project.owner.get_username()
    chroots = [c.name for c in project.chroots.all()]
    return {
        "id": project.pk,
        "name": project.name,
        "projectname": project.name,
        "ownername": owner,
        "full_name": project.full_name,
        "description": project.description,
        # Copr's per-chroot repository base URLs. Here it is the chroot's results directory:
        # browsable, but without repodata (coprssh does not run createrepo).
        "chroot_repos": {name: results_url(request, owner, project.name, name) for name in chroots},
        "additional_repos": [],
        # Where results live: "backend" is Copr's name for plain directories on the service host.
        "storage": "backend",
        "chroots": chroots,
    }


def build_state(build: Build) -> str:
    """The build's state in Copr's words, from its phases (Copr's own precedence)."""
    if build.state in FINAL_STATES:
        return build.state
    srpm = getattr(build, "srpm", None)
    if srpm is not None and srpm.state != State.SUCCEEDED:
        # The SRPM phase: Copr's source build.
        return srpm.state if srpm.state in (State.PENDING, State.STARTING, State.RUNNING) else "running"
    states = {c.state for c in build.build_chroots.all()}
    for state in (State.RUNNING, State.STARTING, State.PENDING):
        if state in states:
            return state
    return "running"


def chroot_state(build_chroot: BuildChroot, srpm_done: bool) -> str:
    # Copr's chroots wait for the source build, then are pending for a builder.
    if build_chroot.state == State.PENDING and not srpm_done:
        return "waiting"
    return build_chroot.state


def srpm_url(request: HttpRequest, build: Build) -> str | None:
    if not build.srpm_file:
        return None
    name = build.srpm_file.rsplit("/", 1)[-1]
    owner = build.project.owner.get_username()
    return results_url(request, owner, build.project.name, SRPM_DIR, build_dir(build.pk)) + name


def build_to_dict(request: HttpRequest, build: Build) -> dict[str, Any]:
    owner = build.project.owner.get_username()
    return {
        "id": build.pk,
        "state": build_state(build),
        "projectname": build.project.name,
        "ownername": owner,
        "project_dirname": build.project.name,
        "repo_url": results_url(request, owner, build.project.name),
        "source_package": {
            "name": build.package_name or None,
            "version": build.package_version or None,
            "url": srpm_url(request, build),
        },
        "submitted_on": timestamp(build.created_at),
        "started_on": timestamp(build.started_at),
        "ended_on": timestamp(build.ended_at),
        "submitter": build.submitter.get_username(),
        "chroots": [c.chroot.name for c in build.build_chroots.all()],
        # coprssh only (the client ignores them): an SSH build's RPMs are never kept or published.
        "ssh": build.ssh,
        "resubmitted_from": build.resubmitted_from_id,
        "source_type": build.source_type,
    }


def build_chroot_to_dict(request: HttpRequest, build_chroot: BuildChroot) -> dict[str, Any]:
    build = build_chroot.build
    srpm = getattr(build, "srpm", None)
    return {
        "name": build_chroot.chroot.name,
        "state": chroot_state(build_chroot, srpm is not None and srpm.state == State.SUCCEEDED),
        "started_on": timestamp(build_chroot.started_at),
        "ended_on": timestamp(build_chroot.ended_at),
        "result_url": results_url(
            request,
            build.project.owner.get_username(),
            build.project.name,
            build_chroot.chroot.name,
            build_dir(build.pk),
        ),
    }
