"""Times as the service writes them, and as a person on the builder reads them."""

from __future__ import annotations

import re
from datetime import datetime, timezone

# datetime.UTC needs Python 3.11; builder images may ship an older python3.
UTC = timezone.utc  # noqa: UP017


def parse_time(value: object) -> datetime:
    """An ISO 8601 time with a zone, as the service writes it ("Z" and any fraction accepted)."""
    if not isinstance(value, str):
        raise ValueError(f"not a time: {value!r}")
    text = value.strip()
    if text[-1:] in ("Z", "z"):
        text = text[:-1] + "+00:00"
    # Before Python 3.11, fromisoformat() takes only 3 or 6 fractional digits.
    text = re.sub(r"\.(\d+)", lambda m: "." + (m.group(1) + "000000")[:6], text, count=1)
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"time without a zone: {value!r}")
    return moment


def local_time(moment: datetime) -> str:
    """`2026-11-25 20:00:00 UTC`, or `2026-11-25 21:00:00 CET +0100`, in this machine's zone."""
    local = moment.astimezone()
    text = local.strftime("%Y-%m-%d %H:%M:%S")
    zone = local.tzname() or ""
    offset = local.strftime("%z")  # "+0100"; an abbreviation such as CST alone is ambiguous
    if not zone or zone.startswith(("+", "-")):
        return f"{text} {offset}" if offset not in ("", "+0000") else f"{text} UTC"
    if offset in ("", "+0000"):
        return f"{text} {zone}"
    return f"{text} {zone} {offset}"


def duration(seconds: float) -> str:
    """`1 h 23 min`, `23 min`, `less than a minute`."""
    minutes = int(seconds // 60)
    if minutes < 1:
        return "less than a minute"
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"


def when(moment: datetime | None) -> str:
    """Absolute time with zone, and how far away it is."""
    if moment is None:
        return "unknown"
    seconds = (moment - datetime.now(UTC)).total_seconds()
    if seconds >= 0:
        return f"{local_time(moment)} (in {duration(seconds)})"
    return f"{local_time(moment)} ({duration(-seconds)} ago)"
