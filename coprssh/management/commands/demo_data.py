"""Create the demo accounts; safe to run any number of times."""

from __future__ import annotations

import platform
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from builders.models import Pool
from coprssh.services import get_api_token

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
            },
        )
        state = "created" if created else "exists"
        self.stdout.write(f"pool {pool.name}: {state}, local builders for {', '.join(pool.architectures)}")
