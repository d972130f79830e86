"""A hostile builder's SSH/SFTP server, in-process (paramiko), for what a real sshd cannot be made to do.

Root on a builder controls its SFTP server: it may say a file has 10 bytes and stream megabytes,
swap a file between `lstat` and `open`, or answer one byte at a time. `HostileServer` serves one
virtual file tree whose entries each carry such a behaviour.
"""

from __future__ import annotations

import contextlib
import io
import socket
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import paramiko
from paramiko.sftp import SFTP_NO_SUCH_FILE, SFTP_OK

from builders.providers.base import Machine, generate_host_key


@dataclass
class Entry:
    """One file as the hostile server presents it."""

    data: bytes = b""
    said_size: int | None = None  # what lstat/stat answer; None: the truth
    endless: bool = False  # read() never reaches EOF: the data repeats
    opened_mode: int | None = None  # what fstat says after open (a swap under our feet)
    delay: float = 0.0  # seconds to wait before each read answer


@dataclass
class Tree:
    files: dict[str, Entry] = field(default_factory=dict)
    dirs: set[str] = field(default_factory=set)


def _attrs(name: str, entry: Entry | None, *, directory: bool = False) -> paramiko.SFTPAttributes:
    attrs = paramiko.SFTPAttributes()
    attrs.filename = name
    if directory or entry is None:
        attrs.st_mode = stat.S_IFDIR | 0o755
        attrs.st_size = 4096
    else:
        attrs.st_mode = stat.S_IFREG | 0o644
        attrs.st_size = len(entry.data) if entry.said_size is None else entry.said_size
    attrs.st_uid = attrs.st_gid = 0
    attrs.st_mtime = attrs.st_atime = int(time.time())
    return attrs


class _Handle(paramiko.SFTPHandle):
    def __init__(self, name: str, entry: Entry) -> None:
        super().__init__(0)
        self.name = name
        self.entry = entry

    def read(self, offset: int, length: int) -> bytes | int:
        if self.entry.delay:
            time.sleep(self.entry.delay)
        data = self.entry.data
        if self.entry.endless:
            start = offset % len(data)
            return (data[start:] + data * (length // len(data) + 1))[:length]
        return data[offset : offset + length]

    def stat(self) -> paramiko.SFTPAttributes:
        attrs = _attrs(self.name, self.entry)
        if self.entry.opened_mode is not None:
            attrs.st_mode = self.entry.opened_mode
        return attrs


class _Sftp(paramiko.SFTPServerInterface):
    def __init__(self, server: object, *args: object, tree: Tree, **kwargs: object) -> None:
        super().__init__(server, *args, **kwargs)
        self.tree = tree

    def lstat(self, path: str) -> paramiko.SFTPAttributes | int:
        if path in self.tree.dirs:
            return _attrs(path.rsplit("/", 1)[-1], None, directory=True)
        entry = self.tree.files.get(path)
        if entry is None:
            return SFTP_NO_SUCH_FILE
        return _attrs(path.rsplit("/", 1)[-1], entry)

    stat = lstat

    def list_folder(self, path: str) -> list[paramiko.SFTPAttributes] | int:
        if path not in self.tree.dirs:
            return SFTP_NO_SUCH_FILE
        prefix = path.rstrip("/") + "/"
        return [
            _attrs(name[len(prefix) :], entry)
            for name, entry in self.tree.files.items()
            if name.startswith(prefix) and "/" not in name[len(prefix) :]
        ]

    def open(self, path: str, flags: int, attr: paramiko.SFTPAttributes) -> paramiko.SFTPHandle | int:
        entry = self.tree.files.get(path)
        if entry is None:
            return SFTP_NO_SUCH_FILE
        handle = _Handle(path, entry)
        handle.filename = path
        return handle

    def remove(self, path: str) -> int:
        return SFTP_OK


class _Auth(paramiko.ServerInterface):
    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        return paramiko.AUTH_SUCCESSFUL

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return (
            paramiko.OPEN_SUCCEEDED if kind == "session" else paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED
        )


@contextlib.contextmanager
def hostile_server(tree: Tree) -> Iterator[Machine]:
    """Serve `tree` over SFTP on 127.0.0.1; yields the Machine to connect to (with its pinned host key)."""
    pair = generate_host_key()
    host_key = paramiko.Ed25519Key(file_obj=io.StringIO(pair.private_pem))
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    stop = threading.Event()
    transports: list[paramiko.Transport] = []

    def serve() -> None:
        while not stop.is_set():
            try:
                sock, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            transport = paramiko.Transport(sock)
            transport.add_server_key(host_key)
            transport.set_subsystem_handler("sftp", paramiko.SFTPServer, _Sftp, tree=tree)
            transports.append(transport)
            with contextlib.suppress(Exception):
                transport.start_server(server=_Auth())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield Machine(
            provider_id="hostile",
            name="hostile",
            ipv4="127.0.0.1",
            ipv6=None,
            port=listener.getsockname()[1],
            user="root",
            host_key=pair.public_line,
        )
    finally:
        stop.set()
        thread.join(timeout=5)
        for transport in transports:
            with contextlib.suppress(Exception):
                transport.close()
        listener.close()
