"""Create the demo accounts; safe to run any number of times."""

from __future__ import annotations

import platform
import secrets
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management.base import BaseCommand

from builders.models import Pool, SshRoute
from builds.models import Chroot, Project
from builds.services import create_project, submit_build
from builds.sources import check_upload
from coprssh.services import get_api_token

DEMO_PROJECT = "hello-coprssh"
SAMPLE_SPEC = Path(__file__).resolve().parents[3] / "builds" / "demo" / "hello-coprssh.spec"

ACCOUNTS = [
    # (user name, is operator)
    ("operator", True),
    ("demo", False),
]


class Command(BaseCommand):
    help = (
        "Create the demo accounts (an operator and a `demo` user) and a local builder pool; "
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
        self._demo_project(User.objects.get(username="demo"), arch)

    def _demo_project(self, demo, arch: str) -> None:  # noqa: ANN001 - a User
        """A project with the sample spec, built once so the demo has a build to look at."""
        project = Project.objects.filter(owner=demo, name=DEMO_PROJECT).first()
        if project is not None:
            self.stdout.write(f"project demo/{DEMO_PROJECT}: exists")
            return
        chroots = [
            name
            for name in (f"fedora-rawhide-{arch}", f"epel-9-{arch}")
            if Chroot.objects.filter(name=name).exists()
        ]
        if not chroots:
            self.stdout.write(f"no chroot for {arch}; skipping the demo project")
            return
        project = create_project(
            owner=demo,
            name=DEMO_PROJECT,
            chroots=chroots,
            description="The sample package of the coprssh demo.",
        )
        upload = SimpleUploadedFile(SAMPLE_SPEC.name, SAMPLE_SPEC.read_bytes(), content_type="text/plain")
        build = submit_build(
            project=project, submitter=demo, chroots=None, source=check_upload(upload), upload=upload
        )
        self.stdout.write(
            f"project demo/{DEMO_PROJECT}: created, build #{build.pk} of the sample spec submitted"
        )
