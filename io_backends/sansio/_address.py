"""Where the host is: addresses as users write them (``http://h:p``, ``ws://h:p``, ``https://``,
``wss://`` or gRPC-style ``h:p``), the host's endpoint paths, and what an address says about a peer."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

CHANNEL_PATH = "/v1/channel"
RPC_PATH = "/v1/rpc"
HEALTH_PATH = "/healthz"
EVENTS_PATH = "/v1/events"
STATUS_PATH = "/v1/status"
METRICS_PATH = "/metrics"
UI_PATH = "/ui"
MAX_MESSAGE_SIZE_HEADER = b"x-max-message-size"
"""Header of the host's ``101`` answer on /v1/channel: its message size limit in bytes."""

_SCHEMES = {"http": False, "ws": False, "https": True, "wss": True}


@dataclass(frozen=True, slots=True)
class HostAddress:
    host: str
    port: int
    tls: bool
    base_path: str = ""
    """Where the host's endpoints are mounted (``"/agents"`` for ``http://h:p/agents``), or ``""``."""

    def target(self, path: str) -> str:
        """The request target of endpoint ``path`` (``/v1/channel``) under the base path."""
        return self.base_path + path

    @property
    def authority(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_host_address(address: str) -> HostAddress:
    """Parse a host address; the port defaults to 80/443 for URLs and is required for ``h:p``.

    A URL's path is where the host's endpoints are mounted (a host served by an ASGI application
    mounted at ``/agents``: ``http://h:p/agents``); a trailing slash is ignored."""
    text = address.strip()
    if "://" not in text:
        text = "http://" + text
        needs_port = True
    else:
        needs_port = False
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        raise ValueError(f"unsupported scheme in host address {address!r}: use http, https, ws or wss")
    if not parts.hostname:
        raise ValueError(f"no host in host address {address!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"host address {address!r} must not have a query or a fragment")
    base_path = parts.path.rstrip("/")
    if base_path and needs_port:
        raise ValueError(f"host address {address!r}: a path needs a URL, as in 'http://localhost:9000/agents'")
    if any(c in base_path for c in " \t\r\n") or "//" in base_path:
        raise ValueError(f"host address {address!r} has an invalid path")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"invalid port in host address {address!r}") from exc
    tls = _SCHEMES[scheme]
    if port is None:
        if needs_port:
            raise ValueError(f"host address {address!r} needs a port, as in 'localhost:9000'")
        port = 443 if tls else 80
    return HostAddress(parts.hostname, port, tls, base_path)


def parse_host_addresses(addresses: str | Sequence[str]) -> tuple[HostAddress, ...]:
    """Several host addresses, as ``"h1:9000,h2:9001"`` or a list; in the order given, at least one."""
    items = addresses.split(",") if isinstance(addresses, str) else list(addresses)
    parsed = tuple(parse_host_address(a) for a in items if a.strip())
    if not parsed:
        raise ValueError(f"no host address in {addresses!r}")
    return parsed


def remote_host(peer: object) -> str | None:
    """The client's IP address from a socket's peer name (None if it has none, e.g. a Unix socket)."""
    if isinstance(peer, tuple) and peer and isinstance(peer[0], str):
        return peer[0]
    return None


def peer_name(peer: object) -> str | None:
    """A socket's peer name as ``host:port`` (``[v6]:port``), or None if it has none."""
    if isinstance(peer, (tuple, list)) and len(peer) >= 2 and isinstance(peer[0], str):
        host = f"[{peer[0]}]" if ":" in peer[0] else peer[0]
        return f"{host}:{peer[1]}"
    return None


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an IP address) is this machine only: ``localhost``, 127.0.0.0/8, ::1."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def split_host_port(address: str) -> tuple[str, int | None]:
    """``"host:port"``, ``"[v6]:port"``, ``"host"``, ``"[v6]"`` or a bare IPv6 address, as a host
    binds it: the host (no brackets) and the port, or None when the address has none."""
    text = address.strip()
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"invalid address {address!r}: use '[v6 address]:port'")
        return host, _port_of(rest[1:], address) if rest else None
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, _port_of(port, address)
    return text, None  # a name, an IPv4 address, or a bare IPv6 address


def _port_of(text: str, address: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise ValueError(f"invalid port in address {address!r}") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"invalid port in address {address!r}")
    return port
