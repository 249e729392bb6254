"""io_backends.sansio: the host's and the worker's protocol layers around the engine, with no I/O.

Everything here takes bytes and time as inputs and hands back bytes and decisions, as
``sansio_runtime`` does (and never imports an event loop or a socket module; the purity test
checks). The host's drivers (:mod:`io_backends.host`) and the worker's channel
(:mod:`io_backends.worker`) only move bytes between these and the network.

* :class:`HostHub` and :class:`HostConnection`: the host's whole server, engine included: admission,
  HTTP/1.1 (:mod:`._http`, on h11), the endpoints' policy (:mod:`._endpoints`, shared with any
  ASGI server in front of the engine), WebSockets (:mod:`._websocket`), timeouts and keepalive.
* :class:`WebSocketCore`: one WebSocket's framing, limits and outbound queue (both sides).
* Addresses, gRPC option names, and every default limit (:mod:`._limits`).
"""

from ._address import CHANNEL_PATH, HEALTH_PATH, RPC_PATH, HostAddress, parse_host_address, parse_host_addresses
from ._connection import HostConnection, Phase
from ._endpoints import HttpError, RpcAnswer, http_status_for
from ._hub import Authenticator, HostHub, HubSettings
from ._masking import MASK_IMPLEMENTATION
from ._websocket import WebSocketCore

__all__ = [
    "CHANNEL_PATH",
    "HEALTH_PATH",
    "MASK_IMPLEMENTATION",
    "RPC_PATH",
    "Authenticator",
    "HostAddress",
    "HostConnection",
    "HostHub",
    "HttpError",
    "HubSettings",
    "Phase",
    "RpcAnswer",
    "WebSocketCore",
    "http_status_for",
    "parse_host_address",
    "parse_host_addresses",
]
