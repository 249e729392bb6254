"""The anyio WebSocket driver: moves bytes between one anyio byte stream and a :class:`WebSocketCore`.

It knows nothing of JSON-RPC. It hands each whole message to a callback, and writes everything
queued with as few socket writes as it can. Works under asyncio and trio, over TCP or TLS.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Protocol

import anyio
import anyio.abc
from wsproto import WSConnection

from ._wscore import WebSocketCore

logger = logging.getLogger("io_backends.websocket")

_READ_SIZE = 65536
CLOSE_TIMEOUT = 2.0
STREAM_ERRORS = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)

MessageHandler = Callable[["str | bytes"], None]


class Channel(Protocol):
    """What the host and the worker runtime need of an open WebSocket, whatever drives it."""

    last_received: float

    @property
    def is_open(self) -> bool: ...
    @property
    def queued_bytes(self) -> int: ...
    @property
    def close_code(self) -> int | None: ...
    def send_message(self, data: bytes) -> bool: ...
    def send_ping(self) -> None: ...
    def close(self, code: int, reason: str = "") -> None: ...
    def abort(self) -> None: ...
    async def drain(self, high_water: int) -> None: ...
    async def serve(self, on_message: MessageHandler, on_end: Callable[[], None] | None = None) -> None: ...
    async def aclose(self) -> None: ...


class WebSocketPump:
    """One open WebSocket over one anyio byte stream (a :class:`Channel`)."""

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
        self._core = WebSocketCore(ws, max_message_size=max_message_size, max_outbound_bytes=max_outbound_bytes)
        self._pending_input = initial_data
        self._wakeup = anyio.Event()
        self._drained = anyio.Event()
        self._closing_deadline = math.inf
        self._receive_scope: anyio.CancelScope | None = None
        self.last_received = anyio.current_time()

    @property
    def is_open(self) -> bool:
        return self._core.is_open

    @property
    def queued_bytes(self) -> int:
        """Bytes queued and not yet handed to the socket."""
        return self._core.queued_bytes

    @property
    def close_code(self) -> int | None:
        return self._core.close_code

    # ------------------------------------------------------------------ writing

    def send_message(self, data: bytes) -> bool:
        """Queue one text message; False if the connection is closed or the peer is not reading."""
        ok = self._core.send_message(data)
        self._after_output()
        return ok

    def send_ping(self) -> None:
        self._core.send_ping()
        self._after_output()

    def close(self, code: int, reason: str = "") -> None:
        """Start the closing handshake; :meth:`serve` returns when the peer answers (or soon after)."""
        self._core.close(code, reason)
        self._closing_deadline = min(self._closing_deadline, anyio.current_time() + CLOSE_TIMEOUT)
        if self._receive_scope is not None:
            self._receive_scope.deadline = min(self._receive_scope.deadline, self._closing_deadline)
        self._after_output()

    def abort(self) -> None:
        """Give up on the connection at once, without a closing handshake (a dead peer)."""
        self._core.mark_broken()
        self._after_output()
        if self._receive_scope is not None:
            self._receive_scope.cancel()

    def _after_output(self) -> None:
        self._wakeup.set()
        if self._core.finished:
            self._drained.set()

    async def drain(self, high_water: int) -> None:
        """Wait while more than ``high_water`` bytes are queued: backpressure for a producer."""
        while self._core.queued_bytes > high_water and not self._core.finished:
            if self._drained.is_set():
                self._drained = anyio.Event()
            await self._drained.wait()

    async def _run_writer(self) -> None:
        core = self._core
        try:
            while True:
                chunks = core.take_output()
                if not chunks:
                    if core.finished:
                        return
                    await self._wakeup.wait()
                    self._wakeup = anyio.Event()
                    continue
                await self._stream.send(chunks[0] if len(chunks) == 1 else b"".join(chunks))
                self._drained.set()
        except STREAM_ERRORS:
            self._core.mark_broken()

    # ------------------------------------------------------------------ reading

    async def serve(self, on_message: MessageHandler, on_end: Callable[[], None] | None = None) -> None:
        """Read until the connection ends, handing each whole message to ``on_message``.

        ``on_end`` runs as soon as the input ends, before the answer to the peer's close frame is
        written: whoever sees the close acknowledged can rely on what ``on_end`` did. It also runs
        as soon as the core stops taking input (it closed the connection because the peer broke
        the protocol); the socket is then dropped if the peer does not finish the closing
        handshake within ``CLOSE_TIMEOUT``.
        """
        core = self._core
        ended = False
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._run_writer)
            data: bytes | None = self._pending_input  # bytes that came with the handshake
            self._pending_input = b""
            while True:
                if data is None:
                    data = await self._receive()
                    if data is None:
                        break
                    self.last_received = anyio.current_time()
                for message in core.receive_data(data):
                    on_message(message)
                data = None
                if core.finished:
                    break
                if core.closing and not ended:
                    ended = True
                    if on_end is not None:
                        on_end()
                    self._closing_deadline = min(self._closing_deadline, anyio.current_time() + CLOSE_TIMEOUT)
                self._after_output()
            core.finished = True
            if on_end is not None and not ended:
                on_end()
            self._after_output()
            tg.cancel_scope.deadline = anyio.current_time() + CLOSE_TIMEOUT  # the writer flushes, briefly

    async def _receive(self) -> bytes | None:
        if self._closing_deadline <= anyio.current_time():
            return None
        try:
            with anyio.CancelScope(deadline=self._closing_deadline) as scope:
                self._receive_scope = scope
                return await self._stream.receive(_READ_SIZE)
            return None  # the peer never answered our close, or we gave up on it
        except STREAM_ERRORS:
            self._core.mark_broken()
            return None
        finally:
            self._receive_scope = None

    async def aclose(self) -> None:
        """Close the underlying stream."""
        self._core.finished = True
        self._after_output()
        with anyio.CancelScope(shield=True):
            try:
                await self._stream.aclose()
            except STREAM_ERRORS:
                pass


def keepalive_check(channel: Channel, now: float, interval: float, timeout: float) -> bool:
    """One keepalive step: ping a peer silent for ``interval``, cut it off after ``timeout`` more.

    Returns True when it pinged. Finds a peer that is gone without closing its socket (a frozen
    process, a dead link).
    """
    silent_for = now - channel.last_received
    if silent_for >= interval + timeout:
        logger.warning("peer silent for %.1fs: giving up on the connection", silent_for)
        channel.abort()
        return False
    if silent_for >= interval:
        channel.send_ping()
        return True
    return False


async def keep_alive(channel: Channel, interval: float, timeout: float) -> None:
    """Run :func:`keepalive_check` for one channel in its own task, for as long as it is open."""
    while channel.is_open:
        now = anyio.current_time()
        if keepalive_check(channel, now, interval, timeout):
            await anyio.sleep(min(interval, timeout))
        elif channel.is_open:
            await anyio.sleep(max(0.0, interval - (now - channel.last_received)))


__all__ = ["STREAM_ERRORS", "Channel", "MessageHandler", "WebSocketPump", "keep_alive", "keepalive_check"]
