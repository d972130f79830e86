"""keys.parser against real keys from ssh-keygen, hand-built blobs and a hostile corpus.

`ssh-keygen -lf` is the oracle for fingerprints, bits and labels. No database is needed.
"""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from keys.parser import (
    MAX_COMMENT_CHARS,
    MAX_ERRORS,
    MAX_INPUT_BYTES,
    MAX_KEYS,
    MAX_LINE_BYTES,
    InvalidKey,
    LineError,
    PublicKey,
    Reference,
    parse_keys,
    parse_single_key,
)

from . import keygen
from .keygen import Generated

ACCEPTED = {
    "ed25519": ["-t", "ed25519"],
    "ecdsa256": ["-t", "ecdsa", "-b", "256"],
    "ecdsa384": ["-t", "ecdsa", "-b", "384"],
    "ecdsa521": ["-t", "ecdsa", "-b", "521"],
    "rsa2048": ["-t", "rsa", "-b", "2048"],
    "rsa3072": ["-t", "rsa", "-b", "3072"],
    "rsa4096": ["-t", "rsa", "-b", "4096"],
}
REFUSED = {
    "rsa1024": ["-t", "rsa", "-b", "1024"],
    "pem": ["-t", "rsa", "-b", "2048", "-m", "PEM"],
    "ca": ["-t", "ed25519"],
    "certified": ["-t", "ed25519"],
    "other": ["-t", "ed25519"],
}
EXPECTED = {
    "ed25519": (256, "ED25519"), "ecdsa256": (256, "ECDSA"), "ecdsa384": (384, "ECDSA"),
    "ecdsa521": (521, "ECDSA"), "rsa2048": (2048, "RSA"), "rsa3072": (3072, "RSA"), "rsa4096": (4096, "RSA"),
}  # fmt: skip


class Keys(dict[str, Generated]):
    """The session's keys by name, plus lines that are not key pairs."""

    certificate: str
    dsa: str
    rfc4716: str

    @property
    def ed(self) -> str:
        return self["ed25519"].line


def _hand_built_dsa_line() -> str:
    """An ssh-dss line for an ssh-keygen that no longer makes DSA keys (OpenSSH ≥ 9.8)."""
    blob = keygen.string("ssh-dss") + b"".join(keygen.mpint(n) for n in (2**1023 + 1, 2**159 + 7, 2, 3))
    return keygen.line("ssh-dss", blob, "dsa@coprssh.test")


@pytest.fixture(scope="session")
def keys(tmp_path_factory) -> Keys:
    directory = tmp_path_factory.mktemp("parser-keys")
    made = Keys(keygen.generate_all(directory, ACCEPTED | REFUSED | {"dsa": ["-t", "dsa"]}, optional={"dsa"}))
    made.certificate = keygen.certify(made["ca"], made["certified"])
    made.dsa = made.pop("dsa").line if "dsa" in made else _hand_built_dsa_line()
    made.rfc4716 = keygen.rfc4716(made["ed25519"])
    return made


def only_error(result, line_no: int) -> str:
    """The message of the single error of `result`, which must be on `line_no`."""
    assert [e.line_no for e in result.errors] == [line_no], result.errors
    return result.errors[0].message


def ed_line(n: int, comment: str = "") -> str:
    """A valid, distinct Ed25519 line for each n (any 32 bytes are an Ed25519 public key)."""
    return keygen.line("ssh-ed25519", keygen.ed25519_blob(bytes([n]) * 32), comment)


# --- 1. real keys from ssh-keygen ------------------------------------------------------


@pytest.mark.parametrize("name", ACCEPTED)
def test_parse_keys_accepts_ssh_keygen_key_with_its_fingerprint_bits_and_label(keys, name):
    generated = keys[name]

    result = parse_keys(generated.line)

    assert result.ok, result.errors
    assert result.key_lines == [1]
    (key,) = result.keys
    assert key.fingerprint == generated.listing.fingerprint
    assert (key.bits, key.label) == (generated.listing.bits, generated.listing.label) == EXPECTED[name]
    assert key.comment == generated.listing.comment == f"{name}@coprssh.test"
    assert str(key) == f"{key.bits} {generated.listing.fingerprint} ({generated.listing.label})"


@pytest.mark.parametrize("name", ACCEPTED)
def test_parse_single_key_accepts_ssh_keygen_pub_file_with_final_newline(keys, name):
    generated = keys[name]

    key = parse_single_key(generated.public_path.read_text())

    assert key.key_type == generated.key_type
    assert key.blob == generated.blob
    assert (key.bits, key.fingerprint, key.label) == (
        generated.listing.bits,
        generated.listing.fingerprint,
        generated.listing.label,
    )


@pytest.mark.parametrize("name", ACCEPTED)
def test_canonical_line_reparses_and_ssh_keygen_agrees(keys, name, tmp_path):
    generated = keys[name]
    key = parse_single_key(generated.line)

    assert key.line == f"{generated.key_type} {base64.b64encode(generated.blob).decode()} {key.comment}"
    assert key.line == generated.line
    assert parse_single_key(key.line) == key
    listing = keygen.list_key_line(key.line, tmp_path)
    assert listing is not None
    assert listing.fingerprint == key.fingerprint
    assert listing.bits == key.bits


# --- 2. security keys, built by hand -----------------------------------------------------


@pytest.mark.parametrize(
    ("build", "key_type", "label"),
    [
        (keygen.sk_ed25519_blob, "sk-ssh-ed25519@openssh.com", "ED25519-SK"),
        (keygen.sk_ecdsa_blob, "sk-ecdsa-sha2-nistp256@openssh.com", "ECDSA-SK"),
    ],
    ids=["sk-ed25519", "sk-ecdsa"],
)
def test_security_key_fingerprint_matches_ssh_keygen(build, key_type, label, tmp_path):
    text = keygen.line(key_type, build(), "yubikey")

    key = parse_single_key(text)

    listing = keygen.list_key_line(text, tmp_path)
    assert listing is not None
    assert (key.fingerprint, key.bits, key.label) == (listing.fingerprint, 256, label)
    assert listing.label == label
    assert key.line == text
    assert keygen.list_key_line(key.line, tmp_path, "canonical.pub") == listing


@pytest.mark.parametrize(
    ("blob", "fragment"),
    [
        pytest.param(
            keygen.string("sk-ssh-ed25519@openssh.com") + keygen.string(bytes(32)),
            "no room for the security key application",
            id="sk-ed25519-without-application",
        ),
        pytest.param(
            keygen.string("sk-ssh-ed25519@openssh.com")
            + keygen.string(bytes(32))
            + keygen.string(b"ssh:\xff"),
            "security key application that is empty or not printable ASCII",
            id="sk-ed25519-binary-application",
        ),
        pytest.param(
            keygen.string("sk-ecdsa-sha2-nistp256@openssh.com")
            + keygen.string("nistp256")
            + keygen.string(b"\x04" + bytes(64))
            + keygen.string("ssh:"),
            "does not hold a valid point on nistp256",
            id="sk-ecdsa-point-off-curve",
        ),
        pytest.param(
            keygen.string("sk-ecdsa-sha2-nistp256@openssh.com")
            + keygen.string("nistp384")
            + keygen.string(keygen.ec_point(ec.SECP384R1()))
            + keygen.string("ssh:"),
            "names curve 'nistp384', but the key type says nistp256",
            id="sk-ecdsa-on-nistp384",
        ),
    ],
)
def test_parse_keys_refuses_malformed_security_key(blob, fragment):
    key_type = keygen.fields(blob)[0].decode()

    result = parse_keys(keygen.line(key_type, blob))

    assert fragment in only_error(result, 1)
    assert result.keys == []


# --- 3. the hostile corpus: each line refused, on its own line, for the right reason ---

Build = Callable[[Keys], str]


def _blob_line(key_type: str, blob: bytes) -> Build:
    return lambda k: keygen.line(key_type, blob, "c")


def _data_replaced(name: str, change: Callable[[str], str]) -> Build:
    """The key `name` with its base64 passed through `change`."""

    def build(k: Keys) -> str:
        key_type, data, comment = k[name].line.split(" ", 2)
        return f"{key_type} {change(data)} {comment}"

    return build


def _flip_padding_bit(data: str) -> str:
    """Same bytes once decoded, but a non-zero bit where the padding must be zero."""
    assert data.endswith("=")
    assert not data.endswith("==")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = data[-2]
    assert alphabet.index(last) & 3 == 0
    changed = data[:-2] + alphabet[alphabet.index(last) + 1] + "="
    assert base64.b64decode(changed) == base64.b64decode(data)
    return changed


def _off_curve(point: bytes) -> bytes:
    return point[:-1] + bytes([point[-1] ^ 1])


def hostile(case_id: str, build: Build, fragment: str, single: str | None = None):
    """A corpus line: `fragment` is in its error from parse_keys, `single` (default the same)
    in the InvalidKey of parse_single_key."""
    return pytest.param(build, fragment, single or fragment, id=case_id)


OPTIONS = "options in front of the key"
BAD_BASE64 = "not valid base64"
_P256 = keygen.ec_point(ec.SECP256R1())
_RSA_MODULUS = (1 << 2047) | 0xC0FFEE1  # odd, 2048 bits


def _ed_parts(k: Keys) -> str:
    """`ssh-ed25519 BASE64` of the session's Ed25519 key, without its comment."""
    return " ".join(k.ed.split()[:2])


HOSTILE = [
    # options that authorized_keys would obey
    hostile("command", lambda k: f'command="/bin/sh" {k.ed}', OPTIONS),
    hostile("no-pty", lambda k: f"no-pty {k.ed}", OPTIONS),
    hostile("restrict-command", lambda k: f'restrict,command="x" {k.ed}', OPTIONS),
    hostile("environment", lambda k: f'environment="A=B" {k.ed}', OPTIONS),
    hostile("from", lambda k: f'from="*" {k.ed}', OPTIONS),
    hostile("quoted-space", lambda k: f'command="echo hi" {k.ed}', OPTIONS),
    hostile("option-list", lambda k: f"no-pty,no-user-rc {k.ed}", OPTIONS),
    hostile("option-tab", lambda k: f"no-pty\t{k.ed}", OPTIONS),
    # a second key riding in the comment
    hostile(
        "key-in-comment", lambda k: f"{_ed_parts(k)} me {k['other'].line}", "the comment holds another key"
    ),
    hostile(
        "cert-in-comment", lambda k: f"{_ed_parts(k)} me {k.certificate}", "the comment holds another key"
    ),
    hostile("dss-in-comment", lambda k: f"{_ed_parts(k)} me {k.dsa}", "the comment holds another key"),
    # characters that break or disguise a line
    hostile("nul", lambda k: f"{k.ed}\x00", "U+0000"),
    hostile(
        "lone-cr",
        lambda k: f'{k.ed}\rcommand="/bin/sh" {k["other"].line}',
        "U+000D",
        "this text holds more than one line",
    ),
    hostile("esc", lambda k: f"{k.ed} \x1b[31mred", "U+001B"),
    hostile("del", lambda k: f"{k.ed} del\x7f", "U+007F"),
    hostile("line-separator", lambda k: f"{k.ed}\u2028{k['other'].line}", "U+2028 (LINE SEPARATOR)"),
    hostile("paragraph-separator", lambda k: f"{k.ed}\u2029x", "U+2029 (PARAGRAPH SEPARATOR)"),
    hostile("nel", lambda k: f"{k.ed}\u0085{k['other'].line}", "U+0085"),
    hostile("bidi-override", lambda k: f"{k.ed} \u202egnp.exe", "U+202E (RIGHT-TO-LEFT OVERRIDE)"),
    hostile("zero-width-space", lambda k: f"{k.ed} ali\u200bce", "U+200B (ZERO WIDTH SPACE)"),
    hostile("byte-order-mark", lambda k: f"\ufeff{k.ed}", "U+FEFF"),
    hostile("vertical-tab", lambda k: f"{k.ed} \x0bvt", "U+000B"),
    hostile("private-use", lambda k: f"{k.ed} \ue000", "U+E000"),
    # types and sizes that are not accepted
    hostile("dsa", lambda k: k.dsa, "DSA keys (ssh-dss) are not accepted"),
    hostile("rsa-1024", lambda k: k["rsa1024"].line, "at least 2048 bits; this one has 1024"),
    hostile("certificate", lambda k: k.certificate, "certificates are not accepted"),
    hostile("ssh1", lambda k: "2048 65537 " + "1" * 600 + " old", "SSH protocol 1 keys are not accepted"),
    hostile("unknown-type", lambda k: "ssh-foo AAAAB3Nz me", "unknown key type 'ssh-foo'"),
    hostile(
        "upper-case-type",
        lambda k: "SSH-ED25519 " + k.ed.split(" ", 1)[1],
        "key types are case-sensitive: write 'ssh-ed25519'",
    ),
    hostile("no-data", lambda k: "ssh-ed25519", "the key data is missing after 'ssh-ed25519'"),
    hostile(
        "blanks-after-type", lambda k: "ssh-ed25519   \t ", "the key data is missing after 'ssh-ed25519'"
    ),
    # look-alikes
    hostile("cyrillic-e", lambda k: k.ed.replace("ssh-ed", "ssh-\u0435d", 1), "non-ASCII characters"),
    hostile("cyrillic-dze", lambda k: k.ed.replace("ssh", "\u0455sh", 1), "non-ASCII characters"),
    hostile(
        "fullwidth-letters",
        lambda k: k.ed.replace("ssh-ed25519", "\uff53\uff53\uff48-ed25519", 1),
        "non-ASCII characters",
    ),
    hostile(
        "fullwidth-digits", lambda k: k.ed.replace("25519", "\uff12\uff15\uff15\uff11\uff19", 1), "non-ASCII"
    ),
    hostile("ideographic-space", lambda k: k.ed.replace(" ", "\u3000", 1), "non-ASCII characters"),
    hostile(
        "cyrillic-in-base64",
        _data_replaced("ed25519", lambda d: d[:20] + "\u0410" + d[21:]),
        "the key data contains non-ASCII characters",
    ),
    # base64
    hostile("base64-cut-by-one", _data_replaced("ed25519", lambda d: d[:-1]), BAD_BASE64),
    hostile("base64-cut-by-four", _data_replaced("ed25519", lambda d: d[:-4]), "the key data is truncated"),
    hostile("padding-removed", _data_replaced("ecdsa256", lambda d: d.rstrip("=")), BAD_BASE64),
    hostile("padding-added", _data_replaced("ecdsa256", lambda d: d + "="), BAD_BASE64),
    hostile("padding-on-unpadded", _data_replaced("ed25519", lambda d: d + "=="), BAD_BASE64),
    hostile("urlsafe-char", _data_replaced("ed25519", lambda d: d[:8] + "_" + d[9:]), BAD_BASE64),
    hostile("bang", _data_replaced("ed25519", lambda d: d[:8] + "!" + d[9:]), BAD_BASE64),
    hostile("inner-equals", _data_replaced("ed25519", lambda d: d[:8] + "=" + d[9:]), BAD_BASE64),
    hostile("padding-bits", _data_replaced("ecdsa256", _flip_padding_bit), "not canonical base64"),
    # the blob
    hostile(
        "one-trailing-byte",
        lambda k: keygen.line("ssh-ed25519", k["ed25519"].blob + b"\0", "c"),
        "the key data has 1 unexpected bytes at the end",
    ),
    hostile(
        "trailing-string",
        lambda k: keygen.line("ssh-rsa", k["rsa2048"].blob + keygen.string("ssh-ed25519"), "c"),
        "the key data has 15 unexpected bytes at the end",
    ),
    hostile(
        "type-blob-mismatch",
        lambda k: keygen.line("ssh-ed25519", k["rsa2048"].blob, "c"),
        "the line says 'ssh-ed25519' but the key data is of type 'ssh-rsa'",
    ),
    hostile(
        "ecdsa-size-mismatch",
        lambda k: keygen.line("ecdsa-sha2-nistp384", k["ecdsa256"].blob, "c"),
        "the line says 'ecdsa-sha2-nistp384' but the key data is of type 'ecdsa-sha2-nistp256'",
    ),
    hostile(
        "point-off-curve",
        _blob_line("ecdsa-sha2-nistp256", keygen.ecdsa_blob("nistp256", _off_curve(_P256))),
        "the key data does not hold a valid point on nistp256",
    ),
    hostile(
        "point-at-infinity",
        _blob_line("ecdsa-sha2-nistp256", keygen.ecdsa_blob("nistp256", b"\x00")),
        "the key data does not hold an uncompressed point on nistp256",
    ),
    hostile(
        "nistp256-label-nistp384-curve",
        _blob_line(
            "ecdsa-sha2-nistp256",
            keygen.ecdsa_blob("nistp384", keygen.ec_point(ec.SECP384R1()), "ecdsa-sha2-nistp256"),
        ),
        "the key data names curve 'nistp384', but the key type says nistp256",
    ),
    hostile(
        "ed25519-31-bytes",
        _blob_line("ssh-ed25519", keygen.ed25519_blob(bytes(31))),
        "the Ed25519 public key is not 32 bytes long",
    ),
    hostile(
        "rsa-even-exponent",
        _blob_line("ssh-rsa", keygen.rsa_blob(65536, _RSA_MODULUS)),
        "the RSA public exponent is not valid",
    ),
    hostile(
        "rsa-exponent-1",
        _blob_line("ssh-rsa", keygen.rsa_blob(1, _RSA_MODULUS)),
        "the RSA public exponent is not valid",
    ),
    hostile(
        "rsa-even-modulus",
        _blob_line("ssh-rsa", keygen.rsa_blob(65537, _RSA_MODULUS + 1)),
        "the RSA modulus is not valid",
    ),
    hostile(
        "rsa-negative-modulus",
        _blob_line(
            "ssh-rsa",
            keygen.string("ssh-rsa") + keygen.mpint(65537) + keygen.string(_RSA_MODULUS.to_bytes(256, "big")),
        ),
        "the key data holds a negative RSA modulus",
    ),
    hostile(
        "rsa-too-large",
        _blob_line("ssh-rsa", keygen.rsa_blob(65537, (1 << 16400) | 1)),
        "RSA keys may have at most 16384 bits; this one has 16401",
    ),
    # size
    hostile(
        "20kb-line",
        lambda k: f"{k.ed} {'x' * 20_000}",
        f"bytes long; a key line may have at most {MAX_LINE_BYTES}",
    ),
]


@pytest.mark.parametrize(("build", "fragment", "_single"), HOSTILE)
def test_parse_keys_refuses_hostile_line_and_keeps_its_neighbours(keys, build, fragment, _single):
    text = f"{keys['rsa2048'].line}\n{build(keys)}\n{keys['ecdsa256'].line}\n"

    result = parse_keys(text)

    assert fragment in only_error(result, 2)
    assert result.key_lines == [1, 3]
    assert [k.fingerprint for k in result.keys] == [
        keys["rsa2048"].listing.fingerprint,
        keys["ecdsa256"].listing.fingerprint,
    ]


@pytest.mark.parametrize(("build", "_fragment", "single"), HOSTILE)
def test_parse_single_key_refuses_hostile_line(keys, build, _fragment, single):
    with pytest.raises(InvalidKey) as refused:
        parse_single_key(build(keys))

    assert single in str(refused.value)


def test_parse_single_key_refuses_second_key_after_newline(keys):
    with pytest.raises(InvalidKey, match="enter exactly one key: this text holds more than one line"):
        parse_single_key(f"{keys.ed}\n{keys['other'].line}")


def test_parse_single_key_refuses_crlf_between_two_keys(keys):
    with pytest.raises(InvalidKey, match="more than one line"):
        parse_single_key(f"{keys.ed}\r\n{keys['other'].line}\r\n")


def test_parse_single_key_refuses_empty_text():
    with pytest.raises(InvalidKey, match="enter a public key"):
        parse_single_key(" \r\n\t")


@pytest.mark.parametrize(
    ("cut", "fragment"),
    [
        (2, "no room for the key type"),
        (10, "the key type is cut off"),
        (15, "no room for the Ed25519 public key"),
        (21, "the Ed25519 public key is cut off"),
        (50, "the Ed25519 public key is cut off"),
    ],
)
def test_parse_keys_refuses_ed25519_blob_truncated(keys, cut, fragment):
    blob = keys["ed25519"].blob
    assert len(blob) == 51

    result = parse_keys(keygen.line("ssh-ed25519", blob[:cut], "c"))

    assert f"the key data is truncated ({fragment})" == only_error(result, 1)
    assert result.keys == []


@pytest.mark.parametrize(
    ("cut", "fragment"),
    [
        (13, "no room for the RSA exponent"),
        (16, "the RSA exponent is cut off"),
        (20, "no room for the RSA modulus"),
        (100, "the RSA modulus is cut off"),
        (-1, "the RSA modulus is cut off"),
    ],
)
def test_parse_keys_refuses_rsa_blob_truncated(keys, cut, fragment):
    blob = keys["rsa2048"].blob

    result = parse_keys(keygen.line("ssh-rsa", blob[:cut], "c"))

    assert f"the key data is truncated ({fragment})" == only_error(result, 1)
    assert result.keys == []


def test_parse_keys_refuses_ecdsa_blob_cut_in_the_point(keys):
    blob = keys["ecdsa384"].blob

    result = parse_keys(keygen.line("ecdsa-sha2-nistp384", blob[:-10]))

    assert only_error(result, 1) == "the key data is truncated (the curve point is cut off)"


# --- pasted files that are not public key lines -----------------------------------------


@pytest.mark.parametrize("newline", ["\n", "\r\n"], ids=["lf", "crlf"])
@pytest.mark.parametrize("name", ["ed25519", "pem"], ids=["openssh-private", "pem-private"])
def test_parse_keys_refuses_pasted_private_key_once_without_quoting_it(keys, name, newline):
    private = keys[name].private_text
    body = [line for line in private.splitlines() if line and not line.startswith("-----")]
    assert len(body) > 3
    text = newline.join([keys["other"].line, *private.splitlines(), keys["rsa2048"].line, ""])

    result = parse_keys(text)

    message = only_error(result, 2)
    assert "this is a PRIVATE key" in message
    assert "consider it exposed" in message
    shown = " ".join(str(e) for e in result.errors)
    assert not any(chunk[:16] in shown for chunk in body)
    assert result.key_lines == [1, 2 + len(private.splitlines())]


@pytest.mark.parametrize("name", ["ed25519", "pem"], ids=["openssh-private", "pem-private"])
def test_parse_single_key_refuses_private_key(keys, name):
    with pytest.raises(InvalidKey, match="this is a PRIVATE key") as refused:
        parse_single_key(keys[name].private_text)

    body = keys[name].private_text.splitlines()[1]
    assert body[:16] not in str(refused.value)


def test_parse_keys_refuses_rfc4716_block_once(keys):
    block = keys.rfc4716
    assert block.startswith("---- BEGIN SSH2 PUBLIC KEY ----")
    text = f"{block}{keys['other'].line}\n"

    result = parse_keys(text)

    message = only_error(result, 1)
    assert "not a key in OpenSSH format" in message
    assert "ssh-keygen -i -f FILE" in message
    assert result.key_lines == [len(block.splitlines()) + 1]


# --- limits ----------------------------------------------------------------------------


def test_parse_keys_accepts_exactly_max_keys():
    result = parse_keys("\n".join(ed_line(n) for n in range(MAX_KEYS)))

    assert result.ok
    assert len(result.keys) == MAX_KEYS == 10


def test_parse_keys_refuses_one_key_over_the_limit_naming_it():
    result = parse_keys("\n".join(ed_line(n) for n in range(MAX_KEYS + 1)))

    assert only_error(result, 11) == "11 keys given; at most 10 can be deployed"


def test_parse_keys_applies_the_given_key_limit_and_none_lifts_it():
    text = "\n".join(ed_line(n) for n in range(3))

    assert only_error(parse_keys(text, max_keys=2), 3) == "3 keys given; at most 2 can be deployed"
    assert parse_keys("\n".join(ed_line(n) for n in range(MAX_KEYS + 5)), max_keys=None).ok


def test_parse_keys_limit_counts_distinct_keys_not_duplicates():
    text = "\n".join([ed_line(0), *(ed_line(n) for n in range(MAX_KEYS))])

    result = parse_keys(text)

    assert result.ok
    assert len(result.duplicates) == 1


def test_parse_keys_refuses_input_over_max_bytes_as_a_whole():
    text = ed_line(1) + "\n" + "#" * MAX_INPUT_BYTES

    result = parse_keys(text)

    assert result.errors == [
        LineError(0, f"the text is {len(text)} bytes long; at most {MAX_INPUT_BYTES} bytes are accepted")
    ]
    assert result.keys == []
    assert str(result.errors[0]).startswith("the text is")


def test_parse_keys_counts_input_size_in_utf8_bytes():
    text = ed_line(1) + "\n#" + "é" * (MAX_INPUT_BYTES // 2)

    assert only_error(parse_keys(text), 0).startswith(f"the text is {len(text.encode())} bytes long")


def test_parse_keys_accepts_input_of_exactly_max_bytes():
    head = ed_line(1) + "\n"
    padding = MAX_INPUT_BYTES - len(head)
    text = head + "\n".join(["#" * 1000] * (padding // 1001)) + "\n"
    text += "#" * (MAX_INPUT_BYTES - len(text))
    assert len(text.encode()) == MAX_INPUT_BYTES

    result = parse_keys(text)

    assert result.ok
    assert result.key_lines == [1]


def test_parse_keys_accepts_key_line_of_exactly_max_line_bytes():
    head = ed_line(1) + " "
    text = head + "x" * (MAX_LINE_BYTES - len(head))

    result = parse_keys(text)

    assert result.ok
    assert result.keys[0].comment == "x" * MAX_COMMENT_CHARS
    assert "8193 bytes long" in only_error(parse_keys(text + "x"), 1)


def test_parse_keys_stops_after_max_errors_with_a_final_entry():
    text = "\n".join(f"ssh-foo{n} AAAA" for n in range(MAX_ERRORS + 10))

    result = parse_keys(text)

    assert len(result.errors) == MAX_ERRORS + 1
    assert [e.line_no for e in result.errors] == list(range(1, MAX_ERRORS + 2))
    assert result.errors[-1].message == "too many errors; the rest of the text was not checked"


def test_parse_keys_reports_every_error_below_the_cap():
    text = "\n".join(f"ssh-foo{n} AAAA" for n in range(MAX_ERRORS))

    result = parse_keys(text)

    assert len(result.errors) == MAX_ERRORS
    assert all("unknown key type" in e.message for e in result.errors)


@pytest.mark.parametrize("caller", ["parse_keys", "parse_single_key"])
def test_rsa_3072_refused_when_the_floor_is_raised_to_4096(keys, caller):
    line = keys["rsa3072"].line
    expected = "RSA keys must have at least 4096 bits; this one has 3072"

    if caller == "parse_keys":
        assert parse_keys(line).ok
        assert expected in only_error(parse_keys(line, min_rsa_bits=4096), 1)
    else:
        assert parse_single_key(line).bits == 3072
        with pytest.raises(InvalidKey, match=expected):
            parse_single_key(line, min_rsa_bits=4096)


def test_rsa_floor_is_inclusive(keys):
    assert parse_keys(keys["rsa3072"].line, min_rsa_bits=3072).ok
    assert parse_keys(keys["rsa4096"].line, min_rsa_bits=4096).ok
    assert "at least 3072 bits; this one has 2048" in only_error(
        parse_keys(keys["rsa2048"].line, min_rsa_bits=3072), 1
    )


def test_rsa_floor_leaves_other_key_types_alone(keys):
    text = "\n".join(keys[name].line for name in ("ed25519", "ecdsa256", "ecdsa521"))

    assert len(parse_keys(text, min_rsa_bits=8192).keys) == 3


# --- 4. normal parsing -------------------------------------------------------------------


def test_parse_keys_accepts_crlf_line_endings(keys):
    text = f"{keys.ed}\r\n{keys['rsa2048'].line}\r\n"

    result = parse_keys(text)

    assert result.ok
    assert result.key_lines == [1, 2]
    assert [k.comment for k in result.keys] == ["ed25519@coprssh.test", "rsa2048@coprssh.test"]


def test_parse_keys_skips_blank_lines_and_comment_lines(keys):
    text = f"\n   \n# my keys\n\t# laptop\n{keys.ed}\n\n#{keys['rsa1024'].line}\n{keys['ecdsa256'].line}\n"

    result = parse_keys(text)

    assert result.ok
    assert result.key_lines == [5, 8]


def test_parse_keys_accepts_empty_text():
    result = parse_keys("")

    assert result.ok
    assert (result.keys, result.references, result.duplicates) == ([], [], [])


def test_parse_keys_keeps_a_duplicate_key_once_and_reports_the_first_line(keys):
    key_type, data, _ = keys.ed.split(" ", 2)
    text = f"{keys.ed}\n{keys['rsa2048'].line}\n{key_type} {data} another comment\n"

    result = parse_keys(text)

    assert result.ok
    assert result.key_lines == [1, 2]
    assert result.keys[0].comment == "ed25519@coprssh.test"
    assert result.duplicates == [LineError(3, "the same key as line 1; given once")]


def test_parse_keys_collapses_whitespace_in_comment(keys):
    result = parse_keys(f"{_ed_parts(keys)}   my \t laptop    key   ")

    assert result.keys[0].comment == "my laptop key"
    assert result.keys[0].line == f"{_ed_parts(keys)} my laptop key"


def test_parse_keys_cuts_long_comment(keys):
    key = parse_keys(f"{_ed_parts(keys)} {'c' * 500}").keys[0]

    assert key.comment == "c" * MAX_COMMENT_CHARS
    assert key.line == f"{_ed_parts(keys)} {'c' * MAX_COMMENT_CHARS}"


def test_parse_keys_keeps_printable_non_ascii_comment(keys):
    assert parse_keys(f"{_ed_parts(keys)} José's laptop").keys[0].comment == "José's laptop"


def test_parse_keys_accepts_tabs_and_leading_blanks_and_emits_single_spaces(keys):
    key_type, data = keys.ed.split()[:2]

    result = parse_keys(f" \t{key_type}\t\t{data}\t my  comment \t")

    assert result.ok
    assert result.keys[0].line == f"{key_type} {data} my comment"


def test_tab_inside_comment_separates_words(keys):
    key = parse_single_key(f"{_ed_parts(keys)}\tmy\tlaptop")

    assert key.comment == "my laptop"


def test_parse_keys_accepts_key_without_comment(keys):
    key = parse_keys(_ed_parts(keys)).keys[0]

    assert key.comment == ""
    assert key.line == _ed_parts(keys)


def test_with_comment_cleans_the_new_comment(keys):
    key = parse_single_key(keys.ed).with_comment("  GitHub:alice \t laptop\x1b  ")

    assert key.comment == "GitHub:alice laptop"
    assert key.fingerprint == keys["ed25519"].listing.fingerprint


def test_parse_keys_reads_references_with_provider_lowercased_and_line_numbers(keys):
    text = f"{keys.ed}\nGitHub:alice FAS:bob\tgithub:Carol\n\n  fas:dave_2 \n"

    result = parse_keys(text)

    assert result.ok
    assert result.references == [
        Reference("github", "alice", 2),
        Reference("fas", "bob", 2),
        Reference("github", "Carol", 2),
        Reference("fas", "dave_2", 4),
    ]
    assert [str(r) for r in result.references] == ["GitHub:alice", "FAS:bob", "GitHub:Carol", "FAS:dave_2"]
    assert result.key_lines == [1]


def test_parse_keys_accepts_longest_github_name():
    name = "a" + "-b" * 19
    assert len(name) == 39

    assert parse_keys(f"GitHub:{name}").references == [Reference("github", name, 1)]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("GitHub:../etc", "'../etc' is not a valid GitHub account name"),
        ("GitHub:-bad", "'-bad' is not a valid GitHub account name"),
        ("GitHub:bad-", "'bad-' is not a valid GitHub account name"),
        ("GitHub:bad--name", "'bad--name' is not a valid GitHub account name"),
        ("GitHub:a_b", "'a_b' is not a valid GitHub account name"),
        ("GitHub:" + "a" * 40, f"'{'a' * 40}' is not a valid GitHub account name"),
        ("GitHub:", "'' is not a valid GitHub account name"),
        ("GitHub:\u0430lice", "'\\u0430lice' is not a valid GitHub account name"),
        ("GitHub:alice?tab=keys", "'alice?tab=keys' is not a valid GitHub account name"),
        ("GitHub:alice%2F..", "'alice%2F..' is not a valid GitHub account name"),
        ("FAS:x/y", "'x/y' is not a valid FAS account name"),
        ("FAS:_x", "'_x' is not a valid FAS account name"),
        ("FAS:" + "a" * 33, "is not a valid FAS account name"),
        ("fas:", "'' is not a valid FAS account name"),
    ],
)
def test_parse_keys_refuses_invalid_account_name_showing_it(text, fragment):
    result = parse_keys(f"# references\n{text}")

    assert fragment in only_error(result, 2)
    assert result.references == []


def test_parse_keys_refuses_non_reference_token_on_a_reference_line():
    result = parse_keys("GitHub:a b")

    assert only_error(result, 1) == "'b' is not a reference; write GitHub:USER or FAS:USER"
    assert result.references == [Reference("github", "a", 1)]
    assert not result.ok


def test_parse_keys_refuses_control_character_on_a_reference_line():
    result = parse_keys("GitHub:alice\x1b[2J")

    assert "U+001B" in only_error(result, 1)
    assert result.references == []


def test_parse_keys_refuses_over_long_reference_line():
    result = parse_keys("GitHub:alice " * 1000)

    assert only_error(result, 1) == f"the line is longer than {MAX_LINE_BYTES} bytes"
    assert result.references == []


def test_parse_keys_refuses_references_when_not_allowed(keys):
    result = parse_keys(f"{keys.ed}\nGitHub:alice FAS:bob\n", allow_references=False)

    assert only_error(result, 2) == "account references are not accepted here"
    assert result.references == []
    assert result.key_lines == [1]


def test_parse_keys_keeps_the_same_reference_once():
    result = parse_keys("GitHub:alice FAS:alice\ngithub:ALICE GitHub:alice\n")

    assert result.ok
    assert result.references == [Reference("github", "alice", 1), Reference("fas", "alice", 1)]


# --- regressions: lines OpenSSH treats differently, leaks, comment edge cases ------------

# Lines OpenSSH refuses, or fingerprints differently, although the parser takes them as they are.
_ZERO_PADDED_RSA = "zero-padded-rsa"
_OPENSSH_REFUSES = {
    "compressed-point": lambda: keygen.ecdsa_blob("nistp256", keygen.compress(_P256)),
    "small-x-point": lambda: keygen.ecdsa_blob("nistp256", keygen.p256_point_with_small_x()),
    "sk-application-with-nul": lambda: keygen.sk_ed25519_blob(b"ssh:\0evil"),
}


def _zero_padded(blob: bytes) -> bytes:
    """The same RSA key with a superfluous 0 byte in front of the modulus."""
    key_type, exponent, modulus = keygen.fields(blob)
    return keygen.string(key_type) + keygen.string(exponent) + keygen.string(b"\0" + modulus)


@pytest.mark.parametrize("case", _OPENSSH_REFUSES)
def test_ssh_keygen_refuses_lines_the_parser_takes(case, tmp_path):
    blob = _OPENSSH_REFUSES[case]()
    key_type = keygen.fields(blob)[0].decode()

    assert keygen.list_key_line(keygen.line(key_type, blob), tmp_path) is None


def test_ssh_keygen_fingerprints_zero_padded_rsa_as_the_plain_key(keys, tmp_path):
    line = keygen.line("ssh-rsa", _zero_padded(keys["rsa2048"].blob))

    listing = keygen.list_key_line(line, tmp_path)

    assert listing is not None
    assert listing.fingerprint == keys["rsa2048"].listing.fingerprint


def test_zero_padded_rsa_key_is_refused_or_fingerprinted_as_ssh_keygen_does(keys):
    line = keygen.line("ssh-rsa", _zero_padded(keys["rsa2048"].blob))

    try:
        key = parse_single_key(line)
    except InvalidKey:
        return
    assert key.fingerprint == keys["rsa2048"].listing.fingerprint


def test_parse_keys_sees_zero_padded_rsa_key_as_duplicate(keys):
    padded = keygen.line("ssh-rsa", _zero_padded(keys["rsa2048"].blob))

    result = parse_keys(f"{keys['rsa2048'].line}\n{padded}\n")

    assert len(result.keys) == 1


@pytest.mark.parametrize("case", _OPENSSH_REFUSES)
def test_parse_single_key_refuses_what_openssh_refuses(case):
    blob = _OPENSSH_REFUSES[case]()

    with pytest.raises(InvalidKey):
        parse_single_key(keygen.line(keygen.fields(blob)[0].decode(), blob))


def test_parse_keys_caps_errors_from_a_single_reference_line():
    result = parse_keys(" ".join(f"GitHub:-x{n}" for n in range(100)))

    assert len(result.errors) <= MAX_ERRORS + 1


def test_parse_keys_never_quotes_a_putty_private_key():
    text, private_b64 = keygen.putty_private_key()

    result = parse_keys(text)

    assert not result.ok
    assert private_b64[:16] not in " ".join(str(e) for e in result.errors)


def test_cut_comment_has_no_trailing_space_and_round_trips(keys):
    key = parse_single_key(f"{_ed_parts(keys)} {'a' * (MAX_COMMENT_CHARS - 1)} bcd")

    assert key.comment == key.comment.strip()
    assert parse_single_key(key.line) == key


def test_public_key_equality_covers_comment_and_blob(keys):
    key = parse_single_key(keys.ed)

    assert key == PublicKey("ssh-ed25519", keys["ed25519"].blob, 256, "ed25519@coprssh.test")
    assert key != key.with_comment("other")


def test_private_key_body_without_its_begin_line_is_never_quoted(keys):
    # Someone pastes from the middle of a private key file: the body lines must not be
    # echoed back into pages or logs.
    body = keys["ed25519"].private_path.read_text().splitlines()[1:-1]

    result = parse_keys("\n".join(body))

    assert not result.ok
    shown = " ".join(str(error) for error in result.errors)
    for line in body:
        assert line[:12] not in shown
    assert "looks like key material" in shown
