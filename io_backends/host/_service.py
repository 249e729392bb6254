"""HttpAgentService: the host's routing service, the engine and everything around it, for any driver.

It holds the :class:`~sansio_runtime.HostEngine` and the :class:`~io_backends.sansio.HostHub`
(admission, HTTP, WebSockets, timeouts: everything but I/O), and says how they are driven: by
:class:`~io_backends.host.HttpAgentServer` on asyncio, or under anyio (asyncio or trio) through
:meth:`HttpAgentService.handle_connection` and :meth:`~HttpAgentService.run_timers` by someone
embedding the host in their own server.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import anyio
import anyio.abc
import msgspec

from sansio_runtime import (
    DEFAULT_MAX_AGENT_TYPES_PER_CONNECTION,
    DEFAULT_MAX_BATCH_LENGTH,
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MAX_PENDING_CALLS,
    DEFAULT_MAX_SUBSCRIPTIONS_PER_CONNECTION,
    CloseCode,
    HostEngine,
)

from ..sansio import Authenticator, HostHub, HubSettings
from ..sansio._limits import (
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_KEEPALIVE_INTERVAL,
    DEFAULT_KEEPALIVE_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
    DEFAULT_MAX_HEADER_SIZE,
    DEFAULT_MAX_OUTBOUND_BYTES,
    DEFAULT_REQUEST_BODY_TIMEOUT,
    DEFAULT_REQUEST_HEAD_TIMEOUT,
)
from ._anyio import AnyioDriver

logger = logging.getLogger("io_backends.host")
_REFUSAL_LOG_INTERVAL = 10.0


class HttpAgentService:
    """The host's routing service: the protocol engine plus the live connections.

    Usable on its own by someone embedding the host in another anyio server: hand each accepted
    byte stream to :meth:`handle_connection` and run :meth:`run_timers` in a task.

    Every limit and timeout, with its default, is in docs/PROTOCOL.md section 2.5:

    * ``max_message_size``, ``max_pending_calls``, ``max_batch_length``,
      ``max_agent_types_per_connection``, ``max_subscriptions_per_connection``: the engine's.
    * ``max_outbound_bytes``: unsent bytes buffered for one WebSocket (then close 4008).
    * ``request_head_timeout``: seconds a request head may take from its first byte (a new
      connection: from the accept); ``request_body_timeout``: seconds a request body may take
      after its head; ``idle_timeout``: seconds a keep-alive connection may sit between requests,
      or a response may wait for a peer that does not read it (None: no timeout).
    * ``max_connections``, ``max_connections_per_address``: connections served at once, in all
      and from one client IP address; more are answered ``503`` and closed.
    * ``keepalive_interval``, ``keepalive_timeout``: ping a silent worker after the interval, drop
      it after the timeout more (None: no keepalive).
    """

    def __init__(
        self,
        *,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        max_pending_calls: int = DEFAULT_MAX_PENDING_CALLS,
        max_outbound_bytes: int = DEFAULT_MAX_OUTBOUND_BYTES,
        max_header_size: int = DEFAULT_MAX_HEADER_SIZE,
        max_batch_length: int = DEFAULT_MAX_BATCH_LENGTH,
        max_agent_types_per_connection: int = DEFAULT_MAX_AGENT_TYPES_PER_CONNECTION,
        max_subscriptions_per_connection: int = DEFAULT_MAX_SUBSCRIPTIONS_PER_CONNECTION,
        request_head_timeout: float | None = DEFAULT_REQUEST_HEAD_TIMEOUT,
        request_body_timeout: float | None = DEFAULT_REQUEST_BODY_TIMEOUT,
        idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_connections_per_address: int = DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
        auth_token: str | None = None,
        authenticator: Authenticator | None = None,
        keepalive_interval: float | None = DEFAULT_KEEPALIVE_INTERVAL,
        keepalive_timeout: float = DEFAULT_KEEPALIVE_TIMEOUT,
    ) -> None:
        if auth_token is not None and not auth_token.strip():
            raise ValueError("auth_token must not be empty: pass None to accept clients without a token")
        self.engine = HostEngine(
            max_message_size=max_message_size,
            max_pending_calls=max_pending_calls,
            max_batch_length=max_batch_length,
            max_agent_types_per_connection=max_agent_types_per_connection,
            max_subscriptions_per_connection=max_subscriptions_per_connection,
        )
        self.settings = HubSettings(
            max_outbound_bytes=max_outbound_bytes,
            max_header_size=max_header_size,
            request_head_timeout=request_head_timeout,
            request_body_timeout=request_body_timeout,
            idle_timeout=idle_timeout,
            max_connections=max_connections,
            max_connections_per_address=max_connections_per_address,
            keepalive_interval=keepalive_interval,
            keepalive_timeout=keepalive_timeout,
            auth_token=None if auth_token is None else auth_token.strip().encode(),
            authenticator=authenticator,
        )
        self.hub = HostHub(self.engine, self.settings, self._health_body)
        """Everything the host does but I/O (:class:`~io_backends.sansio.HostHub`)."""
        self.max_message_size = max_message_size
        self.max_outbound_bytes = max_outbound_bytes
        self.keepalive_interval = keepalive_interval
        self.keepalive_timeout = keepalive_timeout
        self.request_head_timeout = request_head_timeout
        self.idle_timeout = idle_timeout
        self.clock: Callable[[], float] = anyio.current_time
        """The clock the hub's time comes from (the asyncio driver sets the loop's: the same time)."""
        self._anyio: AnyioDriver | None = None
        self._idle: anyio.Event | None = None
        self._refused_logged = 0
        self._refusals_logged_at = -math.inf

    # ------------------------------------------------------------------ public

    @property
    def connection_count(self) -> int:
        return self.hub.connection_count

    @property
    def requires_token(self) -> bool:
        """Whether clients must send ``Authorization: Bearer <auth_token>``."""
        return self.settings.auth_token is not None

    async def handle_connection(self, stream: anyio.abc.ByteStream, *, can_half_close: bool = True) -> None:
        """Serve one accepted connection (HTTP/1.1 keep-alive; may become a WebSocket) until it ends.

        Pass ``can_half_close=False`` for a stream that cannot shut its sending side alone (TLS).
        """
        await self._anyio_driver().serve(stream, can_half_close=can_half_close)

    async def run_timers(self) -> None:
        """Drive the host's deadlines (calls' and connections'); run for as long as the service runs."""
        await self._anyio_driver().run_timers()

    def close_all(self, code: CloseCode = CloseCode.GOING_AWAY, reason: str = "host shutting down") -> None:
        """Close every connection (pending calls fail at once; nothing stays registered)."""
        self.hub.close_all(self.clock(), code, reason)
        if self._anyio is not None:
            self._anyio.flush()

    async def wait_idle(self) -> None:
        """Return when no connection is open."""
        if self.hub.connection_count == 0:
            return
        if self._idle is None:
            self._idle = anyio.Event()
        await self._idle.wait()

    # ------------------------------------------------------------------ for the drivers

    def connection_gone(self) -> None:
        """A driver's socket is closed for good (after ``HostConnection.connection_lost``)."""
        refused = self.hub.refused - self._refused_logged
        now = self.clock()
        if refused and now >= self._refusals_logged_at + _REFUSAL_LOG_INTERVAL:  # at most one line per interval
            self._refusals_logged_at = now
            self._refused_logged = self.hub.refused
            logger.warning("refused %d connection(s) over the connection caps (max_connections=, ...)", refused)
        if self.hub.connection_count == 0 and self._idle is not None:
            self._idle.set()
            self._idle = None

    def _anyio_driver(self) -> AnyioDriver:
        if self._anyio is None:
            self._anyio = AnyioDriver(self)
        return self._anyio

    def _health_body(self) -> bytes:
        return msgspec.json.encode(
            {
                "status": "ok",
                "connections": self.hub.connection_count,
                "agent_types": len(self.engine.agent_types()) + len(self.engine.shared_agent_types()),
                "shared_agent_types": self.engine.stats.shared_types,
                "max_message_size": self.max_message_size,
                "events_unreadable": self.engine.stats.events_unreadable,
            }
        )


__all__ = ["Authenticator", "HttpAgentService"]
