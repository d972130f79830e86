"""Stable text for what changes from one run of the demo to the next.

Times move to a fixed day (and to whole tens of seconds), ports to the defaults or to fixed
numbers, and each random thing (fingerprints, key data, account names, work folders, rpmbuild's
temporary files) to a made-up value of the same shape, chosen by the order in which it first
appears: the same run of the walk gives the same text.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import struct
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

# Where the samples' clock starts: the walk begins at a whole minute, which becomes this one.
BASE = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)
# Builder ports, in the order they first appear.
PORTS = (45713, 52645, 36025, 41257, 57525, 53025, 48771, 39207)
B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def made_up(kind: str, number: int, alphabet: str, length: int) -> str:
    """A value that looks random and is always the same for (kind, number)."""
    digest = hashlib.sha256(f"coprssh-sample-{kind}-{number}".encode()).digest()
    while len(digest) < length:
        digest += hashlib.sha256(digest).digest()
    return "".join(alphabet[byte % len(alphabet)] for byte in digest[:length])


class Normalizer:
    """Turns the text a run printed into the text the docs show."""

    def __init__(self, *, start: datetime, literals: dict[str, str], gateway_port: int) -> None:
        # Whole minutes, so that times shown to the minute move exactly as the others.
        self.shift = BASE - start.replace(second=0, microsecond=0)
        self.literals = dict(sorted(literals.items(), key=lambda item: -len(item[0])))
        self.ports: dict[int, int] = {gateway_port: 2222}
        self.seen: dict[str, dict[str, str]] = {}

    def add_port(self, port: int) -> None:
        """A builder's port, to be shown as the next fixed one."""
        if port not in self.ports:
            self.ports[port] = PORTS[len([p for p in self.ports.values() if p != 2222]) % len(PORTS)]

    def __call__(self, text: str) -> str:
        for real, shown in self.literals.items():
            text = text.replace(real, shown)
        for real_port, shown_port in self.ports.items():
            text = re.sub(rf"(?<![\w.]){real_port}(?!\w)", str(shown_port), text)
        text = self._times(text)
        text = self._replace(text, r"SHA256:[A-Za-z0-9+/]{43}", "fingerprint", self._fingerprint)
        text = self._replace(text, r"AAAA[A-Za-z0-9+/]{40,}={0,2}", "blob", self._blob)
        text = self._replace(
            text,
            r"csb-[0-9a-f]{12}",
            "account",
            lambda n, _: "csb-" + made_up("csb", n, "0123456789abcdef", 12),
        )
        text = self._replace(
            text,
            r"(?<=/jobs/)(?P<label>\d+-[a-z0-9_.-]+?-)(?P<v>[0-9a-f]{16})\b",
            "workdir",
            lambda n, _: made_up("workdir", n, "0123456789abcdef", 16),
        )
        return self._replace(
            text,
            r"rpm-tmp\.[A-Za-z0-9]{6}",
            "rpmtmp",
            lambda n, _: "rpm-tmp." + made_up("rpm", n, B64[:62], 6),
        )

    def _replace(self, text: str, pattern: str, kind: str, make: Callable[[int, str], str]) -> str:
        table = self.seen.setdefault(kind, {})

        def one(match: re.Match[str]) -> str:
            # With a group named v, only that part changes.
            part = "v" if "v" in match.re.groupindex else 0
            real = match.group(part)
            if real not in table:
                table[real] = make(len(table) + 1, real)
            whole = match.group(0)
            start = match.start(part) - match.start(0)
            return whole[:start] + table[real] + whole[start + len(real) :]

        return re.sub(pattern, one, text, flags=re.MULTILINE)

    @staticmethod
    def _fingerprint(number: int, real: str) -> str:
        digest = hashlib.sha256(f"coprssh-sample-fingerprint-{number}".encode()).digest()
        return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")

    @staticmethod
    def _blob(number: int, real: str) -> str:
        """Key data of the same type and shape, its last field (the key itself) made up."""
        try:
            data = base64.b64decode(real, validate=True)
            fields = []
            offset = 0
            while offset < len(data):
                (size,) = struct.unpack(">I", data[offset : offset + 4])
                fields.append(data[offset + 4 : offset + 4 + size])
                offset += 4 + size
            if offset != len(data) or len(fields) < 2:
                raise ValueError("not SSH wire format")
        except (ValueError, struct.error):
            return made_up("blob", number, B64, len(real))
        made = b""
        while len(made) < len(fields[-1]):
            made += hashlib.sha256(f"coprssh-sample-blob-{number}-{len(made)}".encode()).digest()
        fields[-1] = made[: len(fields[-1])]
        return base64.b64encode(b"".join(struct.pack(">I", len(field)) + field for field in fields)).decode()

    # --- times ------------------------------------------------------------------------------

    def moved(self, moment: datetime) -> datetime:
        moment = moment + self.shift
        return moment.replace(second=moment.second - moment.second % 10, microsecond=0)

    def _times(self, text: str) -> str:
        def full(match: re.Match[str]) -> str:
            date, clock, fraction, zone = match.group("date", "clock", "fraction", "zone")
            parsed = datetime.fromisoformat(f"{date}T{clock}").replace(tzinfo=UTC)
            shown = self.moved(parsed)
            separator = match.group("sep")
            if len(clock) == 5:  # to the minute
                value = shown.strftime(f"%Y-%m-%d{separator}%H:%M")
            else:
                value = shown.strftime(f"%Y-%m-%d{separator}%H:%M:%S")
            del fraction  # whole seconds now: DRF writes no fraction for them
            return value + (zone or "")

        text = re.sub(
            r"(?P<date>\d{4}-\d{2}-\d{2})(?P<sep>[ T])(?P<clock>\d{2}:\d{2}(?::\d{2})?)"
            r"(?P<fraction>\.\d+)?(?P<zone>Z| UTC)?",
            full,
            text,
        )

        def clock_only(match: re.Match[str]) -> str:
            start = BASE - self.shift
            hours, minutes, seconds = (int(part) for part in match.group(2).split(":"))
            parsed = start.replace(hour=hours, minute=minutes, second=seconds)
            if parsed < start - timedelta(hours=12):  # past midnight since the start
                parsed += timedelta(days=1)
            shown = self.moved(parsed)
            return f"{match.group(1)}{shown:%H:%M:%S}]"

        text = re.sub(r"(\[coprssh )(\d{2}:\d{2}:\d{2})\]", clock_only, text)

        def listing(match: re.Match[str]) -> str:
            start = BASE - self.shift
            parsed = datetime.strptime(f"{start.year} {match.group(0)}", "%Y %b %d %H:%M").replace(tzinfo=UTC)
            shown = self.moved(parsed)
            return f"{shown:%b} {shown.day:2d} {shown:%H:%M}"

        return re.sub(
            r"\b(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [ \d]\d \d{2}:\d{2}\b", listing, text
        )


# --- JSON, shortened ---------------------------------------------------------------------

# What to show of an object: a dict of the keys to show (each with what to show of its value,
# None for all of it), a tuple of keys to show on one line, or a one-item list for each item.
Shape = dict[str, Any] | tuple[str, ...] | list[Any] | None


def shortened(value: Any, shape: Shape, indent: int = 0) -> str:
    """`value` as indented JSON, with only what `shape` names and `…` where something was left out."""
    pad = " " * (indent + 4)
    if shape is None:
        return json.dumps(value, indent=4, ensure_ascii=False).replace("\n", "\n" + " " * indent)
    if isinstance(shape, tuple) and isinstance(value, dict):
        items = [
            f"{json.dumps(key)}: {json.dumps(value[key], ensure_ascii=False)}"
            for key in shape
            if key in value
        ]
        if set(value) - set(shape):
            items.append("…")
        return "{" + ", ".join(items) + "}"
    if isinstance(shape, list) and isinstance(value, list):
        if not value:
            return "[]"
        inner = [pad + shortened(item, shape[0], indent + 4) for item in value]
        return "[\n" + ",\n".join(inner) + "\n" + " " * indent + "]"
    if isinstance(shape, dict) and isinstance(value, dict):
        items = [
            f"{pad}{json.dumps(key)}: {shortened(value[key], shape[key], indent + 4)}"
            for key in shape
            if key in value
        ]
        if set(value) - set(shape):
            items.append(pad + "…")
        body = ",\n".join(item for item in items if not item.endswith("…"))
        if items and items[-1].endswith("…"):
            body += ",\n" + items[-1] if body else items[-1]
        return "{\n" + body + "\n" + " " * indent + "}"
    return json.dumps(value, ensure_ascii=False)
