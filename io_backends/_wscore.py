"""One WebSocket's state without any I/O: wsproto, message assembly, limits and the outbound queue.

The drivers (:mod:`._websocket` over anyio streams, :mod:`._asyncio_channel` over an asyncio
protocol) feed it received bytes and write what it has queued; everything they have in common
lives here, once.
"""

from __future__ import annotations

from wsproto import WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage

from sansio_runtime import CloseCode

ABNORMAL_CLOSURE = 1006


class WebSocketCore:
    """The state of one open WebSocket.

    ``receive_data`` returns whole messages (answering pings and close frames on the way);
    ``send_message`` and friends queue frames that ``take_output`` hands to the driver. Once
    :attr:`finished` is set, no more input matters: the driver writes what is left and closes.
    """

    __slots__ = (
        "_max_message_size",
        "_max_outbound_bytes",
        "_out",
        "_parts",
        "_size",
        "close_code",
        "closing",
        "finished",
        "queued_bytes",
        "ws",
    )

    def __init__(self, ws: WSConnection, *, max_message_size: int, max_outbound_bytes: int) -> None:
        self.ws = ws
        self._max_message_size = max_message_size
        self._max_outbound_bytes = max_outbound_bytes
        self._out: list[bytes] = []
        self._parts: list[str | bytes] = []
        self._size = 0
        self.queued_bytes = 0
        self.finished = False
        """No more input will be read; write what is queued, then close the transport."""
        self.closing = False
        """We sent a close frame and wait for the peer's."""
        self.close_code: int | None = None
        """The connection's close code once known (ours or the peer's; 1006 if it just broke)."""

    @property
    def is_open(self) -> bool:
        return not self.finished and self.ws.state is ConnectionState.OPEN

    # ------------------------------------------------------------------ output

    def take_output(self) -> list[bytes]:
        out, self._out = self._out, []
        self.queued_bytes = 0
        return out

    def _push(self, frame: bytes) -> None:
        self._out.append(frame)
        self.queued_bytes += len(frame)

    def send_message(self, data: bytes, *, backlog: int = 0) -> bool:
        """Queue one text message (UTF-8 bytes).

        ``backlog`` is what the driver already holds unsent. Returns False, and starts closing
        with SLOW_CONSUMER, when the peer has more than ``max_outbound_bytes`` unread.
        """
        if not self.is_open:
            return False
        self._push(self.ws.send(TextMessage(data.decode("utf-8"))))
        if self.queued_bytes + backlog > self._max_outbound_bytes:
            self._out.clear()
            self.queued_bytes = 0
            self.close(CloseCode.SLOW_CONSUMER, "outbound buffer full: the peer is not reading")
            return False
        return True

    def send_ping(self, payload: bytes = b"") -> None:
        if self.is_open:
            self._push(self.ws.send(Ping(payload)))

    def close(self, code: int, reason: str = "") -> None:
        """Queue a close frame (the closing handshake starts)."""
        if self.ws.state in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
            if self.close_code is None:
                self.close_code = code
            self._push(self.ws.send(CloseConnection(code, reason[:120])))
            self.closing = True
        if self.ws.state is ConnectionState.CLOSED:
            self.finished = True

    def mark_broken(self) -> None:
        """The transport broke (or we gave up on the peer): nothing more will be written."""
        if self.close_code is None:
            self.close_code = ABNORMAL_CLOSURE
        self._out.clear()
        self.queued_bytes = 0
        self.finished = True

    # ------------------------------------------------------------------ input

    def receive_data(self, data: bytes) -> list[str | bytes]:
        """Bytes from the peer; returns the messages they completed."""
        messages: list[str | bytes] = []
        if self.finished:
            return messages
        if data:
            self.ws.receive_data(data)
        for event in self.ws.events():
            if isinstance(event, (TextMessage, BytesMessage)):
                if not self.is_open:
                    continue
                chunk = bytes(event.data) if isinstance(event.data, bytearray) else event.data
                self._parts.append(chunk)
                self._size += len(chunk)
                if self._size > self._max_message_size:
                    self._parts.clear()
                    self._size = 0
                    self.close(CloseCode.MESSAGE_TOO_BIG, f"message exceeds {self._max_message_size} bytes")
                    continue
                if event.message_finished:
                    parts = self._parts
                    messages.append(parts[0] if len(parts) == 1 else _join(parts))
                    self._parts = []
                    self._size = 0
            elif isinstance(event, Ping):
                if self.is_open:
                    self._push(self.ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                if self.close_code is None:
                    self.close_code = event.code
                if self.ws.state is ConnectionState.REMOTE_CLOSING:
                    self._push(self.ws.send(event.response()))
                elif self.ws.state is ConnectionState.OPEN:
                    # wsproto found a protocol violation (bad UTF-8: 1007, bad framing: 1002).
                    self.close(event.code, event.reason or "")
                self.finished = True
                break
        return messages


def _join(parts: list[str | bytes]) -> str | bytes:
    if isinstance(parts[0], str):
        return "".join(p if isinstance(p, str) else p.decode("utf-8", "replace") for p in parts)
    return b"".join(p if isinstance(p, bytes) else p.encode() for p in parts)
