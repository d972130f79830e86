"""builds.sources: what a build may be made from, checked before anything is stored or leased."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile, TemporaryUploadedFile

from builds import sources
from builds.sources import (
    Source,
    SourceError,
    check_scm,
    check_upload,
    check_url,
    safe_filename,
    store_upload,
)

PUBLIC_V4 = "93.184.216.34"
PUBLIC_V6 = "2606:2800:220:1:248:1893:25c8:1946"
ELF = b"\x7fELF\x02\x01\x01\x00" + bytes(8) + b"\x02\x00\x3e\x00" + bytes(48)
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00"
SPEC = b"Name: hello\nVersion: 1\nRelease: 1\nSummary: hi\nLicense: MIT\n\n%description\nhi\n"


class FakeResolver:
    """Stands in for DNS: known names map to addresses, any other name does not resolve."""

    def __init__(self) -> None:
        self.names: dict[str, list[str]] = {"localhost": ["127.0.0.1", "::1"]}
        self.asked: list[str] = []

    def getaddrinfo(self, host: str, port: int, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        self.asked.append(host)
        if host not in self.names:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port, 0, 0))
            if ":" in address
            else (socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))
            for address in self.names[host]
        ]


@pytest.fixture(autouse=True)
def resolver(monkeypatch) -> FakeResolver:
    """No test here makes a real DNS query."""
    fake = FakeResolver()
    monkeypatch.setattr(socket, "getaddrinfo", fake.getaddrinfo)
    return fake


def refused(call: Callable[..., Any], *args: Any, **kwargs: Any) -> SourceError:
    with pytest.raises(SourceError) as caught:
        call(*args, **kwargs)
    return caught.value


def upload(name: str, content: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content, content_type="application/octet-stream")


def rpm_lead(*, major: int = 3, kind: int = 1) -> bytes:
    """A 96-byte RPM lead followed by the signature header magic."""
    lead = b"\xed\xab\xee\xdb" + bytes([major, 0]) + kind.to_bytes(2, "big")
    return lead.ljust(96, b"\x00") + b"\x8e\xad\xe8\x01" + bytes(12)


# Uploads: names


def test_check_upload_accepts_the_real_demo_spec(demo_spec):
    source = check_upload(upload(demo_spec.name, demo_spec.read_bytes()))

    assert source == Source(type="upload", filename="hello-coprssh.spec")


def test_check_upload_accepts_a_real_source_rpm(demo_srpm):
    source = check_upload(upload(demo_srpm.name, demo_srpm.read_bytes()))

    assert source == Source(type="upload", filename=demo_srpm.name)
    assert source.filename.startswith("hello-coprssh-1.0-1")


def test_check_upload_leaves_the_file_readable_from_the_start(demo_srpm):
    file = upload(demo_srpm.name, demo_srpm.read_bytes())

    check_upload(file)

    assert file.read() == demo_srpm.read_bytes()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("../x.spec", "without a directory"),
        ("/etc/x.spec", "without a directory"),
        ("..\\x.spec", "without a directory"),
        ("x/y.spec", "without a directory"),
        ("..", "without a directory"),
        (".x.spec", "must not start with a dot or a dash"),
        ("-x.spec", "must not start with a dot or a dash"),
        ("--rcfile=x.spec", "must not start with a dot or a dash"),
        ("x\x00.spec", "control characters"),
        ("x\n.spec", "control characters"),
        ("x\x1b[31m.spec", "control characters"),
        ("caf\u00e9.spec", "must be ASCII"),
        ("x\u2215y.spec", "must be ASCII"),
        ("a" * 196 + ".spec", "longer than 200"),
        ("x y.spec", "only letters, digits"),
        ("x;rm.spec", "only letters, digits"),
        ("x.txt", "must end in .spec or .src.rpm"),
        ("x.spec.sh", "must end in .spec or .src.rpm"),
        ("x.noarch.rpm", "must end in .spec or .src.rpm"),
        ("spec", "must end in .spec or .src.rpm"),
        ("", "no name"),
    ],
)
def test_safe_filename_refuses_hostile_names(name, message):
    error = refused(safe_filename, name, field="source_file")

    assert error.field == "source_file"
    assert message in error.message


def test_safe_filename_accepts_the_names_of_real_packages():
    names = ["hello.spec", "python3-foo_bar.spec", "gcc-c++-14.1.1-1.fc41.src.rpm", "x-1.0~rc1^git2.src.rpm"]

    assert [safe_filename(name, field="source_file") for name in names] == names


def test_safe_filename_accepts_exactly_200_characters():
    name = "a" * 195 + ".spec"

    assert safe_filename(name, field="source_file") == name


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("..\\x.spec", "without a directory"),
        (".x.spec", "must not start with a dot"),
        ("-x.spec", "must not start with a dot"),
        ("caf\u00e9.spec", "must be ASCII"),
        ("x.tar.gz", "must end in .spec or .src.rpm"),
    ],
)
def test_check_upload_refuses_hostile_names(name, message):
    error = refused(check_upload, upload(name, SPEC))

    assert error.field == "source_file"
    assert message in error.message


def test_check_upload_keeps_only_the_base_name_django_gives_it():
    # Django's UploadedFile already drops directories from the client's name; the
    # stored name is that base name, checked again here.
    source = check_upload(upload("../../etc/hello.spec", SPEC))

    assert source.filename == "hello.spec"


# Uploads: content


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (ELF, "binary file, not a spec file"),
        (PNG, "binary file, not a spec file"),
        (b"Name: latin-1 caf\xe9\n", "not UTF-8 text"),
        (b"Summary: no name here\nVersion: 1\n", "no Name: tag"),
        (b"# Name: only in a comment\n", "no Name: tag"),
        (b"Summary: Name: in the middle\n", "no Name: tag"),
        (b"Name:\n", "no Name: tag"),
        (b"", "is empty"),
    ],
    ids=["elf", "png", "latin-1", "no-name", "comment", "middle", "empty-name", "empty"],
)
def test_check_upload_refuses_a_spec_that_is_not_a_spec(content, message):
    error = refused(check_upload, upload("hello.spec", content))

    assert error.field == "source_file"
    assert message in error.message


@pytest.mark.parametrize("line", [b"name: hello", b"NAME:hello", b"  Name:\thello", b"\tName : hello"])
def test_check_upload_finds_the_name_tag_in_any_case_and_indentation(line):
    content = b"%global x 1\n" + line + b"\nVersion: 1\n"

    assert check_upload(upload("hello.spec", content)).filename == "hello.spec"


def test_check_upload_finds_the_name_tag_after_a_byte_order_mark():
    content = b"\xef\xbb\xbfName: hello\nVersion: 1\n"

    assert check_upload(upload("hello.spec", content)).filename == "hello.spec"


def test_check_upload_refuses_a_source_rpm_renamed_spec(demo_srpm):
    error = refused(check_upload, upload("hello.spec", demo_srpm.read_bytes()))

    assert error.field == "source_file"
    assert "is an RPM package, not a spec file" in error.message


def test_check_upload_refuses_a_real_binary_rpm_named_src_rpm(demo_binary_rpm):
    error = refused(check_upload, upload("hello-coprssh-1.0-1.src.rpm", demo_binary_rpm.read_bytes()))

    assert error.field == "source_file"
    assert "a binary RPM, not a source RPM" in error.message


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (SPEC, "not an RPM package"),
        (ELF, "not an RPM package"),
        (PNG, "not an RPM package"),
        (rpm_lead(kind=0), "a binary RPM, not a source RPM"),
        (rpm_lead(kind=7), "not a source RPM (package type 7)"),
        (rpm_lead(major=5), "not a valid RPM package"),
        (rpm_lead(major=2), "not a valid RPM package"),
        (b"\xed\xab\xee\xdb\x03\x00\x00\x01", "not a valid RPM package"),
        (rpm_lead()[:96] + b"not a header", "not a valid RPM package"),
        (b"", "is empty"),
    ],
    ids=["spec", "elf", "png", "binary", "type-7", "major-5", "major-2", "short", "no-header", "empty"],
)
def test_check_upload_refuses_a_source_rpm_that_is_not_one(content, message):
    error = refused(check_upload, upload("hello-1-1.src.rpm", content))

    assert error.field == "source_file"
    assert message in error.message


def test_check_upload_accepts_a_version_4_lead():
    assert check_upload(upload("x-1-1.src.rpm", rpm_lead(major=4))).filename == "x-1-1.src.rpm"


# Uploads: size


def test_check_upload_refuses_a_spec_over_the_limit(settings):
    settings.COPRSSH_MAX_SPEC_BYTES = 100
    content = SPEC.ljust(101, b"#")

    error = refused(check_upload, upload("hello.spec", content))

    assert error.field == "source_file"
    assert "larger than 100 bytes" in error.message
    assert check_upload(upload("hello.spec", content[:100])).filename == "hello.spec"


def test_check_upload_refuses_a_source_rpm_over_its_own_limit(settings, demo_srpm):
    content = demo_srpm.read_bytes()
    settings.COPRSSH_MAX_SPEC_BYTES = 10
    settings.COPRSSH_MAX_SRPM_BYTES = len(content)
    assert check_upload(upload(demo_srpm.name, content)).filename == demo_srpm.name

    settings.COPRSSH_MAX_SRPM_BYTES = len(content) - 1
    error = refused(check_upload, upload(demo_srpm.name, content))

    assert error.field == "source_file"
    assert f"larger than {len(content) - 1} bytes" in error.message


def test_upload_limits_default_to_1_mib_and_512_mib(settings):
    for name in ("COPRSSH_MAX_SPEC_BYTES", "COPRSSH_MAX_SRPM_BYTES", "COPRSSH_ALLOW_LOCAL_SOURCES"):
        if hasattr(settings, name):
            delattr(settings, name)

    assert sources.max_spec_bytes() == 1024 * 1024
    assert sources.max_srpm_bytes() == 512 * 1024 * 1024
    assert sources.allow_local_sources() is False
    error = refused(check_upload, upload("hello.spec", SPEC.ljust(1024 * 1024 + 1, b"#")))
    assert "larger than 1 MiB" in error.message


# Storing uploads


def test_store_upload_writes_the_exact_bytes_under_the_safe_name(tmp_path, demo_srpm):
    content = demo_srpm.read_bytes()

    stored = store_upload(upload(demo_srpm.name, content), directory=tmp_path)

    assert stored == tmp_path / demo_srpm.name
    assert stored.read_bytes() == content
    assert stored.stat().st_mode & 0o777 == 0o644
    assert os.listdir(tmp_path) == [demo_srpm.name]


def test_store_upload_replaces_a_file_of_the_same_name(tmp_path):
    (tmp_path / "hello.spec").write_bytes(b"old")

    stored = store_upload(upload("hello.spec", SPEC), directory=tmp_path)

    assert stored.read_bytes() == SPEC
    assert os.listdir(tmp_path) == ["hello.spec"]


def test_store_upload_refuses_an_unsafe_name_and_writes_nothing(tmp_path):
    directory = tmp_path / "build-1"
    directory.mkdir()

    error = refused(store_upload, upload("..\\hello.spec", SPEC), directory=directory)

    assert error.field == "source_file"
    assert os.listdir(directory) == []
    assert os.listdir(tmp_path) == ["build-1"]


class BrokenUpload(SimpleUploadedFile):
    """An upload whose reading fails after the first chunk (a client that went away)."""

    def chunks(self, chunk_size: int | None = None) -> Iterator[bytes]:
        yield self.read(4)
        raise OSError("connection reset")


def test_store_upload_leaves_no_temporary_file_when_reading_fails(tmp_path):
    with pytest.raises(OSError, match="connection reset"):
        store_upload(BrokenUpload("hello.spec", SPEC), directory=tmp_path)

    assert os.listdir(tmp_path) == []


def test_store_upload_leaves_no_temporary_file_when_the_file_is_over_the_limit(settings, tmp_path):
    settings.COPRSSH_MAX_SPEC_BYTES = 10

    error = refused(store_upload, upload("hello.spec", SPEC), directory=tmp_path)

    assert "larger than 10 bytes" in error.message
    assert os.listdir(tmp_path) == []


def test_store_upload_keeps_the_old_file_when_writing_fails(tmp_path):
    (tmp_path / "hello.spec").write_bytes(b"old")

    with pytest.raises(OSError, match="connection reset"):
        store_upload(BrokenUpload("hello.spec", SPEC), directory=tmp_path)

    assert (tmp_path / "hello.spec").read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["hello.spec"]


# Git repositories: URLs


def test_check_scm_accepts_a_public_ip_literal_without_dns(resolver):
    source = check_scm(clone_url=f"https://{PUBLIC_V4}/repo.git", committish="v1.0", spec="hello.spec")

    assert source == Source(
        type="scm", clone_url=f"https://{PUBLIC_V4}/repo.git", committish="v1.0", spec="hello.spec"
    )
    assert resolver.asked == []


def test_check_scm_accepts_a_public_ipv6_literal_without_dns(resolver):
    source = check_scm(clone_url=f"https://[{PUBLIC_V6}]:8443/repo.git", spec="hello.spec")

    assert source.clone_url == f"https://[{PUBLIC_V6}]:8443/repo.git"
    assert resolver.asked == []


def test_check_scm_accepts_a_host_name_that_resolves_to_public_addresses(resolver):
    resolver.names["src.example.org"] = [PUBLIC_V4, PUBLIC_V6]

    source = check_scm(clone_url="https://src.example.org/rpms/hello.git", spec="hello.spec")

    assert source == Source(type="scm", clone_url="https://src.example.org/rpms/hello.git", spec="hello.spec")
    assert resolver.asked == ["src.example.org"]


def test_check_scm_refuses_a_name_that_does_not_resolve(resolver):
    error = refused(check_scm, clone_url="https://nowhere.invalid/x.git", spec="x.spec")

    assert error.field == "clone_url"
    assert "nowhere.invalid does not resolve" in error.message


def test_check_scm_stops_waiting_for_a_resolver_that_hangs(monkeypatch):
    answer = threading.Event()

    def hang(*args: Any, **kwargs: Any) -> list[Any]:
        answer.wait(5)
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", hang)
    monkeypatch.setattr(sources, "RESOLVE_TIMEOUT", 0.05)
    try:
        error = refused(check_scm, clone_url="https://slow.example.org/x.git", spec="x.spec")
    finally:
        answer.set()

    assert error.field == "clone_url"
    assert "did not resolve within 0.05 s" in error.message


HOSTILE_URLS = [
    ("", "Enter the"),
    ("ext::sh -c touch% /tmp/pwned", "spaces or control characters"),
    ("ext::git-remote-evil", "must start with http:// or https://"),
    ("file:///etc/passwd", "must start with http:// or https://"),
    ("ssh://host.example.org/x.git", "must start with http:// or https://"),
    ("git://host.example.org/x.git", "must start with http:// or https://"),
    ("host.example.org:user/x.git", "must start with http:// or https://"),
    ("git@host.example.org:user/x.git", "must start with http:// or https://"),
    ("HTTPS://host.example.org/x.git", "must start with http:// or https://"),
    ("http:/host.example.org/x.git", "must start with http:// or https://"),
    ("--upload-pack=touch%20/tmp/pwned", "must not start with a dash"),
    ("-uhttps://host.example.org/x.git", "must not start with a dash"),
    ("https://host.example.org/x.git --upload-pack=id", "spaces or control characters"),
    ("https://host.example.org/x.git\n", "spaces or control characters"),
    ("https://host.example.org/x\x00.git", "spaces or control characters"),
    ("https://host.example.org/x\t.git", "spaces or control characters"),
    ("https://h\u00f6st.example.org/x.git", "must be ASCII"),
    ("https://user:secret@host.example.org/x.git", "user name or password"),
    ("https://ghp_token@host.example.org/x.git", "user name or password"),
    ("https://host.example.org\\@evil.example.org/", "not allowed in a URL"),
    ('https://host.example.org/"x".git', "not allowed in a URL"),
    ("https://" + "a" * 1000 + ".example.org/", "longer than 1000"),
    ("https:///x.git", "has no host"),
    ("https://host.example.org:0/x.git", "invalid port"),
    ("https://host.example.org:99999/x.git", "invalid port"),
    ("https://host.example.org:ssh/x.git", "invalid port"),
    ("https://[::1/x.git", "not a valid URL"),
    ("https://127.1/x.git", "not a valid host name"),
    ("https://2130706433/x.git", "not a valid host name"),
    ("https://-host.example.org/x.git", "not a valid host name"),
    ("https://host_name.example.org/x.git", "not a valid host name"),
    ("https://%31%32%37.0.0.1/x.git", "not a valid host name"),
]


@pytest.mark.parametrize(("url", "message"), HOSTILE_URLS)
def test_check_scm_refuses_hostile_clone_urls(resolver, url, message):
    resolver.names["host.example.org"] = [PUBLIC_V4]

    error = refused(check_scm, clone_url=url, spec="x.spec")

    assert error.field == "clone_url"
    assert message in error.message


LOCAL_URLS = [
    ("http://127.0.0.1/x.git", "a loopback address (127.0.0.1)"),
    ("http://127.53.0.1:8080/x.git", "a loopback address (127.53.0.1)"),
    ("http://[::1]/x", "a loopback address (::1)"),
    ("http://169.254.169.254/latest", "a link-local address (169.254.169.254)"),
    ("http://[fe80::1]/x", "a link-local address (fe80::1)"),
    ("http://localhost/x.git", "a loopback address (127.0.0.1)"),
    ("http://0.0.0.0/", "the unspecified address (0.0.0.0)"),
    ("http://0.1.2.3/", "the unspecified address (0.1.2.3)"),
    ("http://[::]/", "the unspecified address (::)"),
    ("http://[::ffff:127.0.0.1]/", "a loopback address (127.0.0.1)"),
    ("http://[::ffff:169.254.169.254]/", "a link-local address (169.254.169.254)"),
    ("http://[::127.0.0.1]/", "a reserved address (::7f00:1)"),
    ("http://224.0.0.1/", "a multicast address (224.0.0.1)"),
    ("http://[ff02::1]/", "a multicast address (ff02::1)"),
    ("http://240.0.0.1/", "a reserved address (240.0.0.1)"),
    ("http://255.255.255.255/", "a reserved address (255.255.255.255)"),
    ("http://metadata.example.org/", "a link-local address (169.254.169.254)"),
    ("http://rebind.example.org/x.git", "a loopback address (::1)"),
]


@pytest.fixture
def local_names(resolver) -> FakeResolver:
    resolver.names["metadata.example.org"] = ["169.254.169.254"]
    # One public address is not enough: every address a name resolves to must be public.
    resolver.names["rebind.example.org"] = [PUBLIC_V4, "::1"]
    return resolver


@pytest.mark.parametrize(("url", "message"), LOCAL_URLS)
def test_check_scm_refuses_hosts_that_are_not_public(local_names, url, message):
    error = refused(check_scm, clone_url=url, spec="x.spec")

    assert error.field == "clone_url"
    assert f"is {message}; builds can only fetch from public hosts" in error.message


def test_check_scm_checks_ip_literals_without_dns(resolver):
    refused(check_scm, clone_url="http://127.0.0.1/x.git", spec="x.spec")
    refused(check_scm, clone_url="http://[::ffff:127.0.0.1]/", spec="x.spec")

    assert resolver.asked == []


LOCAL_ONLY = [
    (url, message)
    for url, message in LOCAL_URLS
    if message.startswith(("a loopback", "a link-local", "the unspecified"))
]


@pytest.mark.parametrize(("url", "message"), LOCAL_ONLY)
def test_check_scm_accepts_local_hosts_when_the_setting_allows_them(settings, local_names, url, message):
    settings.COPRSSH_ALLOW_LOCAL_SOURCES = True

    assert check_scm(clone_url=url, spec="x.spec").clone_url == url


# Issue #10: private ranges were let through; each is refused unless an operator allows it.
PRIVATE_URLS = [
    "http://10.0.0.1/x.git",
    "http://10.255.255.254/x.git",
    "http://172.16.0.1/x.git",
    "http://172.31.255.254/x.git",
    "http://192.168.0.1/x.git",
    "http://192.168.255.254/x.git",
    "http://100.64.0.1/x.git",
    "http://100.127.255.254/x.git",
    "http://[fc00::1]/x.git",
    "http://[fd12:3456:789a::1]/x.git",
    "http://[fec0::1]/x.git",
    "http://[::ffff:10.1.2.3]/x.git",
    "http://[::ffff:192.168.1.1]/x.git",
    "http://internal.example.org/x.git",
    "http://mixed.example.org/x.git",
]


@pytest.fixture
def private_names(resolver) -> FakeResolver:
    resolver.names["internal.example.org"] = ["192.168.7.7"]
    # Every address counts: one public address does not make a private one harmless.
    resolver.names["mixed.example.org"] = [PUBLIC_V4, "fd00::7"]
    return resolver


@pytest.mark.parametrize("url", PRIVATE_URLS)
@pytest.mark.parametrize("check", ["scm", "url"])
def test_private_hosts_are_refused(private_names, settings, url, check):
    settings.COPRSSH_ALLOW_LOCAL_SOURCES = True  # local is not private

    if check == "scm":
        error = refused(check_scm, clone_url=url, spec="x.spec")
    else:
        error = refused(check_url, url=url.replace("/x.git", "/x-1-1.src.rpm"))

    assert "is a private address (" in error.message
    assert "builds can only fetch from public hosts (an operator can allow private networks)" in error.message


def test_a_6to4_address_of_a_private_one_is_refused():
    error = refused(check_scm, clone_url="http://[2002:a00:1::]/x.git", spec="x.spec")

    assert "is a 6to4 address of a private address (2002:a00:1::)" in error.message


@pytest.mark.parametrize("url", PRIVATE_URLS)
def test_private_hosts_are_accepted_when_the_operator_allows_them(private_names, settings, url):
    settings.COPRSSH_ALLOW_PRIVATE_SOURCES = True

    assert check_scm(clone_url=url, spec="x.spec").clone_url == url


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://198.18.0.1/", "a benchmarking address (198.18.0.1)"),
        ("http://198.19.255.254/", "a benchmarking address (198.19.255.254)"),
        ("http://192.0.2.1/", "a documentation address (192.0.2.1)"),
        ("http://203.0.113.9/", "a documentation address (203.0.113.9)"),
        ("http://[2001:db8::1]/", "a documentation address (2001:db8::1)"),
        ("http://192.0.0.1/", "not a public address (192.0.0.1)"),
        ("http://[2001::1]/", "not a public address (2001::1)"),
        ("http://[2002:7f00:1::]/", "a 6to4 address of a loopback address (2002:7f00:1::)"),
        ("http://[64:ff9b::7f00:1]/", "a reserved address (64:ff9b::7f00:1)"),
        ("http://239.255.255.250/", "a multicast address (239.255.255.250)"),
        ("http://[ff05::2]/", "a multicast address (ff05::2)"),
        ("http://240.0.0.1/", "a reserved address (240.0.0.1)"),
        ("http://127.0.0.1/", "a loopback address (127.0.0.1)"),
        ("http://169.254.169.254/", "a link-local address (169.254.169.254)"),
        ("http://[fe80::1]/", "a link-local address (fe80::1)"),
        ("http://0.0.0.0/", "the unspecified address (0.0.0.0)"),
        ("http://[::ffff:169.254.169.254]/", "a link-local address (169.254.169.254)"),
    ],
)
def test_other_non_public_ranges_are_refused_even_with_private_sources_allowed(settings, url, message):
    settings.COPRSSH_ALLOW_PRIVATE_SOURCES = True

    error = refused(check_scm, clone_url=url, spec="x.spec")

    assert f"is {message}; builds can only fetch from public hosts" in error.message


@pytest.mark.parametrize(
    "url", ["http://224.0.0.1/", "http://240.0.0.1/", "http://[ff02::1]/", "http://198.18.0.1/"]
)
def test_allowing_local_and_private_sources_still_refuses_multicast_and_reserved(settings, url):
    settings.COPRSSH_ALLOW_LOCAL_SOURCES = True
    settings.COPRSSH_ALLOW_PRIVATE_SOURCES = True

    refused(check_scm, clone_url=url, spec="x.spec")


def test_public_addresses_are_accepted(resolver):
    resolver.names["dual.example.org"] = [PUBLIC_V4, PUBLIC_V6]

    assert check_scm(clone_url="https://dual.example.org/x.git", spec="x.spec").clone_url
    assert check_scm(clone_url=f"https://[{PUBLIC_V6}]/x.git", spec="x.spec").clone_url


def test_allowing_local_hosts_still_refuses_names_that_do_not_resolve(settings):
    settings.COPRSSH_ALLOW_LOCAL_SOURCES = True

    error = refused(check_scm, clone_url="http://nowhere.invalid/x.git", spec="x.spec")

    assert "does not resolve" in error.message


def test_allowing_local_hosts_still_refuses_other_schemes(settings):
    settings.COPRSSH_ALLOW_LOCAL_SOURCES = True

    error = refused(check_scm, clone_url="file:///srv/git/x.git", spec="x.spec")

    assert error.field == "clone_url"


# Git repositories: committish and spec path


@pytest.mark.parametrize(
    "committish", ["main", "v1.0", "release/f40", "0123456789abcdef" * 2, "feature+x", "a" * 200, ""]
)
def test_check_scm_accepts_branches_tags_and_commits(committish):
    source = check_scm(clone_url=f"https://{PUBLIC_V4}/x.git", committish=committish, spec="x.spec")

    assert source.committish == committish


@pytest.mark.parametrize(
    ("committish", "message"),
    [
        ("-b", "must not start with a dash"),
        ("--orphan=x", "must not start with a dash"),
        ("--", "must not start with a dash"),
        ("main..evil", "must not contain '..'"),
        ("HEAD@{1}", "must not contain '..' or '@{'"),
        ("main@{yesterday}", "must not contain '..' or '@{'"),
        ("a b", "only letters, digits"),
        ("a;rm", "only letters, digits"),
        ("HEAD~1", "only letters, digits"),
        ("m\u00e4in", "only letters, digits"),
        ("main\n", "only letters, digits"),
        ("a" * 201, "longer than 200"),
    ],
)
def test_check_scm_refuses_hostile_committishes(committish, message):
    error = refused(check_scm, clone_url=f"https://{PUBLIC_V4}/x.git", committish=committish, spec="x.spec")

    assert error.field == "committish"
    assert message in error.message


@pytest.mark.parametrize("spec", ["hello.spec", "rpm/hello.spec", "a/b-c/d_e+f.spec", "x" * 295 + ".spec"])
def test_check_scm_accepts_relative_spec_paths(spec):
    assert check_scm(clone_url=f"https://{PUBLIC_V4}/x.git", spec=spec).spec == spec


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "Enter the path of the spec file"),
        ("/etc/x.spec", "must be relative"),
        ("-x.spec", "must be relative"),
        ("../x.spec", "must not contain '..'"),
        ("a/../../x.spec", "must not contain '..'"),
        ("a/..", "must not contain '..'"),
        ("a\\..\\x.spec", "only letters, digits"),
        ("a b.spec", "only letters, digits"),
        ("x.spec\n", "only letters, digits"),
        ("caf\u00e9.spec", "only letters, digits"),
        ("x.txt", "must name a .spec file"),
        ("dir/.spec", "must name a .spec file"),
        ("x" * 296 + ".spec", "longer than 300"),
    ],
)
def test_check_scm_refuses_hostile_spec_paths(spec, message):
    error = refused(check_scm, clone_url=f"https://{PUBLIC_V4}/x.git", spec=spec)

    assert error.field == "spec"
    assert message in error.message


# URLs of source RPMs


def test_check_url_accepts_a_public_source_rpm_and_names_the_saved_file(resolver):
    resolver.names["dl.example.org"] = [PUBLIC_V4]
    url = "https://dl.example.org/pkgs/hello-1.0-1.fc41.src.rpm"

    assert check_url(url=url) == Source(type="url", filename="hello-1.0-1.fc41.src.rpm", url=url)


@pytest.mark.parametrize(
    ("url", "filename"),
    [
        (f"https://{PUBLIC_V4}/x/hello-1.0-1.src.rpm?raw=true", "hello-1.0-1.src.rpm"),
        (f"http://{PUBLIC_V4}/gcc-c%2B%2B-14-1.src.rpm#top", "gcc-c++-14-1.src.rpm"),
    ],
)
def test_check_url_saves_the_decoded_base_name_of_the_path(url, filename):
    assert check_url(url=url).filename == filename


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (f"https://{PUBLIC_V4}/x.rpm", "must point to a .src.rpm file"),
        (f"https://{PUBLIC_V4}/x.spec", "must point to a .src.rpm file"),
        (f"https://{PUBLIC_V4}/x.src.rpm/", "must point to a .src.rpm file"),
        (f"https://{PUBLIC_V4}/", "must point to a .src.rpm file"),
        (f"https://{PUBLIC_V4}/download?file=x.src.rpm", "must point to a .src.rpm file"),
        (f"https://{PUBLIC_V4}/a%2F..%2Fx.src.rpm", "without a directory"),
        (f"https://{PUBLIC_V4}/a%5C..%5Cx.src.rpm", "without a directory"),
        (f"https://{PUBLIC_V4}/.hidden.src.rpm", "must not start with a dot"),
        (f"https://{PUBLIC_V4}/-x.src.rpm", "must not start with a dot or a dash"),
        (f"https://{PUBLIC_V4}/%0Ax.src.rpm", "control characters"),
        (f"https://{PUBLIC_V4}/caf%C3%A9.src.rpm", "must be ASCII"),
        (f"https://{PUBLIC_V4}/{'a' * 200}.src.rpm", "longer than 200"),
        (f"https://{PUBLIC_V4}/.src.rpm", "must not start with a dot"),
        ("ftp://ftp.example.org/x.src.rpm", "must start with http:// or https://"),
        ("file:///tmp/x.src.rpm", "must start with http:// or https://"),
        (f"https://user:pass@{PUBLIC_V4}/x.src.rpm", "user name or password"),
        ("http://127.0.0.1/x.src.rpm", "a loopback address"),
        ("http://169.254.169.254/latest/x.src.rpm", "a link-local address"),
        ("http://localhost/x.src.rpm", "a loopback address"),
        ("https://nowhere.invalid/x.src.rpm", "does not resolve"),
    ],
)
def test_check_url_refuses_what_is_not_a_public_source_rpm(url, message):
    error = refused(check_url, url=url)

    assert error.field == "url"
    assert message in error.message


def test_check_url_accepts_a_loopback_url_when_the_setting_allows_it(settings):
    settings.COPRSSH_ALLOW_LOCAL_SOURCES = True

    assert check_url(url="http://localhost:8000/x-1-1.src.rpm").filename == "x-1-1.src.rpm"


def test_source_errors_are_service_errors_with_the_field_in_the_api_answer():
    error = refused(check_url, url="ftp://x/y.src.rpm")

    assert error.as_data() == {"detail": error.message, "code": "invalid", "url": [error.message]}
    assert error.status_code == 400


def test_sources_are_frozen():
    source = Source(type="url", url="https://x/y.src.rpm", filename="y.src.rpm")

    with pytest.raises(AttributeError):
        source.url = "file:///etc/passwd"  # type: ignore[misc]


def test_check_and_store_upload_work_on_an_upload_spooled_to_disk(tmp_path, demo_srpm):
    # Big uploads arrive as temporary files on disk rather than in memory.
    content = demo_srpm.read_bytes()
    file = TemporaryUploadedFile(demo_srpm.name, "application/x-rpm", len(content), None)
    file.write(content)
    file.seek(0)
    try:
        assert check_upload(file).filename == demo_srpm.name
        stored = store_upload(file, directory=tmp_path)
        assert Path(stored).read_bytes() == content
    finally:
        file.close()
