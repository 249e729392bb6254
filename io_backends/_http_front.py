"""The host's HTTP front without any I/O: h11 request handling, routing and error answers.

Both host drivers (the anyio one in :mod:`._server` and the asyncio protocol in
:mod:`._asyncio_host`) feed received bytes in and carry out the actions that come out, so the
HTTP behaviour (docs/PROTOCOL.md sections 2 and 6) is defined here, once.

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
import http
from collections import deque
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Final, Union

import h11
import msgspec
from wsproto import ConnectionType, WSConnection
from wsproto.events import Request as WSRequest

from sansio_runtime import CloseCode

from ._address import CHANNEL_PATH, HEALTH_PATH, RPC_PATH

CHANNEL_PATH_BYTES, RPC_PATH_BYTES, HEALTH_PATH_BYTES = (p.encode() for p in (CHANNEL_PATH, RPC_PATH, HEALTH_PATH))
SMALL_BODY_LIMIT = 65536  # bodies of requests that should have none (a GET of /healthz)
FEED_SIZE = 65536
DEFAULT_REQUEST_HEAD_TIMEOUT = 20.0
DEFAULT_REQUEST_BODY_TIMEOUT = 60.0
DEFAULT_IDLE_TIMEOUT = 60.0


class BodyTooLarge(Exception):
    """The request body exceeds the limit; answer 413."""


def header(request: h11.Request, name: bytes) -> bytes | None:
    """The first value of header ``name`` (lower-case), or None."""
    for key, value in request.headers:
        if key == name:
            return bytes(value)
    return None


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
class RpcAnswer:
    close_code: CloseCode = CloseCode.NORMAL
    body: bytes | None = None


@dataclass(frozen=True, slots=True)
class OpenChannel:
    """An authorized, well-formed WebSocket upgrade: reply None once ``ws`` is accepted, or an HttpError."""

    request: h11.Request
    ws: WSConnection


@dataclass(frozen=True, slots=True)
class HttpError:
    """Answer with this error and close."""

    status: int
    message: str


Action = Union[_Marker, Send, Authorize, RpcCall, OpenChannel]
Reply = Union[None, bool, RpcAnswer, HttpError]


_HTTP_STATUS_FOR_CLOSE = {
    CloseCode.NORMAL: 200,
    CloseCode.GOING_AWAY: 503,
    CloseCode.MESSAGE_TOO_BIG: 413,
    CloseCode.INVALID_PAYLOAD: 400,
    CloseCode.PROTOCOL_ERROR: 400,
    CloseCode.UNSUPPORTED_DATA: 415,
    CloseCode.POLICY_VIOLATION: 403,
    CloseCode.INTERNAL_ERROR: 500,
    CloseCode.SLOW_CONSUMER: 503,
    CloseCode.DUPLICATE_CLIENT: 409,
}


def http_status_for(code: CloseCode) -> int:
    """The HTTP status that answers a ``POST /v1/rpc`` request the engine closed with ``code``."""
    return _HTTP_STATUS_FOR_CLOSE.get(code, 500)


def error_body(status: int, message: str) -> bytes:
    return msgspec.json.encode({"error": {"status": status, "message": message}})


def raw_response(status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None) -> bytes:
    """A complete error response with ``Connection: close``, outside any request cycle (h11 can only
    answer a request it has read): for a connection refused at once, or a request cut off midway."""
    body = error_body(status, message)
    lines = [
        f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}".encode(),
        b"content-type: application/json",
        b"content-length: " + str(len(body)).encode(),
        b"connection: close",
        *(name + b": " + value for name, value in headers or ()),
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


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
                path = request.target.split(b"?", 1)[0]
                if header(request, b"transfer-encoding") is not None and header(request, b"content-length") is not None:
                    # RFC 9112 section 6.1: the framing is ambiguous (request smuggling); never read on.
                    yield self._error(
                        400, "a request cannot have both Transfer-Encoding and Content-Length", close=True
                    )
                    return
                if request.method == b"HEAD" and path != HEALTH_PATH_BYTES:
                    # A HEAD response has no body; the only endpoint that answers HEAD is /healthz.
                    yield from self._refuse(request, 405, None, [(b"allow", b"GET, POST")])
                elif path == CHANNEL_PATH_BYTES:
                    yield from self._channel(request)
                    return
                elif path == RPC_PATH_BYTES:
                    yield from self._rpc(request)
                elif path != HEALTH_PATH_BYTES:
                    yield from self._refuse(request, 404, "no such endpoint: use /v1/channel, /v1/rpc or /healthz")
                elif request.method not in (b"GET", b"HEAD"):
                    yield from self._refuse(request, 405, "use GET", [(b"allow", b"GET")])
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
            yield self._error(413, f"body exceeds {self._max_message_size} bytes", close=True)

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

    def _unauthorized(self) -> Send:
        return self._error(401, "missing or wrong credentials", close=True, headers=[(b"www-authenticate", b"Bearer")])

    # ------------------------------------------------------------------ endpoints

    def _refuse(
        self, request: h11.Request, status: int, message: str | None, headers: list[tuple[bytes, bytes]] | None = None
    ) -> Generator[Action, Reply, None]:
        """Answer ``status`` without reading the request's body: if it has one, the connection is
        closed after the answer (reading it would only buffer what nobody needs)."""
        has_body = (
            header(request, b"transfer-encoding") is not None or (header(request, b"content-length") or b"0") != b"0"
        )
        if not has_body:
            yield from self._read_body(0)  # h11's end of the message
        if message is None:
            yield self._response(status, headers=headers, close=has_body)
        else:
            yield self._error(status, message, headers=headers, close=has_body)

    def _rpc(self, request: h11.Request) -> Generator[Action, Reply, None]:
        if request.method != b"POST":
            yield from self._refuse(request, 405, "use POST", [(b"allow", b"POST")])
            return
        if not (yield Authorize(request)):
            yield self._unauthorized()
            return
        content_type = (header(request, b"content-type") or b"").split(b";", 1)[0].strip().lower()
        if content_type != b"application/json":
            yield from self._refuse(request, 415, "Content-Type must be application/json")
            return
        length = header(request, b"content-length")
        if length is not None and length.isdigit() and int(length) > self._max_message_size:
            yield self._error(413, f"body exceeds {self._max_message_size} bytes", close=True)
            return
        body = yield from self._read_body(self._max_message_size)
        answer = yield RpcCall(request, body)
        assert isinstance(answer, RpcAnswer)
        if answer.close_code is not CloseCode.NORMAL:
            status = http_status_for(answer.close_code)
            yield self._error(status, f"closed with {answer.close_code.name}")
        elif answer.body is None:
            yield self._response(204)
        else:
            yield self._response(200, answer.body)

    def _channel(self, request: h11.Request) -> Generator[Action, Reply, None]:
        upgrade = (header(request, b"upgrade") or b"").lower()
        if request.method != b"GET" or upgrade != b"websocket":
            yield self._error(
                426, "/v1/channel needs a WebSocket upgrade", close=True, headers=[(b"upgrade", b"websocket")]
            )
            return
        if not (yield Authorize(request)):
            yield self._unauthorized()
            return
        ws = WSConnection(ConnectionType.SERVER)
        ws.initiate_upgrade_connection([(bytes(k), bytes(v)) for k, v in request.headers], request.target)
        handshake = next(ws.events(), None)
        if not isinstance(handshake, WSRequest):
            yield self._error(400, "invalid WebSocket handshake", close=True)
            return
        refusal = yield OpenChannel(request, ws)
        if isinstance(refusal, HttpError):
            yield self._error(refusal.status, refusal.message, close=True)


__all__ = [
    "ABORT",
    "CLOSE",
    "DEFAULT_IDLE_TIMEOUT",
    "DEFAULT_REQUEST_BODY_TIMEOUT",
    "DEFAULT_REQUEST_HEAD_TIMEOUT",
    "NEED_DATA",
    "Action",
    "Authorize",
    "HttpError",
    "HttpFront",
    "OpenChannel",
    "Reply",
    "RpcAnswer",
    "RpcCall",
    "Send",
    "error_body",
    "header",
    "raw_response",
]
