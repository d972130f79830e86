"""The service's side of running a phase on a builder, over SSH and SFTP.

The builder is not trusted: files come back only from the phase's fixed results folder,
each checked with lstat (regular files only, no symlinks), with a safe name and under a
size cap enforced on the bytes as they arrive; logs are read by offset with a cap. Every
call has a deadline: a builder that stops answering costs a worker a bounded time, then
counts as unreachable. Nothing is ever rsync'ed from a builder.
"""

from __future__ import annotations

import json
import posixpath
import re
import secrets
import shlex
import stat
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko
from django.conf import settings
from fabric import Connection

from builders import ssh
from builders.admin_key import admin_key
from builders.models import Builder
from builders.providers.base import ProviderError
from builders.services.machines import machine_of, provider_for

AGENT = Path(__file__).resolve().parent / "agent" / "coprssh_agent.py"
AGENT_NAME = "coprssh_agent.py"
RESULT_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+~^-]{0,250}")
LOG_CHUNK = 1024 * 1024
STATUS_CAP = 64 * 1024


class RunnerError(Exception):
    """Talking to the builder failed; the message says what failed."""


@dataclass(frozen=True)
class Status:
    state: str  # "missing", "running", "succeeded", "failed", "canceled"
    reason: str = ""
    pgid: int | None = None


def connect(builder: Builder, *, timeout: float | None = None) -> Connection:
    timeout = settings.COPRSSH_BUILDER_IO_TIMEOUT if timeout is None else timeout
    return ssh.connect(machine_of(builder), key_filename=admin_key().private_path, timeout=timeout)


def _sftp(conn: Connection) -> paramiko.SFTPClient:
    return ssh.open_sftp(conn, timeout=settings.COPRSSH_BUILDER_IO_TIMEOUT)


def _deadline(conn: Connection, seconds: float | None = None) -> AbstractContextManager[float]:
    return ssh.deadline(conn, settings.COPRSSH_BUILDER_CALL_DEADLINE if seconds is None else seconds)


def _run(conn: Connection, command: str, timeout: float = 60.0) -> str:
    try:
        return str(ssh.run(conn, command, timeout=timeout).stdout)
    except Exception as exc:  # paramiko, socket, invoke errors alike
        raise RunnerError(
            f"{command.split()[0]} on the builder failed: {type(exc).__name__}: {exc}"
        ) from None


def new_workdir(builder: Builder, label: str) -> str:
    """A fresh folder name on the builder: unguessable, so nothing can be planted there in advance."""
    jobs = provider_for(builder.pool).jobs_dir(machine_of(builder))
    return posixpath.join(jobs, f"{label}-{secrets.token_hex(8)}")


def start(builder: Builder, *, workdir: str, job: dict[str, Any], files: dict[str, Path]) -> None:
    """Upload the agent, the job and its input files, then start the agent detached."""
    try:
        with connect(builder) as conn, _deadline(conn):
            jobs = shlex.quote(posixpath.dirname(workdir))
            _run(conn, f"mkdir -p -m 0755 {jobs} && mkdir -m 0700 {shlex.quote(workdir)}")
            sftp = _sftp(conn)
            sftp.put(str(AGENT), posixpath.join(workdir, AGENT_NAME))
            for name, local in files.items():
                sftp.put(str(local), posixpath.join(workdir, name))
            with sftp.open(posixpath.join(workdir, "job.json"), "w") as handle:
                handle.write(json.dumps(job))
            # setsid: the agent leads its own process group (cancel signals the group) and
            # outlives this SSH session.
            # The parentheses matter: under bash, `a && b &` backgrounds a subshell that keeps
            # the SSH channel open until the agent exits; `(b &)` returns at once.
            command = (
                f"cd {shlex.quote(workdir)} && (setsid python3 {AGENT_NAME} run {shlex.quote(workdir)}"
                " > agent.out 2>&1 < /dev/null &)"
            )
            _run(conn, command)
    except (RunnerError, ProviderError):
        raise
    except Exception as exc:
        raise RunnerError(f"cannot start the build on {builder}: {type(exc).__name__}: {exc}") from None


@dataclass
class Progress:
    status: Status
    log: bytes  # new live log bytes from the given offset
    agent_alive: bool | None = None  # whether the agent's process runs (None: not asked)


def poll(builder: Builder, *, workdir: str, log_offset: int, ask_agent: bool = False) -> Progress:
    """Read the agent's status and the live log from `log_offset` (at most LOG_CHUNK bytes), in one call.

    With `ask_agent`, also whether the agent's process still runs: a status that says "running"
    is only the last thing a possibly killed agent wrote.
    """
    try:
        with connect(builder) as conn, _deadline(conn) as until:
            sftp = _sftp(conn)
            status = _read_status(sftp, workdir, until=until)
            log = _read_log(sftp, posixpath.join(workdir, "builder-live.log"), log_offset, until=until)
            alive = _agent_runs(conn, workdir) if ask_agent else None
    except RunnerError:
        raise
    except Exception as exc:
        raise RunnerError(f"cannot reach {builder}: {type(exc).__name__}: {exc}") from None
    return Progress(status=status, log=log, agent_alive=alive)


def _agent_runs(conn: Connection, workdir: str) -> bool:
    """Whether a process of the agent for `workdir` runs; only the exit status is read."""
    # A bracketed first letter keeps the pattern from matching the shell that runs pgrep.
    text = re.sub(r"([.\[\]()*+?{}|^$\\])", r"\\\1", f"{AGENT_NAME} run {workdir}")
    pattern = shlex.quote(f"[{text[0]}]{text[1:]}")
    result = ssh.run(conn, f"pgrep -f -- {pattern} > /dev/null 2>&1", timeout=30.0, warn=True)
    return bool(result.exited == 0)


def _read_status(sftp: paramiko.SFTPClient, workdir: str, *, until: float | None = None) -> Status:
    path = posixpath.join(workdir, "status.json")
    try:
        raw = ssh.read_capped(sftp, path, cap=STATUS_CAP, until=until)
    except FileNotFoundError:
        return Status("missing")
    except ssh.BuilderReplyTooLarge:
        return Status("failed", reason="the builder's status file is larger than 64 KiB")
    except ssh.BuilderDeadline:
        raise
    except ssh.BuilderIOError:
        return Status("failed", reason="the builder's status file is not a regular file")
    try:
        data = json.loads(raw)
        state = str(data["state"])
    except (ValueError, KeyError, TypeError):
        return Status("running")  # caught mid-write; the next poll sees it whole
    if state not in {"running", "succeeded", "failed", "canceled"}:
        return Status("failed", reason=f"the builder reported an unknown state {state[:40]!r}")
    pgid = data.get("pgid")
    return Status(
        state, reason=str(data.get("reason", ""))[:300], pgid=pgid if isinstance(pgid, int) else None
    )


def _read_log(sftp: paramiko.SFTPClient, path: str, offset: int, *, until: float | None = None) -> bytes:
    try:
        return ssh.read_capped(sftp, path, cap=LOG_CHUNK, offset=offset, truncate=True, until=until)
    except FileNotFoundError:
        return b""
    except ssh.BuilderDeadline:
        raise
    except ssh.BuilderIOError:
        return b""  # a log that is not a regular file has nothing for us


def fetch_results(
    builder: Builder,
    *,
    workdir: str,
    target: Path,
    only: re.Pattern[str] | None = None,
    storage_left: int | None = None,
) -> list[str]:
    """Download the regular files of the results folder into `target`; return their names.

    `storage_left` is what the project's storage quota still allows (None: no quota).
    """
    per_file = settings.COPRSSH_MAX_RESULT_BYTES
    total_cap = settings.COPRSSH_MAX_RESULTS_BYTES
    fetched: list[str] = []
    try:
        with connect(builder) as conn, _deadline(conn, settings.COPRSSH_BUILDER_FETCH_DEADLINE) as until:
            sftp = _sftp(conn)
            results = posixpath.join(workdir, "results")
            folder = sftp.lstat(results)
            if not stat.S_ISDIR(folder.st_mode or 0):
                raise RunnerError("the results folder is not a folder")
            total = 0
            for entry in sorted(sftp.listdir_attr(results), key=lambda e: e.filename):
                name = entry.filename
                if not RESULT_NAME_RE.fullmatch(name) or (only is not None and not only.fullmatch(name)):
                    continue
                info = sftp.lstat(posixpath.join(results, name))  # never follow a symlink
                if not stat.S_ISREG(info.st_mode or 0):
                    continue
                size = info.st_size or 0
                if size > per_file or total + size > total_cap:
                    raise RunnerError(f"{name} is too large to fetch ({size} bytes)")
                if storage_left is not None and size > storage_left:
                    raise RunnerError(
                        f"the project's storage quota ({settings.COPRSSH_PROJECT_STORAGE_BYTES} bytes) "
                        f"has no room for {name} ({size} bytes)"
                    )
                ssh.fetch_capped(
                    sftp,
                    posixpath.join(results, name),
                    target / name,
                    expected_size=size,
                    cap=min(per_file, total_cap - total),
                    until=until,
                )
                total += size
                if storage_left is not None:
                    storage_left -= size
                fetched.append(name)
    except RunnerError:
        raise
    except Exception as exc:
        raise RunnerError(f"cannot fetch results from {builder}: {type(exc).__name__}: {exc}") from None
    return fetched


def stop(builder: Builder, *, pgid: int | None, workdir: str) -> None:
    """Stop the agent's process group on the builder (cancel)."""
    try:
        with connect(builder) as conn, _deadline(conn) as until:
            if pgid is None:
                status = _read_status(_sftp(conn), workdir, until=until)
                pgid = status.pgid
            if pgid and pgid > 1:
                _run(conn, f"kill -TERM -- -{int(pgid)} 2>/dev/null; true")
            else:
                # Canceled before the agent wrote its status: find its group by its command line.
                pattern = shlex.quote(f"{AGENT_NAME} run {workdir}")
                _run(
                    conn,
                    f"for pid in $(pgrep -f -- {pattern}); do"
                    ' g=$(ps -o pgid= -p "$pid" | tr -d " "); [ -n "$g" ] && [ "$g" -gt 1 ] && kill -TERM -- "-$g";'
                    " done 2>/dev/null; true",
                )
    except RunnerError:
        raise
    except Exception as exc:
        raise RunnerError(f"cannot stop the build on {builder}: {type(exc).__name__}: {exc}") from None
