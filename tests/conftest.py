"""Shared fixtures. The suite runs on PostgreSQL (DATABASE_URL) and on SQLite (unset)."""

from __future__ import annotations

import os

import pytest

# Tests must not depend on the developer's shell: debug on (no HTTPS redirects), a fixed key.
os.environ.setdefault("DEBUG", "1")
os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production-use-0123456789abcdef")


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user("alice", password="alice-password-1")


@pytest.fixture
def other_user(django_user_model):
    return django_user_model.objects.create_user("bob", password="bob-password-1")
