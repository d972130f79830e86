"""Name, epoch, version, release and arch of a stored RPM, read from its header.

Copr's `built-packages` answers NEVRA dicts. File names carry no epoch (and are only a
convention), so the header is read, with caps: the file came from a builder.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

LEAD_SIZE = 96
HEADER_MAGIC = b"\x8e\xad\xe8\x01"
MAX_ENTRIES = 10_000
MAX_STORE = 64 * 1024 * 1024
TYPE_INT32 = 4
TYPE_STRING = 6
TAGS = {1000: "name", 1001: "version", 1002: "release", 1003: "epoch", 1022: "arch"}


class NotAnRpm(ValueError):
    """The file is not an RPM package we can read."""


def _header(handle: Any) -> tuple[list[tuple[int, int, int, int]], bytes]:
    intro = handle.read(16)
    if len(intro) != 16 or intro[:4] != HEADER_MAGIC:
        raise NotAnRpm("no header")
    entries, store_size = struct.unpack(">II", intro[8:16])
    if entries > MAX_ENTRIES or store_size > MAX_STORE:
        raise NotAnRpm("header too large")
    index = handle.read(16 * entries)
    store = handle.read(store_size)
    if len(index) != 16 * entries or len(store) != store_size:
        raise NotAnRpm("truncated header")
    return [struct.unpack(">iIII", index[i : i + 16]) for i in range(0, len(index), 16)], store


def nevra(path: Path) -> dict[str, Any]:
    """{"name", "epoch", "version", "release", "arch"} of the RPM at `path` (epoch None when unset)."""
    with open(path, "rb") as handle:
        if handle.read(4) != b"\xed\xab\xee\xdb":
            raise NotAnRpm("no RPM lead")
        handle.seek(LEAD_SIZE)
        _entries, signature = _header(handle)
        # The signature header's store is padded to a multiple of 8 bytes.
        handle.seek((8 - len(signature) % 8) % 8, 1)
        entries, store = _header(handle)
    found: dict[str, Any] = {"name": None, "epoch": None, "version": None, "release": None, "arch": None}
    for tag, kind, offset, count in entries:
        field = TAGS.get(tag)
        if field is None or offset >= len(store):
            continue
        if kind == TYPE_STRING:
            end = store.find(b"\x00", offset)
            found[field] = store[offset : end if end >= 0 else len(store)].decode("utf-8", "replace")
        elif kind == TYPE_INT32 and count >= 1 and offset + 4 <= len(store):
            found[field] = struct.unpack(">I", store[offset : offset + 4])[0]
    if not found["name"]:
        raise NotAnRpm("no name in the header")
    return found
