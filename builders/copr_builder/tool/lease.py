"""The lease file the service writes on the builder, and the few fields copr-builder changes in it."""

from __future__ import annotations

import json
import os
import re
import tempfile
from datetime import datetime
from typing import Any

from .failures import Failure, reason
from .times import parse_time

DEFAULT_LEASE_FILE = "/etc/coprssh/lease.json"


def lease_path() -> str:
    state_dir = os.environ.get("COPRSSH_STATE_DIR")
    return os.path.join(state_dir, "lease.json") if state_dir else DEFAULT_LEASE_FILE


class Lease:
    """The lease file written by the service, and the few fields this script changes in it."""

    def __init__(self, path: str, data: dict[str, Any]) -> None:
        self.path = path
        self.data = data

    @classmethod
    def load(cls, path: str) -> Lease:
        try:
            with open(path, encoding="utf-8") as handle:
                raw = handle.read()
        except FileNotFoundError:
            raise Failure(
                f"there is no lease file at {path}: this machine is not (or no longer) a builder lent "
                "by coprssh; the service writes that file when it lends the builder."
            ) from None
        except PermissionError:
            raise Failure(
                f"cannot read the lease file {path}: permission denied; run copr-builder as root."
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise Failure(f"cannot read the lease file {path}: {reason(exc)}.") from None
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise Failure(f"the lease file {path} is damaged: it is not valid JSON ({exc}).") from None
        if not isinstance(data, dict):
            raise Failure(f"the lease file {path} is damaged: it does not hold a JSON object.")
        lease = cls(path, data)
        lease.check()
        return lease

    def check(self) -> None:
        def damaged(what: str) -> Failure:
            return Failure(f"the lease file {self.path} is damaged: {what}.")

        api_url = self.data.get("api_url")
        if not isinstance(api_url, str) or not re.match(r"https?://[^/\s]+", api_url):
            raise damaged("api_url is missing or is not an http(s) URL")
        token = self.data.get("token")
        # A token with spaces or line breaks would not survive the Authorization header.
        if not isinstance(token, str) or not re.fullmatch(r"[\x21-\x7e]+", token):
            raise damaged("the lease token is missing or malformed")
        # The service writes null for a time it has not set yet; anything else must be a time.
        for key in ("expires_at", "max_expires_at"):
            value = self.data.get(key)
            if value is None:
                continue
            try:
                parse_time(value)
            except ValueError:
                raise damaged(f"{key} is not a time with a zone") from None

    @property
    def api_url(self) -> str:
        return str(self.data["api_url"]).rstrip("/")

    @property
    def token(self) -> str:
        return str(self.data["token"])

    @property
    def expires_at(self) -> datetime | None:
        value = self.data.get("expires_at")
        return None if value is None else parse_time(value)

    @property
    def max_expires_at(self) -> datetime | None:
        value = self.data.get("max_expires_at")
        return None if value is None else parse_time(value)

    @property
    def released_at(self) -> datetime | None:
        """When `copr-builder release` succeeded here, if it did."""
        try:
            return parse_time(self.data.get("released_at"))
        except ValueError:
            return None

    def field(self, key: str) -> str:
        value = self.data.get(key)
        return "unknown" if value in (None, "") else str(value)

    def save(self, **changes: object) -> None:
        """Write the file again with `changes`: a temporary file, then a rename, so it is never torn."""
        data = dict(self.data, **changes)
        directory = os.path.dirname(self.path) or "."
        fd, temp = tempfile.mkstemp(prefix=".lease.", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                os.fchmod(handle.fileno(), 0o600)  # it holds the token
                keep_owner(handle.fileno(), self.path)
                json.dump(data, handle, indent=2)
                handle.write("\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, self.path)
        except BaseException:
            try:
                os.unlink(temp)
            except OSError:
                pass
            raise
        self.data = data

    def try_save(self, **changes: object) -> str | None:
        """Save, or say why not: the service's answer stands even if this machine's copy cannot follow."""
        try:
            self.save(**changes)
        except OSError as exc:
            return f"could not update {self.path}: {reason(exc)}"
        return None


def keep_owner(fd: int, path: str) -> None:
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return
    try:
        st = os.stat(path)
        os.fchown(fd, st.st_uid, st.st_gid)
    except OSError:
        pass
