"""The service's side of running a phase on a builder, over SSH and SFTP.

The builder is not trusted: files come back only from the phase's fixed results folder,
each checked with lstat (regular files only, no symlinks), with a safe name and under a
size cap; logs are read by offset with a cap. Nothing is ever rsync'ed from a builder.
"""

from __future__ import annotations

import json
import posixpath
import re
import secrets
import shlex
import stat
from dataclasses import dataclass
from pathlib import Path

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


class RunnerError(Exception):
    """Talking to the builder failed; the message says what failed."""


@dataclass(frozen=True)
class Status:
    state: str  # "missing", "running", "succeeded", "failed", "canceled"
    reason: str = ""
    pgid: int | None = None


def connect(builder: Builder, *, timeout: float = 15.0) -> Connection:
    return ssh.connect(machine_of(builder), key_filename=admin_key().private_path, timeout=timeout)


def _run(conn: Connection, command: str, timeout: float = 60.0) -> str:
    try:
        return ssh.run(conn, command, timeout=timeout).stdout
    except Exception as exc:  # paramiko, socket, invoke errors alike
        raise RunnerError(
            f"{command.split()[0]} on the builder failed: {type(exc).__name__}: {exc}"
        ) from None


def new_workdir(builder: Builder, label: str) -> str:
    """A fresh folder name on the builder: unguessable, so nothing can be planted there in advance."""
    jobs = provider_for(builder.pool).jobs_dir(machine_of(builder))
    return posixpath.join(jobs, f"{label}-{secrets.token_hex(8)}")


def start(builder: Builder, *, workdir: str, job: dict, files: dict[str, Path]) -> None:
    """Upload the agent, the job and its input files, then start the agent detached."""
    try:
        with connect(builder) as conn:
            jobs = shlex.quote(posixpath.dirname(workdir))
            _run(conn, f"mkdir -p -m 0755 {jobs} && mkdir -m 0700 {shlex.quote(workdir)}")
            sftp = conn.sftp()
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


def poll(builder: Builder, *, workdir: str, log_offset: int) -> Progress:
    """Read the agent's status and the live log from `log_offset` (at most LOG_CHUNK bytes)."""
    try:
        with connect(builder) as conn:
            sftp = conn.sftp()
            status = _read_status(sftp, workdir)
            log = _read_log(sftp, posixpath.join(workdir, "builder-live.log"), log_offset)
    except RunnerError:
        raise
    except Exception as exc:
        raise RunnerError(f"cannot reach {builder}: {type(exc).__name__}: {exc}") from None
    return Progress(status=status, log=log)


def _read_status(sftp, workdir: str) -> Status:  # noqa: ANN001 - paramiko SFTPClient
    path = posixpath.join(workdir, "status.json")
    try:
        info = sftp.lstat(path)
    except FileNotFoundError:
        return Status("missing")
    if not stat.S_ISREG(info.st_mode) or info.st_size > 64 * 1024:
        return Status("failed", reason="the builder's status file is not a small regular file")
    with sftp.open(path, "r") as handle:
        raw = handle.read()
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


def _read_log(sftp, path: str, offset: int) -> bytes:  # noqa: ANN001
    try:
        info = sftp.lstat(path)
    except FileNotFoundError:
        return b""
    if not stat.S_ISREG(info.st_mode) or info.st_size <= offset:
        return b""
    with sftp.open(path, "rb") as handle:
        handle.seek(offset)
        return handle.read(min(LOG_CHUNK, info.st_size - offset))


def fetch_results(
    builder: Builder, *, workdir: str, target: Path, only: re.Pattern[str] | None = None
) -> list[str]:
    """Download the regular files of the results folder into `target`; return their names."""
    per_file = settings.COPRSSH_MAX_RESULT_BYTES
    total_cap = settings.COPRSSH_MAX_RESULTS_BYTES
    fetched: list[str] = []
    try:
        with connect(builder) as conn:
            sftp = conn.sftp()
            results = posixpath.join(workdir, "results")
            folder = sftp.lstat(results)
            if not stat.S_ISDIR(folder.st_mode):
                raise RunnerError("the results folder is not a folder")
            total = 0
            for entry in sorted(sftp.listdir_attr(results), key=lambda e: e.filename):
                name = entry.filename
                if not RESULT_NAME_RE.fullmatch(name) or (only is not None and not only.fullmatch(name)):
                    continue
                info = sftp.lstat(posixpath.join(results, name))  # never follow a symlink
                if not stat.S_ISREG(info.st_mode):
                    continue
                if info.st_size > per_file or total + info.st_size > total_cap:
                    raise RunnerError(f"{name} is too large to fetch ({info.st_size} bytes)")
                total += info.st_size
                partial = target / f".{name}.part"
                sftp.get(posixpath.join(results, name), str(partial))
                if partial.stat().st_size != info.st_size:
                    partial.unlink()
                    raise RunnerError(f"{name} changed while it was fetched")
                partial.replace(target / name)
                fetched.append(name)
    except RunnerError:
        raise
    except Exception as exc:
        raise RunnerError(f"cannot fetch results from {builder}: {type(exc).__name__}: {exc}") from None
    return fetched


def stop(builder: Builder, *, pgid: int | None, workdir: str) -> None:
    """Stop the agent's process group on the builder (cancel)."""
    try:
        with connect(builder) as conn:
            if pgid is None:
                status = _read_status(conn.sftp(), workdir)
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
