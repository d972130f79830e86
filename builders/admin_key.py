"""The service's own SSH key: how the service logs in to every builder it manages.

It lives in a file (COPRSSH_ADMIN_KEY_FILE), created with mode 0600 on first use. Only
its public half ever goes to a builder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings


@dataclass(frozen=True)
class AdminKey:
    private_path: Path
    public_line: str


def admin_key() -> AdminKey:
    """The admin key pair, generated on first use."""
    path = Path(settings.COPRSSH_ADMIN_KEY_FILE)
    if not path.exists():
        _generate(path)
    private = serialization.load_ssh_private_key(path.read_bytes(), password=None)
    public = private.public_key().public_bytes(
        encoding=serialization.Encoding.OpenSSH, format=serialization.PublicFormat.OpenSSH
    )
    return AdminKey(private_path=path, public_line=public.decode("ascii") + " coprssh-service")


def _generate(path: Path) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    pem = Ed25519PrivateKey.generate().private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.OpenSSH,
        encryption_algorithm=serialization.NoEncryption(),
    )
    # O_EXCL: two processes starting at once must not both write (and mismatch) the key.
    temp = path.with_suffix(f".tmp{os.getpid()}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    try:
        os.link(temp, path)  # fails if another process won the race; its key is used
    except FileExistsError:
        pass
    finally:
        temp.unlink()
