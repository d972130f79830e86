"""Keys for the parser tests: real ones from ssh-keygen, and SSH wire-format blobs built by hand.

`ssh-keygen` is the oracle: what it prints for a line is what `keys.parser` must say about it.
"""

from __future__ import annotations

import base64
import re
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

# "256 SHA256:… comment words (ED25519)"
LISTING_RE = re.compile(r"(\d+) (SHA256:[A-Za-z0-9+/]+) (.*) \(([A-Z0-9-]+)\)")


@dataclass(frozen=True)
class Listing:
    """What `ssh-keygen -lf` prints about a public key."""

    bits: int
    fingerprint: str
    comment: str
    label: str


@dataclass(frozen=True)
class Generated:
    """A key pair written by ssh-keygen, and its listing."""

    private_path: Path
    line: str  # the .pub file without its final newline
    listing: Listing

    @property
    def public_path(self) -> Path:
        return Path(f"{self.private_path}.pub")

    @property
    def private_text(self) -> str:
        return self.private_path.read_text()

    @property
    def key_type(self) -> str:
        return self.line.split()[0]

    @property
    def blob(self) -> bytes:
        return base64.b64decode(self.line.split()[1])


def list_key_file(path: Path) -> Listing | None:
    """`ssh-keygen -lf PATH`; None when ssh-keygen does not take it for a public key."""
    done = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", str(path)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        return None
    match = LISTING_RE.fullmatch(done.stdout.strip())
    assert match, f"unexpected ssh-keygen output: {done.stdout!r}"
    return Listing(int(match[1]), match[2], match[3], match[4])


def list_key_line(line: str, directory: Path, name: str = "line.pub") -> Listing | None:
    """Write `line` to a file in `directory` and list it with ssh-keygen."""
    path = directory / name
    path.write_text(line + "\n")
    return list_key_file(path)


def generate_all(
    directory: Path, specs: dict[str, list[str]], optional: set[str] | None = None
) -> dict[str, Generated]:
    """Run one `ssh-keygen ARGS` per name, all at once (RSA 4096 alone takes a second).

    A name in `optional` is left out when ssh-keygen refuses it (DSA, on recent OpenSSH).
    """
    running = {}
    for name, args in specs.items():
        command = ["ssh-keygen", "-q", "-N", "", "-C", f"{name}@coprssh.test"]
        command += [*args, "-f", str(directory / name)]
        running[name] = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    made = {}
    for name, process in running.items():
        _, err = process.communicate(timeout=60)
        if process.returncode != 0 and name in (optional or set()):
            continue
        assert process.returncode == 0, f"ssh-keygen {specs[name]} failed: {err!r}"
        private = directory / name
        listing = list_key_file(Path(f"{private}.pub"))
        assert listing is not None
        made[name] = Generated(private, Path(f"{private}.pub").read_text().strip(), listing)
    return made


def certify(ca: Generated, user: Generated) -> str:
    """Sign `user` with `ca`; return the `…-cert-v01@openssh.com` line ssh-keygen writes."""
    subprocess.run(
        ["ssh-keygen", "-q", "-s", str(ca.private_path), "-I", "id", "-n", "root", str(user.public_path)],
        check=True,
        capture_output=True,
    )
    return Path(str(user.private_path) + "-cert.pub").read_text().strip()


def rfc4716(key: Generated) -> str:
    """The public key as a `---- BEGIN SSH2 PUBLIC KEY ----` block (`ssh-keygen -e`)."""
    return subprocess.run(
        ["ssh-keygen", "-e", "-f", str(key.public_path)], check=True, capture_output=True, text=True
    ).stdout


# --- the SSH wire format (RFC 4251 §5) -------------------------------------------------


def string(data: bytes | str) -> bytes:
    if isinstance(data, str):
        data = data.encode("ascii")
    return struct.pack(">I", len(data)) + data


def mpint(value: int) -> bytes:
    """A non-negative mpint in its minimal form (a 0 byte only when the top bit is set)."""
    raw = value.to_bytes((value.bit_length() + 8) // 8, "big") if value else b""
    return string(raw)


def fields(blob: bytes) -> list[bytes]:
    """Split a blob into its length-prefixed strings."""
    out, pos = [], 0
    while pos < len(blob):
        (length,) = struct.unpack(">I", blob[pos : pos + 4])
        out.append(blob[pos + 4 : pos + 4 + length])
        pos += 4 + length
    return out


def b64(blob: bytes) -> str:
    return base64.b64encode(blob).decode("ascii")


def line(key_type: str, blob: bytes, comment: str = "") -> str:
    return f"{key_type} {b64(blob)} {comment}".rstrip()


def blob_of(key_line: str) -> bytes:
    return base64.b64decode(key_line.split()[1])


def ed25519_public() -> bytes:
    """32 bytes of a real Ed25519 public key."""
    return (
        ed25519.Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )


def ec_point(curve: ec.EllipticCurve) -> bytes:
    """The uncompressed point (0x04 ‖ X ‖ Y) of a real key on `curve`."""
    return (
        ec.generate_private_key(curve)
        .public_key()
        .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )


def compress(point: bytes) -> bytes:
    """The compressed form (0x02/0x03 ‖ X) of an uncompressed point."""
    size = (len(point) - 1) // 2
    x, y = point[1 : 1 + size], point[1 + size :]
    return bytes([2 + (y[-1] & 1)]) + x


def ed25519_blob(public: bytes | None = None) -> bytes:
    return string("ssh-ed25519") + string(public if public is not None else ed25519_public())


def ecdsa_blob(curve_name: str, point: bytes, key_type: str | None = None) -> bytes:
    return string(key_type or f"ecdsa-sha2-{curve_name}") + string(curve_name) + string(point)


def sk_ed25519_blob(application: bytes = b"ssh:") -> bytes:
    return string("sk-ssh-ed25519@openssh.com") + string(ed25519_public()) + string(application)


def sk_ecdsa_blob(application: bytes = b"ssh:") -> bytes:
    point = ec_point(ec.SECP256R1())
    return (
        string("sk-ecdsa-sha2-nistp256@openssh.com")
        + string("nistp256")
        + string(point)
        + string(application)
    )


def rsa_blob(exponent: int, modulus: int) -> bytes:
    return string("ssh-rsa") + mpint(exponent) + mpint(modulus)


# NIST P-256 (SEC 2): y² = x³ - 3x + b over GF(p), p ≡ 3 (mod 4).
P256_P = 2**256 - 2**224 + 2**192 + 2**96 - 1
P256_B = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B


def p256_point_with_small_x() -> bytes:
    """A point on P-256 whose x is below 100: on the curve, but OpenSSH refuses such keys.

    OpenSSH's `sshkey_ec_validate_public` wants log2(x) and log2(y) above half the order's size.
    """
    for x in range(1, 100):
        rhs = (x**3 - 3 * x + P256_B) % P256_P
        if pow(rhs, (P256_P - 1) // 2, P256_P) == 1:
            y = pow(rhs, (P256_P + 1) // 4, P256_P)
            return b"\x04" + x.to_bytes(32, "big") + y.to_bytes(32, "big")
    raise AssertionError("no small x on P-256 below 100")


def putty_private_key(comment: str = "eddsa-key-20240101") -> tuple[str, str]:
    """An unencrypted PuTTY `.ppk` (v3) Ed25519 key file, and the base64 of its private part.

    The Private-MAC is zeros: nothing here checks it, and the parser must not read that far.
    """
    private = ed25519.Ed25519PrivateKey.generate()
    public = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    secret = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    public_b64, private_b64 = b64(ed25519_blob(public)), b64(string(secret))
    public_lines = [public_b64[i : i + 64] for i in range(0, len(public_b64), 64)]
    text = "\n".join(
        [
            "PuTTY-User-Key-File-3: ssh-ed25519",
            "Encryption: none",
            f"Comment: {comment}",
            f"Public-Lines: {len(public_lines)}",
            *public_lines,
            "Private-Lines: 1",
            private_b64,
            "Private-MAC: " + "0" * 64,
        ]
    )
    return text + "\n", private_b64
