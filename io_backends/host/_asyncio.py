"""The host on asyncio: one ``asyncio.Protocol`` per socket around a :class:`~io_backends.sansio.HostConnection`.

No task per connection and none per message: received bytes go into the connection inside
``data_received``, and what that input produced (for this connection and for every other one the
engine routed to) is written before ``data_received`` returns, one write per socket. One loop
timer follows the hub's next deadline.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, cast

from .._sockets import reset_on_close, set_no_delay
from ..sansio import HostConnection, HostHub, Phase
from ..sansio._address import peer_name, remote_host

if TYPE_CHECKING:
    from ._service import HttpAgentService

logger = logging.getLogger("io_backends.host")


def reset(transport: asyncio.BaseTransport) -> None:
    """Drop a connection at once with a TCP reset: what is unsent is discarded, not kept for a peer
    that does not read."""
    reset_on_close(transport.get_extra_info("socket"))
    cast(asyncio.Transport, transport).abort()


class AsyncioDriver:
    """Runs one :class:`HostHub` on the running asyncio loop: the sockets' protocols and the timer."""

    def __init__(self, service: HttpAgentService) -> None:
        self.service = service
        self.hub: HostHub = service.hub
        self.loop = asyncio.get_running_loop()
        self.protocols: dict[HostConnection, HostProtocol] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None

    def protocol(self) -> HostProtocol:
        """A protocol for a newly accepted socket (the ``create_server`` factory)."""
        return HostProtocol(self)

    def flush(self) -> None:
        """Write what the hub has for each socket, act on their phases, and follow the next deadline."""
        protocols = self.protocols
        for conn in self.hub.take_dirty():
            protocol = protocols.get(conn)
            if protocol is not None:
                protocol.carry_out()
        self._arm_timer()

    def _arm_timer(self) -> None:
        deadline = self.hub.next_deadline()
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is not None:
            self._timer = self.loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = self._timer_at = None
        self.hub.handle_timer(self.loop.time())
        self.flush()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = self._timer_at = None


class HostProtocol(asyncio.Protocol):
    """One accepted socket."""

    def __init__(self, driver: AsyncioDriver) -> None:
        self._driver = driver
        self._loop = driver.loop
        self.conn: HostConnection | None = None
        self._transport: asyncio.Transport | None = None
        self._paused = False
        self._closed_as: Phase | None = None
        self._turn: asyncio.Handle | None = None
        self._verdict: asyncio.Future[bool] | None = None

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's implement the interface without subclassing asyncio.Transport).
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        set_no_delay(transport.get_extra_info("socket"))
        driver = self._driver
        # (A TLS transport cannot half-close: asyncio closes it on write_eof.)
        remote = transport.get_extra_info("peername")
        conn = driver.hub.accept(
            self._loop.time(),
            remote_host(remote),
            can_half_close=transport.can_write_eof() and not self._tls,
            peer=peer_name(remote),
        )
        self.conn = conn
        driver.protocols[conn] = self
        driver.flush()

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        assert conn is not None
        conn.receive_data(data, self._loop.time())
        self._driver.flush()

    def eof_received(self) -> bool:
        conn = self.conn
        assert conn is not None
        conn.receive_data(b"", self._loop.time())
        self._driver.flush()
        # Keep the socket half-open to write the answer (a TLS transport cannot: asyncio closes it
        # whatever we return, and warns if we say True).
        return not self._tls

    def connection_lost(self, exc: Exception | None) -> None:
        conn = self.conn
        if conn is None:
            return
        driver = self._driver
        if self._turn is not None:
            self._turn.cancel()
        if self._verdict is not None:
            self._verdict.cancel()
        conn.connection_lost(self._loop.time())
        driver.protocols.pop(conn, None)
        driver.flush()
        driver.service.connection_gone()

    def pause_writing(self) -> None:
        if self.conn is not None:
            self.conn.writing_paused(True, self._loop.time())
            self._driver.flush()

    def resume_writing(self) -> None:
        if self.conn is not None and self._transport is not None:
            self.conn.unsent = self._transport.get_write_buffer_size()
            self.conn.writing_paused(False, self._loop.time())
            self._driver.flush()

    # ------------------------------------------------------------------ carrying out

    @property
    def _tls(self) -> bool:
        transport = self._transport
        return transport is not None and transport.get_extra_info("sslcontext") is not None

    def carry_out(self) -> None:
        """Write what the connection has and do what its phase asks (see HostConnection)."""
        conn = self.conn
        transport = self._transport
        if conn is None or transport is None or self._closed_as is Phase.RESET:
            return
        phase = conn.phase
        if phase is Phase.CHANNEL:  # the hot path: an open channel (never closed yet) has messages to write
            data = conn.data_to_send()
            if data:
                transport.write(data)
                conn.unsent = transport.get_write_buffer_size()
            if conn.reading == self._paused:
                self._follow_reading(not self._paused)
            return
        if phase is Phase.RESET:
            self._closed_as = phase
            reset(transport)
            return
        if self._closed_as is not None:
            return  # closing: the transport writes what it has, then closes
        data = conn.data_to_send()
        if data:
            transport.write(data)
            conn.unsent = transport.get_write_buffer_size()
        if phase is Phase.CLOSED:
            self._closed_as = phase
            transport.close()
            return
        if phase is Phase.LINGERING and conn.take_half_close():
            try:
                transport.write_eof()
            except OSError:
                reset(transport)
                return
        self._follow_reading(conn.reading)
        if conn.needs_turn and self._turn is None:
            self._turn = self._loop.call_soon(self._take_turn)
        verdict = conn.pending_verdict
        if verdict is not None and self._verdict is None:
            self._verdict = asyncio.ensure_future(verdict)
            self._verdict.add_done_callback(self._on_verdict)

    def _follow_reading(self, reading: bool) -> None:
        transport = self._transport
        if transport is None or reading != self._paused:
            return
        self._paused = not reading
        if reading:
            transport.resume_reading()
        else:
            transport.pause_reading()

    def _take_turn(self) -> None:
        self._turn = None
        if self.conn is not None:
            self.conn.take_turn(self._loop.time())
            self._driver.flush()

    def _on_verdict(self, future: asyncio.Future[bool]) -> None:
        self._verdict = None
        conn = self.conn
        if future.cancelled() or conn is None:
            return
        exc = future.exception()
        conn.give_verdict(future.result() if exc is None else exc, self._loop.time())
        self._driver.flush()

    def abort(self) -> None:
        if self._transport is not None:
            reset(self._transport)


__all__ = ["AsyncioDriver", "HostProtocol", "reset"]
