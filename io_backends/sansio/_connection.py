"""One accepted connection of the host, from its first byte to its last, without any I/O.

A :class:`HostConnection` is an HTTP/1.1 connection (:class:`~._http.HttpFront`) that may become a
WebSocket channel to the engine (:class:`~._websocket.WebSocketCore`). A driver feeds it what the
socket gives and carries out what it asks, and nothing else::

    conn = hub.accept(now, peer_address)
    conn.receive_data(data, now)        # b"" when the peer half-closed (EOF)
    conn.writing_paused(True/False, now)
    conn.connection_lost(now)           # the socket is gone
    hub.handle_timer(now)               # when the clock reaches hub.next_deadline()

and after each of those, for every connection in ``hub.take_dirty()``: write
``conn.data_to_send()``, then follow :attr:`HostConnection.phase`:

================  =============================================================================
``HTTP``          serve requests; stop reading while ``reading`` is False; when ``needs_turn``,
                  call ``take_turn(now)`` on the next loop turn (other connections go first)
``CHANNEL``       a WebSocket: same as HTTP
``LINGERING``     our last answer is out: half-close the socket once (``take_half_close()``),
                  keep reading (what comes is drained), until the phase moves on
``CLOSED``        close the socket once everything queued is written
``RESET``         drop the socket at once with a reset: the peer does not read, or is gone
================  =============================================================================

If ``pending_verdict`` is set, an authenticator answered with an awaitable: await it and hand
the result to ``give_verdict``. The connection's deadlines (HTTP timeouts, lingering, the
closing handshake, keepalive) are the hub's to schedule; drivers only keep one timer per hub.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Awaitable
from typing import TYPE_CHECKING

from wsproto import WSConnection

from sansio_runtime import ClientId, CloseCode

from ._endpoints import RpcAnswer
from ._exchange import Publish, View
from ._http import ABORT, NEED_DATA, Authorize, HttpFront, OpenChannel, Reply, RpcCall, Send
from ._limits import CLOSE_TIMEOUT, LINGER_MAX_BYTES, LINGER_TIMEOUT, RESPONSES_PER_TURN
from ._websocket import WebSocketCore

if TYPE_CHECKING:
    from ._hub import HostHub

logger = logging.getLogger("io_backends.host")


class Phase(enum.Enum):
    """Where a connection is in its life, and so what its driver does with the socket."""

    HTTP = "http"
    CHANNEL = "channel"
    LINGERING = "lingering"
    CLOSED = "closed"
    RESET = "reset"


class _Wait(enum.Enum):
    """What an HTTP connection's front waits for before it goes on."""

    INPUT = "input"
    VERDICT = "verdict"
    ANSWER = "answer"
    WRITE = "write"
    TURN = "turn"


class HostConnection:
    """One accepted socket's HTTP requests, and its WebSocket once upgraded (see the module docs)."""

    __slots__ = (
        "_can_half_close",
        "_core",
        "_deadline",
        "_drained",
        "_eof",
        "_front",
        "_half_close",
        "_held_input",
        "_hub",
        "_out",
        "_pinged",
        "_reply",
        "_wait",
        "_write_paused",
        "accepted_at",
        "address",
        "admitted",
        "bytes_in",
        "bytes_out",
        "client",
        "last_received",
        "messages_in",
        "messages_out",
        "peer",
        "pending_verdict",
        "phase",
        "unsent",
    )

    def __init__(self, hub: HostHub, front: HttpFront, now: float, address: str | None, can_half_close: bool) -> None:
        self._hub = hub
        self._front = front
        self.address = address
        """The peer's IP address (None: unknown)."""
        self.accepted_at = now
        self.peer: str | None = None
        """The peer's ``host:port``, for the status document (None: unknown)."""
        self.bytes_in = 0
        """Bytes received from the peer (counters for the status document)."""
        self.bytes_out = 0
        self.messages_in = 0
        """WebSocket messages received from the peer (a channel)."""
        self.messages_out = 0
        self.admitted = True
        self._can_half_close = can_half_close
        self.phase = Phase.HTTP
        self.client: ClientId | None = None
        """The engine's client of this connection's channel, or of the ``/v1/rpc`` body it runs."""
        self.pending_verdict: Awaitable[bool] | None = None
        self.last_received = now
        self.unsent = 0
        """Bytes the driver has taken and not yet handed to the socket (a transport's write buffer)."""
        self._out: list[bytes] = []
        self._core: WebSocketCore | None = None
        self._reply: Reply = None
        self._wait = _Wait.INPUT
        self._write_paused = False
        self._held_input = False
        self._eof = False
        self._half_close = False
        self._drained = 0
        self._pinged = False
        self._deadline: float | None = None  # lingering, closing or closed: when to give up

    # ------------------------------------------------------------------ what the driver reads

    @property
    def reading(self) -> bool:
        """Whether the driver should read from the socket now (False: input waits in the kernel)."""
        return not self._held_input

    @property
    def needs_turn(self) -> bool:
        """More pipelined requests wait: call :meth:`take_turn` on the next loop turn."""
        return self._wait is _Wait.TURN

    def data_to_send(self) -> bytes:
        """Everything to write now. While the driver's writing is paused, HTTP answers wait (and so
        does the next pipelined request); a channel's messages do not, but what the driver holds
        unsent (:attr:`unsent`, which it keeps up to date) counts against ``max_outbound_bytes``."""
        if self._write_paused and self.phase is not Phase.CHANNEL:
            return b""
        out = self._out
        core = self._core
        if core is not None and core.queued_bytes:
            out.extend(core.take_output())
        if not out:
            return b""
        self._out = []
        data = out[0] if len(out) == 1 else b"".join(out)
        self.bytes_out += len(data)
        return data

    def take_half_close(self) -> bool:
        """(Lingering) True once: half-close the socket now, after writing what is queued."""
        half_close, self._half_close = self._half_close, False
        return half_close

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timer` has work, or None."""
        phase = self.phase
        if phase is Phase.HTTP:
            return self._front.next_deadline()
        if phase is Phase.CHANNEL:
            core = self._core
            if core is not None and core.closing:
                return self._deadline
            interval, timeout = self._hub.keepalive
            if interval is None:
                return None
            return self.last_received + interval + (timeout if self._pinged else 0.0)
        return self._deadline

    # ------------------------------------------------------------------ what the driver tells it

    def receive_data(self, data: bytes, now: float) -> None:
        """Bytes from the socket at ``now``; b"" when the peer half-closed it (EOF)."""
        self._hub.enter(self, now)
        self.bytes_in += len(data)
        try:
            phase = self.phase
            if phase is Phase.CHANNEL:
                self._receive_frames(data, now)
            elif phase is Phase.HTTP:
                self._receive_http(data, now)
            elif phase is Phase.LINGERING:
                self._drained += len(data)
                if not data:
                    self._end(Phase.CLOSED, now)
                elif self._drained > LINGER_MAX_BYTES:
                    self._end(Phase.RESET, now)
        finally:
            self._hub.leave(self, now)

    def writing_paused(self, paused: bool, now: float) -> None:
        """The driver's flow control: True while the socket takes no more, False when it does again."""
        self._hub.enter(self, now)
        try:
            self._write_paused = paused
            if not paused and self._wait is _Wait.WRITE and self.phase is Phase.HTTP:
                self._advance(now)
        finally:
            self._hub.leave(self, now)

    def take_turn(self, now: float) -> None:
        """Serve the next pipelined requests (see :attr:`needs_turn`)."""
        self._hub.enter(self, now)
        try:
            if self._wait is _Wait.TURN and self.phase is Phase.HTTP:
                self._advance(now)
        finally:
            self._hub.leave(self, now)

    def give_verdict(self, verdict: bool | BaseException, now: float) -> None:
        """The result of awaiting :attr:`pending_verdict` (an exception: the authenticator failed)."""
        self._hub.enter(self, now)
        try:
            self.pending_verdict = None
            if self._wait is not _Wait.VERDICT or self.phase is not Phase.HTTP:
                return
            if isinstance(verdict, BaseException):
                logger.error("the authenticator failed", exc_info=verdict)
                self._linger(now)
                return
            self._reply = verdict
            self._advance(now)
        finally:
            self._hub.leave(self, now)

    def connection_lost(self, now: float) -> None:
        """The socket is gone (closed, reset, or dropped by the driver). Nothing more happens to it."""
        self._hub.enter(self, now)
        try:
            self._release(now)
            if self.phase is not Phase.RESET:
                self.phase = Phase.CLOSED
            self._out = []
            self._deadline = None
            self._wait = _Wait.INPUT
            self._hub.forget(self)
        finally:
            self._hub.leave(self, now)

    def handle_timer(self, now: float) -> None:
        """The clock reached :meth:`next_deadline` (or later); called by the hub."""
        phase = self.phase
        deadline = self.next_deadline()
        if deadline is None or now < deadline:
            return
        if phase is Phase.HTTP:
            if self._front.handle_timer(now):
                self._wait = _Wait.INPUT
                self._held_input = False
                self._advance(now)  # the front answers 408, or closes
        elif phase is Phase.CHANNEL:
            self._channel_timer(now)
        elif phase is Phase.LINGERING:
            self._end(Phase.CLOSED, now)
        elif phase is Phase.CLOSED:
            self._end(Phase.RESET, now)  # the peer never took what was left: let it go

    def refuse(self, response: bytes, now: float) -> None:
        """(Called by the hub) the connection is over the caps: write ``response`` and close."""
        self._out.append(response)
        self._linger(now)

    # ------------------------------------------------------------------ HTTP

    def _receive_http(self, data: bytes, now: float) -> None:
        if not data:
            self._eof = True
            if self._wait is _Wait.ANSWER:  # the caller hung up before its answer was ready
                self._end(Phase.CLOSED, now)
                return
        self._front.receive_data(data, now)
        if self._wait is _Wait.INPUT:
            self._advance(now)
        else:
            self._held_input = True  # kept for the next request; read more once this one is answered

    def answered(self, answer: RpcAnswer) -> None:
        """(Called by the hub, which has let the body's client go) the engine answered the ``/v1/rpc``
        body this connection waits on; the hub calls :meth:`resume` once it is done."""
        if self._wait is _Wait.ANSWER:
            self._reply = answer
            self._hub.ready(self)

    def resume(self, now: float) -> None:
        """(Called by the hub) go on after :meth:`answered`."""
        if self._wait is _Wait.ANSWER and self.phase is Phase.HTTP:
            self._advance(now)

    def _advance(self, now: float) -> None:
        """Carry out the front's actions until it needs more input, an answer, or a turn."""
        try:
            self._run_front(now)
        except Exception:
            # One connection's failure must never take the host down.
            logger.exception("error serving a connection")
            self._linger(now)

    def _run_front(self, now: float) -> None:
        front = self._front
        hub = self._hub
        reply, self._reply = self._reply, None
        self._wait = _Wait.INPUT
        self._held_input = False
        answered = 0
        while self.phase is Phase.HTTP:
            action = front.next_action(reply, now)
            reply = None
            if action is NEED_DATA:
                if self._eof:  # (h11 does not ask for more after the end of input)
                    self._linger(now)
                return
            if isinstance(action, Send):
                self._out.append(action.data)
                if self._write_paused:  # the peer is not reading: go on once it has taken this
                    self._wait = _Wait.WRITE
                    return
                answered += 1
                if answered == RESPONSES_PER_TURN:  # a long pipeline must not keep the loop to itself
                    self._wait = _Wait.TURN
                    return
            elif isinstance(action, Authorize):
                verdict = hub.authorize(action.request)
                if not isinstance(verdict, bool):
                    self.pending_verdict = verdict
                    self._wait = _Wait.VERDICT
                    return
                reply = verdict
            elif isinstance(action, Publish):
                reply = hub.publish(action.events, now)
            elif isinstance(action, View):
                reply = hub.view(action.endpoint, action.request, now)
            elif isinstance(action, RpcCall):
                self._wait = _Wait.ANSWER
                hub.start_one_shot(self, action.body, now)  # answered() follows, and resume() goes on
                return
            elif isinstance(action, OpenChannel):
                refusal = hub.open_channel(self, action.request, now)
                if refusal is not None:
                    reply = refusal
                    continue
                self._open_channel(action.ws, now)
                return
            elif action is ABORT:
                self._end(Phase.RESET, now)
                return
            else:  # CLOSE
                self._linger(now)
                return

    def _linger(self, now: float) -> None:
        """Close after the peer has read our last answer: half-close, then drain input briefly.

        Closing a socket that still has unread input makes the kernel send a reset, which can
        destroy an answer (a 413, say) before the client reads it.
        """
        if self.phase in (Phase.LINGERING, Phase.CLOSED, Phase.RESET):
            return
        self._release(now)
        if self._eof or not self._can_half_close:
            self._end(Phase.CLOSED, now)
            return
        self.phase = Phase.LINGERING
        self._half_close = True
        self._held_input = False
        self._deadline = now + LINGER_TIMEOUT

    # ------------------------------------------------------------------ WebSocket

    def _open_channel(self, ws: WSConnection, now: float) -> None:
        hub = self._hub
        self._out.append(hub.channel_accept(ws))
        self._core = WebSocketCore(
            ws,
            max_message_size=hub.engine.max_message_size,
            max_outbound_bytes=hub.max_outbound_bytes,
            unsent=self._unsent,
        )
        self.phase = Phase.CHANNEL
        self._wait = _Wait.INPUT
        self._held_input = False
        self.last_received = now
        trailing = self._front.trailing_data()
        if trailing:
            self._receive_frames(trailing, now)

    def _receive_frames(self, data: bytes, now: float) -> None:
        core = self._core
        assert core is not None
        self.last_received = now
        self._pinged = False
        if not data:  # the peer half-closed without a closing handshake
            core.mark_broken()
        else:
            hub = self._hub
            for message in core.receive_data(data):
                if self.client is None:
                    break  # cut off by an earlier message
                self.messages_in += 1
                hub.channel_message(self, message, now)
        if core.finished:
            # Released before the close is answered: a worker whose stop() returned has freed its types.
            self._end(Phase.CLOSED, now)
        elif core.closing and self.client is not None:
            self._closing(now)  # the core's own close (1002, 1007, 1009): the engine learns at once

    def close_channel(self, code: CloseCode, reason: str, now: float) -> None:
        """(Called by the hub) the engine closed this connection's client: start the closing handshake."""
        core = self._core
        if core is None or self.phase is not Phase.CHANNEL:
            return
        core.close(code, reason)
        self._release(now)  # the engine has let the client go already: forget it there too
        if core.finished:
            self._end(Phase.CLOSED, now)
        else:
            self._deadline = now + CLOSE_TIMEOUT

    def send_message(self, data: bytes, now: float) -> bool:
        """(Called by the hub) one message for the peer; False if it was refused (closed, or the peer
        is not reading: then it is being cut off with 4008)."""
        core = self._core
        if core is None or self.phase is not Phase.CHANNEL:
            return False
        if core.send_message(data, backlog=self.unsent):
            self.messages_out += 1
            return True
        if core.closing:
            self._closing(now)
        return False

    def _unsent(self) -> int:
        return self.unsent

    def _closing(self, now: float) -> None:
        """The core is closing the connection itself: release the client now, give the handshake a bound."""
        if self._deadline is None:
            self._deadline = now + CLOSE_TIMEOUT
        self._release(now)

    def _channel_timer(self, now: float) -> None:
        core = self._core
        assert core is not None
        if core.closing:
            self._end(Phase.RESET, now)  # the peer never answered our close
            return
        interval, timeout = self._hub.keepalive
        assert interval is not None
        silent_for = now - self.last_received
        if silent_for >= interval + timeout:
            logger.warning("peer silent for %.1fs: giving up on the connection", silent_for)
            core.mark_broken()
            self._end(Phase.RESET, now)
        elif silent_for >= interval and not self._pinged:
            core.send_ping()
            self._pinged = True

    # ------------------------------------------------------------------ the end

    def _end(self, phase: Phase, now: float) -> None:
        """Move to CLOSED (close once written) or RESET (drop now), releasing the engine's client."""
        if self.phase is Phase.RESET or self.phase is phase:
            return
        if self.phase is Phase.CLOSED and phase is not Phase.RESET:
            return
        self._release(now)
        self.phase = phase
        self._wait = _Wait.INPUT
        self._held_input = False
        if phase is Phase.RESET:
            self._out = []
            self._deadline = None
            if self._core is not None:
                self._core.mark_broken()
        else:
            self._deadline = now + self._hub.give_up_after(self)

    def _release(self, now: float) -> None:
        """Tell the engine this connection's client is gone (its calls end, it owns nothing)."""
        if self.client is not None:
            self._hub.release_client(self, now)


__all__ = ["HostConnection", "Phase"]
