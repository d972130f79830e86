"""`coprssh watch`: follow a build's live logs and states until it ends.

Each round asks for the build, then for what each phase's log holds past the offset
already shown (`?offset=N`, the new size in `X-Log-Size`). Logs are read after the
state, so once the build is seen finished one more round has shown everything.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from coprssh_cli.client import Client, Patience
from coprssh_cli.output import FINAL_STATES, PHASE_FINAL_STATES, log_line, phases, printable

LOGS = {"builder_live": "builder-live.log", "backend": "backend.log"}
# A build may outlive a short server restart: give up only after this many failed rounds in a row.
MAX_FAILED_ROUNDS = 10
CATCH_UP_CHUNK = 1024 * 1024
MAX_LINE = 64 * 1024


@dataclass
class LogStream:
    """How much of one log has been shown, and the start of a line not yet complete."""

    offset: int = 0
    partial: bytes = b""


@dataclass
class Watcher:
    client: Client
    build_id: int
    out: TextIO = sys.stdout
    json_lines: bool = False
    logs: tuple[str, ...] = ("builder_live",)
    streams: dict[tuple[str, str], LogStream] = field(default_factory=dict)
    states: dict[str, str] = field(default_factory=dict)
    build_state: str = ""

    def run(self, interval: float) -> dict[str, Any]:
        """Follow the build until it is finished; return its last JSON."""
        patience = Patience(MAX_FAILED_ROUNDS)
        while True:
            build = patience.attempt(self.fetch_round, self.note)
            if build is not None and build.get("state") in FINAL_STATES:
                self.flush_partials()
                return build
            time.sleep(interval)

    def fetch_round(self) -> dict[str, Any]:
        """Ask for the build, then show what is new in it and in its logs."""
        build: dict[str, Any] = self.client.get(f"builds/{self.build_id}/")
        self.round(build)
        return build

    def round(self, build: dict[str, Any]) -> None:
        state = str(build.get("state", ""))
        if not self.build_state:
            self.build_state = state
            self.build_event(state, f"Build #{build.get('id')} in {build.get('project')}")
        elif state not in FINAL_STATES:
            self.build_state_changed(state, build)
        for name, phase in phases(build):
            phase_state = str(phase.get("state", ""))
            # A phase that started is announced before its output, one that ended after it.
            if phase_state not in PHASE_FINAL_STATES:
                self.phase_state(name, phase_state)
            for key in self.logs:
                url = (phase.get("logs") or {}).get(key)
                if url:
                    self.follow(name, key, url)
            if phase_state in PHASE_FINAL_STATES:
                # The phase has written all it will: its last line needs no newline to be shown.
                self.flush_partials(name)
                self.phase_state(name, phase_state)
        if state in FINAL_STATES:
            self.build_state_changed(state, build)

    def build_state_changed(self, state: str, build: dict[str, Any]) -> None:
        if state != self.build_state:
            self.build_state = state
            self.build_event(state, f"Build #{build.get('id')}")

    def follow(self, phase: str, key: str, url: str) -> None:
        stream = self.streams.setdefault((phase, key), LogStream())
        while True:
            data, size = self.client.read_log(url, stream.offset)
            if size < stream.offset:
                # The log was started again (a phase that was retried): show it from the start.
                stream.offset, stream.partial = 0, b""
                data, size = self.client.read_log(url, 0)
            stream.offset = size
            lines = (stream.partial + data).split(b"\n")
            stream.partial = lines.pop()
            if len(stream.partial) > MAX_LINE:
                lines.append(stream.partial)  # output without newlines still shows, in pieces
                stream.partial = b""
            for line in lines:
                self.log(phase, key, line)
            # The server sends a long log in chunks: catch up before the next round.
            if len(data) < CATCH_UP_CHUNK:
                return

    def flush_partials(self, only: str | None = None) -> None:
        for (phase, key), stream in self.streams.items():
            if stream.partial and only in (None, phase):
                self.log(phase, key, stream.partial)
                stream.partial = b""

    # --- output ------------------------------------------------------------------------

    def label(self, phase: str, key: str) -> str:
        return phase if key == "builder_live" else f"{phase} {LOGS[key]}"

    def log(self, phase: str, key: str, line: bytes) -> None:
        if self.json_lines:
            text = line.decode("utf-8", errors="replace").removesuffix("\r")
            self.emit({"event": "log", "phase": phase, "log": LOGS[key], "line": text})
        else:
            print(f"[{printable(self.label(phase, key))}] {log_line(line)}", file=self.out, flush=True)

    def phase_state(self, phase: str, state: str) -> None:
        if self.states.get(phase) == state:
            return
        self.states[phase] = state
        if self.json_lines:
            self.emit({"event": "state", "phase": phase, "state": state})
        else:
            print(printable(f"--- {phase}: {state}"), file=self.out, flush=True)

    def build_event(self, state: str, text: str) -> None:
        if self.json_lines:
            self.emit({"event": "build", "id": self.build_id, "state": state})
        else:
            print(printable(f"=== {text}: {state}"), file=self.out, flush=True)

    def note(self, text: str) -> None:
        print(f"coprssh: {text}", file=sys.stderr, flush=True)

    def emit(self, data: dict[str, Any]) -> None:
        print(json.dumps(data, ensure_ascii=False), file=self.out, flush=True)
