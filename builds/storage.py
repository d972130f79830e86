"""Where build logs, SRPMs and results live: one folder per project/chroot/build under the storage root.

Paths are always built by the service from ids and validated names, and resolved below
the root; nothing a builder or a user sends is used as a path.
"""

from __future__ import annotations

import os
import stat
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.utils import timezone

BACKEND_LOG = "backend.log"
LIVE_LOG = "builder-live.log"


def root() -> Path:
    return Path(settings.COPRSSH_STORAGE_DIR).resolve()


def path(relative: str) -> Path:
    """An absolute path for `relative`, refusing anything that would leave the storage root."""
    base = root()
    full = (base / relative).resolve()
    if full != base and base not in full.parents:
        raise ValueError(f"path outside the storage root: {relative!r}")
    return full


def ensure_dir(relative: str) -> Path:
    directory = path(relative)
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def backend_log(directory: str, message: str, *, when: datetime | None = None) -> None:
    """Append one timestamped line to the phase's backend.log (what the service did)."""
    when = timezone.localtime(when or timezone.now())
    line = f"[{when:%Y-%m-%d %H:%M:%S %Z}] {message}\n"
    target = ensure_dir(directory) / BACKEND_LOG
    with open(target, "a", encoding="utf-8") as handle:
        handle.write(line)


def write_at(directory: str, name: str, offset: int, data: bytes) -> int:
    """Write `data` at `offset` of a log (dropping anything after it); return the new size.

    Writing at the recorded offset instead of appending makes a repeated delivery of the
    same chunk harmless.
    """
    target = ensure_dir(directory) / name
    fd = os.open(target, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.lseek(fd, offset, os.SEEK_SET)
        os.write(fd, data)
        os.ftruncate(fd, offset + len(data))
    finally:
        os.close(fd)
    return offset + len(data)


def usage(directory: str) -> int:
    """Bytes stored under a folder (a project's), counting regular files only."""
    total = 0
    for parent, _dirs, files in os.walk(path(directory)):
        for name in files:
            try:
                info = os.lstat(os.path.join(parent, name))
            except OSError:
                continue  # removed meanwhile
            if stat.S_ISREG(info.st_mode):
                total += info.st_size
    return total


def room_left(directory: str) -> int | None:
    """What the storage quota still allows under `directory` (a project's folder); None without a quota."""
    quota = settings.COPRSSH_PROJECT_STORAGE_BYTES
    if not quota:
        return None
    return max(quota - usage(directory), 0)


def list_files(directory: str) -> list[tuple[str, int]]:
    """Regular files of a stored folder, by name, with their sizes."""
    folder = path(directory)
    if not folder.is_dir():
        return []
    return sorted(
        (entry.name, entry.stat().st_size)
        for entry in folder.iterdir()
        if entry.is_file() and not entry.is_symlink()
    )
