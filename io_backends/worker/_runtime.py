"""HttpWorkerAgentRuntime: autogen-core's ``AgentRuntime`` on a :class:`~sansio_runtime.WorkerEngine`.

A drop-in for ``GrpcWorkerAgentRuntime``: change the import and the address, keep the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import math
import random
import signal
import ssl
import time
import uuid
import warnings
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, TypeVar, cast

import anyio
from autogen_core import (
    JSON_DATA_CONTENT_TYPE,
    PROTOBUF_DATA_CONTENT_TYPE,
    Agent,
    AgentId,
    AgentInstantiationContext,
    AgentMetadata,
    AgentRuntime,
    AgentType,
    CancellationToken,
    MessageContext,
    MessageHandlerContext,
    MessageSerializer,
    Subscription,
    TopicId,
    TypePrefixSubscription,
    TypeSubscription,
)
from autogen_core._telemetry import MessageRuntimeTracingConfig, TraceHelper, get_telemetry_grpc_metadata
from autogen_core._telemetry._tracing_config import (
    ExtraMessageRuntimeAttributes,
    MessagingDestination,
    MessagingOperation,
)
from opentelemetry import context as otel_context
from opentelemetry.trace import (
    NoOpTracer,
    NoOpTracerProvider,
    ProxyTracer,
    ProxyTracerProvider,
    TracerProvider,
    get_tracer_provider,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from sansio_runtime import (
    DEFAULT_MAX_MESSAGE_SIZE,
    AgentRef,
    CallFailed,
    CallSucceeded,
    ErrorCode,
    IncomingCall,
    IncomingCallCancelled,
    IncomingEvent,
    Payload,
    PeerError,
    RequestFailed,
    RequestSucceeded,
    SubscriptionSpec,
    TypePrefixSubscriptionSpec,
    TypeSubscriptionSpec,
    WorkerEngine,
    WorkerEvent,
    WorkerStats,
)
from sansio_runtime import PayloadTooLargeError as EnginePayloadTooLarge

from ..sansio import CHANNEL_PATH, HostAddress, parse_host_address
from ..sansio._address import MAX_MESSAGE_SIZE_HEADER
from ..sansio._grpc_options import WORKER_OPTIONS as WORKER_GRPC_OPTIONS
from ..sansio._grpc_options import ChannelArgumentType
from ..sansio._grpc_options import translate as translate_grpc_options
from ..sansio._limits import CLOSE_TIMEOUT
from ._channel import AsyncioChannel, HandshakeNotAnswered, keep_alive, open_asyncio_channel
from ._errors import (
    HostConnectionError,
    HostRejectedError,
    HostTlsError,
    PayloadTooLargeError,
    error_from_rpc,
)
from ._serialization import NONE_TYPE_NAME, MessageSerializers, UnreadablePayload
from ._tasks import HandlerTasks
from ._timers import DeadlineTimer

logger = logging.getLogger("io_backends.runtime")
_NO_SPAN: AbstractContextManager[object] = contextlib.nullcontext()

# autogen validates every AgentId and TopicId it makes with a regular expression; messages keep
# naming the same few agents and topics, and both are immutable, so each is made once.
_agent_id = functools.lru_cache(maxsize=4096)(AgentId)
_topic_id = functools.lru_cache(maxsize=1024)(TopicId)
_TRACING_RECHECK = 1.0  # seconds between looks at the global tracer provider while none is set

T = TypeVar("T", bound=Agent)
AgentFactory = Callable[[], "Agent | Awaitable[Agent]"]

_DEFAULT_MAX_OUTBOUND_BYTES = 64 * 1024 * 1024
_TRACE_PROPAGATOR = TraceContextTextMapPropagator()
_SEND_HIGH_WATER = 1024 * 1024  # senders wait while more than this is queued for the host
_ENVELOPE_ALLOWANCE = 65536  # what the host adds around a payload when it forwards it


class HttpWorkerAgentRuntime(AgentRuntime):
    """An agent runtime whose agents talk to agents in other processes through an HTTP host.

    The first four parameters are ``GrpcWorkerAgentRuntime``'s, by name and position; the rest are
    keywords of this runtime.

    Args:
        host_address: ``http://host:port``, ``ws://host:port``, ``https://``/``wss://`` (TLS), or
            gRPC style ``host:port``.
        tracer_provider: OpenTelemetry tracer provider; spans are named as the gRPC runtime's.
        extra_grpc_config: gRPC channel options, as for ``GrpcWorkerAgentRuntime``:
            ``grpc.max_send_message_length`` / ``grpc.max_receive_message_length`` set the message
            size limits, ``grpc.keepalive_time_ms`` / ``grpc.keepalive_timeout_ms`` the keepalive;
            any other option is ignored with a :class:`GrpcOptionIgnoredWarning` (once).
        payload_serialization_format: ``application/json`` or ``application/x-protobuf``.
        auth_token: sent as ``Authorization: Bearer ...`` when the host requires one.
        ssl_context: for ``https://``/``wss://`` hosts (default: the system's trust store).
        call_timeout: default timeout, in seconds, of every ``send_message`` (None: no timeout).
        max_message_size: the largest message this worker sends, and (with 64 KiB for the envelope)
            receives; 4 MiB by default. A lower limit the host announces when the worker connects
            applies too.
        connect_timeout: how long ``start()`` keeps trying to reach the host (it may still be starting).
        client_id: this worker's id at the host (``X-Client-Id``); a random one by default. The
            host refuses a second live connection with the same id.
        reconnect: reconnect by itself, with exponential backoff and jitter, when the connection
            is lost, and register its agent types and subscriptions again.
        reconnect_initial_delay, reconnect_max_delay: the backoff's first and largest delay.
        reconnect_wait: how long a call made while disconnected waits for the reconnection
            before it fails with :class:`HostConnectionError` (0: fail at once).
        keepalive_interval, keepalive_timeout: ping the host after ``keepalive_interval`` seconds
            of silence; give the connection up after ``keepalive_timeout`` more (None: never).
    """

    def __init__(
        self,
        host_address: str,
        tracer_provider: TracerProvider | None = None,
        extra_grpc_config: ChannelArgumentType | None = None,
        payload_serialization_format: str = JSON_DATA_CONTENT_TYPE,
        *,
        auth_token: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        call_timeout: float | None = None,
        max_message_size: int | None = None,
        connect_timeout: float = 10.0,
        client_id: str | None = None,
        reconnect: bool = True,
        reconnect_initial_delay: float = 0.1,
        reconnect_max_delay: float = 5.0,
        reconnect_wait: float = 0.0,
        keepalive_interval: float | None = 10.0,
        keepalive_timeout: float = 10.0,
    ) -> None:
        if payload_serialization_format not in {JSON_DATA_CONTENT_TYPE, PROTOBUF_DATA_CONTENT_TYPE}:
            raise ValueError(f"Unsupported payload serialization format: {payload_serialization_format}")
        if auth_token is not None and not auth_token.strip():
            raise ValueError("auth_token must not be empty: pass None when the host needs no token")
        grpc = translate_grpc_options(extra_grpc_config, used=WORKER_GRPC_OPTIONS, role="HttpWorkerAgentRuntime")
        if max_message_size is None:
            max_message_size = grpc.max_send or DEFAULT_MAX_MESSAGE_SIZE
        if grpc.keepalive_interval is not None and keepalive_interval is not None:
            keepalive_interval = grpc.keepalive_interval
        if grpc.keepalive_timeout is not None:
            keepalive_timeout = grpc.keepalive_timeout
        self._address = parse_host_address(host_address)
        self._payload_format = payload_serialization_format
        self._auth_token = auth_token
        self._ssl_context = ssl_context
        self._call_timeout = call_timeout
        self._max_message_size = max_message_size
        self._max_receive_size = max(grpc.max_receive or 0, max_message_size) + _ENVELOPE_ALLOWANCE
        self._connect_timeout = connect_timeout
        self._client_id = client_id or f"worker-{uuid.uuid4()}"
        self._reconnect = reconnect
        self._reconnect_initial_delay = reconnect_initial_delay
        self._reconnect_max_delay = reconnect_max_delay
        self._reconnect_wait = reconnect_wait
        self._keepalive_interval = keepalive_interval
        self._keepalive_timeout = keepalive_timeout
        self._connected = asyncio.Event()
        self._trace_helper = TraceHelper(tracer_provider, MessageRuntimeTracingConfig("Worker Runtime"))
        tracer = self._trace_helper.tracer
        # Whether spans are recorded: known for good unless the tracer follows the global provider.
        self._tracing_on: bool | None = (
            False if isinstance(tracer, NoOpTracer) else None if isinstance(tracer, ProxyTracer) else True
        )
        self._tracing_checked_at = -math.inf
        self._serialization_registry = MessageSerializers()
        self._engine = WorkerEngine(max_message_size=max_message_size)
        self._channel: AsyncioChannel | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._running = False
        self._futures: dict[int, asyncio.Future[WorkerEvent]] = {}
        # The cancellation token of each call being handled, by (connection epoch, host call id).
        self._call_tokens: dict[tuple[int, int | str], CancellationToken] = {}
        self._handlers = HandlerTasks()
        self._agent_factories: dict[str, AgentFactory] = {}
        self._instance_types: dict[str, type[Agent]] = {}
        self._instantiated_agents: dict[AgentId, Agent] = {}
        self._subscriptions: dict[str, SubscriptionSpec] = {}
        self._timer = DeadlineTimer(self._engine.next_deadline, self._on_deadline)
        self._unreadable_seen: set[tuple[str, str]] = set()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Connect to the host and register every agent type and subscription added so far.

        Raises if the host cannot be reached within ``connect_timeout`` or refuses the worker.
        Once started, the worker reconnects by itself whenever the connection is lost.
        """
        if self._running:
            raise ValueError("Runtime is already running.")
        channel = await self._open_first()
        self._running = True
        self._channel = channel
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise(channel))
        try:
            await self._announce()
        except BaseException:
            await self.stop()
            raise
        self._connected.set()

    async def stop(self) -> None:
        """Close the connection; calls in flight fail, handlers running here are cancelled."""
        if not self._running:
            raise RuntimeError("Runtime is not running.")
        self._running = False
        self._connected.set()  # wake calls waiting for a reconnection: they see the runtime stopped
        channel, self._channel = self._channel, None
        if channel is not None:
            channel.close(1000, "worker stopping")
        if self._supervisor is not None:
            with anyio.move_on_after(3):
                await asyncio.shield(self._supervisor)
            self._supervisor.cancel()
            try:
                await self._supervisor
            except asyncio.CancelledError:
                pass
            self._supervisor = None
        await self._handlers.cancel_all()
        self._connected = asyncio.Event()

    async def stop_when_signal(self, signals: Sequence[signal.Signals] = (signal.SIGTERM, signal.SIGINT)) -> None:
        """Wait for one of ``signals``, then :meth:`stop`."""
        loop = asyncio.get_running_loop()
        received = asyncio.Event()
        for sig in signals:
            loop.add_signal_handler(sig, received.set)
        try:
            await received.wait()
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)
        await self.stop()

    @property
    def stats(self) -> WorkerStats:
        """This worker's counters: calls and events received, and those it could not read."""
        return self._engine.stats

    @property
    def connected(self) -> bool:
        """Whether the worker is connected to the host right now."""
        return self._channel is not None and self._channel.is_open

    async def _open(self) -> AsyncioChannel:
        """Connect and upgrade; TLS trouble is raised as :class:`HostTlsError`, saying what is wrong."""
        headers = [(b"x-client-id", self._client_id.encode())]
        if self._auth_token is not None:
            headers.append((b"authorization", b"Bearer " + self._auth_token.encode()))
        try:
            channel = await open_asyncio_channel(
                self._address,
                target=CHANNEL_PATH,
                headers=headers,
                ssl_context=self._ssl_context,
                max_message_size=self._max_receive_size,
                max_outbound_bytes=_DEFAULT_MAX_OUTBOUND_BYTES,
                connect_timeout=self._connect_timeout,
            )
        except (ssl.SSLError, HandshakeNotAnswered) as exc:
            raise _tls_error(self._address, exc) from None
        self._engine.connection_made(_announced_limit(channel.response_headers))
        return channel

    async def _open_first(self) -> AsyncioChannel:
        """Connect, retrying with backoff while the host is not up yet, for ``connect_timeout``."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        delay = self._reconnect_initial_delay
        while True:
            try:
                return await self._open()
            except HostRejectedError as exc:
                if exc.status_code != 503 or loop.time() + delay >= started + self._connect_timeout:
                    raise  # an answer, not an absence: retrying cannot help (503: the host is full, for now)
            except HostTlsError:
                raise  # an answer, not an absence: retrying cannot help
            except (OSError, asyncio.TimeoutError) as exc:
                if loop.time() + delay >= started + self._connect_timeout:
                    raise self._unreachable(exc, loop.time() - started) from None
            await anyio.sleep(delay)
            delay = min(delay * 2, self._reconnect_max_delay)

    def _unreachable(self, exc: BaseException, tried_for: float) -> HostConnectionError:
        """The one-line error of a host that cannot be reached, and what to do about it."""
        if isinstance(exc, ConnectionRefusedError):
            why = "connection refused"
        elif isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
            why = f"no answer within connect_timeout={self._connect_timeout:g}"
        elif isinstance(exc, OSError) and exc.strerror:
            why = exc.strerror
        else:
            why = str(exc) or type(exc).__name__
        address = self._address
        return HostConnectionError(
            ErrorCode.CONNECTION_LOST,
            f"cannot reach the host at {address.authority} (tried for {tried_for:.1f}s: {why}); a host must be "
            f"running there, e.g. `autogen-http-host --port {address.port}` (give it more time with connect_timeout=)",
        )

    async def _announce(self) -> None:
        """Tell the host about every agent type and subscription this worker has."""
        waits = [self._request(self._engine.register_agent(t)) for t in self._agent_factories]
        waits += [self._request(self._engine.add_subscription(s)) for s in self._subscriptions.values()]
        self._flush()
        for wait in waits:
            event = await wait
            if isinstance(event, (RequestFailed, CallFailed)):
                raise error_from_rpc(event.error)

    async def _supervise(self, channel: AsyncioChannel) -> None:
        """Run the connection; when it is lost, reconnect with backoff and announce everything again."""
        announce = False
        while True:
            await self._run_connection(channel, announce)
            if not self._running or not self._reconnect:
                return
            self._connected.clear()
            reconnected = await self._reconnect_with_backoff()
            if reconnected is None:
                return
            channel, announce = reconnected, True

    async def _reconnect_with_backoff(self) -> AsyncioChannel | None:
        delay = self._reconnect_initial_delay
        while self._running:
            await anyio.sleep(delay * random.uniform(0.5, 1.5))
            if not self._running:
                return None
            try:
                channel = await self._open()
            except (OSError, asyncio.TimeoutError, HostRejectedError) as exc:
                logger.info(
                    "reconnecting to %s failed (%s); next try in about %.1fs", self._address.authority, exc, delay
                )
                delay = min(delay * 2, self._reconnect_max_delay)
                continue
            if not self._running:
                await channel.aclose()
                return None
            self._channel = channel
            return channel
        return None

    async def _run_connection(self, channel: AsyncioChannel, announce: bool) -> None:
        engine = self._engine
        loop = asyncio.get_running_loop()

        def on_message(message: str | bytes) -> None:
            for event in engine.receive(message, loop.time()):
                self._on_event(event)
            if engine.has_data_to_send:
                self._flush()

        abandoned = False
        try:
            # Timers, keepalive and re-announcing end with the connection.
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._timer.run)
                if self._keepalive_interval is not None:
                    tg.start_soon(keep_alive, channel, self._keepalive_interval, self._keepalive_timeout)
                if announce:
                    tg.start_soon(self._reannounce, channel)
                await channel.serve(on_message, self._connected.clear)  # (calls wait from the moment it ends)
                tg.cancel_scope.cancel()
        except asyncio.CancelledError:
            # Cancelled while running: the event loop is ending (asyncio.run) and stop() was never called.
            abandoned = self._running
            if abandoned:
                self._abandon(channel)
            raise
        finally:
            with anyio.CancelScope(shield=True):
                await channel.aclose()
                if abandoned:
                    with anyio.move_on_after(CLOSE_TIMEOUT):
                        await self._handlers.cancel_all()
            if self._channel is channel:
                self._channel = None
                logger.warning("lost the connection to the host at %s", self._address.authority)
            for event in self._engine.connection_lost(channel.close_code):
                self._on_event(event)

    def _abandon(self, channel: AsyncioChannel) -> None:
        """End a runtime whose event loop is shutting down without a ``stop()``: no handler starts
        any more, running ones are cancelled, and the connection is closed as ``stop()`` would."""
        self._running = False
        self._connected.set()
        self._channel = None
        channel.close(1000, "worker's event loop shut down")
        self._handlers.cancel_now()
        logger.warning(
            "the worker connected to %s was not stopped before its event loop ended; call "
            "`await runtime.stop()` before leaving it",
            self._address.authority,
        )

    async def _reannounce(self, channel: AsyncioChannel) -> None:
        try:
            await self._announce()
        except Exception as exc:
            # Typically: the host still holds our old connection's agent types. Try again later.
            logger.warning("re-registering with the host failed (%s); reconnecting", exc)
            channel.close(1000, "re-registration failed")
            return
        logger.info("reconnected to the host at %s", self._address.authority)
        self._connected.set()

    async def _wait_connected(self) -> None:
        if not self._running:
            raise ValueError("Runtime must be running (call start() first).")
        if not self.connected and self._reconnect_wait > 0:
            with anyio.move_on_after(self._reconnect_wait):
                await self._connected.wait()
        if not self._running:
            raise ValueError("Runtime must be running (call start() first).")
        if not self.connected:
            raise HostConnectionError(
                ErrorCode.CONNECTION_LOST, f"not connected to the host at {self._address.authority} (reconnecting)"
            )

    def _on_deadline(self, now: float) -> None:
        for event in self._engine.handle_timer(now):
            self._on_event(event)
        self._flush()

    # ------------------------------------------------------------------ engine plumbing

    def _flush(self) -> None:
        frames = self._engine.data_to_send()
        channel = self._channel
        if channel is not None:
            for frame in frames:
                channel.send_message(frame)
        self._timer.poke()

    async def _backpressure(self) -> None:
        """Let a tight loop of sends wait for the socket instead of queueing without bound."""
        channel = self._channel
        if channel is not None and channel.queued_bytes > _SEND_HIGH_WATER:
            await channel.drain(_SEND_HIGH_WATER)

    def _request(self, request_id: int) -> asyncio.Future[WorkerEvent]:
        future: asyncio.Future[WorkerEvent] = asyncio.get_running_loop().create_future()
        self._futures[request_id] = future
        return future

    def _on_event(self, event: WorkerEvent) -> None:
        if isinstance(event, (CallSucceeded, CallFailed, RequestSucceeded, RequestFailed)):
            future = self._futures.pop(event.request_id, None)
            if future is not None and not future.done():
                future.set_result(event)
        elif isinstance(event, IncomingCall):
            if self._running:  # (not while stopping: its handler would be cancelled before it starts)
                self._handlers.spawn(self._handle_call(event))
        elif isinstance(event, IncomingEvent):
            if self._running:
                self._handle_event(event)
        elif isinstance(event, IncomingCallCancelled):
            token = self._call_tokens.get((event.epoch, event.call_id))
            if token is not None:
                token.cancel()
        elif isinstance(event, PeerError):
            logger.warning("the host reported an error: %s (%s)", event.error.message, event.error.code)

    async def _runtime_call(self, request_id: int) -> RequestSucceeded:
        future = self._request(request_id)
        self._flush()
        event = await future
        if isinstance(event, (RequestFailed, CallFailed)):
            raise error_from_rpc(event.error)
        assert isinstance(event, RequestSucceeded)
        return event

    # ------------------------------------------------------------------ messaging

    async def send_message(
        self,
        message: Any,
        recipient: AgentId,
        *,
        sender: AgentId | None = None,
        cancellation_token: CancellationToken | None = None,
        message_id: str | None = None,
    ) -> Any:
        if not self._running:
            raise ValueError("Runtime must be running when sending message.")
        data_type = self._serialization_registry.type_name(message)
        with self._trace("create", recipient, parent=None, extraAttributes={"message_type": data_type}):
            payload = self._payload_of(message, data_type)
            await self._wait_connected()
            metadata = self._trace_metadata()
            with self._trace("send", recipient, parent=metadata):
                metadata = self._trace_metadata()
                try:
                    request_id = self._engine.call(
                        AgentRef(recipient.type, recipient.key),
                        payload,
                        now=asyncio.get_running_loop().time(),
                        source=None if sender is None else AgentRef(sender.type, sender.key),
                        metadata=metadata,
                        timeout=self._call_timeout,
                    )
                except EnginePayloadTooLarge as exc:
                    raise self._too_large(exc) from None
                future = self._request(request_id)
                self._flush()
            if cancellation_token is not None:
                cancellation_token.link_future(future)
            try:
                await self._backpressure()
                event = await future
            except asyncio.CancelledError:
                self._futures.pop(request_id, None)
                if self._engine.cancel_call(request_id):
                    self._flush()
                raise
            if isinstance(event, (CallFailed, RequestFailed)):
                raise error_from_rpc(event.error)
            assert isinstance(event, CallSucceeded)
            try:
                return self._serialization_registry.read(event.payload, "this worker")
            except UnreadablePayload as exc:
                reason = f"cannot read the answer of {recipient}: {exc}"
                raise error_from_rpc(self._engine.result_unreadable(event.payload, reason)) from None

    async def publish_message(
        self,
        message: Any,
        topic_id: TopicId,
        *,
        sender: AgentId | None = None,
        cancellation_token: CancellationToken | None = None,
        message_id: str | None = None,
    ) -> None:
        if not self._running:
            raise ValueError("Runtime must be running when publishing message.")
        if message_id is None:
            message_id = str(uuid.uuid4())
        data_type = self._serialization_registry.type_name(message)
        with self._trace("create", topic_id, parent=None, extraAttributes={"message_type": data_type}):
            payload = self._payload_of(message, data_type)
            await self._wait_connected()
            metadata = self._trace_metadata()
            with self._trace("publish", topic_id, parent=metadata):
                try:
                    self._engine.publish(
                        topic_type=topic_id.type,
                        topic_source=topic_id.source,
                        payload=payload,
                        event_id=message_id,
                        sender=None if sender is None else AgentRef(sender.type, sender.key),
                        trace_context=self._trace_metadata(),
                    )
                except EnginePayloadTooLarge as exc:
                    raise self._too_large(exc) from None
                self._flush()
            await self._backpressure()

    def _too_large(self, exc: EnginePayloadTooLarge) -> PayloadTooLargeError:
        """A message refused before it was sent, and whose limit it ran into."""
        limit = self._engine.max_message_size
        if limit < self._max_message_size:
            whose = (
                f"the host's limit, which it announced when this worker connected: raise it on the host "
                f"(HttpAgentServer(max_message_size=...) or autogen-http-host --max-message-size) and here "
                f"(max_message_size={self._max_message_size})"
            )
        else:
            whose = f"this worker's max_message_size={limit}: raise it here and on the host"
        return PayloadTooLargeError(ErrorCode.PAYLOAD_TOO_LARGE, f"{exc} ({whose})")

    # ------------------------------------------------------------------ tracing

    def _tracing(self) -> bool:
        """Whether spans are recorded at all (a tracer provider is set up, and tracing is not disabled).

        Without one, every span is the invalid span and no trace context leaves the process, so
        the span blocks and the context propagation can be skipped: the same outcome, cheaper.
        A tracer that follows the global provider (which may be set later, once) looks at it
        again at most once a second.
        """
        on = self._tracing_on
        if on is not None:
            return on
        now = time.monotonic()
        if now - self._tracing_checked_at < _TRACING_RECHECK:
            return False
        self._tracing_checked_at = now
        if isinstance(get_tracer_provider(), (ProxyTracerProvider, NoOpTracerProvider)):
            return False
        self._tracing_on = True
        return True

    def _trace(
        self,
        operation: MessagingOperation,
        destination: MessagingDestination,
        parent: Mapping[str, str] | None,
        *,
        attributes: dict[str, str] | None = None,
        extraAttributes: ExtraMessageRuntimeAttributes | None = None,
    ) -> AbstractContextManager[object]:
        if not self._tracing():
            return _NO_SPAN
        return self._trace_helper.trace_block(
            operation, destination, parent, attributes=attributes, extraAttributes=extraAttributes
        )

    def _trace_metadata(self) -> dict[str, str] | None:
        return get_telemetry_grpc_metadata() if self._tracing() else None

    def _remote_parent(self, trace_context: Mapping[str, str]) -> AbstractContextManager[object]:
        return _remote_parent(trace_context) if self._tracing() else _NO_SPAN

    def _warn_unreadable(self, what: str, exc: UnreadablePayload) -> None:
        """Log, once per type name and content type, a payload this worker cannot read."""
        key = (exc.payload.data_type, exc.payload.data_content_type)
        if key in self._unreadable_seen:
            return
        self._unreadable_seen.add(key)
        logger.warning("%s: %s (later ones are counted in runtime.stats, not logged)", what, exc)

    def _serialize_result(self, result: Any) -> Payload:
        if result is None:
            return Payload(NONE_TYPE_NAME, JSON_DATA_CONTENT_TYPE, b"null")
        return self._payload_of(result, self._serialization_registry.type_name(result))

    def _payload_of(self, message: Any, data_type: str) -> Payload:
        """``message`` serialized in the format its type has a serializer for (see :meth:`_content_type_for`)."""
        content_type = self._content_type_for(data_type)
        data = self._serialization_registry.serialize(message, type_name=data_type, data_content_type=content_type)
        return Payload(data_type, content_type, data)

    def _content_type_for(self, data_type: str) -> str:
        """The configured payload format if ``data_type`` has a serializer for it, else one it has.

        gRPC's runtime sends every RPC payload as JSON whatever the format, so a protobuf-format
        worker must still be able to exchange dataclasses (and a JSON one protobuf messages).
        """
        registry = self._serialization_registry
        for content_type in (self._payload_format, JSON_DATA_CONTENT_TYPE, PROTOBUF_DATA_CONTENT_TYPE):
            if registry.is_registered(data_type, content_type):
                return content_type
        return self._payload_format

    async def _handle_call(self, call: IncomingCall) -> None:
        """Run the handler and answer; the answer goes only to the connection that delivered the call
        (if that connection is lost meanwhile, the token is cancelled and the engine drops the answer)."""
        token = CancellationToken()
        key = (call.epoch, call.call_id)
        self._call_tokens[key] = token
        engine = self._engine
        epoch = call.epoch
        try:
            try:
                recipient = _agent_id(call.target.type, call.target.key)
                sender = None if call.source is None else _agent_id(call.source.type, call.source.key)
            except ValueError as exc:  # names outside AutoGen's rules (docs/PROTOCOL.md 3.3)
                engine.respond_invalid_call(call.call_id, f"not a valid AutoGen agent id: {exc}", epoch=epoch)
                return
            try:
                agent = await self._get_agent(recipient)
            except LookupError as exc:
                engine.respond_agent_not_found(call.call_id, str(exc), epoch=epoch)
                return
            try:
                message = self._serialization_registry.read(call.payload, f"the worker hosting {recipient.type!r}")
            except UnreadablePayload as exc:
                engine.respond_unreadable(call.call_id, call.payload, str(exc), epoch=epoch)
                self._warn_unreadable(f"a call to {recipient} was refused", exc)
                return
            context = MessageContext(
                sender=sender, topic_id=None, is_rpc=True, cancellation_token=token, message_id=str(call.call_id)
            )
            result = await self._run_handler(
                agent, message, context, call.metadata, call.payload.data_type, {"request_id": str(call.call_id)}
            )
            try:
                reply = self._serialize_result(result)
            except Exception as exc:
                message = f"cannot serialize the result: {exc}"
                engine.respond_handler_error(call.call_id, type(exc).__name__, message, epoch=epoch)
            else:
                engine.respond(call.call_id, reply, epoch=epoch, metadata=self._trace_metadata())
        except asyncio.CancelledError:
            engine.respond_cancelled(call.call_id, epoch=epoch)
            if not token.is_cancelled():
                raise
        except Exception as exc:
            engine.respond_handler_error(call.call_id, type(exc).__name__, str(exc), epoch=epoch)
        finally:
            del self._call_tokens[key]
            self._flush()

    async def _run_handler(
        self,
        agent: Agent,
        message: Any,
        context: MessageContext,
        trace_context: Mapping[str, str],
        message_type: str,
        attributes: dict[str, str] | None = None,
    ) -> Any:
        """``agent.on_message`` as the agent's handler, in the sender's trace and a "process" span
        when spans are recorded."""
        with MessageHandlerContext.populate_context(agent.id):
            if not self._tracing():
                return await agent.on_message(message, ctx=context)
            with (
                self._remote_parent(trace_context),
                self._trace(
                    "process",
                    agent.id,
                    parent=trace_context,
                    attributes=attributes,
                    extraAttributes={"message_type": message_type},
                ),
            ):
                return await agent.on_message(message, ctx=context)

    def _handle_event(self, event: IncomingEvent) -> None:
        """One task per recipient, each handed the same message (as autogen's runtimes do)."""
        try:
            message = self._serialization_registry.read(event.payload, "this worker")
        except UnreadablePayload as exc:
            self._engine.event_unreadable(event, str(exc))
            self._warn_unreadable(
                f"dropped event {event.event_id} on topic {event.topic_type}/{event.topic_source}", exc
            )
            return
        try:  # this runs in the connection's callback: a bad event must not escape it
            topic_id = _topic_id(event.topic_type, event.topic_source)
            sender = None if event.sender is None else _agent_id(event.sender.type, event.sender.key)
            recipients = [_agent_id(to.type, to.key) for to in event.recipients]
        except Exception:
            logger.exception("cannot read event %s (%s)", event.event_id, event.payload.data_type)
            return
        for recipient in recipients:
            self._handlers.spawn(self._deliver(recipient, message, topic_id, sender, event))

    async def _deliver(
        self, recipient: AgentId, message: Any, topic_id: TopicId, sender: AgentId | None, event: IncomingEvent
    ) -> None:
        try:
            agent = await self._get_agent(recipient)
            context = MessageContext(
                sender=sender,
                topic_id=topic_id,
                is_rpc=False,
                cancellation_token=CancellationToken(),
                message_id=event.event_id,
            )
            await self._run_handler(agent, message, context, event.trace_context, event.payload.data_type)
        except Exception:
            logger.exception("error handling event %s on topic %s for %s", event.event_id, topic_id, recipient)

    # ------------------------------------------------------------------ agents

    async def register_factory(
        self,
        type: str | AgentType,
        agent_factory: Callable[[], T | Awaitable[T]],
        *,
        expected_class: type[T] | None = None,
    ) -> AgentType:
        agent_type = AgentType(type) if isinstance(type, str) else type
        if agent_type.type in self._agent_factories:
            raise ValueError(f"Agent with type {agent_type} already exists.")

        async def factory() -> Agent:
            agent = agent_factory()
            if inspect.isawaitable(agent):
                agent = await agent
            if expected_class is not None and builtin_type(agent) != expected_class:
                raise ValueError("Factory registered using the wrong type.")
            return agent

        await self._register_type(agent_type.type, factory)
        return agent_type

    async def register_agent_instance(self, agent_instance: Agent, agent_id: AgentId) -> AgentId:
        if agent_id in self._instantiated_agents:
            raise ValueError(f"Agent with id {agent_id} already exists.")
        if agent_id.type not in self._agent_factories:

            def no_factory() -> Agent:
                raise LookupError(
                    f"no agent instance with id {agent_id.type}/<key> is registered here; agent type "
                    f"{agent_id.type!r} only has instances registered with register_agent_instance"
                )

            await self._register_type(agent_id.type, no_factory)
            self._instance_types[agent_id.type] = builtin_type(agent_instance)
        elif self._instance_types.get(agent_id.type) is None:
            raise ValueError("Agent factories and agent instances cannot be registered to the same type.")
        elif self._instance_types[agent_id.type] != builtin_type(agent_instance):
            raise ValueError("Agent instances must be the same object type.")
        await agent_instance.bind_id_and_runtime(id=agent_id, runtime=self)
        self._instantiated_agents[agent_id] = agent_instance
        return agent_id

    async def _register_type(self, agent_type: str, factory: AgentFactory) -> None:
        # Record first: a call may arrive as soon as the host has accepted the type.
        self._agent_factories[agent_type] = factory
        if self._channel is None:
            return  # announced on start()
        try:
            await self._runtime_call(self._engine.register_agent(agent_type))
        except BaseException:
            del self._agent_factories[agent_type]
            raise

    async def _get_agent(self, agent_id: AgentId) -> Agent:
        agent = self._instantiated_agents.get(agent_id)
        if agent is not None:
            return agent
        factory = self._agent_factories.get(agent_id.type)
        if factory is None:
            raise LookupError(f"Agent with name {agent_id.type} not found.")
        with AgentInstantiationContext.populate_context((self, agent_id)):
            params = len(inspect.signature(factory).parameters)
            if params == 0:
                made = factory()
            elif params == 2:
                warnings.warn("Agent factories that take two arguments are deprecated.", stacklevel=2)
                made = cast(Callable[[AgentRuntime, AgentId], "Agent | Awaitable[Agent]"], factory)(self, agent_id)
            else:
                raise ValueError("Agent factory must take 0 or 2 arguments.")
            agent = await made if inspect.isawaitable(made) else made
        self._instantiated_agents[agent_id] = agent
        return agent

    async def try_get_underlying_agent_instance(self, id: AgentId, type: type[T] = Agent) -> T:  # type: ignore[assignment]
        if id.type not in self._agent_factories:
            raise LookupError(f"Agent with name {id.type} not found.")
        agent = await self._get_agent(id)
        if not isinstance(agent, type):
            raise TypeError(f"Agent with name {id.type} is not of type {type.__name__}")
        return agent

    async def get(
        self, id_or_type: AgentId | AgentType | str, /, key: str = "default", *, lazy: bool = True
    ) -> AgentId:
        if isinstance(id_or_type, AgentId):
            agent_id = id_or_type
        else:
            agent_id = AgentId(id_or_type.type if isinstance(id_or_type, AgentType) else id_or_type, key)
        if not lazy:
            await self._get_agent(agent_id)
        return agent_id

    # ------------------------------------------------------------------ subscriptions

    async def add_subscription(self, subscription: Subscription) -> None:
        spec = _spec_of(subscription)
        if spec.id in self._subscriptions:
            raise ValueError("Subscription already exists")
        self._subscriptions[spec.id] = spec
        if self._channel is None:
            return  # announced on start()
        try:
            await self._runtime_call(self._engine.add_subscription(spec))
        except BaseException:
            del self._subscriptions[spec.id]
            raise

    async def remove_subscription(self, id: str) -> None:
        if self._channel is None:
            if self._subscriptions.pop(id, None) is None:
                raise ValueError("Subscription does not exist")
            return
        await self._runtime_call(self._engine.remove_subscription(id))
        self._subscriptions.pop(id, None)

    async def get_subscriptions(self) -> list[Subscription]:
        """Every subscription the host knows, from all workers (not part of ``AgentRuntime``)."""
        await self._wait_connected()
        event = await self._runtime_call(self._engine.get_subscriptions())
        return [_subscription_of(spec) for spec in event.subscriptions or ()]

    def add_message_serializer(self, serializer: MessageSerializer[Any] | Sequence[MessageSerializer[Any]]) -> None:
        self._serialization_registry.add_serializer(serializer)

    # ------------------------------------------------------------------ state

    async def save_state(self) -> Mapping[str, Any]:
        """The state of every agent instantiated in this worker, keyed by ``str(AgentId)``."""
        return {str(agent_id): dict(await agent.save_state()) for agent_id, agent in self._instantiated_agents.items()}

    async def load_state(self, state: Mapping[str, Any]) -> None:
        """Load state saved by :meth:`save_state` into this worker's agents (types it hosts)."""
        for key, agent_state in state.items():
            agent_id = AgentId.from_str(key)
            if agent_id.type in self._agent_factories:
                agent = await self._get_agent(agent_id)
                await agent.load_state(agent_state)

    async def agent_metadata(self, agent: AgentId) -> AgentMetadata:
        return (await self._local_agent(agent)).metadata

    async def agent_save_state(self, agent: AgentId) -> Mapping[str, Any]:
        return await (await self._local_agent(agent)).save_state()

    async def agent_load_state(self, agent: AgentId, state: Mapping[str, Any]) -> None:
        await (await self._local_agent(agent)).load_state(state)

    async def _local_agent(self, agent_id: AgentId) -> Agent:
        if agent_id.type not in self._agent_factories:
            raise LookupError(f"agent type {agent_id.type!r} is not hosted by this worker")
        return await self._get_agent(agent_id)


builtin_type = type


@contextlib.contextmanager
def _remote_parent(trace_context: Mapping[str, str]) -> Iterator[None]:
    """Make the sender's span (its W3C ``traceparent``) the current one while a message is processed.

    autogen-core's TraceHelper only *links* the "process" span to the sender's span, which starts a
    new trace in every process; with the remote context current, caller and callee share one trace.
    """
    token = otel_context.attach(_TRACE_PROPAGATOR.extract(dict(trace_context)))
    try:
        yield
    finally:
        otel_context.detach(token)


def _announced_limit(headers: Sequence[tuple[bytes, bytes]]) -> int | None:
    """The message size limit a host announced in its upgrade answer, if it did."""
    for name, value in headers:
        if name.lower() == MAX_MESSAGE_SIZE_HEADER:
            try:
                return int(value)
            except ValueError:
                return None
    return None


_PLAIN_TEXT_ANSWERS = {"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "UNKNOWN_PROTOCOL", "HTTP_REQUEST"}


def _tls_error(address: HostAddress, exc: ssl.SSLError | HandshakeNotAnswered) -> HostTlsError:
    """What went wrong with TLS, in words, and what to do about it."""
    where = f"the host at {address.authority}"
    if isinstance(exc, HandshakeNotAnswered):
        how = "answered with TLS" if exc.tls_record else "closed the connection without answering"
        message = (
            f"{where} {how} when asked to upgrade over plain HTTP: it serves TLS, so use an https:// or wss:// "
            "address (with ssl_context= if its certificate is not in the system's trust store)"
        )
    elif isinstance(exc, ssl.SSLCertVerificationError):
        message = (
            f"{where} serves a TLS certificate this worker does not trust ({exc.verify_message}): pass an "
            "ssl_context= that trusts its certificate authority"
        )
    elif exc.reason in _PLAIN_TEXT_ANSWERS:
        message = (
            f"{where} does not serve TLS (it answered the TLS handshake in plain text): use an http:// or ws:// "
            "address, or start the host with TLS (autogen-http-host --certfile/--keyfile, or ssl_context=)"
        )
    else:
        message = f"TLS with {where} failed: {exc.reason or exc}"
    return HostTlsError(ErrorCode.CONNECTION_LOST, message)


def _spec_of(subscription: Subscription) -> SubscriptionSpec:
    if isinstance(subscription, TypeSubscription):
        return TypeSubscriptionSpec(subscription.id, subscription.topic_type, subscription.agent_type)
    if isinstance(subscription, TypePrefixSubscription):
        return TypePrefixSubscriptionSpec(subscription.id, subscription.topic_type_prefix, subscription.agent_type)
    raise ValueError(
        f"{builtin_type(subscription).__name__} cannot be sent to the host: use TypeSubscription, "
        "TypePrefixSubscription or DefaultSubscription"
    )


def _subscription_of(spec: SubscriptionSpec) -> Subscription:
    if isinstance(spec, TypeSubscriptionSpec):
        return TypeSubscription(spec.topic_type, spec.agent_type, id=spec.id)
    return TypePrefixSubscription(spec.topic_type_prefix, spec.agent_type, id=spec.id)
