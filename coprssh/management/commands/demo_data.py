"""Create the demo accounts, pool and projects; safe to run any number of times."""

from __future__ import annotations

import platform
import secrets
from dataclasses import dataclass
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management.base import BaseCommand

from builders.models import Pool, SshRoute
from builds.models import Chroot, Project
from builds.services import create_project, submit_build
from builds.sources import check_upload
from coprssh.services import get_api_token

DEMO_SPECS = Path(__file__).resolve().parents[3] / "builds" / "demo"


@dataclass(frozen=True)
class DemoProject:
    """A project of the `demo` user and its one build, of a spec in builds/demo/."""

    name: str
    spec: str
    releases: tuple[str, ...]  # its chroots without the arch, which is the machine's
    description: str
    outcome: str  # what the command says of the build


DEMO_PROJECTS = [
    DemoProject(
        name="hello-coprssh",
        spec="hello-coprssh.spec",
        releases=("fedora-rawhide", "epel-9"),
        description="The sample package of the coprssh demo.",
        outcome="which builds",
    ),
    # The situation the product exists for: a build that fails on the farm. One chroot only, so
    # that resubmitting it with SSH takes one of the user's SSH builders, not both.
    DemoProject(
        name="failing-check",
        spec="failing-check.spec",
        releases=("fedora-rawhide",),
        description="A package whose %check fails on the build farm: resubmit its build with SSH "
        "and debug it on the builder.",
        outcome="whose %check fails: resubmit the build with SSH to debug it",
    ),
]

ACCOUNTS = [
    # (user name, is operator)
    ("operator", True),
    ("demo", False),
]


class Command(BaseCommand):
    help = (
        "Create the demo accounts (an operator and a `demo` user), a local builder pool and the demo "
        "user's projects, each with a build (one succeeds, one fails in %check); "
        "what exists already is left alone."
    )

    def handle(self, *args, **options) -> None:
        User = get_user_model()
        for username, is_operator in ACCOUNTS:
            user = User.objects.filter(username=username).first()
            if user is not None:
                self.stdout.write(f"{username}: exists, password unchanged")
                continue
            password = secrets.token_urlsafe(12)
            if is_operator:
                user = User.objects.create_superuser(username, f"{username}@localhost", password)
            else:
                user = User.objects.create_user(username, f"{username}@localhost", password)
            get_api_token(user=user)
            role = "operator (admin console)" if is_operator else "user"
            self.stdout.write(self.style.SUCCESS(f"{username}: created, {role}, password: {password}"))
        self.stdout.write("Passwords are shown only when an account is created; reset one with")
        self.stdout.write("  manage.py changepassword USER")
        arch = platform.machine()
        pool, created = Pool.objects.get_or_create(
            name="local",
            defaults={
                "provider": Pool.Provider.LOCAL,
                "architectures": [arch],
                "max_builders": 4,
                "warm_builders": 1,
                # The demo shows both ways in: the SSH gateway first (a loopback builder has no
                # public address), and directly.
                "ssh_route": SshRoute.BOTH,
            },
        )
        state = "created" if created else "exists"
        self.stdout.write(f"pool {pool.name}: {state}, local builders for {', '.join(pool.architectures)}")
        demo = User.objects.get(username="demo")
        for demo_project in DEMO_PROJECTS:
            self._demo_project(demo, demo_project, arch)

    def _demo_project(self, demo, wanted: DemoProject, arch: str) -> None:  # noqa: ANN001 - a User
        """Make the project and submit its build; an existing project is left alone."""
        label = f"project demo/{wanted.name}"
        if Project.objects.filter(owner=demo, name=wanted.name).exists():
            self.stdout.write(f"{label}: exists")
            return
        chroots = [
            name
            for name in (f"{release}-{arch}" for release in wanted.releases)
            if Chroot.objects.filter(name=name).exists()
        ]
        if not chroots:
            self.stdout.write(f"no chroot for {arch}; skipping {label}")
            return
        project = create_project(
            owner=demo, name=wanted.name, chroots=chroots, description=wanted.description
        )
        spec = DEMO_SPECS / wanted.spec
        upload = SimpleUploadedFile(spec.name, spec.read_bytes(), content_type="text/plain")
        build = submit_build(
            project=project, submitter=demo, chroots=None, source=check_upload(upload), upload=upload
        )
        self.stdout.write(f"{label}: created, build #{build.pk} submitted ({wanted.spec}, {wanted.outcome})")
