"""The host on any anyio byte stream (asyncio or trio, TCP or TLS): two tasks per socket around a
:class:`~io_backends.sansio.HostConnection`, and one timer task per host.

The reader hands what arrives to the connection; the writer sleeps until the hub says the
connection has something for it (output, a new phase, a verdict to await), then carries it out.
A send that has to wait for the peer counts as paused writing, so what piles up meanwhile stays
in the connection, within its limits.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable
from typing import TYPE_CHECKING

import anyio
import anyio.abc
from anyio.abc import SocketAttribute

from .._sockets import reset_on_close
from ..sansio import HostConnection, HostHub, Phase
from ..sansio._address import remote_host

if TYPE_CHECKING:
    from ._service import HttpAgentService

logger = logging.getLogger("io_backends.host")

READ_SIZE = 65536
STREAM_ERRORS = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)


class _Socket:
    """What the driver keeps per connection: its wake-ups and the scope of a send in progress."""

    __slots__ = ("readable", "send_scope", "turn_pending", "verdict", "wakeup")

    def __init__(self) -> None:
        self.wakeup = anyio.Event()
        self.readable = anyio.Event()
        self.send_scope: anyio.CancelScope | None = None
        self.turn_pending = False
        self.verdict: object = None  # the verdict being awaited


class AnyioDriver:
    """Runs one :class:`HostHub` under anyio: :meth:`serve` per accepted stream, :meth:`run_timers` once."""

    def __init__(self, service: HttpAgentService) -> None:
        self.service = service
        self.hub: HostHub = service.hub
        self._sockets: dict[HostConnection, _Socket] = {}
        self._timer_wakeup = anyio.Event()
        self._timer_at = math.inf

    def flush(self) -> None:
        """Wake the writer of every connection the hub has something for, and the timer if it must run earlier."""
        sockets = self._sockets
        for conn in self.hub.take_dirty():
            sock = sockets.get(conn)
            if sock is None:
                continue
            sock.wakeup.set()
            if conn.reading:
                sock.readable.set()
            if conn.phase is Phase.RESET and sock.send_scope is not None:
                sock.send_scope.cancel()
        deadline = self.hub.next_deadline()
        if deadline is not None and deadline < self._timer_at:
            self._timer_wakeup.set()

    async def run_timers(self) -> None:
        """Drive the hub's deadlines, for as long as the host runs."""
        hub = self.hub
        while True:
            deadline = hub.next_deadline()
            self._timer_at = math.inf if deadline is None else deadline
            self._timer_wakeup = anyio.Event()
            with anyio.move_on_after(None if deadline is None else max(0.0, deadline - anyio.current_time())):
                await self._timer_wakeup.wait()
            hub.handle_timer(anyio.current_time())
            self.flush()

    async def serve(self, stream: anyio.abc.ByteStream, *, can_half_close: bool) -> None:
        """Serve one accepted stream until it ends (HTTP/1.1 keep-alive; may become a WebSocket)."""
        address = remote_host(stream.extra(SocketAttribute.remote_address, None))
        conn = self.hub.accept(anyio.current_time(), address, can_half_close=can_half_close)
        sock = self._sockets[conn] = _Socket()
        phase = Phase.CLOSED
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._read, stream, conn, sock)
                phase = await self._write(stream, conn, sock, tg)
                tg.cancel_scope.cancel()
        except Exception:
            logger.exception("error serving a connection")  # one connection's failure never takes the host down
        finally:
            with anyio.CancelScope(shield=True):
                await _close(stream, reset=phase is not Phase.CLOSED)
                conn.connection_lost(anyio.current_time())
                self._sockets.pop(conn, None)
                self.flush()
                self.service.connection_gone()

    async def _read(self, stream: anyio.abc.ByteStream, conn: HostConnection, sock: _Socket) -> None:
        while conn.phase in (Phase.HTTP, Phase.CHANNEL, Phase.LINGERING):
            if not conn.reading:
                sock.readable = anyio.Event()
                if not conn.reading:
                    await sock.readable.wait()
                continue
            try:
                data = await stream.receive(READ_SIZE)
            except STREAM_ERRORS:
                data = b""
            conn.receive_data(data, anyio.current_time())
            self.flush()
            if not data:
                return

    async def _write(
        self, stream: anyio.abc.ByteStream, conn: HostConnection, sock: _Socket, tg: anyio.abc.TaskGroup
    ) -> Phase:
        """Carry out what the connection asks until it is closed or reset; returns which."""
        while True:
            sock.wakeup = anyio.Event()  # (before looking: a wake-up during an await below is kept)
            if conn.phase is Phase.RESET:
                return Phase.RESET
            data = conn.data_to_send()
            if data:
                if not await self._send(stream, conn, sock, data):
                    return Phase.RESET
                continue
            phase = conn.phase
            if phase is Phase.CLOSED:
                return phase
            if phase is Phase.LINGERING and conn.take_half_close():
                try:
                    await stream.send_eof()
                except (*STREAM_ERRORS, NotImplementedError):
                    return Phase.CLOSED
            if conn.needs_turn and not sock.turn_pending:
                sock.turn_pending = True
                tg.start_soon(self._take_turn, conn, sock)
            verdict = conn.pending_verdict
            if verdict is not None and verdict is not sock.verdict:
                sock.verdict = verdict
                tg.start_soon(self._verdict, conn, verdict)
            await sock.wakeup.wait()

    async def _send(self, stream: anyio.abc.ByteStream, conn: HostConnection, sock: _Socket, data: bytes) -> bool:
        """Send ``data``; while the send waits for the peer, the connection's writing is paused."""
        conn.writing_paused(True, anyio.current_time())
        try:
            with anyio.CancelScope() as scope:
                sock.send_scope = scope
                await stream.send(data)
            return not scope.cancelled_caught
        except STREAM_ERRORS:
            return False
        finally:
            sock.send_scope = None
            conn.writing_paused(False, anyio.current_time())
            self.flush()

    async def _take_turn(self, conn: HostConnection, sock: _Socket) -> None:
        await anyio.sleep(0)  # the others' turn first
        sock.turn_pending = False
        conn.take_turn(anyio.current_time())
        self.flush()

    async def _verdict(self, conn: HostConnection, verdict: Awaitable[bool]) -> None:
        try:
            result: bool | BaseException = bool(await verdict)
        except Exception as exc:
            result = exc
        conn.give_verdict(result, anyio.current_time())
        self.flush()


async def _close(stream: anyio.abc.ByteStream, *, reset: bool) -> None:
    """Close the stream; with ``reset`` (the peer does not read, or broke the rules), at once with a
    TCP reset, so what the kernel still holds for it is discarded rather than kept for minutes."""
    if reset:
        reset_on_close(stream.extra(SocketAttribute.raw_socket, None))
        await anyio.aclose_forcefully(stream)
        return
    try:
        await stream.aclose()
    except STREAM_ERRORS:
        pass


__all__ = ["STREAM_ERRORS", "AnyioDriver"]
