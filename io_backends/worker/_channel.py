"""The worker's WebSocket to its host: a :class:`~io_backends.sansio.WebSocketCore` inside an
``asyncio.Protocol`` (autogen-core's runtimes run on asyncio), and its keepalive.

The hot path skips the task switches a stream-based driver needs: received bytes become
messages, and messages become engine events, inside ``data_received``; a message to send is
written at once when the socket is idle, and otherwise coalesced with whatever else is queued in
the same loop iteration. :mod:`._connect` opens it (the client's side of the upgrade).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import weakref
from collections.abc import Callable, Sized
from typing import cast

import anyio
from wsproto import WSConnection

from .._compat import ready_callbacks
from .._sockets import reset_on_close, set_no_delay
from ..sansio import WebSocketCore
from ..sansio._limits import CLOSE_TIMEOUT

MessageHandler = Callable[["str | bytes"], None]
logger = logging.getLogger("io_backends.worker")


def reset(transport: asyncio.Transport) -> None:
    """Drop a connection at once with a TCP reset, giving up on the peer.

    What the kernel still holds unsent for the peer is discarded too: a plain abort would leave
    the kernel trying to deliver it, for minutes, to a peer that does not read.
    """
    reset_on_close(transport.get_extra_info("socket"))
    transport.abort()


class _Flusher:
    """Coalesces the writes of all channels on one loop.

    While any channel's ``data_received`` runs, what is sent to any channel is only queued, and
    written when that ``data_received`` returns: a message routed from one socket to others
    costs one write per socket and no extra loop iteration. Sends from anywhere else (a task, a
    timer) are written together by one callback at the end of the loop iteration.
    """

    __slots__ = ("_ready", "depth", "dirty", "loop", "scheduled")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.depth = 0
        self.dirty: list[AsyncioChannel] = []
        self.scheduled = False
        # The loop's queue of callbacks ready to run (asyncio's own loops; None on others).
        self._ready: Sized | None = ready_callbacks(loop)

    def others_ready(self) -> bool:
        """Whether other callbacks (typically other tasks' steps) run before the loop next polls.

        If so, they may well send too, so a send waits for them and all go out in one write:
        32 tasks answering at once cost one system call instead of 32. If not (or if the loop
        does not say), nothing else can send before the loop polls, so writing at once costs
        nothing extra.
        """
        ready = self._ready
        return ready is not None and len(ready) > 0

    def add(self, channel: AsyncioChannel) -> None:
        self.dirty.append(channel)
        if not self.depth and not self.scheduled:
            self.scheduled = True
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        self.scheduled = False
        while self.dirty:
            dirty, self.dirty = self.dirty, []
            for channel in dirty:
                channel._flush_pending = False
                channel._flush()


_flushers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Flusher] = weakref.WeakKeyDictionary()


def _flusher_for(loop: asyncio.AbstractEventLoop) -> _Flusher:
    flusher = _flushers.get(loop)
    if flusher is None:
        flusher = _flushers[loop] = _Flusher(loop)
    return flusher


class AsyncioChannel(asyncio.Protocol):
    """The worker's open WebSocket on an asyncio transport.

    :class:`~._connect.ClientChannel` performs the client's opening handshake and then hands the
    transport over (``transport=`` gives one directly, as the unit tests do with a fake).
    """

    def __init__(
        self,
        ws: WSConnection,
        *,
        max_message_size: int,
        max_outbound_bytes: int,
        transport: asyncio.Transport | None = None,
        max_batch: int | None = None,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._max_batch = max_batch
        self._backlog: collections.deque[str | bytes] = collections.deque()
        self._backlog_scheduled = False
        self._core = WebSocketCore(
            ws, max_message_size=max_message_size, max_outbound_bytes=max_outbound_bytes, unsent=self._unsent
        )
        self._transport = transport
        self._done: asyncio.Future[None] = self._loop.create_future()
        self._early: list[str | bytes] = []
        self._on_message: MessageHandler | None = None
        self._on_end: Callable[[], None] | None = None
        self._ended = False
        self._flusher = _flusher_for(self._loop)
        self._flush_pending = False
        self._writable = asyncio.Event()
        self._writable.set()
        self._give_up: asyncio.TimerHandle | None = None
        self.last_received = self._loop.time()

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's implement the interface without subclassing asyncio.Transport).
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        set_no_delay(transport.get_extra_info("socket"))

    def data_received(self, data: bytes) -> None:
        self.last_received = self._loop.time()
        self._deliver_holding_writes(self._core.receive_data(data))

    def eof_received(self) -> bool:
        return False  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        if self._backlog:  # what arrived before the connection was lost is delivered first
            self._drain_backlog(everything=True)
        self._core.mark_broken()
        self._writable.set()
        if self._give_up is not None:
            self._give_up.cancel()
        self._end()
        if not self._done.done():
            self._done.set_result(None)

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    # ------------------------------------------------------------------ the channel

    @property
    def is_open(self) -> bool:
        return self._core.is_open

    @property
    def queued_bytes(self) -> int:
        backlog = 0 if self._transport is None else self._transport.get_write_buffer_size()
        return self._core.queued_bytes + backlog

    def _unsent(self) -> int:
        return 0 if self._transport is None else self._transport.get_write_buffer_size()

    @property
    def close_code(self) -> int | None:
        return self._core.close_code

    def send_message(self, data: bytes) -> bool:
        transport = self._transport
        backlog = 0 if transport is None else transport.get_write_buffer_size()
        if self._core.send_message(data, backlog=backlog):
            self._schedule_flush()
            return True
        if self._core.closing:  # the peer is not reading: it is being cut off
            self._flush()
            self._arm_give_up()
        return False

    def send_ping(self) -> None:
        self._core.send_ping()
        self._schedule_flush()

    def close(self, code: int, reason: str = "") -> None:
        self._core.close(code, reason)
        self._flush()
        self._arm_give_up()

    def abort(self) -> None:
        self._core.mark_broken()
        if self._transport is not None:
            reset(self._transport)

    async def drain(self, high_water: int) -> None:
        """Wait while more than ``high_water`` bytes wait to be written: backpressure for a producer."""
        transport = self._transport
        if transport is None:
            return
        self._flush()
        while transport.get_write_buffer_size() > high_water and not transport.is_closing():
            transport.set_write_buffer_limits(high=high_water)  # pauses us now if over
            await self._writable.wait()

    def start(self, on_message: MessageHandler, on_end: Callable[[], None] | None = None) -> None:
        """Deliver messages to ``on_message`` (from ``data_received``) from now on, without a task.

        ``on_end`` runs once, as soon as the input ends (before the answer to the peer's close
        frame is written), the core stops taking input (it closed the connection because the
        peer broke the protocol), or the connection is lost.
        """
        self._on_message = on_message
        self._on_end = on_end
        early, self._early = self._early, []
        self._deliver(early)
        if self._done.done():
            self._end()

    async def serve(self, on_message: MessageHandler, on_end: Callable[[], None] | None = None) -> None:
        """Deliver messages to ``on_message`` (from ``data_received``) until the connection ends."""
        self.start(on_message, on_end)
        try:
            await asyncio.shield(self._done)
        finally:
            self._end()

    async def aclose(self) -> None:
        self._core.finished = True
        if self._transport is not None:
            self._transport.close()
        try:
            await asyncio.wait_for(asyncio.shield(self._done), CLOSE_TIMEOUT)
        except asyncio.TimeoutError:
            self.abort()

    # ------------------------------------------------------------------ internals

    def _arm_give_up(self) -> None:
        if self._give_up is None and not self._done.done():
            self._give_up = self._loop.call_later(CLOSE_TIMEOUT, self.abort)

    def _end(self) -> None:
        if not self._ended and self._on_end is not None:
            self._ended = True
            self._on_end()

    def _input_over(self) -> None:
        """The input ended, or the core stopped taking it (it sent a close frame: a protocol
        violation, an oversized message): ``on_end`` now, and drop the socket if the peer does
        not finish the closing handshake in time."""
        self._end()
        if not self._core.finished:
            self._arm_give_up()

    def _deliver(self, messages: list[str | bytes]) -> None:
        handler = self._on_message
        if handler is None:
            self._early.extend(messages)
        elif self._backlog or (self._max_batch is not None and len(messages) > self._max_batch):
            self._backlog.extend(messages)
            self._drain_backlog()
        else:
            for message in messages:
                handler(message)
            if self._core.closing or self._core.finished:
                self._input_over()
        self._flush()

    def _drain_backlog(self, everything: bool = False) -> None:
        """Deliver the next ``max_batch`` messages of the backlog, and the rest in later loop turns.

        A worker turns each message into handler tasks. Delivering a read of thousands of
        events at once would create thousands of tasks at once; they all survive the garbage
        collections that this triggers, and get promoted until full collections of the whole
        heap run. In batches, the tasks of one batch run (and are gone) before the next is made.
        (Measured on the 8-subscriber publish benchmark: 1,127 / 102 / 9 collections of the
        three generations without batches, 73 / 6 / 0 with batches of 16, and about 15% less
        CPU.) Reading pauses while a backlog is waiting, so the socket, not memory, holds the rest.
        """
        handler = self._on_message
        backlog = self._backlog
        assert handler is not None
        count = len(backlog) if everything or self._max_batch is None else min(self._max_batch, len(backlog))
        for _ in range(count):
            handler(backlog.popleft())
        transport = self._transport
        if transport is not None and transport.is_closing():
            transport = None  # nothing more to read either way
        if backlog:
            if not self._backlog_scheduled:
                self._backlog_scheduled = True
                self._loop.call_soon(self._resume_backlog)
                if transport is not None:
                    transport.pause_reading()
        else:
            if transport is not None:
                transport.resume_reading()
            if self._core.closing or self._core.finished:
                self._input_over()

    def _resume_backlog(self) -> None:
        self._backlog_scheduled = False
        if self._backlog and self._on_message is not None:
            self._deliver_holding_writes([])  # no new messages: the next batch of the backlog

    def _deliver_holding_writes(self, messages: list[str | bytes]) -> None:
        """:meth:`_deliver`, with every channel's writes held until it returns (one write per socket)."""
        flusher = self._flusher
        flusher.depth += 1
        try:
            self._deliver(messages)
        finally:
            flusher.depth -= 1
            if not flusher.depth and flusher.dirty:
                flusher.flush()

    def _schedule_flush(self) -> None:
        if self._flush_pending:
            return
        flusher = self._flusher
        if not flusher.depth and not flusher.scheduled and not flusher.others_ready():
            transport = self._transport
            if transport is not None and not transport.get_write_buffer_size():
                self._flush()  # an idle socket, nothing else pending: write now
                return
        self._flush_pending = True
        flusher.add(self)

    def _flush(self) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        core = self._core
        if core.queued_bytes:
            chunks = core.take_output()
            transport.write(chunks[0] if len(chunks) == 1 else b"".join(chunks))
        if core.finished:
            transport.close()


def keepalive_check(channel: AsyncioChannel, now: float, interval: float, timeout: float) -> bool:
    """One keepalive step: ping a host silent for ``interval``, give the connection up after
    ``timeout`` more. Returns True when it pinged. Finds a host that is gone without closing its
    socket (a frozen process, a dead link)."""
    silent_for = now - channel.last_received
    if silent_for >= interval + timeout:
        logger.warning("host silent for %.1fs: giving up on the connection", silent_for)
        channel.abort()
        return False
    if silent_for >= interval:
        channel.send_ping()
        return True
    return False


async def keep_alive(channel: AsyncioChannel, interval: float, timeout: float) -> None:
    """Run :func:`keepalive_check` for the channel, for as long as it is open."""
    while channel.is_open:
        now = anyio.current_time()
        if keepalive_check(channel, now, interval, timeout):
            await anyio.sleep(min(interval, timeout))
        elif channel.is_open:
            await anyio.sleep(max(0.0, interval - (now - channel.last_received)))
