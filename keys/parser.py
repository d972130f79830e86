"""The one SSH public key parser of coprssh.

Everything that takes keys from a person (the resubmit form, saved keys, the API, bodies
fetched for `GitHub:user` and `FAS:user`) goes through `parse_keys` or `parse_single_key`.
A key is accepted only when its blob decodes as the SSH wire format of an accepted type;
it is then re-emitted as a canonical line built from the decoded parts, so raw user text
never travels further than this module.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import unicodedata
from dataclasses import dataclass, field

from keys.wire import ACCEPTED_TYPES_TEXT, KEY_TYPES, read_blob, shown

# Callers catch it here, with the parser that raises it.
from keys.wire import InvalidKey as InvalidKey

MAX_LINE_BYTES = 8 * 1024
MAX_INPUT_BYTES = 128 * 1024
MAX_KEYS = 10
MAX_ERRORS = 25
TOO_MANY_ERRORS = "too many errors; the rest of the text was not checked"
MIN_RSA_BITS = 2048
MAX_COMMENT_CHARS = 100

# Account names are checked before any URL is built from them.
GITHUB_USER_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}")
FAS_USER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")
REFERENCE_RE = re.compile(r"(github|fas):(.*)", re.IGNORECASE | re.DOTALL)
BASE64_RE = re.compile(r"[A-Za-z0-9+/]+={0,2}")
SEPARATOR_RE = re.compile(r"[ \t]+")

PROVIDER_LABELS = {"github": "GitHub", "fas": "FAS"}

PUTTY_PRIVATE = "PuTTY-User-Key-File-"
PRIVATE_KEY_MESSAGE = (
    "this is a PRIVATE key: never paste it anywhere, and consider it exposed; "
    "give the public key (the .pub file) instead"
)

# Names that OpenSSH accepts in front of a key in authorized_keys.
OPTION_NAMES = {
    "agent-forwarding", "cert-authority", "command", "environment", "expiry-time", "from",
    "no-agent-forwarding", "no-port-forwarding", "no-pty", "no-user-rc", "no-x11-forwarding",
    "no-touch-required", "permitlisten", "permitopen", "port-forwarding", "principals", "pty",
    "restrict", "tunnel", "user-rc", "verify-required", "x11-forwarding",
}  # fmt: skip


@dataclass(frozen=True)
class PublicKey:
    """A validated public key, rebuilt from its decoded blob."""

    key_type: str
    blob: bytes
    bits: int
    comment: str = ""

    @property
    def data(self) -> str:
        return base64.b64encode(self.blob).decode("ascii")

    @property
    def fingerprint(self) -> str:
        """`SHA256:…` exactly as `ssh-keygen -lf` prints it."""
        digest = hashlib.sha256(self.blob).digest()
        return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")

    @property
    def label(self) -> str:
        """The short type name `ssh-keygen -l` shows in parentheses (ED25519, RSA, …)."""
        return KEY_TYPES[self.key_type].label

    @property
    def line(self) -> str:
        """The canonical line `type base64 comment`."""
        return f"{self.key_type} {self.data} {self.comment}".rstrip()

    def with_comment(self, comment: str) -> PublicKey:
        return PublicKey(self.key_type, self.blob, self.bits, clean_comment(comment))

    def __str__(self) -> str:
        return f"{self.bits} {self.fingerprint} ({self.label})"


@dataclass(frozen=True)
class Reference:
    """`GitHub:user` or `FAS:user`: keys to fetch from an account."""

    provider: str
    username: str
    line_no: int = 0

    def __str__(self) -> str:
        return f"{PROVIDER_LABELS[self.provider]}:{self.username}"


@dataclass(frozen=True)
class LineError:
    """Why one line (1-based; 0 for the whole text) was refused."""

    line_no: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line_no}: {self.message}" if self.line_no else self.message


@dataclass
class ParseResult:
    """Keys, references and per-line errors found in a block of text."""

    keys: list[PublicKey] = field(default_factory=list)
    references: list[Reference] = field(default_factory=list)
    errors: list[LineError] = field(default_factory=list)
    # Lines that repeated a key given earlier; they are dropped, not refused.
    duplicates: list[LineError] = field(default_factory=list)
    key_lines: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


# --- one line --------------------------------------------------------------------------


def _check_characters(line: str) -> None:
    for char in line:
        if char == "\t" or " " <= char <= "~":
            continue
        category = unicodedata.category(char)
        # Cc: control (NUL, CR, ESC…); Cf: invisible formatting (bidi overrides, zero
        # width); Zl/Zp: Unicode line breaks that would split the line elsewhere;
        # Co/Cs/Cn: private use, surrogates, unassigned.
        if category in {"Cc", "Cf", "Zl", "Zp", "Co", "Cs", "Cn"}:
            name = unicodedata.name(char, "control character")
            raise InvalidKey(f"the line contains a forbidden character U+{ord(char):04X} ({name})")


def clean_comment(comment: str) -> str:
    """Printable text only, single spaces, bounded length."""
    comment = " ".join(comment.split())
    comment = "".join(c for c in comment if c.isprintable())
    return comment[:MAX_COMMENT_CHARS].rstrip()


def _refuse_unknown_type(key_type: str, rest: list[str]) -> None:
    lowered = key_type.lower()
    if lowered.endswith("-cert-v01@openssh.com"):
        raise InvalidKey("certificates are not accepted; give the plain public key instead")
    if lowered == "ssh-dss":
        raise InvalidKey("DSA keys (ssh-dss) are not accepted; create a new key with `ssh-keygen -t ed25519`")
    if not key_type.isascii():
        raise InvalidKey(
            f"the key type {shown(key_type)} contains non-ASCII characters (a look-alike of an ASCII letter?)"
        )
    option = key_type.split("=", 1)[0].lower()
    if option in OPTION_NAMES or "=" in key_type or any(token in KEY_TYPES for token in rest):
        raise InvalidKey(
            "options in front of the key (such as command=… or no-pty) are not accepted; "
            "give only `type key comment`"
        )
    if key_type.isdigit():
        raise InvalidKey("SSH protocol 1 keys are not accepted")
    if len(key_type) >= 16 and re.fullmatch(r"[A-Za-z0-9+/=:-]+", key_type):
        # Quoting it could repeat a line of a private key into logs and pages.
        raise InvalidKey(
            "this line has no key type; it looks like key material (if it is part of a "
            "private key, never paste it anywhere)"
        )
    if lowered in KEY_TYPES:
        raise InvalidKey(f"key types are case-sensitive: write {lowered!r}")
    raise InvalidKey(f"unknown key type {shown(key_type)}; accepted types: {ACCEPTED_TYPES_TEXT}")


def parse_key_line(line: str, *, min_rsa_bits: int = MIN_RSA_BITS) -> PublicKey:
    """Validate one `type base64 [comment]` line; raise InvalidKey saying what is wrong."""
    size = len(line.encode("utf-8", "surrogatepass"))
    if size > MAX_LINE_BYTES:
        raise InvalidKey(f"the line is {size} bytes long; a key line may have at most {MAX_LINE_BYTES}")
    _check_characters(line)
    stripped = line.strip(" \t")
    if stripped.startswith(PUTTY_PRIVATE):
        raise InvalidKey(PRIVATE_KEY_MESSAGE)
    if stripped.startswith("-----") or stripped.startswith("---- "):
        if "PRIVATE KEY" in stripped.upper():
            raise InvalidKey(PRIVATE_KEY_MESSAGE)
        raise InvalidKey(
            "this is not a key in OpenSSH format; convert it with `ssh-keygen -i -f FILE` "
            "and give the resulting line"
        )
    parts = SEPARATOR_RE.split(stripped, maxsplit=2)
    key_type = parts[0]
    if key_type not in KEY_TYPES:
        _refuse_unknown_type(key_type, SEPARATOR_RE.split(stripped))
    if len(parts) < 2:
        raise InvalidKey(f"the key data is missing after {key_type!r}")
    data = parts[1]
    comment = parts[2] if len(parts) > 2 else ""
    if not data.isascii():
        raise InvalidKey("the key data contains non-ASCII characters (a look-alike of an ASCII letter?)")
    if not BASE64_RE.fullmatch(data) or len(data) % 4:
        raise InvalidKey("the key data is not valid base64 (was it cut or changed when copying?)")
    try:
        blob = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidKey("the key data is not valid base64 (was it cut or changed when copying?)") from None
    if base64.b64encode(blob).decode("ascii") != data:
        raise InvalidKey("the key data is not canonical base64 (stray bits in the padding)")
    blob, bits = read_blob(key_type, blob, min_rsa_bits=min_rsa_bits)
    for token in SEPARATOR_RE.split(comment):
        if token in KEY_TYPES or token.lower().endswith("-cert-v01@openssh.com") or token == "ssh-dss":
            raise InvalidKey("the comment holds another key; give each key on a line of its own")
    return PublicKey(key_type, blob, bits, clean_comment(comment))


# --- blocks of text ------------------------------------------------------------------


def _parse_reference_line(line: str, line_no: int, result: ParseResult) -> None:
    for token in SEPARATOR_RE.split(line.strip(" \t")):
        match = REFERENCE_RE.fullmatch(token)
        if not match:
            result.errors.append(
                LineError(line_no, f"{shown(token)} is not a reference; write GitHub:USER or FAS:USER")
            )
            continue
        provider, username = match.group(1).lower(), match.group(2)
        pattern = GITHUB_USER_RE if provider == "github" else FAS_USER_RE
        if not pattern.fullmatch(username):
            label = PROVIDER_LABELS[provider]
            result.errors.append(
                LineError(line_no, f"{shown(username, 40)} is not a valid {label} account name")
            )
            continue
        reference = Reference(provider, username, line_no)
        if any(r.provider == provider and r.username.lower() == username.lower() for r in result.references):
            continue
        result.references.append(reference)


def _is_reference_line(line: str) -> bool:
    return bool(REFERENCE_RE.match(line.strip(" \t"))) and not line.lstrip(" \t").startswith("-")


def parse_keys(
    text: str,
    *,
    allow_references: bool = True,
    max_keys: int | None = MAX_KEYS,
    min_rsa_bits: int = MIN_RSA_BITS,
) -> ParseResult:
    """Parse keys one per line, plus `GitHub:user`/`FAS:user` references when allowed.

    Blank lines and `#` comments are skipped; a key given twice is kept once. Every
    refused line gets an error with its line number; the caller stores nothing unless
    `result.ok`.
    """
    result = ParseResult()
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_INPUT_BYTES:
        result.errors.append(
            LineError(0, f"the text is {size} bytes long; at most {MAX_INPUT_BYTES} bytes are accepted")
        )
        return result

    seen: dict[str, int] = {}
    skip_until_end = False
    # Browsers send CRLF from text areas; a CR anywhere else is refused as a control character.
    lines = text.split("\n")
    for line_no, raw in enumerate(lines, start=1):
        line = raw[:-1] if raw.endswith("\r") else raw
        if len(result.errors) >= MAX_ERRORS:
            _cap_errors(result, line_no)
            break
        if skip_until_end:
            # Inside a pasted private key or PEM block: it has been reported once already.
            if line.strip().startswith(("-----END", "---- END", "Private-MAC:")):
                skip_until_end = False
            continue
        if not line.strip(" \t") or line.lstrip(" \t").startswith("#"):
            continue
        if _is_reference_line(line):
            if allow_references:
                try:
                    _check_characters(line)
                except InvalidKey as exc:
                    result.errors.append(LineError(line_no, str(exc)))
                    continue
                if len(line.encode("utf-8", "surrogatepass")) > MAX_LINE_BYTES:
                    result.errors.append(
                        LineError(line_no, f"the line is longer than {MAX_LINE_BYTES} bytes")
                    )
                    continue
                _parse_reference_line(line, line_no, result)
            else:
                result.errors.append(LineError(line_no, "account references are not accepted here"))
            continue
        try:
            key = parse_key_line(line, min_rsa_bits=min_rsa_bits)
        except InvalidKey as exc:
            result.errors.append(LineError(line_no, str(exc)))
            if line.strip(" \t").startswith(("-----BEGIN", "---- BEGIN", PUTTY_PRIVATE)):
                skip_until_end = True
            continue
        if key.fingerprint in seen:
            result.duplicates.append(
                LineError(line_no, f"the same key as line {seen[key.fingerprint]}; given once")
            )
            continue
        seen[key.fingerprint] = line_no
        result.keys.append(key)
        result.key_lines.append(line_no)

    if len(result.errors) > MAX_ERRORS and result.errors[-1].message != TOO_MANY_ERRORS:
        # The last line was a reference line with many bad tokens.
        _cap_errors(result, result.errors[MAX_ERRORS].line_no)
    if max_keys is not None and len(result.keys) > max_keys:
        first_extra = result.key_lines[max_keys]
        result.errors.append(
            LineError(
                first_extra,
                f"{len(result.keys)} keys given; at most {max_keys} can be deployed",
            )
        )
    return result


def _cap_errors(result: ParseResult, line_no: int) -> None:
    del result.errors[MAX_ERRORS:]
    result.errors.append(LineError(line_no, TOO_MANY_ERRORS))


def parse_single_key(text: str, *, min_rsa_bits: int = MIN_RSA_BITS) -> PublicKey:
    """Exactly one key line (a saved key); surrounding whitespace and one final newline are fine."""
    stripped = text.strip(" \t\r\n")
    if not stripped:
        raise InvalidKey("enter a public key")
    if ("-----BEGIN" in stripped and "PRIVATE KEY" in stripped.upper()) or PUTTY_PRIVATE in stripped:
        raise InvalidKey(PRIVATE_KEY_MESSAGE)
    if "\n" in stripped or "\r" in stripped:
        raise InvalidKey("enter exactly one key: this text holds more than one line")
    return parse_key_line(stripped, min_rsa_bits=min_rsa_bits)
