"""The host's asyncio driver: one ``asyncio.Protocol`` per accepted connection, no task per hop.

It feeds received bytes to the connection's :class:`~._http_front.HttpFront` (the same HTTP
handling as the anyio driver) and carries out its actions: it stops reading while the front
waits for a verdict or an answer, or while the peer does not take what was written (the
transport's flow control), and arms one timer for the front's deadline. After the upgrade to a
WebSocket it
hands the transport to an :class:`~._asyncio_channel.AsyncioChannel` (the class the worker
uses too): messages reach the engine inside ``data_received``, and the engine's output is
written at once to idle sockets and coalesced per loop iteration otherwise. Keepalive is one
periodic sweep over all channels, and the engine's deadlines stay with
:meth:`HttpAgentService.run_timers`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Iterable
from typing import TYPE_CHECKING, cast

from wsproto import WSConnection

from sansio_runtime import ClientId

from ._address import remote_host
from ._asyncio_channel import AsyncioChannel, reset
from ._http_front import ABORT, NEED_DATA, Authorize, HttpError, OpenChannel, Reply, RpcCall, Send
from ._websocket import keepalive_check

if TYPE_CHECKING:
    from ._server import HttpAgentService, OneShot

logger = logging.getLogger("io_backends.server")

LINGER_TIMEOUT = 1.0  # how long a closing connection's input is drained before the close
LINGER_MAX_BYTES = 16 * 1024 * 1024
RESPONSES_PER_TURN = 16
"""Pipelined requests answered in one go before the other connections get the loop again."""


class HostProtocol(asyncio.Protocol):
    """One accepted host connection: HTTP/1.1 keep-alive, then maybe a WebSocket."""

    def __init__(self, service: HttpAgentService, registry: set[HostProtocol]) -> None:
        self._service = service
        self._registry = registry
        self._loop = asyncio.get_running_loop()
        self._front = service.new_front(self._loop.time())
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._write_blocked = False  # the peer is not taking our answers: stop until it does
        self._next_turn: asyncio.Handle | None = None  # more pipelined requests, after the others' turn
        self._address: str | None = None
        self._admitted = False
        self._transport: asyncio.Transport | None = None
        self.channel: AsyncioChannel | None = None
        self._client: ClientId | None = None
        self._one_shot: tuple[ClientId, OneShot] | None = None
        self._auth: asyncio.Future[bool] | None = None
        self._busy = False  # waiting for a verdict or an answer: input is only buffered
        self._paused = False
        self._eof = False
        self._lingering: asyncio.TimerHandle | None = None
        self._drained = 0
        self._lost = False
        self._tls = False

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's implement the interface without subclassing asyncio.Transport).
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        self._tls = transport.get_extra_info("sslcontext") is not None
        self._registry.add(self)
        self._service.connection_opened()
        self._address = remote_host(transport.get_extra_info("peername"))
        refusal = self._service.admit(self._address)
        if refusal is not None:
            transport.write(refusal)
            self._linger()
            return
        self._admitted = True
        self._advance(None)

    def data_received(self, data: bytes) -> None:
        channel = self.channel
        if channel is not None:
            channel.data_received(data)
            return
        if self._lingering is not None:
            self._drained += len(data)
            if self._drained > LINGER_MAX_BYTES:
                self.abort()
            return
        self._front.receive_data(data, self._loop.time())
        if self._held:
            self._pause()  # buffered for the next request; read more once this one is answered
            return
        self._advance(None)

    def eof_received(self) -> bool:
        self._eof = True
        if self.channel is not None:
            return self.channel.eof_received()
        if self._lingering is not None:
            return False
        if self._one_shot is not None:
            # The caller hung up before its answer was ready: its calls are cancelled.
            self._end_one_shot()
            return False
        self._front.receive_data(b"", self._loop.time())
        if not self._held:
            self._advance(None)
        # Still write what the front answers; it closes the connection after. (A TLS transport
        # cannot stay half-open: asyncio closes it whatever we return, and warns if we say True.)
        return not self._tls

    def connection_lost(self, exc: Exception | None) -> None:
        if self._lost:
            return
        self._lost = True
        if self._lingering is not None:
            self._lingering.cancel()
        if self._timer is not None:
            self._timer.cancel()
        if self._next_turn is not None:
            self._next_turn.cancel()
        if self._auth is not None:
            self._auth.cancel()
        try:
            if self.channel is not None:
                self.channel.connection_lost(exc)
            if self._client is not None:
                self._service.channel_closed(self._client)
            if self._one_shot is not None:
                self._end_one_shot()
        finally:
            if self._admitted:
                self._service.release(self._address)
            self._registry.discard(self)
            self._service.connection_closed()

    def pause_writing(self) -> None:
        if self.channel is not None:
            self.channel.pause_writing()
        else:
            self._write_blocked = True  # _run_front stops after the write that filled the buffer
            self._pause()

    def resume_writing(self) -> None:
        if self.channel is not None:
            self.channel.resume_writing()
        elif self._write_blocked:
            self._write_blocked = False
            if not self._held and self._lingering is None and not self._lost:
                self._advance(None)

    def abort(self) -> None:
        if self._transport is not None:
            reset(self._transport)

    # ------------------------------------------------------------------ HTTP

    @property
    def _held(self) -> bool:
        """Input is only buffered: the front waits for a verdict or an answer, for the peer to take
        what was written, or for the other connections' turn."""
        return self._busy or self._write_blocked or self._next_turn is not None

    def _take_turn(self) -> None:
        self._next_turn = None
        if not self._lost and not self._write_blocked and not self._busy and self._lingering is None:
            self._advance(None)

    def _pause(self) -> None:
        if not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()

    def _resume(self) -> None:
        if self._paused and self._transport is not None:
            self._paused = False
            self._transport.resume_reading()

    def _advance(self, reply: Reply) -> None:
        """Carry out the front's actions until it needs more input or an answer."""
        try:
            self._run_front(reply)
        except Exception:
            # One connection's failure must never take the host down.
            logger.exception("error serving a connection")
            self._linger()
        self._arm_timer()

    def _arm_timer(self) -> None:
        """Wake up at the front's deadline (one timer per connection, moved only when it changes)."""
        deadline = None if self.channel is not None or self._lingering is not None else self._front.next_deadline()
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is not None and not self._lost:
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        if self._lost or self.channel is not None or self._lingering is not None:
            return
        if self._front.handle_timer(self._loop.time()):
            self._busy = False
            self._write_blocked = False
            if self._next_turn is not None:
                self._next_turn.cancel()
                self._next_turn = None
            self._advance(None)  # the front answers 408, or closes
        else:
            self._arm_timer()

    def _run_front(self, reply: Reply) -> None:
        front = self._front
        transport = self._transport
        assert transport is not None
        service = self._service
        loop = self._loop
        self._busy = False
        answered = 0
        while not self._lost:
            action = front.next_action(reply, loop.time())
            reply = None
            if action is NEED_DATA:
                if self._eof:  # (h11 does not ask for more after the end of input)
                    self._linger()
                else:
                    self._resume()
                return
            if isinstance(action, Send):
                transport.write(action.data)
                if self._write_blocked:  # the peer is not reading: go on once it has taken this
                    return
                answered += 1
                if answered == RESPONSES_PER_TURN:  # a long pipeline must not keep the loop to itself
                    self._pause()
                    self._next_turn = loop.call_soon(self._take_turn)
                    return
            elif isinstance(action, Authorize):
                verdict = service.authorize(action.request)
                if isinstance(verdict, bool):
                    reply = verdict
                    continue
                self._wait_for_verdict(verdict)
                return
            elif isinstance(action, RpcCall):
                self._busy = True
                client, one_shot = service.start_one_shot(action.body, self._one_shot_done)
                self._one_shot = (client, one_shot)
                if not one_shot.done:
                    return
                reply = self._end_one_shot()
                self._busy = False
            elif isinstance(action, OpenChannel):
                accepted = service.accept_channel(action.request)
                if isinstance(accepted, HttpError):
                    reply = accepted
                    continue
                self._open_channel(accepted, action.ws)
                return
            elif action is ABORT:
                self.abort()
                return
            else:
                self._linger()
                return

    def _wait_for_verdict(self, verdict: Awaitable[bool]) -> None:
        self._busy = True
        self._auth = asyncio.ensure_future(verdict)
        self._auth.add_done_callback(self._verdict)

    def _verdict(self, future: asyncio.Future[bool]) -> None:
        self._auth = None
        if future.cancelled() or self._lost:
            return
        exc = future.exception()
        if exc is not None:
            logger.error("error serving a connection", exc_info=exc)
            self._linger()
            return
        self._advance(future.result())

    def _one_shot_done(self) -> None:
        # Called from inside the engine's output handling: answer on the next loop iteration.
        if self._one_shot is not None:
            self._loop.call_soon(self._answer_one_shot)

    def _answer_one_shot(self) -> None:
        if self._one_shot is not None and not self._lost:
            self._advance(self._end_one_shot())

    def _end_one_shot(self) -> Reply:
        assert self._one_shot is not None
        client, one_shot = self._one_shot
        self._one_shot = None
        return self._service.end_one_shot(client, one_shot)

    def _linger(self) -> None:
        """Close after the peer has read our last response: half-close, then drain briefly.

        The transport's close waits until what is buffered has been written; a peer that does not
        take it within the idle timeout is reset (:func:`reset`) instead of being waited for ever.
        """
        transport = self._transport
        if transport is None or self._lingering is not None or transport.is_closing():
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = self._timer_at = None
        if self._eof or not transport.can_write_eof():
            self._close_then_give_up()
            return
        try:
            transport.write_eof()
        except OSError:
            self._close_then_give_up()
            return
        self._lingering = self._loop.call_later(LINGER_TIMEOUT, self._close_then_give_up)
        self._resume()

    def _close_then_give_up(self) -> None:
        transport = self._transport
        if transport is None:
            return
        transport.close()
        idle_timeout = self._service.idle_timeout
        self._lingering = self._loop.call_later(LINGER_TIMEOUT if idle_timeout is None else idle_timeout, self.abort)

    # ------------------------------------------------------------------ WebSocket

    def _open_channel(self, client: ClientId, ws: WSConnection) -> None:
        transport = self._transport
        assert transport is not None
        service = self._service
        if self._timer is not None:  # a WebSocket has keepalive instead of HTTP timeouts
            self._timer.cancel()
            self._timer = self._timer_at = None
        transport.write(service.accept_channel_response(ws))
        channel = AsyncioChannel(
            ws,
            max_message_size=service.max_message_size,
            max_outbound_bytes=service.max_outbound_bytes,
            transport=transport,
        )
        self.channel = channel
        self._client = client
        on_message, on_end = service.channel_opened(client, channel)
        channel.start(on_message, on_end)
        trailing = self._front.trailing_data()
        if trailing:
            channel.data_received(trailing)
        self._resume()


async def keepalive_sweep(connections: Iterable[HostProtocol], interval: float, timeout: float) -> None:
    """Ping silent WebSocket peers and give up on dead ones: one task for all connections."""
    loop = asyncio.get_running_loop()
    period = min(interval, timeout) / 2
    while True:
        await asyncio.sleep(period)
        now = loop.time()
        for connection in list(connections):
            channel = connection.channel
            if channel is not None and channel.is_open:
                keepalive_check(channel, now, interval, timeout)


__all__ = ["HostProtocol", "keepalive_sweep"]
