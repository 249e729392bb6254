"""A wsproto pump: moves bytes between one anyio byte stream and one WebSocket connection.

It knows nothing of JSON-RPC. Upward it yields whole messages; downward it queues messages and
writes everything queued with as few socket writes as it can. It answers pings, runs the closing
handshake, enforces the message size limit while a message is still arriving (close 1009) and
bounds the bytes waiting to be written (a peer that stops reading is cut off, not buffered for).
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator

import anyio
import anyio.abc
from wsproto import WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage

from sansio_runtime import CloseCode

logger = logging.getLogger("io_backends.websocket")

_READ_SIZE = 65536
_CLOSE_TIMEOUT = 2.0
_STREAM_ERRORS = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)


class WebSocketPump:
    """One open WebSocket over one byte stream.

    Run :meth:`run_writer` in a task and iterate :meth:`messages` in another; call
    :meth:`send_message` from anywhere on the same event loop. When :meth:`messages` ends, the
    connection is over (closed by either side, broken, or cut off).
    """

    def __init__(
        self,
        stream: anyio.abc.ByteStream,
        ws: WSConnection,
        *,
        max_message_size: int,
        max_outbound_bytes: int,
        initial_data: bytes = b"",
    ) -> None:
        self._stream = stream
        self._ws = ws
        self._max_message_size = max_message_size
        self._max_outbound_bytes = max_outbound_bytes
        self._pending_input = initial_data
        self._queue: list[bytes] = []
        self._queued_bytes = 0
        self._wakeup = anyio.Event()
        self._drained = anyio.Event()
        self._finished = False  # no more writes after the queue drains
        self._closing_deadline = math.inf
        self._receive_scope: anyio.CancelScope | None = None
        self.close_code: int | None = None
        """The close code of the connection once known (ours or the peer's; 1006 if it just broke)."""
        self.last_received = anyio.current_time()

    # ------------------------------------------------------------------ writing

    @property
    def queued_bytes(self) -> int:
        """Bytes queued and not yet handed to the socket."""
        return self._queued_bytes

    async def drain(self, high_water: int) -> None:
        """Wait while more than ``high_water`` bytes are queued: backpressure for a producer."""
        while self._queued_bytes > high_water and not self._finished:
            if self._drained.is_set():
                self._drained = anyio.Event()
            await self._drained.wait()

    @property
    def is_open(self) -> bool:
        return not self._finished and self._ws.state is ConnectionState.OPEN

    def send_message(self, data: bytes) -> bool:
        """Queue one text message (UTF-8 bytes). Returns False, and closes the connection with
        SLOW_CONSUMER, if the peer already has more than ``max_outbound_bytes`` unread."""
        if not self.is_open:
            return False
        frame = self._ws.send(TextMessage(data.decode("utf-8")))
        self._queue.append(frame)
        self._queued_bytes += len(frame)
        self._wakeup.set()
        if self._queued_bytes > self._max_outbound_bytes:
            self._queue.clear()
            self._queued_bytes = 0
            self.close(CloseCode.SLOW_CONSUMER, "outbound buffer full: the peer is not reading")
            return False
        return True

    def send_ping(self, payload: bytes = b"") -> None:
        if self.is_open:
            self._push(self._ws.send(Ping(payload)))

    def close(self, code: int, reason: str = "") -> None:
        """Start the closing handshake; :meth:`messages` ends when the peer answers (or soon after)."""
        if self._ws.state in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
            if self.close_code is None:
                self.close_code = code
            self._push(self._ws.send(CloseConnection(code, reason[:120])))
        self._closing_deadline = min(self._closing_deadline, anyio.current_time() + _CLOSE_TIMEOUT)
        if self._receive_scope is not None:
            self._receive_scope.deadline = min(self._receive_scope.deadline, self._closing_deadline)
        if self._ws.state is ConnectionState.CLOSED:
            self._finish()

    def abort(self) -> None:
        """Give up on the connection at once, without a closing handshake (a dead peer)."""
        self._mark_broken()
        if self._receive_scope is not None:
            self._receive_scope.cancel()

    def _push(self, frame: bytes) -> None:
        self._queue.append(frame)
        self._queued_bytes += len(frame)
        self._wakeup.set()

    def _finish(self) -> None:
        self._finished = True
        self._wakeup.set()
        self._drained.set()

    async def run_writer(self) -> None:
        """Write queued frames until the connection is finished; coalesces whatever is queued."""
        try:
            while True:
                if not self._queue:
                    if self._finished:
                        return
                    await self._wakeup.wait()
                    self._wakeup = anyio.Event()
                    continue
                chunks, self._queue = self._queue, []
                self._queued_bytes = 0
                await self._stream.send(chunks[0] if len(chunks) == 1 else b"".join(chunks))
                self._drained.set()
        except _STREAM_ERRORS:
            self._mark_broken()

    # ------------------------------------------------------------------ reading

    async def messages(self) -> AsyncIterator[str | bytes]:
        """Whole messages from the peer, until the connection ends."""
        parts: list[str | bytes] = []
        size = 0
        data: bytes | None = self._pending_input  # bytes that came with the handshake
        self._pending_input = b""
        while not self._finished:
            if data is None:
                data = await self._receive()
                if data is None:
                    return
                self.last_received = anyio.current_time()
            if data:
                self._ws.receive_data(data)
            data = None
            for event in self._ws.events():
                if isinstance(event, (TextMessage, BytesMessage)):
                    if not self.is_open:
                        continue
                    parts.append(bytes(event.data) if isinstance(event.data, bytearray) else event.data)
                    size += len(event.data)
                    if size > self._max_message_size:
                        parts.clear()
                        self.close(CloseCode.MESSAGE_TOO_BIG, f"message exceeds {self._max_message_size} bytes")
                        continue
                    if event.message_finished:
                        message = parts[0] if len(parts) == 1 else _join(parts)
                        parts.clear()
                        size = 0
                        yield message
                elif isinstance(event, Ping):
                    if self.is_open:
                        self._push(self._ws.send(event.response()))
                elif isinstance(event, CloseConnection):
                    if self.close_code is None:
                        self.close_code = event.code
                    if self._ws.state is ConnectionState.REMOTE_CLOSING:
                        self._push(self._ws.send(event.response()))
                    elif self._ws.state is ConnectionState.OPEN:
                        # wsproto found a protocol violation (bad UTF-8: 1007, bad framing: 1002).
                        self.close(event.code, event.reason or "")
                    self._finish()
                    return
                elif isinstance(event, Pong):
                    pass

    async def _receive(self) -> bytes | None:
        remaining = self._closing_deadline - anyio.current_time()
        if remaining <= 0:
            self._finish()
            return None
        try:
            with anyio.CancelScope(deadline=self._closing_deadline) as scope:
                self._receive_scope = scope
                return await self._stream.receive(_READ_SIZE)
            self._finish()  # the peer never answered our close, or we gave up on it
            return None
        except _STREAM_ERRORS:
            self._mark_broken()
            return None
        finally:
            self._receive_scope = None

    def _mark_broken(self) -> None:
        if self.close_code is None:
            self.close_code = 1006
        self._queue.clear()
        self._finish()

    async def aclose(self) -> None:
        """Close the underlying stream (after :meth:`messages` ended)."""
        self._finish()
        with anyio.CancelScope(shield=True):
            try:
                await self._stream.aclose()
            except _STREAM_ERRORS:
                pass


async def keep_alive(pump: WebSocketPump, interval: float, timeout: float) -> None:
    """Ping a peer that has been silent for ``interval``; cut it off after ``timeout`` more silence.

    Finds a peer that is gone without closing its socket (a frozen process, a dead link).
    """
    while pump.is_open:
        silent_for = anyio.current_time() - pump.last_received
        if silent_for >= interval + timeout:
            logger.warning("peer silent for %.1fs: giving up on the connection", silent_for)
            pump.abort()
            return
        if silent_for >= interval:
            pump.send_ping()
            await anyio.sleep(min(interval, timeout))
        else:
            await anyio.sleep(interval - silent_for)


def _join(parts: list[str | bytes]) -> str | bytes:
    if isinstance(parts[0], str):
        return "".join(p if isinstance(p, str) else p.decode("utf-8", "replace") for p in parts)
    return b"".join(p if isinstance(p, bytes) else p.encode() for p in parts)


__all__ = ["WebSocketPump", "keep_alive"]
