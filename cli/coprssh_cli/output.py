"""Human output: tables, build summaries, and text from the server made safe for a terminal."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TextIO

FINAL_STATES = frozenset({"succeeded", "failed", "canceled"})
# A chroot that needs no build (its package excludes the arch) ends as skipped.
PHASE_FINAL_STATES = FINAL_STATES | {"skipped"}

# C0 controls but tab, DEL, and C1 controls: a build's output (or any text a user typed) could
# otherwise move the cursor, rewrite the screen or retitle the terminal of whoever reads it.
CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """`text` with control characters shown in caret notation (`^[`), as `cat -v` does."""
    return CONTROL.sub(lambda match: _caret(match.group()), text)


def _caret(char: str) -> str:
    code = ord(char)
    if code < 0x20:
        return "^" + chr(code + 0x40)
    if code == 0x7F:
        return "^?"
    return f"\\x{code:02x}"


def log_line(raw: bytes) -> str:
    """One line of a raw log for the terminal: decoded, CRLF and progress-bar `\\r` resolved."""
    text = raw.decode("utf-8", errors="replace").removesuffix("\n").removesuffix("\r")
    # A terminal would show what follows the last carriage return (progress bars).
    return printable(text.rsplit("\r", 1)[-1])


def dump_json(data: Any, out: TextIO = sys.stdout) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False), file=out, flush=True)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], out: TextIO = sys.stdout) -> None:
    """Columns padded to their widest cell; the last one is not padded."""
    cells = [[printable(str(cell)) for cell in row] for row in [headers, *rows]]
    widths = [max(len(row[index]) for row in cells) for index in range(len(headers))]
    for row in cells:
        padded = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=False)]
        print("  ".join([*padded, row[-1]]).rstrip(), file=out)
    out.flush()


def project_name(data: dict[str, Any]) -> str:
    """`owner/name` of a project as the API shows it, whatever the field is called."""
    for key in ("full_name", "project"):
        if isinstance(data.get(key), str):
            return data[key]
    owner, name = data.get("owner"), data.get("name", "")
    if isinstance(owner, dict):
        owner = owner.get("username") or owner.get("name")
    return f"{owner}/{name}" if owner else str(name)


def chroot_names(chroots: Any) -> list[str]:
    """Chroot names from a list of names or of objects with a `name`."""
    names = []
    for chroot in chroots or []:
        names.append(chroot.get("name", "?") if isinstance(chroot, dict) else str(chroot))
    return names


def source_text(build: dict[str, Any]) -> str:
    """The build's source in a few words: the package if known, else what was submitted."""
    package = build.get("package_name") or ""
    if package:
        version = build.get("package_version") or ""
        return f"{package}-{version}" if version else package
    nested = build.get("source")
    source: dict[str, Any] = nested if isinstance(nested, dict) else build
    kind = source.get("source_type") or source.get("type") or ""
    if kind == "scm":
        committish = source.get("committish") or ""
        where = f"{source.get('clone_url', '')}{'@' + committish if committish else ''}"
        return f"{where} {source.get('spec', '')}".strip()
    if kind == "url":
        return str(source.get("url", ""))
    return str(source.get("source_filename") or source.get("filename") or kind or "")


def stamp(data: dict[str, Any], name: str) -> str:
    """The time `name` (`created`, `started`, `ended`) of an API object, shortened."""
    return when(data.get(name) or data.get(f"{name}_at"))


def when(value: Any) -> str:
    """An API timestamp in the local time zone, to the minute (`2025-01-31 15:05 CET`)."""
    if not isinstance(value, str) or not value:
        return ""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value
    if moment.tzinfo is not None:
        moment = moment.astimezone()
    return moment.strftime("%Y-%m-%d %H:%M %Z").strip()


def phases(build: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The build's phases in order: ("srpm", …) then each chroot by name."""
    found: list[tuple[str, dict[str, Any]]] = []
    srpm = build.get("srpm")
    if isinstance(srpm, dict):
        found.append(("srpm", srpm))
    for chroot in build.get("chroots") or []:
        if isinstance(chroot, dict):
            found.append((str(chroot.get("name", "?")), chroot))
    return found


def build_summary(build: dict[str, Any], out: TextIO, absolute: Any = str) -> None:
    """`status`: the build, then a line per phase with its state and live log."""
    print(printable(f"Build #{build.get('id')} in {build.get('project')}: {build.get('state')}"), file=out)
    details = [
        ("source", source_text(build)),
        ("submitted", " by ".join(filter(None, [stamp(build, "created"), build.get("submitter")]))),
        ("started", stamp(build, "started")),
        ("ended", stamp(build, "ended")),
        ("resubmitted from", f"#{build['resubmitted_from']}" if build.get("resubmitted_from") else ""),
        (
            "ssh",
            "yes" if build.get("ssh") else "kept if a phase fails" if build.get("ssh_on_failure") else "",
        ),
    ]
    for label, value in details:
        if value:
            print(printable(f"  {label}: {value}"), file=out)
    rows = []
    for name, phase in phases(build):
        logs = phase.get("logs") or {}
        live = logs.get("builder_live") if isinstance(logs, dict) else None
        state = phase.get("state", "")
        if phase.get("status_reason"):
            state = f"{state} ({phase['status_reason']})"
        rows.append([name, state, absolute(live) if live else ""])
    if rows:
        print(file=out)
        table(["PHASE", "STATE", "LIVE LOG"], rows, out)
    results = [absolute(url) for _name, phase in phases(build) for url in phase.get("results") or []]
    if results:
        print("\nResults:", file=out)
        for url in results:
            print(printable(f"  {url}"), file=out)
    for name, phase in phases(build):
        ssh_builder = phase.get("ssh_builder")
        if isinstance(ssh_builder, dict) and ssh_builder.get("ssh_command"):
            state = ssh_builder.get("state", "")
            expires = ssh_builder.get("expires_at")
            line = (
                f"  {name}: {ssh_builder['ssh_command']} ({state}{', until ' + expires if expires else ''})"
            )
            print(printable(line), file=out)
        elif isinstance(ssh_builder, dict) and ssh_builder.get("queue_reason"):
            print(printable(f"  {name}: SSH builder queued: {ssh_builder['queue_reason']}"), file=out)
        if phase.get("not_kept_reason"):
            print(printable(f"  {name}: {phase['not_kept_reason']}"), file=out)
    out.flush()
