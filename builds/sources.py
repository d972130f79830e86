"""Check the source of a build before anything is stored or leased, and store uploads.

A source is an uploaded `.spec` or `.src.rpm`, a public git repository (clone URL,
optional committish, spec path), or the URL of a `.src.rpm`. A builder later clones or
downloads what these functions accepted (`builds/agent/coprssh_agent.py`), so they refuse
anything git or urllib could misread: other schemes (`ext::`, `file://`, `ssh://`), option
look-alikes, credentials (they would be shown on public pages) and hosts that are, or
resolve to, any address that is not public: the builder itself, its cloud's metadata
service, private networks (unless COPRSSH_ALLOW_PRIVATE_SOURCES), documentation, reserved
and multicast ranges; every address a name has must pass. The agent applies the same rule
(`address_problem`) again when it fetches, and to every redirect before following it. Even
so the check is a gate, not a guarantee: a name may resolve differently between the agent's
check and its connection, and the builder's own network policy is what finally holds.

Every refusal raises SourceError with `field` set to the API field it concerns.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import tempfile
import threading
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, unquote, urlsplit

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile

from builds.agent.coprssh_agent import address_problem
from coprssh.exceptions import ServiceError

if TYPE_CHECKING:
    from builds.models import Build

SPEC_SUFFIX = ".spec"
SRPM_SUFFIX = ".src.rpm"
MAX_FILENAME = 200
MAX_URL = 1000
MAX_COMMITTISH = 200
MAX_SPEC_PATH = 300
# Seconds to wait for the resolver; a submission should not hang on a dead name server.
RESOLVE_TIMEOUT = 5.0

# The RPM lead (96 bytes), then the signature header, which starts with this magic.
RPM_MAGIC = b"\xed\xab\xee\xdb"
RPM_LEAD_SIZE = 96
RPM_HEADER_MAGIC = b"\x8e\xad\xe8\x01"
RPM_TYPE_BINARY = 0
RPM_TYPE_SOURCE = 1

FILENAME_CHARS = re.compile(r"[A-Za-z0-9._+~^-]+")
# RFC 3986 characters; anything else (quotes, braces, backslash, space) has no place here.
URL_CHARS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")
HOST_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
COMMITTISH = re.compile(r"[A-Za-z0-9._/+-]{1,200}")
SPEC_PATH = re.compile(r"[A-Za-z0-9._/+-]+")
NAME_TAG = re.compile(rb"^[ \t]*name[ \t]*:[ \t]*\S", re.IGNORECASE | re.MULTILINE)
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class SourceError(ServiceError):
    """The source of a build is refused; `field` names the API field."""


@dataclass(frozen=True)
class Source:
    """A checked build source, ready to be stored on a Build."""

    type: str  # "upload" | "scm" | "url" (Build.SourceType)
    filename: str = ""  # upload: the safe stored file name; url: the file name the builder saves
    clone_url: str = ""
    committish: str = ""
    spec: str = ""
    url: str = ""

    def columns(self) -> dict[str, str]:
        """The Build columns that store this source."""
        return {_column(name): value for name, value in asdict(self).items()}

    @classmethod
    def of(cls, build: Build) -> Source:
        """What `build` was built from, to build it again."""
        return cls(**{field.name: getattr(build, _column(field.name)) for field in fields(cls)})


def _column(name: str) -> str:
    """The Build column of a Source field: Build says source_type and source_filename."""
    return f"source_{name}" if name in ("type", "filename") else name


def max_spec_bytes() -> int:
    return int(getattr(settings, "COPRSSH_MAX_SPEC_BYTES", 1024 * 1024))


def max_srpm_bytes() -> int:
    return int(getattr(settings, "COPRSSH_MAX_SRPM_BYTES", 512 * 1024 * 1024))


def allow_local_sources() -> bool:
    return bool(getattr(settings, "COPRSSH_ALLOW_LOCAL_SOURCES", False))


def allow_private_sources() -> bool:
    return bool(getattr(settings, "COPRSSH_ALLOW_PRIVATE_SOURCES", False))


def fetch_policy() -> dict[str, bool]:
    """What the agent may fetch from besides public hosts (it checks redirects with it)."""
    return {"allow_local": allow_local_sources(), "allow_private": allow_private_sources()}


# Uploads


def safe_filename(name: str, *, field: str) -> str:
    """`name` if it is a plain `.spec` or `.src.rpm` file name safe to store and pass on."""
    if not name:
        raise SourceError("The file has no name.", field=field)
    if "/" in name or "\\" in name or name in (".", ".."):
        raise SourceError(
            f"The file name {name!r} must be a plain file name, without a directory.", field=field
        )
    if CONTROL.search(name):
        raise SourceError("The file name must not contain control characters.", field=field)
    if not name.isascii():
        raise SourceError(f"The file name {name!r} must be ASCII.", field=field)
    if len(name) > MAX_FILENAME:
        raise SourceError(f"The file name is longer than {MAX_FILENAME} characters.", field=field)
    if name.startswith((".", "-")):
        raise SourceError(f"The file name {name!r} must not start with a dot or a dash.", field=field)
    if not FILENAME_CHARS.fullmatch(name):
        raise SourceError(
            f"The file name {name!r} may hold only letters, digits and . _ + ~ ^ -", field=field
        )
    if not name.endswith((SPEC_SUFFIX, SRPM_SUFFIX)) or name in (SPEC_SUFFIX, SRPM_SUFFIX):
        raise SourceError(f"The file name {name!r} must end in {SPEC_SUFFIX} or {SRPM_SUFFIX}.", field=field)
    return name


def _size_limit(name: str) -> int:
    return max_srpm_bytes() if name.endswith(SRPM_SUFFIX) else max_spec_bytes()


def _read_start(upload: UploadedFile[bytes], size: int) -> bytes:
    upload.seek(0)
    try:
        start: bytes = upload.read(size)  # django-stubs type File.read as Any
    finally:
        upload.seek(0)
    return start


def check_upload(upload: UploadedFile[bytes]) -> Source:
    """The checked source of an uploaded `.spec` or `.src.rpm`: its name, size and content."""
    field = "source_file"
    name = safe_filename(upload.name or "", field=field)
    limit = _size_limit(name)
    if not upload.size:
        raise SourceError(f"The file {name} is empty.", field=field)
    if upload.size > limit:
        raise SourceError(f"The file {name} is larger than {_human(limit)}.", field=field)
    if name.endswith(SRPM_SUFFIX):
        _check_srpm(name, _read_start(upload, RPM_LEAD_SIZE + len(RPM_HEADER_MAGIC)))
    else:
        # +1 so a file that grew past its declared size is still caught.
        _check_spec(name, _read_start(upload, limit + 1), limit=limit)
    return Source(type="upload", filename=name)


def _check_srpm(name: str, start: bytes) -> None:
    field = "source_file"
    if not start.startswith(RPM_MAGIC):
        raise SourceError(f"The file {name} is not an RPM package.", field=field)
    if len(start) < RPM_LEAD_SIZE + len(RPM_HEADER_MAGIC) or start[4] not in (3, 4):
        raise SourceError(f"The file {name} is not a valid RPM package.", field=field)
    kind = int.from_bytes(start[6:8], "big")
    if kind == RPM_TYPE_BINARY:
        raise SourceError(f"The file {name} is a binary RPM, not a source RPM.", field=field)
    if kind != RPM_TYPE_SOURCE:
        raise SourceError(f"The file {name} is not a source RPM (package type {kind}).", field=field)
    if start[RPM_LEAD_SIZE:] != RPM_HEADER_MAGIC:
        raise SourceError(f"The file {name} is not a valid RPM package.", field=field)


def _check_spec(name: str, data: bytes, *, limit: int) -> None:
    field = "source_file"
    if len(data) > limit:
        raise SourceError(f"The file {name} is larger than {_human(limit)}.", field=field)
    if data.startswith(RPM_MAGIC):
        raise SourceError(
            f"The file {name} is an RPM package, not a spec file; upload it as a {SRPM_SUFFIX}.",
            field=field,
        )
    if b"\x00" in data:
        raise SourceError(f"The file {name} is a binary file, not a spec file.", field=field)
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        raise SourceError(f"The file {name} is not UTF-8 text.", field=field) from None
    if not NAME_TAG.search(data.removeprefix(b"\xef\xbb\xbf")):
        raise SourceError(f"The file {name} is not a spec file: it has no Name: tag.", field=field)


def store_upload(upload: UploadedFile[bytes], *, directory: Path) -> Path:
    """Write a checked upload into the existing `directory` under its safe name; return its path."""
    field = "source_file"
    name = safe_filename(upload.name or "", field=field)
    limit = _size_limit(name)
    target = Path(directory) / name
    # A temporary file in the same directory, renamed over the target, so nobody ever
    # sees half a file.
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=".upload-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            written = 0
            upload.seek(0)
            for chunk in upload.chunks():
                written += len(chunk)
                if written > limit:
                    raise SourceError(f"The file {name} is larger than {_human(limit)}.", field=field)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target


def _human(size: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale and size % scale == 0:
            return f"{size // scale} {unit}"
    return f"{size} bytes"


# Git repositories and URLs


def check_scm(*, clone_url: str, committish: str = "", spec: str) -> Source:
    """The checked source of a public git repository: clone URL, committish and spec path."""
    _check_remote_url(clone_url, field="clone_url", what="clone URL")
    if committish:
        _check_committish(committish)
    _check_spec_path(spec)
    return Source(type="scm", clone_url=clone_url, committish=committish, spec=spec)


def check_url(*, url: str) -> Source:
    """The checked source of a `.src.rpm` at a public http(s) URL, and the name to save it as."""
    parts = _check_remote_url(url, field="url", what="URL")
    basename = unquote(parts.path.rsplit("/", 1)[-1])
    if not basename.endswith(SRPM_SUFFIX):
        raise SourceError(f"The URL must point to a {SRPM_SUFFIX} file.", field="url")
    filename = safe_filename(basename, field="url")
    return Source(type="url", filename=filename, url=url)


def _check_committish(committish: str) -> None:
    field = "committish"
    if len(committish) > MAX_COMMITTISH:
        raise SourceError(f"The committish is longer than {MAX_COMMITTISH} characters.", field=field)
    if committish.startswith("-"):
        raise SourceError("The committish must not start with a dash.", field=field)
    if ".." in committish or "@{" in committish:
        raise SourceError("The committish must not contain '..' or '@{'.", field=field)
    if not COMMITTISH.fullmatch(committish):
        raise SourceError(
            "The committish may hold only letters, digits and . _ / + - (a branch, tag or commit hash).",
            field=field,
        )


def _check_spec_path(spec: str) -> None:
    field = "spec"
    if not spec:
        raise SourceError("Enter the path of the spec file in the repository.", field=field)
    if len(spec) > MAX_SPEC_PATH:
        raise SourceError(f"The spec path is longer than {MAX_SPEC_PATH} characters.", field=field)
    if spec.startswith(("/", "-")):
        raise SourceError(
            "The spec path must be relative to the repository and not start with '/' or '-'.",
            field=field,
        )
    if not SPEC_PATH.fullmatch(spec):
        raise SourceError("The spec path may hold only letters, digits and . _ / + -", field=field)
    if ".." in spec.split("/"):
        raise SourceError("The spec path must not contain '..'.", field=field)
    if not spec.endswith(SPEC_SUFFIX) or spec.rsplit("/", 1)[-1] == SPEC_SUFFIX:
        raise SourceError(f"The spec path must name a {SPEC_SUFFIX} file.", field=field)


def _check_remote_url(url: str, *, field: str, what: str) -> SplitResult:
    """`url` split, if it is an http(s) URL without credentials whose host is public."""
    if not url:
        raise SourceError(f"Enter the {what}.", field=field)
    if len(url) > MAX_URL:
        raise SourceError(f"The {what} is longer than {MAX_URL} characters.", field=field)
    if url.startswith("-"):
        raise SourceError(f"The {what} must not start with a dash.", field=field)
    if any(char.isspace() for char in url) or CONTROL.search(url):
        raise SourceError(f"The {what} must not contain spaces or control characters.", field=field)
    if not url.isascii():
        raise SourceError(
            f"The {what} must be ASCII: percent-encode other characters, use the punycode host name.",
            field=field,
        )
    if not url.startswith(("http://", "https://")):
        raise SourceError(f"The {what} must start with http:// or https://.", field=field)
    if not URL_CHARS.fullmatch(url):
        raise SourceError(f"The {what} contains characters that are not allowed in a URL.", field=field)
    try:
        parts = urlsplit(url)
    except ValueError:  # a malformed [IPv6] host
        raise SourceError(f"The {what} is not a valid URL.", field=field) from None
    if "@" in parts.netloc:
        raise SourceError(
            f"The {what} must not contain a user name or password: it would be shown on public pages.",
            field=field,
        )
    host = parts.hostname or ""
    if not host:
        raise SourceError(f"The {what} has no host.", field=field)
    try:
        port = parts.port
    except ValueError:
        raise SourceError(f"The {what} has an invalid port.", field=field) from None
    if port == 0:
        raise SourceError(f"The {what} has an invalid port.", field=field)
    _check_host(host, port or (443 if parts.scheme == "https" else 80), field=field, what=what)
    return parts


def _check_host(host: str, port: int, *, field: str, what: str) -> None:
    literal = _ip_literal(host)
    if literal is not None:
        addresses = [literal]
    else:
        if not _valid_hostname(host):
            raise SourceError(f"The host {host!r} of the {what} is not a valid host name.", field=field)
        addresses = _resolve(host, port, field=field)
    policy = fetch_policy()
    for address in addresses:
        reason = address_problem(address, **policy)
        if reason:
            # The address as the agent would reach it: ::ffff:127.0.0.1 is 127.0.0.1.
            shown = getattr(address, "ipv4_mapped", None) or address
            hint = " (an operator can allow private networks)" if reason == "a private address" else ""
            raise SourceError(
                f"The host {host} of the {what} is {reason} ({shown}); "
                f"builds can only fetch from public hosts{hint}.",
                field=field,
            )


def _ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    # urlsplit has already dropped the brackets of an IPv6 literal.
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _valid_hostname(host: str) -> bool:
    name = host[:-1] if host.endswith(".") else host
    if not name or len(name) > 253:
        return False
    labels = name.split(".")
    # An all-digit last label is no top-level domain but a shorthand IPv4 address
    # (`127.1`, `2130706433`) that resolvers would turn into the loopback address.
    if labels[-1].isdigit():
        return False
    return all(HOST_LABEL.fullmatch(label) for label in labels)


def _resolve(host: str, port: int, *, field: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    # getaddrinfo has no timeout of its own: ask in a daemon thread and stop waiting.
    outcome: list[Any] = []

    def lookup() -> None:
        try:
            outcome.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except Exception as exc:  # handed to the caller below
            outcome.append(exc)

    worker = threading.Thread(target=lookup, name="coprssh-resolve", daemon=True)
    worker.start()
    worker.join(RESOLVE_TIMEOUT)
    if not outcome:
        raise SourceError(f"The host {host} did not resolve within {RESOLVE_TIMEOUT:g} s.", field=field)
    result = outcome[0]
    if isinstance(result, Exception):
        raise SourceError(f"The host {host} does not resolve.", field=field)
    addresses = []
    for _family, _type, _proto, _canonname, sockaddr in result:
        try:
            # A scope id (`fe80::1%eth0`) only ever comes with a link-local address.
            addresses.append(ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0]))
        except ValueError:
            continue
    if not addresses:
        raise SourceError(f"The host {host} does not resolve.", field=field)
    return addresses
