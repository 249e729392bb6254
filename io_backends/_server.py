"""The host: a TCP listener in front of one :class:`~sansio_runtime.HostEngine`.

:class:`HttpAgentService` owns the engine and the live connections and turns bytes into engine
calls and engine instructions into bytes; the HTTP handling itself is the sans-IO
:class:`~._http_front.HttpFront`. Two drivers run it: the anyio one here
(:meth:`HttpAgentService.handle_connection`, for any anyio byte stream, under asyncio or trio)
and the asyncio protocol in :mod:`._asyncio_host`. :class:`HttpAgentServer` binds a socket and
serves with the asyncio driver when running on asyncio (:meth:`~HttpAgentServer.start`, or
:meth:`~HttpAgentServer.serve`), and with the anyio one otherwise (``serve()`` under trio).
"""

from __future__ import annotations

import asyncio
import errno
import hmac
import logging
import math
import signal
import socket
import ssl
import struct
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import anyio
import anyio.abc
import h11
import msgspec
from anyio.abc import SocketAttribute
from anyio.streams.tls import TLSStream
from wsproto import WSConnection
from wsproto.events import AcceptConnection

from sansio_runtime import (
    DEFAULT_MAX_AGENT_TYPES_PER_CONNECTION,
    DEFAULT_MAX_BATCH_LENGTH,
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MAX_PENDING_CALLS,
    DEFAULT_MAX_SUBSCRIPTIONS_PER_CONNECTION,
    ClientId,
    ClientKind,
    ClientNameInUse,
    Close,
    CloseCode,
    HostEngine,
)

from ._address import MAX_MESSAGE_SIZE_HEADER, is_loopback, remote_host, split_host_port
from ._admission import DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_CONNECTIONS_PER_ADDRESS, Admission, refusal_response
from ._asyncio_host import LINGER_MAX_BYTES, LINGER_TIMEOUT, HostProtocol, keepalive_sweep
from ._errors import HostBindError
from ._grpc_compat import HOST_OPTIONS as HOST_GRPC_OPTIONS
from ._grpc_compat import ChannelArgumentType
from ._grpc_compat import translate as translate_grpc_options
from ._http_front import (
    ABORT,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_REQUEST_BODY_TIMEOUT,
    DEFAULT_REQUEST_HEAD_TIMEOUT,
    NEED_DATA,
    Authorize,
    HttpError,
    HttpFront,
    OpenChannel,
    Reply,
    RpcAnswer,
    RpcCall,
    Send,
    header,
)
from ._timers import DeadlineTimer
from ._websocket import STREAM_ERRORS, Channel, MessageHandler, WebSocketPump, keep_alive

logger = logging.getLogger("io_backends.server")

DEFAULT_MAX_OUTBOUND_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_HEADER_SIZE = 16 * 1024
_READ_SIZE = 65536
ACCEPT_RETRY_DELAY = 0.1
"""How long the anyio driver waits after accept() failed for want of resources (EMFILE, ...)."""
_ACCEPT_CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_REFUSAL_LOG_INTERVAL = 10.0
_RESET_ON_CLOSE = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST

Authenticator = Callable[[h11.Request], "bool | Awaitable[bool]"]
"""Decides whether a request to /v1/channel or /v1/rpc may proceed (True) or gets 401 (False)."""


@dataclass(eq=False)
class OneShot:
    """What a ``POST /v1/rpc`` request waits for; ``on_done`` runs once its answer is known."""

    on_done: Callable[[], None]
    done: bool = False
    body: bytes | None = None
    close_code: CloseCode = CloseCode.NORMAL

    def finish(self) -> None:
        if not self.done:
            self.done = True
            self.on_done()


class HttpAgentService:
    """The host's routing service: the protocol engine plus the live connections.

    Usable on its own by someone embedding the host in another server: hand each accepted byte
    stream to :meth:`handle_connection` and run :meth:`run_timers` in a task.

    Every limit and timeout, with its default, is in docs/PROTOCOL.md section 2.5:

    * ``max_message_size``, ``max_pending_calls``, ``max_batch_length``,
      ``max_agent_types_per_connection``, ``max_subscriptions_per_connection``: the engine's.
    * ``max_outbound_bytes``: unsent bytes buffered for one WebSocket (then close 4008).
    * ``request_head_timeout``: seconds a request head may take from its first byte (a new
      connection: from the accept); ``request_body_timeout``: seconds a request body may take
      after its head; ``idle_timeout``: seconds a keep-alive connection may sit between requests,
      or a response may wait for a peer that does not read it (None: no timeout).
    * ``max_connections``, ``max_connections_per_address``: connections served at once, in all
      and from one client IP address; more are answered ``503`` and closed.
    """

    def __init__(
        self,
        *,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        max_pending_calls: int = DEFAULT_MAX_PENDING_CALLS,
        max_outbound_bytes: int = DEFAULT_MAX_OUTBOUND_BYTES,
        max_header_size: int = DEFAULT_MAX_HEADER_SIZE,
        max_batch_length: int = DEFAULT_MAX_BATCH_LENGTH,
        max_agent_types_per_connection: int = DEFAULT_MAX_AGENT_TYPES_PER_CONNECTION,
        max_subscriptions_per_connection: int = DEFAULT_MAX_SUBSCRIPTIONS_PER_CONNECTION,
        request_head_timeout: float | None = DEFAULT_REQUEST_HEAD_TIMEOUT,
        request_body_timeout: float | None = DEFAULT_REQUEST_BODY_TIMEOUT,
        idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_connections_per_address: int = DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
        auth_token: str | None = None,
        authenticator: Authenticator | None = None,
        keepalive_interval: float | None = 10.0,
        keepalive_timeout: float = 10.0,
    ) -> None:
        if auth_token is not None and not auth_token.strip():
            raise ValueError("auth_token must not be empty: pass None to accept clients without a token")
        for name, timeout in (
            ("request_head_timeout", request_head_timeout),
            ("request_body_timeout", request_body_timeout),
            ("idle_timeout", idle_timeout),
        ):
            if timeout is not None and timeout <= 0:
                raise ValueError(f"{name} must be positive (or None for no timeout)")
        self.engine = HostEngine(
            max_message_size=max_message_size,
            max_pending_calls=max_pending_calls,
            max_batch_length=max_batch_length,
            max_agent_types_per_connection=max_agent_types_per_connection,
            max_subscriptions_per_connection=max_subscriptions_per_connection,
        )
        self.max_message_size = max_message_size
        self.max_outbound_bytes = max_outbound_bytes
        self.max_header_size = max_header_size
        self.request_head_timeout = request_head_timeout
        self.request_body_timeout = request_body_timeout
        self.idle_timeout = idle_timeout
        self.keepalive_interval = keepalive_interval
        self.keepalive_timeout = keepalive_timeout
        self._admission = Admission(
            max_connections=max_connections, max_connections_per_address=max_connections_per_address
        )
        self._refused = 0
        self._refusals_logged_at = -math.inf
        self._auth_token = None if auth_token is None else auth_token.strip().encode()
        self._authenticator = authenticator
        self._channels: dict[ClientId, Channel] = {}
        self._one_shots: dict[ClientId, OneShot] = {}
        self._timer = DeadlineTimer(self.engine.next_deadline, self._on_deadline)
        self._connections = 0
        self._idle: anyio.Event | None = None
        self.clock: Callable[[], float] = anyio.current_time
        """The engine's clock; the asyncio driver sets the loop's (the same time, called from callbacks)."""

    # ------------------------------------------------------------------ public

    @property
    def connection_count(self) -> int:
        return self._connections

    @property
    def requires_token(self) -> bool:
        """Whether clients must send ``Authorization: Bearer <auth_token>``."""
        return self._auth_token is not None

    async def handle_connection(self, stream: anyio.abc.ByteStream) -> None:
        """Serve one accepted connection (HTTP/1.1 keep-alive; may become a WebSocket) until it ends."""
        self.connection_opened()
        address = remote_host(stream.extra(SocketAttribute.remote_address, None))
        refusal = self.admit(address)
        reset = False
        try:
            if refusal is None:
                reset = await self._serve_http(stream)
            else:
                with anyio.move_on_after(LINGER_TIMEOUT):
                    await stream.send(refusal)
        except STREAM_ERRORS:
            pass
        except Exception:
            # One connection's failure must never take the host down.
            logger.exception("error serving a connection")
        finally:
            with anyio.CancelScope(shield=True):
                await _linger_and_close(stream, reset=reset)
            if refusal is None:
                self.release(address)
            self.connection_closed()

    async def run_timers(self) -> None:
        """Drive the engine's deadlines; run for as long as the service runs."""
        await self._timer.run()

    def close_all(self, code: CloseCode = CloseCode.GOING_AWAY, reason: str = "host shutting down") -> None:
        """Close every connection (pending calls fail at once; nothing stays registered)."""
        self.engine.close_all(code, reason)
        self._apply()

    async def wait_idle(self) -> None:
        """Return when no connection is open."""
        if self._connections == 0:
            return
        if self._idle is None:
            self._idle = anyio.Event()
        await self._idle.wait()

    # ------------------------------------------------------------------ shared by the drivers

    def connection_opened(self) -> None:
        self._connections += 1

    def connection_closed(self) -> None:
        self._connections -= 1
        if self._connections == 0 and self._idle is not None:
            self._idle.set()
            self._idle = None

    def admit(self, address: str | None) -> bytes | None:
        """None if a new connection from ``address`` is served (then :meth:`release` it when it ends),
        else the response to write to it before closing it."""
        refusal = self._admission.admit(address)
        if refusal is None:
            return None
        self._refused += 1
        now = self.clock()
        if now >= self._refusals_logged_at + _REFUSAL_LOG_INTERVAL:  # at most one line per interval
            self._refusals_logged_at = now
            logger.warning("refused %d connection(s); the last one: %s", self._refused, refusal.message)
            self._refused = 0
        return refusal_response(refusal)

    def release(self, address: str | None) -> None:
        self._admission.release(address)

    def new_front(self, now: float) -> HttpFront:
        """The HTTP request handling of one connection accepted at ``now``."""
        return HttpFront(
            max_header_size=self.max_header_size,
            max_message_size=self.max_message_size,
            health=self._health_body,
            now=now,
            head_timeout=self.request_head_timeout,
            body_timeout=self.request_body_timeout,
            idle_timeout=self.idle_timeout,
        )

    def _health_body(self) -> bytes:
        return msgspec.json.encode(
            {
                "status": "ok",
                "connections": self._connections,
                "agent_types": len(self.engine.agent_types()),
                "max_message_size": self.max_message_size,
                "events_unreadable": self.engine.stats.events_unreadable,
            }
        )

    def authorize(self, request: h11.Request) -> bool | Awaitable[bool]:
        """The verdict on a request's credentials (awaitable when the authenticator is async)."""
        if self._auth_token is not None:
            value = header(request, b"authorization") or b""
            scheme, _, token = value.partition(b" ")
            token = token.strip()
            if scheme.lower() != b"bearer" or not token or not hmac.compare_digest(token, self._auth_token):
                return False
        if self._authenticator is not None:
            return self._authenticator(request)
        return True

    def start_one_shot(self, body: bytes, on_done: Callable[[], None]) -> tuple[ClientId, OneShot]:
        """Run a ``/v1/rpc`` body; ``on_done`` runs (maybe at once) when the answer is known."""
        client = self.engine.connect(ClientKind.ONE_SHOT)
        one_shot = OneShot(on_done)
        self._one_shots[client] = one_shot
        self.engine.receive(client, body, self.clock())
        self._apply()
        return client, one_shot

    def end_one_shot(self, client: ClientId, one_shot: OneShot) -> RpcAnswer:
        """Forget a one-shot; if its caller hung up, its calls are cancelled at their targets here."""
        if self._one_shots.pop(client, None) is not None:
            self.engine.disconnect(client, self.clock())
            self._apply()
        return RpcAnswer(one_shot.close_code, one_shot.body)

    def accept_channel(self, request: h11.Request) -> ClientId | HttpError:
        """Register the client of a WebSocket upgrade (its X-Client-Id must not be in use)."""
        name = header(request, b"x-client-id")
        try:
            return self.engine.connect(ClientKind.CHANNEL, None if name is None else name.decode("utf-8", "replace"))
        except ClientNameInUse:
            return HttpError(409, "another live connection uses this X-Client-Id")

    def accept_channel_response(self, ws: WSConnection) -> bytes:
        """The ``101`` that opens a channel; it announces the host's message size limit to the worker."""
        return ws.send(AcceptConnection(extra_headers=[(MAX_MESSAGE_SIZE_HEADER, b"%d" % self.max_message_size)]))

    def channel_opened(self, client: ClientId, channel: Channel) -> tuple[MessageHandler, Callable[[], None]]:
        """Route ``client``'s messages; returns the channel's ``on_message`` and ``on_end`` callbacks."""
        self._channels[client] = channel
        engine = self.engine
        clock = self.clock
        apply = self._apply

        def on_message(message: str | bytes) -> None:
            if engine.client_state(client) is not None:  # not cut off by an earlier message
                engine.receive(client, message, clock())
                apply()

        def on_end() -> None:
            # Release what the client owned before its close is acknowledged: a worker whose
            # stop() returned has freed its agent types.
            engine.disconnect(client, clock())
            apply()

        return on_message, on_end

    def channel_closed(self, client: ClientId) -> None:
        self._channels.pop(client, None)
        self.engine.disconnect(client, self.clock())
        self._apply()

    # ------------------------------------------------------------------ engine instructions

    def _on_deadline(self, now: float) -> None:
        self.engine.handle_timer(now)
        self._apply()

    def _apply(self) -> None:
        """Carry out what the engine queued (and what that queued in turn)."""
        channels = self._channels
        engine = self.engine
        outputs = engine.data_to_send()
        while outputs:
            for out in outputs:
                if isinstance(out, Close):
                    self._close(out)
                    continue
                channel = channels.get(out.client)
                if channel is not None:
                    if not channel.send_message(out.data) and channel.close_code == CloseCode.SLOW_CONSUMER:
                        # The peer stopped reading: it is being cut off, so settle its calls now.
                        engine.disconnect(out.client, self.clock())
                    continue
                one_shot = self._one_shots.get(out.client)
                if one_shot is not None:
                    one_shot.body = out.data
            outputs = engine.data_to_send()
        self._timer.poke()

    def _close(self, out: Close) -> None:
        channel = self._channels.get(out.client)
        if channel is not None:
            channel.close(out.code, out.reason)
            return
        one_shot = self._one_shots.get(out.client)
        if one_shot is not None:
            one_shot.close_code = out.code
            one_shot.finish()

    # ------------------------------------------------------------------ the anyio driver

    async def _serve_http(self, stream: anyio.abc.ByteStream) -> bool:
        """Serve requests until the connection ends; True if the front gave up on the peer (reset it)."""
        clock = self.clock
        front = self.new_front(clock())
        reply: Reply = None
        try:
            while True:
                action = front.next_action(reply, clock())
                reply = None
                if action is NEED_DATA:
                    deadline = front.next_deadline()
                    with anyio.CancelScope(deadline=math.inf if deadline is None else deadline) as scope:
                        try:
                            data = await stream.receive(_READ_SIZE)
                        except STREAM_ERRORS:
                            data = b""
                    if scope.cancelled_caught:
                        front.handle_timer(clock())
                    else:
                        front.receive_data(data, clock())
                elif isinstance(action, Send):
                    deadline = front.next_deadline()  # a peer that does not read its answers is let go
                    with anyio.CancelScope(deadline=math.inf if deadline is None else deadline) as scope:
                        await stream.send(action.data)
                    if scope.cancelled_caught:
                        front.handle_timer(clock())
                elif isinstance(action, Authorize):
                    verdict = self.authorize(action.request)
                    reply = verdict if isinstance(verdict, bool) else await verdict
                elif isinstance(action, RpcCall):
                    answer = await self._one_shot(stream, front, action.body)
                    if answer is None:
                        return False  # the client went away before its answer was ready
                    reply = answer
                elif isinstance(action, OpenChannel):
                    accepted = self.accept_channel(action.request)
                    if isinstance(accepted, HttpError):
                        reply = accepted
                        continue
                    await self._channel(stream, front, accepted, action.ws)
                    return False
                else:
                    return action is ABORT
        except STREAM_ERRORS:
            return False

    async def _one_shot(self, stream: anyio.abc.ByteStream, front: HttpFront, body: bytes) -> RpcAnswer | None:
        done = anyio.Event()
        hung_up = False

        async def watch_for_hangup() -> None:
            # While the calls run, notice the client going away.
            nonlocal hung_up
            try:
                data = await stream.receive(_READ_SIZE)
            except STREAM_ERRORS:
                data = b""
            if data:
                front.receive_data(data, self.clock())  # a pipelined next request: kept for the next cycle
                return
            hung_up = True
            done.set()

        client, one_shot = self.start_one_shot(body, done.set)
        try:
            if not one_shot.done:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(watch_for_hangup)
                    await done.wait()
                    tg.cancel_scope.cancel()
        finally:
            answer = self.end_one_shot(client, one_shot)
        return None if hung_up else answer

    async def _channel(
        self, stream: anyio.abc.ByteStream, front: HttpFront, client: ClientId, ws: WSConnection
    ) -> None:
        try:
            await stream.send(self.accept_channel_response(ws))
        except BaseException:
            self.engine.disconnect(client, self.clock())
            self._apply()
            raise
        pump = WebSocketPump(
            stream,
            ws,
            max_message_size=self.max_message_size,
            max_outbound_bytes=self.max_outbound_bytes,
            initial_data=front.trailing_data(),
        )
        on_message, on_end = self.channel_opened(client, pump)
        try:
            async with anyio.create_task_group() as tg:
                if self.keepalive_interval is not None:
                    tg.start_soon(keep_alive, pump, self.keepalive_interval, self.keepalive_timeout)
                await pump.serve(on_message, on_end)
                tg.cancel_scope.cancel()
        finally:
            self.channel_closed(client)


def _bind_failure(address: str, port: int, exc: OSError) -> str:
    """Why a host cannot listen on ``address:port``, and what to do about it, in one line."""
    where = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return (
            f"cannot listen on {where}: the port is already in use (is another host running?); "
            "stop that process or choose another port"
        )
    if exc.errno == errno.EACCES:
        return f"cannot listen on {where}: permission denied (ports below 1024 need privileges); choose another port"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on {where}: {address} is not an address of this machine; use 127.0.0.1 or 0.0.0.0"
    return f"cannot listen on {where}: {exc.strerror or exc}"


def _on_asyncio() -> bool:
    """Whether the caller runs in an asyncio task (and not, say, under trio)."""
    try:
        return asyncio.current_task() is not None
    except RuntimeError:  # no asyncio loop running in this thread
        return False


async def _linger_and_close(stream: anyio.abc.ByteStream, *, reset: bool = False) -> None:
    """Close after the peer has read our last response: half-close, then drain briefly.

    Closing a socket that still has unread input makes the kernel send RST, which can destroy a
    response (a 413, say) before the client reads it. With ``reset`` (the peer does not read at
    all), close at once with a reset instead: what the kernel still holds for it is discarded,
    rather than delivered to it for minutes.
    """
    if reset:
        raw = stream.extra(SocketAttribute.raw_socket, None)
        if raw is not None:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET_ON_CLOSE)
        await anyio.aclose_forcefully(stream)
        return
    try:
        await stream.send_eof()
        with anyio.move_on_after(LINGER_TIMEOUT):
            drained = 0
            while drained < LINGER_MAX_BYTES:
                drained += len(await stream.receive(65536))
    except (*STREAM_ERRORS, NotImplementedError):
        pass  # the peer is gone, or (TLS) half-closing is not supported: close now
    try:
        await stream.aclose()
    except STREAM_ERRORS:
        pass


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
        max_message_size: int | None = None,
        auth_token: str | None = None,
        authenticator: Authenticator | None = None,
        backlog: int = 512,
        max_batch_length: int = DEFAULT_MAX_BATCH_LENGTH,
        max_agent_types_per_connection: int = DEFAULT_MAX_AGENT_TYPES_PER_CONNECTION,
        max_subscriptions_per_connection: int = DEFAULT_MAX_SUBSCRIPTIONS_PER_CONNECTION,
        max_outbound_bytes: int = DEFAULT_MAX_OUTBOUND_BYTES,
        request_head_timeout: float | None = DEFAULT_REQUEST_HEAD_TIMEOUT,
        request_body_timeout: float | None = DEFAULT_REQUEST_BODY_TIMEOUT,
        idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_connections_per_address: int = DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
        extra_grpc_config: ChannelArgumentType | None = None,
    ) -> None:
        """The limits and timeouts are :class:`HttpAgentService`'s (ignored when ``service`` is given)."""
        host, address_port = split_host_port(address)  # gRPC style "host:port" (or "[::]:port")
        self.address = host
        self._requested_port = port if address_port is None else address_port
        grpc = translate_grpc_options(extra_grpc_config, used=HOST_GRPC_OPTIONS, role="the host")
        if service is not None and (extra_grpc_config is not None or max_message_size is not None):
            raise TypeError("pass the limits to the HttpAgentService given as service=, not to HttpAgentServer")
        self.service = service or HttpAgentService(
            max_message_size=max_message_size or grpc.max_receive or DEFAULT_MAX_MESSAGE_SIZE,
            auth_token=auth_token,
            authenticator=authenticator,
            keepalive_interval=10.0 if grpc.keepalive_interval is None else grpc.keepalive_interval,
            keepalive_timeout=10.0 if grpc.keepalive_timeout is None else grpc.keepalive_timeout,
            max_batch_length=max_batch_length,
            max_agent_types_per_connection=max_agent_types_per_connection,
            max_subscriptions_per_connection=max_subscriptions_per_connection,
            max_outbound_bytes=max_outbound_bytes,
            request_head_timeout=request_head_timeout,
            request_body_timeout=request_body_timeout,
            idle_timeout=idle_timeout,
            max_connections=max_connections,
            max_connections_per_address=max_connections_per_address,
        )
        self._ssl_context = ssl_context
        self._backlog = backlog
        self._socket: socket.socket | None = None
        self._port: int | None = None
        self._accept_scope: anyio.CancelScope | None = None
        self._grace = 5.0
        self._started = False
        self._stopped = anyio.Event()
        self._stop_requested: anyio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        """The bound port (useful with ``port=0``). Raises if the server is not bound yet."""
        if self._port is None:
            raise RuntimeError("the server is not started")
        return self._port

    def bind(self) -> int:
        """Bind the listening socket now (``start()`` and ``serve()`` do it if it was not done) and
        return the port.

        Raises :class:`HostBindError` (an ``OSError``) with a one-line explanation when the port is
        in use, needs privileges, or the address is not this machine's.
        """
        if self._socket is None:
            self._socket = self._bind()
        return self.port

    def _bind(self) -> socket.socket:
        if self.service.requires_token and self._ssl_context is None and not is_loopback(self.address):
            logger.warning(
                "the host on %s requires a token but serves plain HTTP: the token travels in clear text to "
                "anyone on the path; pass ssl_context= (or --certfile/--keyfile) to serve https/wss",
                self.address,
            )
        family = socket.AF_INET6 if ":" in self.address else socket.AF_INET
        try:
            sock = socket.create_server((self.address, self._requested_port), family=family, backlog=self._backlog)
        except OSError as exc:
            raise HostBindError(exc.errno, _bind_failure(self.address, self._requested_port, exc)) from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._port = sock.getsockname()[1]
        return sock

    def start(self) -> None:
        """Bind now and serve in a task on the running asyncio loop."""
        if self._started:
            raise RuntimeError("the server is already started")
        loop = asyncio.get_running_loop()
        self.bind()
        assert self._socket is not None
        self._started = True
        self._stop_requested = anyio.Event()
        self._task = loop.create_task(self._serve_asyncio(self._socket, anyio.TASK_STATUS_IGNORED))

    async def serve(self, *, task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED) -> None:
        """Bind and serve until :meth:`stop` (anyio-native; ``await tg.start(server.serve)`` gives the port)."""
        if self._started:
            raise RuntimeError("the server is already started")
        self.bind()
        assert self._socket is not None
        self._started = True
        if _on_asyncio():
            self._stop_requested = anyio.Event()
            await self._serve_asyncio(self._socket, task_status)
        else:
            await self._serve_anyio(self._socket, task_status)

    async def _serve_asyncio(self, sock: socket.socket, task_status: anyio.abc.TaskStatus[int]) -> None:
        """Serve with :class:`~._asyncio_host.HostProtocol` connections (no task per connection)."""
        service = self.service
        loop = asyncio.get_running_loop()
        service.clock = loop.time
        connections: set[HostProtocol] = set()
        tasks: list[asyncio.Task[None]] = []
        server: asyncio.Server | None = None
        try:
            handshake_timeout = None if self._ssl_context is None else service.request_head_timeout
            server = await loop.create_server(
                lambda: HostProtocol(service, connections),
                sock=sock,
                ssl=self._ssl_context,
                backlog=self._backlog,
                ssl_handshake_timeout=handshake_timeout,  # a silent TLS client is dropped like a silent one
            )
            tasks.append(loop.create_task(service.run_timers()))
            if service.keepalive_interval is not None:
                sweep = keepalive_sweep(connections, service.keepalive_interval, service.keepalive_timeout)
                tasks.append(loop.create_task(sweep))
            task_status.started(self.port)
            assert self._stop_requested is not None
            await self._stop_requested.wait()
        finally:
            with anyio.CancelScope(shield=True):
                if server is not None:
                    server.close()
                else:
                    sock.close()
                service.close_all()
                with anyio.move_on_after(self._grace):
                    await service.wait_idle()
                for connection in list(connections):
                    connection.abort()
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                with anyio.move_on_after(1.0):
                    await service.wait_idle()  # the aborted connections' connection_lost
                self._stopped.set()

    async def _serve_anyio(self, sock: socket.socket, task_status: anyio.abc.TaskStatus[int]) -> None:
        try:
            listener = await anyio.abc.SocketListener.from_socket(sock)
            async with anyio.create_task_group() as tg:
                tg.start_soon(self.service.run_timers)
                self._accept_scope = anyio.CancelScope()
                task_status.started(self.port)
                with self._accept_scope:
                    await self._accept_anyio(listener, tg)
                with anyio.CancelScope(shield=True):
                    await listener.aclose()
                    self.service.close_all()
                    with anyio.move_on_after(self._grace):
                        await self.service.wait_idle()
                tg.cancel_scope.cancel()
        finally:
            self._stopped.set()

    async def _accept_anyio(self, listener: anyio.abc.SocketListener, tg: anyio.abc.TaskGroup) -> None:
        """Accept connections until cancelled. When the process is out of descriptors (EMFILE) or
        memory, wait a moment and try again: the connections being served go on, and new ones are
        taken as soon as descriptors free up (asyncio's own server loop does the same)."""
        last_logged = -math.inf
        while True:
            try:
                stream = await listener.accept()
            except ConnectionAbortedError:
                continue
            except (OSError, anyio.BrokenResourceError) as exc:
                # anyio's trio backend reports accept()'s OSError as the cause of a BrokenResourceError.
                cause = exc if isinstance(exc, OSError) else exc.__cause__
                if not isinstance(cause, OSError) or cause.errno not in _ACCEPT_CAPACITY_ERRNOS:
                    raise
                if time.monotonic() - last_logged >= _REFUSAL_LOG_INTERVAL:
                    last_logged = time.monotonic()
                    logger.error(
                        "cannot accept connections: %s; retrying every %.1fs (raise the open-files limit, "
                        "ulimit -n, or lower max_connections)",
                        cause,
                        ACCEPT_RETRY_DELAY,
                    )
                await anyio.sleep(ACCEPT_RETRY_DELAY)
                continue
            tg.start_soon(self._handle_anyio, stream)

    async def _handle_anyio(self, stream: anyio.abc.SocketStream) -> None:
        if self._ssl_context is None:
            await self.service.handle_connection(stream)
            return
        handshake_timeout = self.service.request_head_timeout
        tls: TLSStream | None = None
        with anyio.move_on_after(math.inf if handshake_timeout is None else handshake_timeout):
            try:
                tls = await TLSStream.wrap(
                    stream, server_side=True, ssl_context=self._ssl_context, standard_compatible=False
                )
            except (*STREAM_ERRORS, ssl.SSLError) as exc:
                logger.info("TLS handshake failed: %s", exc)
        if tls is None:
            await anyio.aclose_forcefully(stream)
            return
        await self.service.handle_connection(tls)

    async def stop(self, grace: float = 5) -> None:
        """Stop accepting, close every connection (1001), wait up to ``grace`` seconds, then end."""
        if not self._started:
            raise RuntimeError("the server is not started")
        self._grace = grace
        if self._accept_scope is not None:
            self._accept_scope.cancel()
        elif self._stop_requested is not None:
            self._stop_requested.set()
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


class HttpWorkerAgentRuntimeHost(HttpAgentServer):
    """The host under the gRPC runtime's name, with ``GrpcWorkerAgentRuntimeHost``'s parameters
    by name and position: ``HttpWorkerAgentRuntimeHost(address="localhost:50051")``.

    ``address`` is ``"host:port"`` (``"[::]:50051"`` for IPv6; port 0 picks one, read it back from
    :attr:`port` after ``start()``). ``extra_grpc_config`` is read as for gRPC:
    ``grpc.max_receive_message_length`` is the host's message size limit,
    ``grpc.keepalive_time_ms`` / ``grpc.keepalive_timeout_ms`` its keepalive; other options are
    ignored with a warning. The keywords are :class:`HttpAgentServer`'s.
    """

    def __init__(
        self,
        address: str,
        extra_grpc_config: ChannelArgumentType | None = None,
        *,
        ssl_context: ssl.SSLContext | None = None,
        max_message_size: int | None = None,
        auth_token: str | None = None,
        authenticator: Authenticator | None = None,
        backlog: int = 512,
    ) -> None:
        if split_host_port(address)[1] is None:
            raise ValueError(f"address {address!r} needs a port, as for GrpcWorkerAgentRuntimeHost: 'localhost:50051'")
        super().__init__(
            address,
            ssl_context=ssl_context,
            max_message_size=max_message_size,
            auth_token=auth_token,
            authenticator=authenticator,
            backlog=backlog,
            extra_grpc_config=extra_grpc_config,
        )
