"""HttpWorkerAgentRuntime: autogen-core's ``AgentRuntime`` on a :class:`~sansio_runtime.WorkerEngine`.

A drop-in for ``GrpcWorkerAgentRuntime``: change the import and the address, keep the rest. This
module is the AutoGen surface; the link to the host (:mod:`._link`), the handlers of what the host
delivers (:mod:`._dispatch`), the agents hosted here (:mod:`._agents`), serialization and tracing
are modules of their own.
"""

from __future__ import annotations

import asyncio
import inspect
import signal
import ssl
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from autogen_core import (
    JSON_DATA_CONTENT_TYPE,
    PROTOBUF_DATA_CONTENT_TYPE,
    Agent,
    AgentId,
    AgentMetadata,
    AgentRuntime,
    AgentType,
    CancellationToken,
    MessageSerializer,
    Subscription,
    TopicId,
    TypePrefixSubscription,
    TypeSubscription,
)
from opentelemetry.trace import TracerProvider

from sansio_runtime import (
    DEFAULT_MAX_MESSAGE_SIZE,
    FORWARDING_ALLOWANCE,
    AgentRef,
    CallFailed,
    CallSucceeded,
    IncomingCall,
    IncomingCallCancelled,
    IncomingEvent,
    RequestFailed,
    SubscriptionSpec,
    TypePrefixSubscriptionSpec,
    TypeSubscriptionSpec,
    WorkerEngine,
    WorkerStats,
)
from sansio_runtime import PayloadTooLargeError as EnginePayloadTooLarge

from ..sansio import parse_host_addresses
from ..sansio._grpc_options import WORKER_OPTIONS as WORKER_GRPC_OPTIONS
from ..sansio._grpc_options import ChannelArgumentType
from ..sansio._grpc_options import translate as translate_grpc_options
from ..sansio._limits import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_KEEPALIVE_INTERVAL,
    DEFAULT_KEEPALIVE_TIMEOUT,
    DEFAULT_RECONNECT_INITIAL_DELAY,
    DEFAULT_RECONNECT_MAX_DELAY,
)
from ._agents import LocalAgents, builtin_type
from ._dispatch import Dispatcher
from ._errors import PayloadTooLargeError, error_from_rpc
from ._link import HostLink, LinkSettings
from ._serialization import MessageSerializers, UnreadablePayload
from ._tracing import NO_SPAN, Tracing

T = TypeVar("T", bound=Agent)


class HttpWorkerAgentRuntime(AgentRuntime):
    """An agent runtime whose agents talk to agents in other processes through an HTTP host.

    The first four parameters are ``GrpcWorkerAgentRuntime``'s, by name and position; the rest are
    keywords of this runtime.

    Args:
        host_address: ``http://host:port``, ``ws://host:port``, ``https://``/``wss://`` (TLS), or
            gRPC style ``host:port``; several hosts of one cluster as ``"h1:9000,h2:9001"`` or a
            list: the worker connects to the first that answers and, when its host goes away,
            moves to the next and registers there again (docs/CLUSTER.md section 9).
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
        shared_agent_types: host the agent types registered here together with the other
            workers that register them with ``shared_agent_types=True``: the host places each
            agent instance (``AgentId(type, key)``) on one of them and keeps it there while that
            worker lives. Registering a type that other workers host without this flag (or the
            reverse) raises :class:`AgentTypeAlreadyRegisteredError`. An instance whose worker
            is gone starts afresh on another: save what must last (``agent_save_state``).
    """

    def __init__(
        self,
        host_address: str | Sequence[str],
        tracer_provider: TracerProvider | None = None,
        extra_grpc_config: ChannelArgumentType | None = None,
        payload_serialization_format: str = JSON_DATA_CONTENT_TYPE,
        *,
        auth_token: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        call_timeout: float | None = None,
        max_message_size: int | None = None,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        client_id: str | None = None,
        reconnect: bool = True,
        reconnect_initial_delay: float = DEFAULT_RECONNECT_INITIAL_DELAY,
        reconnect_max_delay: float = DEFAULT_RECONNECT_MAX_DELAY,
        reconnect_wait: float = 0.0,
        keepalive_interval: float | None = DEFAULT_KEEPALIVE_INTERVAL,
        keepalive_timeout: float = DEFAULT_KEEPALIVE_TIMEOUT,
        shared_agent_types: bool = False,
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
        self._payload_format = payload_serialization_format
        self._call_timeout = call_timeout
        self._max_message_size = max_message_size
        self._engine = WorkerEngine(max_message_size=max_message_size)
        self._serializers = MessageSerializers()
        self._tracing = Tracing(tracer_provider)
        self._agents = LocalAgents(self)
        self._subscriptions: dict[str, SubscriptionSpec] = {}
        addresses = parse_host_addresses(host_address)
        settings = LinkSettings(
            address=addresses[0],
            fallbacks=addresses[1:],
            client_id=client_id or f"worker-{uuid.uuid4()}",
            auth_token=auth_token,
            ssl_context=ssl_context,
            max_receive_size=max(grpc.max_receive or 0, max_message_size) + FORWARDING_ALLOWANCE,
            connect_timeout=connect_timeout,
            reconnect=reconnect,
            reconnect_initial_delay=reconnect_initial_delay,
            reconnect_max_delay=reconnect_max_delay,
            reconnect_wait=reconnect_wait,
            keepalive_interval=keepalive_interval,
            keepalive_timeout=keepalive_timeout,
            shared_agent_types=shared_agent_types,
        )
        self._link = HostLink(settings, self._engine, self._announcements, self._deliver, self._abandoned)
        self._dispatcher = Dispatcher(
            self._engine,
            self._serializers,
            self._tracing,
            self._agents.get,
            self._link.flush,
            payload_serialization_format,
        )

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Connect to the host and register every agent type and subscription added so far.

        Raises if the host cannot be reached within ``connect_timeout`` or refuses the worker.
        Once started, the worker reconnects by itself whenever the connection is lost.
        """
        if self._link.running:
            raise ValueError("Runtime is already running.")
        await self._link.start()

    async def stop(self) -> None:
        """Close the connection; calls in flight fail, handlers running here are cancelled."""
        if not self._link.running:
            raise RuntimeError("Runtime is not running.")
        await self._link.stop()
        await self._dispatcher.handlers.cancel_all()

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
        return self._link.connected

    def _announcements(self) -> tuple[list[str], list[SubscriptionSpec]]:
        return self._agents.types(), list(self._subscriptions.values())

    def _deliver(self, event: IncomingCall | IncomingEvent | IncomingCallCancelled) -> None:
        dispatcher = self._dispatcher
        if isinstance(event, IncomingCall):
            dispatcher.call(event)
        elif isinstance(event, IncomingEvent):
            dispatcher.event(event)
        else:
            dispatcher.cancelled(event)

    async def _abandoned(self) -> None:
        """The event loop ends without a ``stop()``: let every handler go."""
        self._dispatcher.handlers.cancel_now()
        await self._dispatcher.handlers.cancel_all()

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
        link = self._link
        if not link.running:
            raise ValueError("Runtime must be running when sending message.")
        tracing = self._tracing
        traced = tracing.enabled()  # looked at once: untraced, every span is NO_SPAN and no context travels
        data_type = self._serializers.type_name(message)
        create = (
            NO_SPAN
            if not traced
            else tracing.block("create", recipient, parent=None, extraAttributes={"message_type": data_type})
        )
        with create:
            payload = self._serializers.payload_of(message, data_type, self._payload_format)
            await link.wait_connected()
            with tracing.block("send", recipient, parent=tracing.metadata()) if traced else NO_SPAN:
                try:
                    request_id = self._engine.call(
                        AgentRef(recipient.type, recipient.key),
                        payload,
                        now=asyncio.get_running_loop().time(),
                        source=None if sender is None else AgentRef(sender.type, sender.key),
                        metadata=tracing.metadata() if traced else None,
                        timeout=self._call_timeout,
                    )
                except EnginePayloadTooLarge as exc:
                    raise self._too_large(exc) from None
                future = link.request(request_id)
                link.flush()
            if cancellation_token is not None:
                cancellation_token.link_future(future)
            try:
                await link.backpressure()
                event = await future
            except asyncio.CancelledError:
                link.forget(request_id)
                if self._engine.cancel_call(request_id):
                    link.flush()
                raise
            if isinstance(event, CallFailed):
                raise error_from_rpc(event.error, event.handler_error)
            if isinstance(event, RequestFailed):
                raise error_from_rpc(event.error)
            assert isinstance(event, CallSucceeded)
            try:
                return self._serializers.read(event.payload, "this worker")
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
        link = self._link
        if not link.running:
            raise ValueError("Runtime must be running when publishing message.")
        if message_id is None:
            message_id = str(uuid.uuid4())
        tracing = self._tracing
        traced = tracing.enabled()  # (as in send_message)
        data_type = self._serializers.type_name(message)
        create = (
            NO_SPAN
            if not traced
            else tracing.block("create", topic_id, parent=None, extraAttributes={"message_type": data_type})
        )
        with create:
            payload = self._serializers.payload_of(message, data_type, self._payload_format)
            await link.wait_connected()
            with tracing.block("publish", topic_id, parent=tracing.metadata()) if traced else NO_SPAN:
                try:
                    self._engine.publish(
                        topic_type=topic_id.type,
                        topic_source=topic_id.source,
                        payload=payload,
                        event_id=message_id,
                        sender=None if sender is None else AgentRef(sender.type, sender.key),
                        trace_context=tracing.metadata() if traced else None,
                    )
                except EnginePayloadTooLarge as exc:
                    raise self._too_large(exc) from None
                link.flush()
            await link.backpressure()

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
        return PayloadTooLargeError(exc.error.code, f"{exc} ({whose})")

    # ------------------------------------------------------------------ agents

    async def register_factory(
        self,
        type: str | AgentType,
        agent_factory: Callable[[], T | Awaitable[T]],
        *,
        expected_class: type[T] | None = None,
    ) -> AgentType:
        agent_type = AgentType(type) if isinstance(type, str) else type
        self._agents.check_new_type(agent_type.type)

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
        if self._agents.check_new_instance(agent_instance, agent_id):
            await self._register_type(
                agent_id.type, self._agents.instances_only(agent_id.type, builtin_type(agent_instance))
            )
        await agent_instance.bind_id_and_runtime(id=agent_id, runtime=self)
        self._agents.add_instance(agent_id, agent_instance)
        return agent_id

    async def _register_type(self, agent_type: str, factory: Callable[[], Agent | Awaitable[Agent]]) -> None:
        # Record first: a call may arrive as soon as the host has accepted the type.
        self._agents.add_type(agent_type, factory)
        if self._link.channel is None:
            return  # announced on start()
        try:
            shared = self._link.settings.shared_agent_types
            await self._link.runtime_call(self._engine.register_agent(agent_type, shared=shared))
        except BaseException:
            self._agents.remove_type(agent_type)
            raise

    async def try_get_underlying_agent_instance(self, id: AgentId, type: type[T] = Agent) -> T:  # type: ignore[assignment]
        if not self._agents.hosts(id.type):
            raise LookupError(f"Agent with name {id.type} not found.")
        agent = await self._agents.get(id)
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
            await self._agents.get(agent_id)
        return agent_id

    # ------------------------------------------------------------------ subscriptions

    async def add_subscription(self, subscription: Subscription) -> None:
        spec = _spec_of(subscription)
        if spec.id in self._subscriptions:
            raise ValueError("Subscription already exists")
        self._subscriptions[spec.id] = spec
        if self._link.channel is None:
            return  # announced on start()
        try:
            await self._link.runtime_call(self._engine.add_subscription(spec))
        except BaseException:
            del self._subscriptions[spec.id]
            raise

    async def remove_subscription(self, id: str) -> None:
        if self._link.channel is None:
            if self._subscriptions.pop(id, None) is None:
                raise ValueError("Subscription does not exist")
            return
        await self._link.runtime_call(self._engine.remove_subscription(id))
        self._subscriptions.pop(id, None)

    async def get_subscriptions(self) -> list[Subscription]:
        """Every subscription the host knows, from all workers (not part of ``AgentRuntime``)."""
        await self._link.wait_connected()
        event = await self._link.runtime_call(self._engine.get_subscriptions())
        return [_subscription_of(spec) for spec in event.subscriptions or ()]

    def add_message_serializer(self, serializer: MessageSerializer[Any] | Sequence[MessageSerializer[Any]]) -> None:
        self._serializers.add_serializer(serializer)

    # ------------------------------------------------------------------ state

    async def save_state(self) -> Mapping[str, Any]:
        """The state of every agent instantiated in this worker, keyed by ``str(AgentId)``."""
        return await self._agents.save_state()

    async def load_state(self, state: Mapping[str, Any]) -> None:
        """Load state saved by :meth:`save_state` into this worker's agents (types it hosts)."""
        await self._agents.load_state(state)

    async def agent_metadata(self, agent: AgentId) -> AgentMetadata:
        return (await self._agents.local(agent)).metadata

    async def agent_save_state(self, agent: AgentId) -> Mapping[str, Any]:
        return await (await self._agents.local(agent)).save_state()

    async def agent_load_state(self, agent: AgentId, state: Mapping[str, Any]) -> None:
        await (await self._agents.local(agent)).load_state(state)


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
