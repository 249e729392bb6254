"""One WebSocket's state without any I/O: wsproto, message assembly, limits and the outbound queue.

The host's connections (:mod:`._connection`) and the worker's channel feed it received bytes and
write what it has queued; everything about WebSocket framing lives here, once.

The frames of the hot path (whole text and binary messages, pings and pongs) are parsed and
built here directly, which costs a fraction of wsproto's general machinery. Anything else (a
close frame, a fragmented message, a message over the size limit, a frame wsproto would call a
protocol violation) is handed to wsproto from that frame on, for the rest of the connection, so
wsproto still decides every unusual case. No extension is ever negotiated by either side.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable

from wsproto import WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage

from sansio_runtime import CloseCode

from ._masking import MaskPool, rotated
from ._masking import mask as apply_mask

ABNORMAL_CLOSURE = 1006
_TEXT, _BINARY, _PING, _PONG = 0x1, 0x2, 0x9, 0xA
_utf8_decoder = codecs.getincrementaldecoder("utf-8")


class _PartialFrame:
    """A hot-path frame whose payload has only partly arrived.

    Its payload is unmasked (and, for text, checked as UTF-8) once, as it arrives. The raw
    pieces are kept too, so wsproto can still take the frame over, piece by piece, if it turns
    out bad.
    """

    __slots__ = ("decoder", "left", "mask", "opcode", "pieces", "raw", "received", "texts")

    def __init__(self, opcode: int, length: int, mask: bytes | None, head: bytes) -> None:
        self.opcode = opcode
        self.left = length
        self.mask = mask
        self.received = 0
        self.raw: list[bytes] = [head]
        self.pieces: list[bytes] = []  # unmasked payload (binary, ping and pong frames)
        self.texts: list[str] = []  # decoded payload (text frames)
        self.decoder = _utf8_decoder() if opcode == _TEXT else None


class WebSocketCore:
    """The state of one open WebSocket.

    ``receive_data`` returns whole messages (answering pings and close frames on the way);
    ``send_message`` and friends queue frames that ``take_output`` hands to the driver. Once
    :attr:`finished` is set, no more input matters: the driver writes what is left and closes.
    """

    __slots__ = (
        "_buffer",
        "_client",
        "_fast",
        "_masks",
        "_max_message_size",
        "_max_outbound_bytes",
        "_out",
        "_partial",
        "_parts",
        "_seen_open",
        "_size",
        "_unsent",
        "close_code",
        "closing",
        "finished",
        "queued_bytes",
        "ws",
    )

    def __init__(
        self,
        ws: WSConnection,
        *,
        max_message_size: int,
        max_outbound_bytes: int,
        unsent: Callable[[], int] | None = None,
    ) -> None:
        self.ws = ws
        self._unsent = unsent  # what the driver holds unsent (a transport's write buffer), if it holds any
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
        self._client = ws.client
        self._fast = True  # parsing frames here; False once wsproto has taken over the input
        self._buffer = b""  # the start of an incomplete frame (fast path)
        self._masks = MaskPool()
        self._seen_open = False  # ws.state was OPEN when last looked at (saves asking wsproto)
        self._partial: _PartialFrame | None = None  # a hot-path frame still arriving

    @property
    def is_open(self) -> bool:
        if self._seen_open:  # wsproto's state only leaves OPEN in close() or _receive_wsproto()
            return not self.finished
        if not self.finished and self.ws.state is ConnectionState.OPEN:
            self._seen_open = True
            return True
        return False

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
        self._push(self._frame(_TEXT, data))
        if self.queued_bytes + backlog > self._max_outbound_bytes:
            self._out.clear()
            self.queued_bytes = 0
            self.close(CloseCode.SLOW_CONSUMER, "outbound buffer full: the peer is not reading")
            return False
        return True

    def _frame(self, opcode: int, payload: bytes) -> bytes:
        """One whole frame (FIN set), masked if we are the client."""
        n = len(payload)
        mask_bit = 0x80 if self._client else 0
        if n < 126:
            head = bytes((0x80 | opcode, mask_bit | n))
        elif n < 65536:
            head = bytes((0x80 | opcode, mask_bit | 126)) + n.to_bytes(2, "big")
        else:
            head = bytes((0x80 | opcode, mask_bit | 127)) + n.to_bytes(8, "big")
        if self._client:
            mask = self._masks.take()
            return head + mask + apply_mask(payload, mask)
        return head + payload

    def _pong(self, frame: bytes) -> None:
        """Queue the answer to a ping; like any frame it counts against ``max_outbound_bytes``, so a
        peer that pings and never reads is cut off instead of growing our memory."""
        self._push(frame)
        unsent = 0 if self._unsent is None else self._unsent()
        if self.queued_bytes + unsent > self._max_outbound_bytes:
            self._out.clear()
            self.queued_bytes = 0
            self.close(CloseCode.SLOW_CONSUMER, "outbound buffer full: the peer does not read the answers to its pings")

    def send_ping(self, payload: bytes = b"") -> None:
        if self.is_open:
            self._push(self.ws.send(Ping(payload)))

    def close(self, code: int, reason: str = "") -> None:
        """Queue a close frame (the closing handshake starts)."""
        self._seen_open = False
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
        if self._fast:
            data = self._receive_fast(data, messages)
            if self._fast:
                return messages
        return self._receive_wsproto(data, messages)

    def _receive_fast(self, data: bytes, messages: list[str | bytes]) -> bytes:
        """Parse whole frames of the common kinds; returns what wsproto must take over, if anything."""
        if self._partial is not None:
            data = self._continue_frame(data, messages)
            if self._partial is not None or not self._fast:
                return data  # b"" (the frame needs more), or the bytes wsproto takes over
        buf = self._buffer + data if self._buffer else data
        size = len(buf)
        pos = 0
        expect_mask = not self._client
        while size - pos >= 2:
            b0 = buf[pos]
            b1 = buf[pos + 1]
            opcode = b0 & 0x0F
            length = b1 & 0x7F
            if b0 & 0xF0 != 0x80 or bool(b1 & 0x80) is not expect_mask or opcode not in (_TEXT, _BINARY, _PING, _PONG):
                break  # a fragment, reserved bits, a close frame, a bad opcode or masking: wsproto's
            head = 2
            if length == 126:
                if size - pos < 4:
                    return self._keep(buf, pos)
                length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                head = 4
                if length < 126:
                    break
            elif length == 127:
                if size - pos < 10:
                    return self._keep(buf, pos)
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                head = 10
                if length < 65536 or length >> 63:
                    break
            if length > self._max_message_size or (opcode >= _PING and length > 125):
                break
            if expect_mask:
                head += 4
            end = pos + head + length
            if end > size:
                if size - pos < head:
                    return self._keep(buf, pos)
                mask = buf[pos + head - 4 : pos + head] if expect_mask else None
                self._buffer = b""
                self._partial = _PartialFrame(opcode, length, mask, buf[pos : pos + head])
                return self._continue_frame(buf[pos + head :], messages) if size > pos + head else b""
            payload = buf[pos + head : end]
            if expect_mask:
                payload = apply_mask(payload, buf[pos + head - 4 : pos + head])
            if opcode == _TEXT:
                try:
                    text = payload.decode("utf-8")
                except UnicodeDecodeError:
                    break
                if self.is_open:
                    messages.append(text)
            else:
                self._deliver(opcode, payload, messages)
            pos = end
        else:
            return self._keep(buf, pos)
        # Hand over to wsproto from the frame at ``pos`` on, for good.
        self._fast = False
        self._buffer = b""
        return bytes(buf[pos:])

    def _continue_frame(self, data: bytes, messages: list[str | bytes]) -> bytes:
        """More payload of the partial frame; returns the bytes after it (or, if the frame turned
        out bad, the whole frame and what follows, for wsproto)."""
        frame = self._partial
        assert frame is not None
        take = min(len(data), frame.left)
        chunk = data[:take] if take < len(data) else data
        frame.raw.append(chunk)
        frame.left -= take
        if frame.mask is not None:
            chunk = apply_mask(chunk, rotated(frame.mask, frame.received))
        frame.received += take
        if frame.decoder is not None:
            try:  # wsproto rejects bad UTF-8 as soon as it arrives: so must we
                frame.texts.append(frame.decoder.decode(chunk, final=not frame.left))
            except UnicodeDecodeError:  # wsproto takes over, fed the frame as it arrived
                self._partial = None
                self._fast = False
                for piece in frame.raw[:-1]:
                    self._receive_wsproto(piece, messages)
                return data
        else:
            frame.pieces.append(chunk)
        if frame.left:
            return b""
        self._partial = None
        if frame.decoder is not None:
            if self.is_open:
                messages.append("".join(frame.texts))
        else:
            self._deliver(frame.opcode, b"".join(frame.pieces), messages)
        return data[take:]

    def _deliver(self, opcode: int, payload: bytes, messages: list[str | bytes]) -> None:
        """A whole binary, ping or pong frame arrived: a message for the caller, or a ping to answer."""
        if not self.is_open:
            return
        if opcode == _BINARY:
            messages.append(bytes(payload))
        elif opcode == _PING:
            self._pong(self._frame(_PONG, bytes(payload)))

    def _keep(self, buf: bytes, pos: int) -> bytes:
        self._buffer = bytes(buf[pos:]) if pos < len(buf) else b""
        return b""

    def _receive_wsproto(self, data: bytes, messages: list[str | bytes]) -> list[str | bytes]:
        self._seen_open = False
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
                    self._pong(self.ws.send(event.response()))
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
