"""Small display helpers of the builds pages."""

from __future__ import annotations

from datetime import datetime, timedelta

from django import template
from django.utils import dateformat, timezone

register = template.Library()

# Times are always shown with their zone: builders, users and operators live in different ones.
TIME_FORMAT = "Y-m-d H:i:s T"
SHORT_TIME_FORMAT = "Y-m-d H:i T"


def format_time(moment: datetime | None) -> str:
    return dateformat.format(timezone.localtime(moment), TIME_FORMAT) if moment else ""


def format_duration(span: timedelta | None) -> str:
    if span is None:
        return ""
    seconds = max(0, int(span.total_seconds()))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {seconds:02d} s"
    return f"{seconds} s"


@register.filter
def when(moment: datetime | None) -> str:
    """A time in the site's zone, with the zone: 2026-05-01 14:03:07 UTC."""
    return format_time(moment)


@register.filter
def when_short(moment: datetime | None) -> str:
    """A time to the minute, with its zone, for tables."""
    return dateformat.format(timezone.localtime(moment), SHORT_TIME_FORMAT) if moment else ""


@register.filter
def duration(item: object) -> str:
    """How long a build or phase ran, from its started_at to its ended_at; "" until it has ended."""
    started, ended = getattr(item, "started_at", None), getattr(item, "ended_at", None)
    return format_duration(ended - started) if started and ended else ""
