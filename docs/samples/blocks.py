"""The sample blocks of the docs: where they are, how they are marked, and how they are rewritten.

A sample is a fenced code block between two HTML comments, which Markdown does not show:

    <!-- sample: build-keep-on-failure -->
    ```
    $ coprssh build …
    …
    ```
    <!-- /sample -->

The opening comment, the fences and the closing comment have the same indentation (a sample in
a list item is indented with it). `regenerate.py` runs the commands and replaces what is between
the fences; the fence lines (with their language) and everything outside the markers stay.

This module needs nothing but the standard library: the docs test reads it without starting
anything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Every sample regenerate.py writes, and the document it is in.
SAMPLES: dict[str, str] = {
    "login": "docs/user-guide.md",
    "build-keep-on-failure": "docs/user-guide.md",
    "api-build-keep-on-failure": "docs/user-guide.md",
    "kept-backend-log": "docs/user-guide.md",
    "not-kept-backend-log": "docs/user-guide.md",
    "ready-mail": "docs/user-guide.md",
    "api-resubmit-ssh": "docs/user-guide.md",
    "api-key-errors": "docs/user-guide.md",
    "api-ssh-builder": "docs/user-guide.md",
    "api-quota": "docs/user-guide.md",
    "resubmit-ssh": "docs/user-guide.md",
    "ssh-builders": "docs/user-guide.md",
    "ssh-keyscan": "docs/user-guide.md",
    "gateway-resubmit": "docs/user-guide.md",
    "gateway-api": "docs/user-guide.md",
    "gateway-config": "docs/user-guide.md",
    "gateway-ipv4-only": "docs/user-guide.md",
    "gateway-refusals": "docs/user-guide.md",
    "gateway-after-release": "docs/user-guide.md",
    "copr-builder-help": "docs/user-guide.md",
    "copr-builder-show": "docs/user-guide.md",
    "workdir": "docs/user-guide.md",
    "rerun": "docs/user-guide.md",
    "copr-builder-prolong-release": "docs/user-guide.md",
    "prolong-release": "docs/user-guide.md",
    "quota": "docs/user-guide.md",
    "connection-refused": "docs/user-guide.md",
    "queue-reason": "docs/user-guide.md",
    "permission-denied": "docs/user-guide.md",
    "github-unknown": "docs/user-guide.md",
}

OPEN = re.compile(r"^(?P<indent>[ \t]*)<!-- sample: (?P<name>[^ ]*) -->$")
CLOSE = re.compile(r"^(?P<indent>[ \t]*)<!-- /sample -->$")
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>```+)(?P<info>[^`]*)$")
NAME = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
# Anything that looks like a marker, spelled right or not.
MARKER_LIKE = re.compile(r"<!--\s*/?\s*sample\b")


class BlockError(ValueError):
    """A sample marker that is not followed by one fenced block and its closing marker."""


@dataclass(frozen=True)
class Block:
    """One marked sample: its name, its lines' indentation, and the line numbers of its content."""

    name: str
    indent: str
    first: int  # index of the first content line (after the opening fence)
    end: int  # index of the closing fence


def find_blocks(text: str, where: str = "") -> list[Block]:
    """The marked samples of a document, in order; BlockError names the first malformed one."""
    lines = text.split("\n")
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        opening = OPEN.match(line)
        if opening is None:
            # A marker named in an inline code span (`<!-- /sample -->`) is text, not a marker.
            if MARKER_LIKE.search(re.sub(r"`[^`]*`", "", line)):
                raise BlockError(f"{where}:{index + 1}: a sample marker out of place: {line.strip()!r}")
            index += 1
            continue
        name, indent = opening["name"], opening["indent"]
        if not NAME.fullmatch(name):
            raise BlockError(f"{where}:{index + 1}: sample name {name!r} is not lower-case-with-dashes")
        fence = FENCE.match(lines[index + 1]) if index + 1 < len(lines) else None
        if fence is None or fence["indent"] != indent:
            raise BlockError(f"{where}:{index + 2}: sample {name!r} must be followed by a ``` block")
        closing_fence = indent + fence["fence"]
        end = index + 2
        while end < len(lines) and lines[end] != closing_fence:
            if MARKER_LIKE.search(lines[end]):
                raise BlockError(f"{where}:{end + 1}: sample {name!r} has a marker inside its block")
            end += 1
        if end >= len(lines):
            raise BlockError(f"{where}:{index + 1}: the block of sample {name!r} is not closed")
        closing = CLOSE.match(lines[end + 1]) if end + 1 < len(lines) else None
        if closing is None or closing["indent"] != indent:
            raise BlockError(
                f"{where}:{end + 2}: sample {name!r} must end with <!-- /sample --> after its block"
            )
        blocks.append(Block(name=name, indent=indent, first=index + 2, end=end))
        index = end + 2
    names = [block.name for block in blocks]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise BlockError(f"{where}: samples marked more than once: {', '.join(repeated)}")
    return blocks


def marked_names(root: Path = ROOT) -> dict[str, str]:
    """Every sample marked in README.md and docs/*.md, with the document it is in."""
    found: dict[str, str] = {}
    for path in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        relative = str(path.relative_to(root))
        for block in find_blocks(path.read_text(), relative):
            if block.name in found:
                raise BlockError(f"sample {block.name!r} is marked in {found[block.name]} and {relative}")
            found[block.name] = relative
    return found


def rewrite(text: str, samples: dict[str, str], where: str = "") -> str:
    """`text` with the content of each marked block named in `samples` replaced by its sample."""
    lines = text.split("\n")
    # From the last block up, so that earlier line numbers stay right.
    for block in reversed(find_blocks(text, where)):
        if block.name not in samples:
            continue
        content = samples[block.name].rstrip("\n").split("\n")
        lines[block.first : block.end] = [f"{block.indent}{line}" if line else "" for line in content]
    return "\n".join(lines)
