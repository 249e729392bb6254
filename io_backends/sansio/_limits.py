"""Every limit, timeout and default of the host and the worker outside the engine, in one place.

The engine's own limits (message size, calls in flight, batch length, registrations per
connection) are in :mod:`sansio_runtime._limits` and re-exported here; docs/PROTOCOL.md section
2.5 and the README's "When things go wrong" give each with its default.
"""

from __future__ import annotations

from typing import Final

from sansio_runtime import (
    DEFAULT_MAX_AGENT_TYPES_PER_CONNECTION,
    DEFAULT_MAX_BATCH_LENGTH,
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MAX_PENDING_CALLS,
    DEFAULT_MAX_SUBSCRIPTIONS_PER_CONNECTION,
    FORWARDING_ALLOWANCE,
)

# ---------------------------------------------------------------------------------- both sides

DEFAULT_MAX_OUTBOUND_BYTES: Final = 64 * 1024 * 1024
"""Unsent bytes buffered for one WebSocket; a peer that leaves more unread is cut off (close 4008)."""
DEFAULT_KEEPALIVE_INTERVAL: Final = 10.0
"""Seconds of silence after which a WebSocket peer is pinged."""
DEFAULT_KEEPALIVE_TIMEOUT: Final = 10.0
"""Seconds more of silence after the ping after which the connection is given up (dropped, 1006)."""
CLOSE_TIMEOUT: Final = 2.0
"""Seconds a WebSocket closing handshake may take before the socket is dropped."""

# ---------------------------------------------------------------------------------- the host

DEFAULT_MAX_HEADER_SIZE: Final = 16 * 1024
"""Largest HTTP request head; a larger one is answered 431."""
DEFAULT_REQUEST_HEAD_TIMEOUT: Final = 20.0
"""Seconds a request head may take from its first byte (a new connection: from the accept); 408."""
DEFAULT_REQUEST_BODY_TIMEOUT: Final = 60.0
"""Seconds a request body may take after its head (the whole body, not the gaps); 408."""
DEFAULT_IDLE_TIMEOUT: Final = 60.0
"""Seconds a keep-alive connection may sit idle, or an answer wait for a peer that does not read it."""
DEFAULT_MAX_CONNECTIONS: Final = 10_000
"""Connections served at once; more are answered 503."""
DEFAULT_MAX_CONNECTIONS_PER_ADDRESS: Final = 1_000
"""Connections served at once from one client IP address; more are answered 503."""
SMALL_BODY_LIMIT: Final = 64 * 1024
"""Largest body accepted on requests that need none (a GET of /healthz)."""
LINGER_TIMEOUT: Final = 1.0
"""Seconds a closing HTTP connection's input is drained (so the last answer is read, not reset)."""
LINGER_MAX_BYTES: Final = 16 * 1024 * 1024
"""Most bytes drained from a closing connection before it is reset."""
RESPONSES_PER_TURN: Final = 16
"""Pipelined requests one connection has answered before the others get their turn."""

# ---------------------------------------------------------------------------------- the worker

DEFAULT_CONNECT_TIMEOUT: Final = 10.0
"""Seconds ``start()`` keeps trying to reach the host."""
DEFAULT_RECONNECT_INITIAL_DELAY: Final = 0.1
DEFAULT_RECONNECT_MAX_DELAY: Final = 5.0
"""The reconnect backoff: from the first delay, doubling (with jitter) up to the largest."""
SEND_HIGH_WATER: Final = 1024 * 1024
"""A sender waits while more than this many bytes wait to be written to the host (backpressure)."""
WORKER_MAX_BATCH: Final = 16
"""Messages from the host a worker delivers per loop turn (each may start handler tasks)."""
MAX_RESPONSE_HEAD: Final = 64 * 1024
"""Largest handshake answer a worker reads from a host."""

__all__ = [
    "CLOSE_TIMEOUT",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_IDLE_TIMEOUT",
    "DEFAULT_KEEPALIVE_INTERVAL",
    "DEFAULT_KEEPALIVE_TIMEOUT",
    "DEFAULT_MAX_AGENT_TYPES_PER_CONNECTION",
    "DEFAULT_MAX_BATCH_LENGTH",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_MAX_CONNECTIONS_PER_ADDRESS",
    "DEFAULT_MAX_HEADER_SIZE",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "DEFAULT_MAX_OUTBOUND_BYTES",
    "DEFAULT_MAX_PENDING_CALLS",
    "DEFAULT_MAX_SUBSCRIPTIONS_PER_CONNECTION",
    "DEFAULT_RECONNECT_INITIAL_DELAY",
    "DEFAULT_RECONNECT_MAX_DELAY",
    "DEFAULT_REQUEST_BODY_TIMEOUT",
    "DEFAULT_REQUEST_HEAD_TIMEOUT",
    "FORWARDING_ALLOWANCE",
    "LINGER_MAX_BYTES",
    "LINGER_TIMEOUT",
    "MAX_RESPONSE_HEAD",
    "RESPONSES_PER_TURN",
    "SEND_HIGH_WATER",
    "SMALL_BODY_LIMIT",
    "WORKER_MAX_BATCH",
]
