"""The SSH wire format of public key blobs: each accepted type's fields, checked and re-encoded.

keys.parser calls `read_blob` for the decoded base64 of a key line; nothing else reads blobs.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec

MAX_RSA_BITS = 16384


class InvalidKey(ValueError):
    """One key line that is not an acceptable public key; the message says why."""


def shown(text: str, limit: int = 24) -> str:
    """A piece of user text made safe to quote in a message."""
    text = text if len(text) <= limit else text[:limit] + "…"
    return ascii(text)


class _Reader:
    """Reads the length-prefixed fields of an SSH public key blob."""

    def __init__(self, blob: bytes) -> None:
        self.blob = blob
        self.pos = 0
        # Set by a type whose wire format allows several encodings of one key.
        self.canonical: bytes | None = None

    def string(self, what: str) -> bytes:
        if self.pos + 4 > len(self.blob):
            raise InvalidKey(f"the key data is truncated (no room for the {what})")
        (length,) = struct.unpack(">I", self.blob[self.pos : self.pos + 4])
        start = self.pos + 4
        if length > len(self.blob) - start:
            raise InvalidKey(f"the key data is truncated (the {what} is cut off)")
        self.pos = start + length
        return self.blob[start : self.pos]

    def mpint(self, what: str) -> int:
        raw = self.string(what)
        if raw and raw[0] & 0x80:
            raise InvalidKey(f"the key data holds a negative {what}")
        return int.from_bytes(raw, "big")

    def text(self, what: str) -> str:
        raw = self.string(what)
        # OpenSSH reads these as C strings: a NUL or anything unprintable is refused there.
        if not raw or not all(0x20 < byte < 0x7F for byte in raw):
            raise InvalidKey(f"the key data holds a {what} that is empty or not printable ASCII")
        return raw.decode("ascii")

    def finish(self) -> None:
        extra = len(self.blob) - self.pos
        if extra:
            raise InvalidKey(f"the key data has {extra} unexpected bytes at the end")


def _ssh_string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _ssh_mpint(value: int) -> bytes:
    raw = value.to_bytes((value.bit_length() + 8) // 8, "big") if value else b""
    return _ssh_string(raw)


def _ed25519(reader: _Reader, _min_rsa_bits: int) -> int:
    if len(reader.string("Ed25519 public key")) != 32:
        raise InvalidKey("the Ed25519 public key is not 32 bytes long")
    return 256


def _rsa(reader: _Reader, min_rsa_bits: int) -> int:
    exponent = reader.mpint("RSA exponent")
    modulus = reader.mpint("RSA modulus")
    if exponent < 3 or exponent % 2 == 0 or exponent.bit_length() > 64:
        raise InvalidKey("the RSA public exponent is not valid")
    bits = modulus.bit_length()
    if bits < min_rsa_bits:
        raise InvalidKey(
            f"RSA keys must have at least {min_rsa_bits} bits; this one has {bits}. "
            "Create a new key with `ssh-keygen -t ed25519`"
        )
    if bits > MAX_RSA_BITS:
        raise InvalidKey(f"RSA keys may have at most {MAX_RSA_BITS} bits; this one has {bits}")
    if modulus % 2 == 0:
        raise InvalidKey("the RSA modulus is not valid")
    # OpenSSH re-encodes the numbers (dropping superfluous zero bytes) before it takes a
    # fingerprint; the canonical blob makes ours the same and lets duplicates match.
    reader.canonical = _ssh_string(b"ssh-rsa") + _ssh_mpint(exponent) + _ssh_mpint(modulus)
    return bits


_CURVES: dict[str, tuple[ec.EllipticCurve, int]] = {
    "nistp256": (ec.SECP256R1(), 256),
    "nistp384": (ec.SECP384R1(), 384),
    "nistp521": (ec.SECP521R1(), 521),
}


def _ecdsa_point(reader: _Reader, expected_curve: str) -> int:
    curve_name = reader.text("curve name")
    if curve_name != expected_curve:
        raise InvalidKey(f"the key data names curve {curve_name!r}, but the key type says {expected_curve}")
    curve, bits = _CURVES[curve_name]
    point = reader.string("curve point")
    size = (bits + 7) // 8
    if len(point) != 1 + 2 * size or point[0] != 0x04:
        raise InvalidKey(f"the key data does not hold an uncompressed point on {curve_name}")
    try:
        key = ec.EllipticCurvePublicKey.from_encoded_point(curve, point)
    except ValueError:
        raise InvalidKey(f"the key data does not hold a valid point on {curve_name}") from None
    numbers = key.public_numbers()
    # OpenSSH refuses points with a coordinate of half the group order's size or less.
    if min(numbers.x.bit_length(), numbers.y.bit_length()) <= bits // 2:
        raise InvalidKey(f"the key data holds a weak point on {curve_name}")
    return bits


def _ecdsa(curve_name: str) -> Callable[[_Reader, int], int]:
    def parse(reader: _Reader, _min_rsa_bits: int) -> int:
        return _ecdsa_point(reader, curve_name)

    return parse


def _sk_ed25519(reader: _Reader, min_rsa_bits: int) -> int:
    bits = _ed25519(reader, min_rsa_bits)
    reader.text("security key application")
    return bits


def _sk_ecdsa(reader: _Reader, _min_rsa_bits: int) -> int:
    bits = _ecdsa_point(reader, "nistp256")
    reader.text("security key application")
    return bits


@dataclass(frozen=True)
class KeyType:
    label: str
    parse: Callable[[_Reader, int], int]


KEY_TYPES: dict[str, KeyType] = {
    "ssh-ed25519": KeyType("ED25519", _ed25519),
    "ecdsa-sha2-nistp256": KeyType("ECDSA", _ecdsa("nistp256")),
    "ecdsa-sha2-nistp384": KeyType("ECDSA", _ecdsa("nistp384")),
    "ecdsa-sha2-nistp521": KeyType("ECDSA", _ecdsa("nistp521")),
    "ssh-rsa": KeyType("RSA", _rsa),
    "sk-ssh-ed25519@openssh.com": KeyType("ED25519-SK", _sk_ed25519),
    "sk-ecdsa-sha2-nistp256@openssh.com": KeyType("ECDSA-SK", _sk_ecdsa),
}
ACCEPTED_TYPES_TEXT = ", ".join(KEY_TYPES)


def read_blob(key_type: str, blob: bytes, *, min_rsa_bits: int) -> tuple[bytes, int]:
    """Check that `blob` is a whole, valid key of `key_type`; return its canonical form and its bits."""
    reader = _Reader(blob)
    inner_type = reader.string("key type")
    if inner_type != key_type.encode("ascii"):
        raise InvalidKey(
            f"the line says {key_type!r} but the key data is of type "
            f"{shown(inner_type.decode('ascii', 'replace'))}"
        )
    bits = KEY_TYPES[key_type].parse(reader, min_rsa_bits)
    reader.finish()
    return reader.canonical or blob, bits
