"""Fixtures of the keys tests: real keys from ssh-keygen and API clients (the key server is tests/fakes.py)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient


@dataclass(frozen=True)
class GeneratedKey:
    """A key pair made by ssh-keygen, with what `ssh-keygen -lf` says about it."""

    path: Path  # the private key file; the public one is next to it, with .pub
    public: str  # the .pub line, without the final newline
    private: str  # the private key file, as written by ssh-keygen
    fingerprint: str
    bits: int
    label: str  # ED25519, RSA, ECDSA, DSA

    @property
    def key_type(self) -> str:
        return self.public.split()[0]

    @property
    def blob(self) -> str:
        return self.public.split()[1]


class KeyMaker:
    """Makes keys with the real ssh-keygen; each distinct request is generated once per session."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._made: dict[tuple[str, str, int | None, str | None], GeneratedKey] = {}

    def __call__(
        self, name: str, key_type: str = "ed25519", bits: int | None = None, comment: str | None = None
    ) -> GeneratedKey:
        """The key called `name` of this type, size and comment (`name@test` by default)."""
        spec = (name, key_type, bits, comment)
        if spec not in self._made:
            path = self.directory / f"key-{len(self._made)}"
            command = ["ssh-keygen", "-q", "-t", key_type, "-N", "", "-f", str(path)]
            command += ["-C", comment if comment is not None else f"{name}@test"]
            if bits is not None:
                command += ["-b", str(bits)]
            subprocess.run(command, check=True, capture_output=True)
            self._made[spec] = self._describe(path, Path(f"{path}.pub"))
        return self._made[spec]

    def certificate(self, name: str) -> str:
        """A user certificate (`…-cert-v01@openssh.com`) for the key `name`, signed by a test CA."""
        ca, key = self("test-ca"), self(name)
        subprocess.run(
            ["ssh-keygen", "-q", "-s", str(ca.path), "-I", name, "-n", "alice", f"{key.path}.pub"],
            check=True,
            capture_output=True,
        )
        return Path(f"{key.path}-cert.pub").read_text().strip()

    @staticmethod
    def _describe(private: Path, public: Path) -> GeneratedKey:
        listed = subprocess.run(
            ["ssh-keygen", "-l", "-E", "sha256", "-f", str(public)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()
        # "256 SHA256:… comment (ED25519)"
        return GeneratedKey(
            path=private,
            public=public.read_text().strip(),
            private=private.read_text(),
            fingerprint=listed[1],
            bits=int(listed[0]),
            label=listed[-1].strip("()"),
        )


@pytest.fixture(scope="session")
def make_key(tmp_path_factory) -> KeyMaker:
    return KeyMaker(tmp_path_factory.mktemp("ssh-keys"))


# --- API clients ---------------------------------------------------------------------


@pytest.fixture
def token_client():
    """Make an API client that sends `Authorization: Token …` for a user."""

    def make(user) -> APIClient:
        token, _ = Token.objects.get_or_create(user=user)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        return client

    return make


@pytest.fixture
def api(user, token_client) -> APIClient:
    """An API client authenticated as `user` (alice) with her token."""
    return token_client(user)


@pytest.fixture
def other_api(other_user, token_client) -> APIClient:
    """An API client authenticated as `other_user` (bob) with his token."""
    return token_client(other_user)
