"""The URL a web server bound to COPRSSH_BIND is reached at, for bin/run's COPRSSH_PUBLIC_URL.

    python -m coprssh.bind 127.0.0.1:8000    ->  http://127.0.0.1:8000
    python -m coprssh.bind 0.0.0.0:8000      ->  http://192.0.2.2:8000 (this machine's address)
    python -m coprssh.bind --gateway 0.0.0.0:8000 http://192.0.2.2:8000  ->  192.0.2.2 0.0.0.0

A bind to every address (0.0.0.0, 0, [::]) is no address that a builder or a browser can open, so
it becomes the address this machine reaches other hosts from: the source address of its default
route. Without any route, the first address of the host name that is not loopback; without that,
127.0.0.1, and a warning. Binds are written as `manage.py runserver` reads them: PORT, HOST:PORT
or [IPV6]:PORT. Nothing here imports Django.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import sys
from urllib.parse import urlsplit

BIND = re.compile(r"(?:(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):)?(?P<port>[0-9]{1,5})")
# Documentation addresses: a UDP socket "connected" to one picks the source address of the route
# that would carry the packet, and sends nothing.
PROBES = {socket.AF_INET: "192.0.2.1", socket.AF_INET6: "2001:db8::1"}


class BadBind(ValueError):
    pass


def split_bind(bind: str) -> tuple[str, int]:
    """(host, port) of a runserver address; the host is 127.0.0.1 when only a port is given."""
    match = BIND.fullmatch(bind.strip())
    port = int(match["port"]) if match else 0
    if not match or not 1 <= port <= 65535:
        raise BadBind(f"COPRSSH_BIND must be PORT, HOST:PORT or [IPV6]:PORT (port 1 to 65535); got {bind!r}")
    host = match["host"] or "127.0.0.1"
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise BadBind(f"COPRSSH_BIND: {host} is not an IPv6 address") from None
    return host, port


def is_wildcard(host: str) -> bool:
    """True for a host that means every address: 0, 0.0.0.0, [::] (as runserver takes them)."""
    if host == "0":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_unspecified
    except ValueError:  # a host name
        return False


def _usable(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%")[0])
    return not (ip.is_loopback or ip.is_unspecified or ip.is_link_local)


def _routed_address(family: socket.AddressFamily) -> str | None:
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect((PROBES[family], 9))
            address = str(probe.getsockname()[0])
    except OSError:  # no route of that family
        return None
    return address if _usable(address) else None


def _named_address(family: socket.AddressFamily) -> str | None:
    try:
        found = socket.getaddrinfo(socket.gethostname(), None, family, socket.SOCK_STREAM)
    except OSError:
        return None
    for *_, sockaddr in found:
        if _usable(str(sockaddr[0])):
            return str(sockaddr[0])
    return None


def machine_address(*, ipv6: bool = False) -> str | None:
    """This machine's address as other hosts see it, IPv4 first; None when it has only loopback."""
    families = [socket.AF_INET, socket.AF_INET6] if ipv6 else [socket.AF_INET]
    for find in (_routed_address, _named_address):
        for family in families:
            address = find(family)
            if address:
                return address
    return None


def public_url(bind: str) -> str:
    """http://HOST:PORT for a web server bound to `bind`, with a wildcard host made concrete."""
    host, port = split_bind(bind)
    if is_wildcard(host):
        address = machine_address(ipv6=host.startswith("["))
        if address is None:
            print(
                f"coprssh: found no address of this machine besides loopback for {bind}; using 127.0.0.1"
                " (set COPRSSH_PUBLIC_URL to the URL builders and browsers should use)",
                file=sys.stderr,
            )
            address = "127.0.0.1"
        host = f"[{address}]" if ":" in address else address
    return f"http://{host}:{port}"


def gateway_defaults(bind: str, url: str) -> tuple[str, str]:
    """(host users are told, address to listen on) for the demo's SSH gateway.

    On loopback by default. A site bound to every address is meant for other machines, whose users
    cannot reach the demo's local builders (they listen on loopback): the gateway listens on every
    address too, and is named by the host of the site's URL.
    """
    host, _ = split_bind(bind)
    if not is_wildcard(host):
        return "127.0.0.1", "127.0.0.1"
    named = urlsplit(url).hostname or "127.0.0.1"
    return named, "::" if host.startswith("[") else "0.0.0.0"


def main(argv: list[str]) -> int:
    if argv[:1] == ["--gateway"] and len(argv) == 3:
        try:
            print(*gateway_defaults(argv[1], argv[2]))
        except BadBind as error:
            print(f"coprssh: {error}", file=sys.stderr)
            return 2
        return 0
    if len(argv) != 1:
        print("usage: python -m coprssh.bind HOST:PORT | --gateway HOST:PORT URL", file=sys.stderr)
        return 2
    try:
        print(public_url(argv[0]))
    except BadBind as error:
        print(f"coprssh: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
