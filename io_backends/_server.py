"""The host: an anyio TCP listener in front of one :class:`~sansio_runtime.HostEngine`.

:class:`HttpAgentService` owns the engine and the live connections and turns bytes into engine
calls and engine instructions into bytes; :class:`HttpAgentServer` binds a socket and runs the
service (on the running asyncio loop via :meth:`~HttpAgentServer.start`, or anyio-natively via
:meth:`~HttpAgentServer.serve`, which also works under trio).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
import signal
import socket
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import anyio
import anyio.abc
import h11
import msgspec
from anyio.streams.tls import TLSListener
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection
from wsproto.events import Request as WSRequest

from sansio_runtime import (
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MAX_PENDING_CALLS,
    ClientId,
    ClientKind,
    ClientNameInUse,
    Close,
    CloseCode,
    HostEngine,
    HostOutput,
    http_status_for,
)

from . import _http
from ._address import CHANNEL_PATH, HEALTH_PATH, RPC_PATH
from ._websocket import WebSocketPump, keep_alive

logger = logging.getLogger("io_backends.server")

DEFAULT_MAX_OUTBOUND_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_HEADER_SIZE = 16 * 1024
CHANNEL_PATH_BYTES, RPC_PATH_BYTES, HEALTH_PATH_BYTES = (p.encode() for p in (CHANNEL_PATH, RPC_PATH, HEALTH_PATH))
_SMALL_BODY_LIMIT = 65536  # bodies of requests that should have none (/healthz, unknown paths)

Authenticator = Callable[[h11.Request], "bool | Awaitable[bool]"]
"""Decides whether a request to /v1/channel or /v1/rpc may proceed (True) or gets 401 (False)."""


@dataclass(eq=False)
class _OneShot:
    """What a ``POST /v1/rpc`` request waits for."""

    done: anyio.Event
    body: bytes | None = None
    close_code: CloseCode = CloseCode.NORMAL
    hung_up: bool = False


class _ClientGone(Exception):
    """The HTTP client went away before its answer was ready."""


async def _watch_for_hangup(stream: anyio.abc.ByteStream, conn: h11.Connection, one_shot: _OneShot) -> None:
    """While a ``/v1/rpc`` request waits for its calls, notice the client going away."""
    try:
        data = await stream.receive(65536)
    except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        data = b""
    if data:
        conn.receive_data(data)  # a pipelined next request: h11 keeps it for the next cycle
        return
    one_shot.hung_up = True
    one_shot.done.set()


class HttpAgentService:
    """The host's routing service: the protocol engine plus the live connections.

    Usable on its own by someone embedding the host in another server: hand each accepted byte
    stream to :meth:`handle_connection` and run :meth:`run_timers` in a task.
    """

    def __init__(
        self,
        *,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        max_pending_calls: int = DEFAULT_MAX_PENDING_CALLS,
        max_outbound_bytes: int = DEFAULT_MAX_OUTBOUND_BYTES,
        max_header_size: int = DEFAULT_MAX_HEADER_SIZE,
        auth_token: str | None = None,
        authenticator: Authenticator | None = None,
        keepalive_interval: float | None = 10.0,
        keepalive_timeout: float = 10.0,
    ) -> None:
        self.engine = HostEngine(max_message_size=max_message_size, max_pending_calls=max_pending_calls)
        self.max_message_size = max_message_size
        self.max_outbound_bytes = max_outbound_bytes
        self.max_header_size = max_header_size
        self.keepalive_interval = keepalive_interval
        self.keepalive_timeout = keepalive_timeout
        self._auth_token = None if auth_token is None else auth_token.encode()
        self._authenticator = authenticator
        self._channels: dict[ClientId, WebSocketPump] = {}
        self._one_shots: dict[ClientId, _OneShot] = {}
        self._timer_wakeup = anyio.Event()
        self._timer_at = math.inf
        self._connections = 0
        self._idle = anyio.Event()
        self._idle.set()

    # ------------------------------------------------------------------ public

    @property
    def connection_count(self) -> int:
        return self._connections

    async def handle_connection(self, stream: anyio.abc.ByteStream) -> None:
        """Serve one accepted connection (HTTP/1.1 keep-alive; may become a WebSocket) until it ends."""
        self._connections += 1
        self._idle = anyio.Event() if self._idle.is_set() else self._idle
        try:
            await self._serve_http(stream)
        except Exception:
            # One connection's failure must never take the host down.
            logger.exception("error serving a connection")
        finally:
            with anyio.CancelScope(shield=True):
                await _linger_and_close(stream)
            self._connections -= 1
            if self._connections == 0:
                self._idle.set()

    async def run_timers(self) -> None:
        """Drive the engine's deadlines; run for as long as the service runs."""
        while True:
            deadline = self.engine.next_deadline()
            self._timer_at = math.inf if deadline is None else deadline
            self._timer_wakeup = anyio.Event()
            delay = None if deadline is None else max(0.0, deadline - anyio.current_time())
            with anyio.move_on_after(delay):
                await self._timer_wakeup.wait()
            self._apply(self.engine.handle_timer(anyio.current_time()))

    def close_all(self, code: CloseCode = CloseCode.GOING_AWAY, reason: str = "host shutting down") -> None:
        """Close every connection (pending calls fail at once; nothing stays registered)."""
        self._apply(self.engine.close_all(code, reason))

    async def wait_idle(self) -> None:
        """Return when no connection is open."""
        await self._idle.wait()

    # ------------------------------------------------------------------ engine instructions

    def _apply(self, outputs: list[HostOutput]) -> None:
        for out in outputs:
            if isinstance(out, Close):
                self._close(out)
                continue
            pump = self._channels.get(out.client)
            if pump is not None:
                if not pump.send_message(out.data) and pump.close_code == CloseCode.SLOW_CONSUMER:
                    # The peer stopped reading: it is being cut off, so settle its calls now.
                    self._apply(self.engine.disconnect(out.client, anyio.current_time()))
                continue
            one_shot = self._one_shots.get(out.client)
            if one_shot is not None:
                one_shot.body = out.data
        deadline = self.engine.next_deadline()
        if deadline is not None and deadline < self._timer_at:
            self._timer_wakeup.set()

    def _close(self, out: Close) -> None:
        pump = self._channels.get(out.client)
        if pump is not None:
            pump.close(out.code, out.reason)
            return
        one_shot = self._one_shots.get(out.client)
        if one_shot is not None:
            one_shot.close_code = out.code
            one_shot.done.set()

    # ------------------------------------------------------------------ HTTP

    async def _serve_http(self, stream: anyio.abc.ByteStream) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self.max_header_size)
        try:
            while True:
                request = await _http.read_request(stream, conn)
                if request is None:
                    return
                path = request.target.split(b"?", 1)[0]
                if request.method == b"HEAD" and path != HEALTH_PATH_BYTES:
                    # A HEAD response has no body; the only endpoint that answers HEAD is /healthz.
                    await _http.read_body(stream, conn, _SMALL_BODY_LIMIT)
                    await _http.send_response(stream, conn, 405, headers=[(b"allow", b"GET, POST")])
                    if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                        return
                    conn.start_next_cycle()
                    continue
                if path == CHANNEL_PATH_BYTES:
                    await self._channel(stream, conn, request)
                    return
                if path == RPC_PATH_BYTES:
                    await self._rpc(stream, conn, request)
                else:
                    await _http.read_body(stream, conn, _SMALL_BODY_LIMIT)
                    if path == HEALTH_PATH_BYTES:
                        await self._healthz(stream, conn, request)
                    else:
                        await _http_error(stream, conn, 404, "no such endpoint: use /v1/channel, /v1/rpc or /healthz")
                if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
        except h11.RemoteProtocolError as exc:
            if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                try:
                    await _http_error(stream, conn, exc.error_status_hint, str(exc), close=True)
                except (h11.LocalProtocolError, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                    pass
        except _ClientGone:
            return
        except _http.BodyTooLarge:
            await _http_error(stream, conn, 413, f"body exceeds {self.max_message_size} bytes", close=True)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream, OSError):
            return

    async def _authorized(self, request: h11.Request) -> bool:
        if self._auth_token is not None:
            value = _http.header(request, b"authorization") or b""
            scheme, _, token = value.partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(token.strip(), self._auth_token):
                return False
        if self._authenticator is not None:
            verdict = self._authenticator(request)
            if not isinstance(verdict, bool):
                verdict = await verdict
            return verdict
        return True

    async def _healthz(self, stream: anyio.abc.ByteStream, conn: h11.Connection, request: h11.Request) -> None:
        if request.method not in (b"GET", b"HEAD"):
            await _http_error(stream, conn, 405, "use GET", headers=[(b"allow", b"GET")])
            return
        body = msgspec.json.encode(
            {"status": "ok", "connections": self._connections, "agent_types": len(self.engine.agent_types())}
        )
        await _http.send_response(stream, conn, 200, b"" if request.method == b"HEAD" else body)

    async def _rpc(self, stream: anyio.abc.ByteStream, conn: h11.Connection, request: h11.Request) -> None:
        if request.method != b"POST":
            await _http.read_body(stream, conn, self.max_message_size)
            await _http_error(stream, conn, 405, "use POST", headers=[(b"allow", b"POST")])
            return
        if not await self._authorized(request):
            await _http_error(stream, conn, 401, "missing or wrong credentials", close=True,
                              headers=[(b"www-authenticate", b"Bearer")])
            return
        content_type = (_http.header(request, b"content-type") or b"").split(b";", 1)[0].strip().lower()
        length = _http.header(request, b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_message_size:
            await _http_error(stream, conn, 413, f"body exceeds {self.max_message_size} bytes", close=True)
            return
        body = await _http.read_body(stream, conn, self.max_message_size)
        if content_type != b"application/json":
            await _http_error(stream, conn, 415, "Content-Type must be application/json")
            return
        client = self.engine.connect(ClientKind.ONE_SHOT)
        one_shot = _OneShot(anyio.Event())
        self._one_shots[client] = one_shot
        try:
            self._apply(self.engine.receive(client, body, anyio.current_time()))
            if not one_shot.done.is_set():
                async with anyio.create_task_group() as tg:
                    tg.start_soon(_watch_for_hangup, stream, conn, one_shot)
                    await one_shot.done.wait()
                    tg.cancel_scope.cancel()
        finally:
            del self._one_shots[client]
            # A client that hung up cancels its calls at their targets here.
            self._apply(self.engine.disconnect(client, anyio.current_time()))
        if one_shot.hung_up:
            raise _ClientGone
        if one_shot.close_code is not CloseCode.NORMAL:
            status = http_status_for(one_shot.close_code)
            await _http_error(stream, conn, status, f"closed with {one_shot.close_code.name}")
        elif one_shot.body is None:
            await _http.send_response(stream, conn, 204)
        else:
            await _http.send_response(stream, conn, 200, one_shot.body)

    # ------------------------------------------------------------------ WebSocket

    async def _channel(self, stream: anyio.abc.ByteStream, conn: h11.Connection, request: h11.Request) -> None:
        upgrade = (_http.header(request, b"upgrade") or b"").lower()
        if request.method != b"GET" or upgrade != b"websocket":
            await _http_error(stream, conn, 426, "/v1/channel needs a WebSocket upgrade", close=True,
                              headers=[(b"upgrade", b"websocket")])
            return
        if not await self._authorized(request):
            await _http_error(stream, conn, 401, "missing or wrong credentials", close=True,
                              headers=[(b"www-authenticate", b"Bearer")])
            return
        ws = WSConnection(ConnectionType.SERVER)
        ws.initiate_upgrade_connection([(bytes(k), bytes(v)) for k, v in request.headers], request.target)
        handshake = next(ws.events(), None)
        if not isinstance(handshake, WSRequest):
            await _http_error(stream, conn, 400, "invalid WebSocket handshake", close=True)
            return
        name = _http.header(request, b"x-client-id")
        try:
            client = self.engine.connect(ClientKind.CHANNEL, None if name is None else name.decode("utf-8", "replace"))
        except ClientNameInUse:
            await _http_error(stream, conn, 409, "another live connection uses this X-Client-Id", close=True)
            return
        try:
            await stream.send(ws.send(AcceptConnection()))
        except BaseException:
            self._apply(self.engine.disconnect(client, anyio.current_time()))
            raise
        trailing, _ = conn.trailing_data
        pump = WebSocketPump(
            stream,
            ws,
            max_message_size=self.max_message_size,
            max_outbound_bytes=self.max_outbound_bytes,
            initial_data=bytes(trailing),
        )
        self._channels[client] = pump
        engine = self.engine

        def on_message(message: str | bytes) -> None:
            if engine.client_state(client) is not None:  # not cut off by an earlier message
                self._apply(engine.receive(client, message, anyio.current_time()))

        def on_end() -> None:
            # Release what the client owned before its close is acknowledged: a worker whose
            # stop() returned has freed its agent types.
            self._apply(engine.disconnect(client, anyio.current_time()))

        try:
            async with anyio.create_task_group() as tg:
                if self.keepalive_interval is not None:
                    tg.start_soon(keep_alive, pump, self.keepalive_interval, self.keepalive_timeout)
                await pump.serve(on_message, on_end)
                tg.cancel_scope.cancel()
        finally:
            del self._channels[client]
            self._apply(self.engine.disconnect(client, anyio.current_time()))


async def _linger_and_close(stream: anyio.abc.ByteStream) -> None:
    """Close after the peer has read our last response: half-close, then drain briefly.

    Closing a socket that still has unread input makes the kernel send RST, which can destroy a
    response (a 413, say) before the client reads it.
    """
    try:
        await stream.send_eof()
        with anyio.move_on_after(1.0):
            drained = 0
            while drained < 16 * 1024 * 1024:
                drained += len(await stream.receive(65536))
    except Exception:
        pass
    try:
        await stream.aclose()
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        pass


async def _http_error(
    stream: anyio.abc.ByteStream,
    conn: h11.Connection,
    status: int,
    message: str,
    *,
    close: bool = False,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    body = msgspec.json.encode({"error": {"status": status, "message": message}})
    await _http.send_response(stream, conn, status, body, headers=headers, close=close)


class HttpAgentServer:
    """The host process's server: binds a TCP port and runs an :class:`HttpAgentService` on it.

    ``start()`` binds before it returns (so ``port=0`` can be read back from :attr:`port`) and
    serves on the running asyncio loop, like ``GrpcWorkerAgentRuntimeHost.start()``. Under any
    anyio backend (asyncio or trio) use ``await server.serve()`` instead.
    """

    def __init__(
        self,
        address: str = "127.0.0.1",
        port: int = 9000,
        *,
        service: HttpAgentService | None = None,
        ssl_context: ssl.SSLContext | None = None,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        auth_token: str | None = None,
        authenticator: Authenticator | None = None,
        backlog: int = 512,
    ) -> None:
        if ":" in address and not address.startswith("[") and address.count(":") == 1:
            # gRPC style "host:port" passed as the address.
            address, _, port_text = address.rpartition(":")
            port = int(port_text)
        self.address = address.strip("[]")
        self._requested_port = port
        self.service = service or HttpAgentService(
            max_message_size=max_message_size, auth_token=auth_token, authenticator=authenticator
        )
        self._ssl_context = ssl_context
        self._backlog = backlog
        self._socket: socket.socket | None = None
        self._port: int | None = None
        self._accept_scope: anyio.CancelScope | None = None
        self._grace = 5.0
        self._started = False
        self._stopped = anyio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        """The bound port (useful with ``port=0``). Raises if the server is not bound yet."""
        if self._port is None:
            raise RuntimeError("the server is not started")
        return self._port

    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.address else socket.AF_INET
        sock = socket.create_server((self.address, self._requested_port), family=family, backlog=self._backlog)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._port = sock.getsockname()[1]
        return sock

    def start(self) -> None:
        """Bind now and serve in a task on the running asyncio loop."""
        if self._started:
            raise RuntimeError("the server is already started")
        loop = asyncio.get_running_loop()
        self._socket = self._bind()
        self._started = True
        self._task = loop.create_task(self._serve(self._socket, anyio.TASK_STATUS_IGNORED))

    async def serve(self, *, task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED) -> None:
        """Bind and serve until :meth:`stop` (anyio-native; ``await tg.start(server.serve)`` gives the port)."""
        if self._started:
            raise RuntimeError("the server is already started")
        self._started = True
        self._socket = self._bind()
        await self._serve(self._socket, task_status)

    async def _serve(self, sock: socket.socket, task_status: anyio.abc.TaskStatus[int]) -> None:
        try:
            listener: anyio.abc.Listener[anyio.abc.ByteStream] = await anyio.abc.SocketListener.from_socket(sock)
            if self._ssl_context is not None:
                listener = TLSListener(listener, self._ssl_context, standard_compatible=False)
            async with anyio.create_task_group() as tg:
                tg.start_soon(self.service.run_timers)
                self._accept_scope = anyio.CancelScope()
                task_status.started(self.port)
                with self._accept_scope:
                    await listener.serve(self.service.handle_connection, task_group=tg)
                with anyio.CancelScope(shield=True):
                    await listener.aclose()
                    self.service.close_all()
                    with anyio.move_on_after(self._grace):
                        await self.service.wait_idle()
                tg.cancel_scope.cancel()
        finally:
            self._stopped.set()

    async def stop(self, grace: float = 5) -> None:
        """Stop accepting, close every connection (1001), wait up to ``grace`` seconds, then end."""
        if not self._started:
            raise RuntimeError("the server is not started")
        self._grace = grace
        if self._accept_scope is not None:
            self._accept_scope.cancel()
        elif self._task is not None:
            self._task.cancel()
        await self._stopped.wait()

    async def stop_when_signal(
        self, grace: float = 5, signals: Sequence[signal.Signals] = (signal.SIGTERM, signal.SIGINT)
    ) -> None:
        """Wait for one of ``signals``, then :meth:`stop`."""
        with anyio.open_signal_receiver(*signals) as received:
            async for signum in received:
                logger.info("received %s: shutting down", signal.Signals(signum).name)
                break
        await self.stop(grace=grace)

    async def __aenter__(self) -> HttpAgentServer:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
