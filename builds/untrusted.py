"""Text that came from a builder, made safe to show on a page, in the API and in backend.log.

A builder's answers (its status file, its error messages, names it chose) are written by
whoever controls it: on an SSH build that is the user, root there. backend.log is the
service's own account of a phase, one timestamped line per event; builder text put into
it must stay on its line, or a builder could forge lines the service never wrote. So it is
made one line (controls, terminal escapes, bidi and other format characters removed), capped,
and, where the user controls the builder, labelled as the builder's word.
"""

from __future__ import annotations

import re
import unicodedata

REPORT_CAP = 200
# ESC [ … final (CSI), ESC ] … BEL or ESC \ (OSC), and two-character ESC sequences.
ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]?")
# Cc: C0/C1 controls (newlines, tabs, ESC…); Zl/Zp: line and paragraph separators.
BREAKS = {"Cc", "Zl", "Zp"}
# Cf: bidi overrides and isolates, zero-width characters; Cs: lone surrogates.
DROPPED = {"Cf", "Cs"}
PREFIX = "the builder reported: "


def one_line(text: str, *, cap: int = REPORT_CAP) -> str:
    """`text` on one line: no controls, escapes or format characters; at most `cap` characters."""
    text = ANSI.sub(" ", str(text))
    kept = []
    for char in text:
        category = unicodedata.category(char)
        if category in BREAKS:
            kept.append(" ")
        elif category not in DROPPED:
            kept.append(char)
    line = " ".join("".join(kept).split())
    if len(line) > cap:
        line = line[: cap - 1].rstrip() + "…"
    return line


def as_reported(state: str, reason: str) -> str:
    """The outcome a user's builder reports, labelled as its word: `the builder reported: …`."""
    said = one_line(reason) or one_line(state, cap=40) or "nothing"
    return PREFIX + said
