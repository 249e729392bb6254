"""The host's HTTP/1.1 front without any I/O: h11 framing, keep-alive, timeouts and error answers.

One :class:`HttpFront` per accepted connection reads request heads and bodies and writes
responses; what each request means and may do is :mod:`._endpoints`' (the same policy an ASGI
server in front of the engine uses). :class:`~._connection.HostConnection` drives it.

The driver loop::

    reply = None
    while True:
        action = front.next_action(reply, now)
        reply = None
        NEED_DATA         -> front.receive_data(bytes read, now) (b"" at end of input)
        Send(data)        -> write data (and wait until the peer has taken it, if it is slow)
        Authorize(req)    -> reply = the verdict (bool) on the request's credentials
        RpcCall(body)     -> run the one-shot call; reply = RpcAnswer(close_code, body)
        OpenChannel(...)  -> reply = None once upgraded (the front is done: the connection is a
                             WebSocket; take :meth:`HttpFront.trailing_data`), or an HttpError
        CLOSE             -> close after flushing what was sent (lingering close)
        ABORT             -> drop the connection at once, with a reset: the peer does not read

Time is an input, as in aioquic: while the driver waits for bytes to arrive or to be taken, it
also waits for :meth:`HttpFront.next_deadline`, and when the clock reaches it calls
:meth:`HttpFront.handle_timer` and then ``next_action`` again (which answers ``408`` or closes).
The deadlines are the request head's, the body's and the idle keep-alive connection's
(docs/PROTOCOL.md section 2.5).
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Final, Union

import h11
from wsproto import ConnectionType, WSConnection
from wsproto.events import Request as WSRequest
from wsproto.utilities import RemoteProtocolError as WsRemoteProtocolError

from ._endpoints import (
    UNAUTHORIZED,
    Endpoint,
    HttpError,
    RpcAnswer,
    body_too_large,
    channel_refusal,
    error_body,
    has_body,
    raw_response,
    route,
    rpc_body_refusal,
    rpc_method_refusal,
    rpc_response,
)
from ._limits import (
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_REQUEST_BODY_TIMEOUT,
    DEFAULT_REQUEST_HEAD_TIMEOUT,
    SMALL_BODY_LIMIT,
)

FEED_SIZE = 65536


class BodyTooLarge(Exception):
    """The request body exceeds the limit; answer 413."""


class _Marker:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


NEED_DATA: Final = _Marker("NEED_DATA")
"""Feed more bytes with :meth:`HttpFront.receive_data` (b"" when the input ended)."""
CLOSE: Final = _Marker("CLOSE")
"""Close the connection once what was sent is flushed; the front is done."""
ABORT: Final = _Marker("ABORT")
"""Drop the connection at once with a TCP reset (what is unsent is discarded); the front is done."""


@dataclass(frozen=True, slots=True)
class Send:
    data: bytes


@dataclass(frozen=True, slots=True)
class Authorize:
    """Decide whether ``request`` may proceed; reply with a bool."""

    request: h11.Request


@dataclass(frozen=True, slots=True)
class RpcCall:
    """A ``POST /v1/rpc`` body is ready; reply with an :class:`RpcAnswer`."""

    request: h11.Request
    body: bytes


@dataclass(frozen=True, slots=True)
class OpenChannel:
    """An authorized, well-formed WebSocket upgrade: reply None once ``ws`` is accepted, or an HttpError."""

    request: h11.Request
    ws: WSConnection


Action = Union[_Marker, Send, Authorize, RpcCall, OpenChannel]
Reply = Union[None, bool, RpcAnswer, HttpError]


class _Wait(enum.Enum):
    """What the front is waiting for, and so which timeout applies (``next_deadline``)."""

    NOTHING = "nothing"
    """For the driver (a verdict, a call's answer): no timeout here."""
    IDLE = "idle"
    """The first byte of the next request on a keep-alive connection: the idle timeout."""
    HEAD = "head"
    """The rest of a request head (or a new connection's first request): the head timeout."""
    BODY = "body"
    """The rest of a request body: the body timeout, counted from the end of the head."""
    SENT = "sent"
    """The driver to hand a response to a peer that may not be reading it: the idle timeout."""


class HttpFront:
    """One HTTP/1.1 connection's request handling, bytes in, actions out.

    ``now`` is the time the connection was accepted; the timeouts are in seconds of the same clock
    (None: no timeout).
    """

    __slots__ = (
        "_deadline",
        "_done",
        "_eof",
        "_eof_fed",
        "_expired",
        "_gen",
        "_health",
        "_max_message_size",
        "_now",
        "_pending",
        "_timeouts",
        "_wait",
        "conn",
    )

    def __init__(
        self,
        *,
        max_header_size: int,
        max_message_size: int,
        health: Callable[[], bytes],
        now: float = 0.0,
        head_timeout: float | None = DEFAULT_REQUEST_HEAD_TIMEOUT,
        body_timeout: float | None = DEFAULT_REQUEST_BODY_TIMEOUT,
        idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT,
    ) -> None:
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=max_header_size)
        self._max_message_size = max_message_size
        self._health = health
        self._timeouts: dict[_Wait, float | None] = {
            _Wait.NOTHING: None,
            _Wait.IDLE: idle_timeout,
            _Wait.HEAD: head_timeout,
            _Wait.BODY: body_timeout,
            _Wait.SENT: idle_timeout,
        }
        self._gen = self._run()
        self._done = False
        self._pending: deque[bytes] = deque()
        self._eof = False
        self._eof_fed = False
        self._now = now
        self._wait = _Wait.HEAD  # a new connection has the head timeout to send its first request
        self._deadline = None if head_timeout is None else now + head_timeout
        self._expired: _Wait | None = None

    def receive_data(self, data: bytes, now: float) -> None:
        """Bytes from the peer at time ``now``; b"" means the input ended."""
        self._now = now
        if data:
            self._pending.append(data)
            if self._wait is _Wait.IDLE:  # a request begins: it has the head timeout to finish its head
                self._set_wait(_Wait.HEAD)
        else:
            self._eof = True

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timer` must be called if nothing else happens first, or None."""
        return None if self._done or self._expired is not None else self._deadline

    def handle_timer(self, now: float) -> bool:
        """The clock is at ``now``; True if a timeout ran out (``next_action`` then says what to do)."""
        self._now = now
        deadline = self.next_deadline()
        if deadline is None or now < deadline:
            return False
        self._expired = self._wait
        self._gen.close()
        return True

    def _set_wait(self, wait: _Wait) -> None:
        self._wait = wait
        timeout = self._timeouts[wait]
        self._deadline = None if timeout is None else self._now + timeout

    def _feed(self) -> bool:
        """Hand h11 the next bytes received; False if there are none.

        At most FEED_SIZE bytes at a time, whatever size the driver's reads are: h11 checks a
        request head against the size limit between chunks, so this keeps the limit the same.
        """
        pending = self._pending
        if pending:
            chunk = pending[0]
            if len(chunk) > FEED_SIZE:
                pending[0] = chunk[FEED_SIZE:]
                chunk = chunk[:FEED_SIZE]
            else:
                pending.popleft()
            self.conn.receive_data(chunk)
            return True
        if self._eof and not self._eof_fed:
            self._eof_fed = True
            self.conn.receive_data(b"")
            return True
        return False

    def next_action(self, reply: Reply, now: float) -> Action:
        """The next thing to do at time ``now``, given the reply to the previous action (see the module docs)."""
        if self._done:
            return CLOSE
        self._now = now
        if self._expired is not None:
            return self._timed_out()
        try:
            action = self._gen.send(reply)
        except StopIteration:
            self._done = True
            return CLOSE
        if isinstance(action, Send):
            self._set_wait(_Wait.SENT)
        elif action is not NEED_DATA:
            self._set_wait(_Wait.NOTHING)
        return action

    def _timed_out(self) -> Action:
        """The answer to a timeout: 408 if part of a request came, a reset if the peer did not take
        an answer (it is not reading), else close without a word."""
        self._done = True
        expired, self._expired = self._expired, None
        if expired is _Wait.SENT:
            return ABORT
        if expired is _Wait.BODY or (expired is _Wait.HEAD and self._head_started()):
            what = "request body" if expired is _Wait.BODY else "request head"
            return Send(raw_response(408, f"the {what} did not arrive in time"))
        return CLOSE

    def _head_started(self) -> bool:
        return bool(self._pending) or bool(self.conn.trailing_data[0])

    def trailing_data(self) -> bytes:
        """Bytes received after the request that was upgraded to a WebSocket."""
        return bytes(self.conn.trailing_data[0]) + b"".join(self._pending)

    # ------------------------------------------------------------------ the request cycle

    def _run(self) -> Generator[Action, Reply, None]:
        # The first send() (a None reply) starts the generator.
        conn = self.conn
        try:
            while True:
                request = yield from self._read_request()
                if request is None:
                    return
                endpoint = route(request)
                if isinstance(endpoint, HttpError):
                    yield from self._refuse(request, endpoint)
                elif endpoint is Endpoint.CHANNEL:
                    yield from self._channel(request)
                    return
                elif endpoint is Endpoint.RPC:
                    yield from self._rpc(request)
                else:
                    yield from self._read_body(SMALL_BODY_LIMIT)
                    body = self._health()
                    yield self._response(200, b"" if request.method == b"HEAD" else body)
                if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
                self._set_wait(_Wait.HEAD if self._head_started() else _Wait.IDLE)
        except h11.RemoteProtocolError as exc:
            if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                try:
                    error = self._error(exc.error_status_hint, str(exc), close=True)
                except h11.LocalProtocolError:
                    return
                yield error
        except BodyTooLarge:
            yield self._send_error(body_too_large(self._max_message_size))

    def _read_request(self) -> Generator[Action, Reply, h11.Request | None]:
        """The next request head, or None when the peer closed the connection between requests.

        Raises h11.RemoteProtocolError for malformed HTTP (its ``error_status_hint`` is 400, or
        431 for a head larger than the connection's ``max_incomplete_event_size``).
        """
        conn = self.conn
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                if not self._feed():
                    yield NEED_DATA
                continue
            if isinstance(event, h11.Request):
                return event
            if isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return None
            raise h11.RemoteProtocolError(f"unexpected {type(event).__name__} before a request", 400)

    def _read_body(self, limit: int) -> Generator[Action, Reply, bytes]:
        """The whole body of the current request; raises BodyTooLarge as soon as it passes ``limit``."""
        conn = self.conn
        chunks: list[bytes] = []
        size = 0
        self._set_wait(_Wait.BODY)
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                if not self._feed():
                    yield NEED_DATA
                continue
            if isinstance(event, h11.Data):
                size += len(event.data)
                if size > limit:
                    raise BodyTooLarge
                chunks.append(bytes(event.data))
                continue
            if isinstance(event, h11.EndOfMessage):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)
            raise h11.RemoteProtocolError("connection closed in the middle of a request body", 400)

    def _response(
        self,
        status: int,
        body: bytes = b"",
        *,
        content_type: bytes = b"application/json",
        headers: list[tuple[bytes, bytes]] | None = None,
        close: bool = False,
    ) -> Send:
        """One complete response; ``close`` asks the client to drop the connection afterwards."""
        all_headers = [(b"content-length", str(len(body)).encode())]
        if body:
            all_headers.append((b"content-type", content_type))
        if close:
            all_headers.append((b"connection", b"close"))
        if headers:
            all_headers.extend(headers)
        conn = self.conn
        data = conn.send(h11.Response(status_code=status, headers=all_headers)) or b""
        if body:
            data += conn.send(h11.Data(data=body)) or b""
        data += conn.send(h11.EndOfMessage()) or b""
        return Send(data)

    def _error(
        self, status: int, message: str, *, close: bool = False, headers: list[tuple[bytes, bytes]] | None = None
    ) -> Send:
        return self._response(status, error_body(status, message), headers=headers, close=close)

    def _send_error(self, error: HttpError) -> Send:
        if not error.message:
            return self._response(error.status, headers=error.headers, close=error.close)
        return self._error(error.status, error.message, headers=error.headers, close=error.close)

    # ------------------------------------------------------------------ endpoints

    def _refuse(self, request: h11.Request, refusal: HttpError) -> Generator[Action, Reply, None]:
        """Answer ``refusal`` without reading the request's body: if it has one, the connection is
        closed after the answer (reading it would only buffer what nobody needs)."""
        with_body = has_body(request)
        if not with_body:
            yield from self._read_body(0)  # h11's end of the message
        yield self._send_error(HttpError(refusal.status, refusal.message, refusal.headers, refusal.close or with_body))

    def _rpc(self, request: h11.Request) -> Generator[Action, Reply, None]:
        refusal = rpc_method_refusal(request)
        if refusal is not None:
            yield from self._refuse(request, refusal)
            return
        if not (yield Authorize(request)):
            yield self._send_error(UNAUTHORIZED)
            return
        refusal = rpc_body_refusal(request, self._max_message_size)
        if refusal is not None:
            if refusal.close:  # announced too large: never read
                yield self._send_error(refusal)
            else:
                yield from self._refuse(request, refusal)
            return
        body = yield from self._read_body(self._max_message_size)
        answer = yield RpcCall(request, body)
        assert isinstance(answer, RpcAnswer)
        status, payload = rpc_response(answer)
        yield self._response(status, payload)

    def _channel(self, request: h11.Request) -> Generator[Action, Reply, None]:
        refusal = channel_refusal(request)
        if refusal is not None:
            yield self._send_error(refusal)
            return
        if not (yield Authorize(request)):
            yield self._send_error(UNAUTHORIZED)
            return
        ws = WSConnection(ConnectionType.SERVER)
        try:
            ws.initiate_upgrade_connection([(bytes(k), bytes(v)) for k, v in request.headers], request.target)
        except WsRemoteProtocolError as exc:  # a header of the handshake is missing or wrong
            yield self._error(400, f"invalid WebSocket handshake: {exc}", close=True)
            return
        handshake = next(ws.events(), None)
        if not isinstance(handshake, WSRequest):
            yield self._error(400, "invalid WebSocket handshake", close=True)
            return
        upgraded = yield OpenChannel(request, ws)
        if isinstance(upgraded, HttpError):
            yield self._send_error(upgraded)


__all__ = [
    "ABORT",
    "CLOSE",
    "NEED_DATA",
    "Action",
    "Authorize",
    "HttpFront",
    "OpenChannel",
    "Reply",
    "RpcCall",
    "Send",
]
