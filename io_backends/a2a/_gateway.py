"""The A2A gateway: AutoGen agent types behind our host served as A2A agents, on a2a-sdk's server.

The gateway is an ordinary worker of the host (an :class:`~io_backends.HttpWorkerAgentRuntime`):
each A2A task is one ``send_message`` to ``AgentId(agent_type, contextId)``, cancelled through its
cancellation token; the agent's progress reaches the gateway as events on a topic it subscribes
to. a2a-sdk's ``DefaultRequestHandler`` keeps the tasks, and its Starlette routes (served by
uvicorn) speak A2A 1.0 and 0.3's JSON-RPC binding and SSE. docs/A2A.md section 3 is the mapping.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import socket
import uuid
from collections.abc import AsyncIterator, Sequence
from types import TracebackType
from typing import Any

import uvicorn
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types import Task, TaskState, TaskStatus
from autogen_core import AgentId, BaseAgent, CancellationToken, MessageContext, MessageSerializer, TypeSubscription
from autogen_core import try_get_known_serializers_for_type as known_serializers
from autogen_core.exceptions import CantHandleException
from google.protobuf import json_format
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from ..worker import HttpWorkerAgentRuntime, RemoteCallError, RemoteHandlerError
from ._agent import a2a_serializers
from ._exposed import ExposedAgent, a2a_message_of, agent_card, incoming, outgoing_parts, proto_parts
from ._messages import A2AReply

logger = logging.getLogger("io_backends.a2a.gateway")

DRAIN_ROUNDS = 8
"""Loop turns given to progress events that arrived before the call's answer (their delivery is a
task of its own in the worker) before the answer is written."""

_Key = tuple[str, str]  # (topic type, contextId)


class _Progress:
    """Who listens to which progress topic: the running calls' queues, by (topic type, contextId)."""

    def __init__(self) -> None:
        self._queues: dict[_Key, set[asyncio.Queue[Any]]] = {}

    def listen(self, key: _Key) -> asyncio.Queue[Any]:
        queue: asyncio.Queue[Any] = asyncio.Queue()
        self._queues.setdefault(key, set()).add(queue)
        return queue

    def forget(self, key: _Key, queue: asyncio.Queue[Any]) -> None:
        queues = self._queues.get(key)
        if queues is not None:
            queues.discard(queue)
            if not queues:
                del self._queues[key]

    def deliver(self, key: _Key, message: Any) -> None:
        for queue in self._queues.get(key, ()):
            queue.put_nowait(message)


class _ProgressRelay(BaseAgent):
    """The gateway's own agent type: subscribed to the progress topics, it hands each event to the
    calls running in the event's contextId (the topic's source)."""

    def __init__(self, progress: _Progress) -> None:
        super().__init__("relays exposed agents' progress events to their A2A streams")
        self._progress = progress

    async def on_message_impl(self, message: Any, ctx: MessageContext) -> None:
        if ctx.topic_id is None:
            raise CantHandleException("the A2A gateway's relay takes progress events only, not calls")
        self._progress.deliver((ctx.topic_id.type, ctx.topic_id.source), message)


class _Executor(AgentExecutor):
    """One exposed agent type: an A2A request is a call of ``AgentId(agent_type, contextId)``."""

    def __init__(self, agent: ExposedAgent, runtime: HttpWorkerAgentRuntime, progress: _Progress) -> None:
        self.agent, self.runtime, self.progress = agent, runtime, progress
        self._tokens: dict[str, CancellationToken] = {}
        self._unwritable: set[str] = set()

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        message, task_id, context_id = context.message, context.task_id, context.context_id
        assert message is not None and task_id is not None and context_id is not None
        value = incoming(self.agent, a2a_message_of(message))  # InvalidParamsError before the task exists
        updater = TaskUpdater(event_queue, task_id, context_id)
        if context.current_task is None:
            await event_queue.enqueue_event(
                Task(
                    id=task_id,
                    context_id=context_id,
                    status=TaskStatus(state=TaskState.TASK_STATE_SUBMITTED),
                    history=[message],
                )
            )
        token = self._tokens[task_id] = CancellationToken()
        key = (self.agent.progress_topic, context_id)
        queue = self.progress.listen(key)
        try:
            await updater.start_work()
            target = AgentId(self.agent.agent_type, context_id)
            call = asyncio.ensure_future(self.runtime.send_message(value, target, cancellation_token=token))
            try:
                await self._relay_until_done(call, queue, updater)
            except asyncio.CancelledError:
                call.cancel()  # the worker sends $/cancelRequest: the agent's cancellation token fires
                raise
            for _ in range(DRAIN_ROUNDS):
                await asyncio.sleep(0)
            while not queue.empty():
                await self._write_progress(updater, queue.get_nowait())
            if call.cancelled():
                if not token.is_cancelled():  # not CancelTask (whose cancel() writes the state)
                    await updater.cancel()
                return
            error = call.exception()
            if error is not None:
                await self._write_failure(updater, error)
            else:
                await self._write_result(updater, call.result())
        finally:
            self.progress.forget(key, queue)
            self._tokens.pop(task_id, None)

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        assert context.task_id is not None and context.context_id is not None
        token = self._tokens.get(context.task_id)
        if token is not None:
            token.cancel()
        await TaskUpdater(event_queue, context.task_id, context.context_id).cancel()

    async def _relay_until_done(
        self, call: asyncio.Future[Any], queue: asyncio.Queue[Any], updater: TaskUpdater
    ) -> None:
        while not call.done():
            getter = asyncio.ensure_future(queue.get())
            try:
                await asyncio.wait({call, getter}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                if not getter.done():
                    getter.cancel()
            if getter.done() and not getter.cancelled():
                await self._write_progress(updater, getter.result())

    async def _write_progress(self, updater: TaskUpdater, event: Any) -> None:
        try:
            parts = proto_parts(outgoing_parts(event))
        except (CantHandleException, json_format.ParseError) as exc:
            name = type(event).__qualname__
            if name not in self._unwritable:
                self._unwritable.add(name)
                logger.warning("progress of %r not streamed: %s", self.agent.agent_type, exc)
            return
        if parts:
            await updater.update_status(TaskState.TASK_STATE_WORKING, updater.new_agent_message(parts))

    async def _write_result(self, updater: TaskUpdater, result: Any) -> None:
        try:
            parts = proto_parts(outgoing_parts(result))
        except (CantHandleException, json_format.ParseError) as exc:
            await self._write_failure(updater, exc)
            return
        if isinstance(result, A2AReply) and result.state in ("input-required", "auth-required"):
            said = updater.new_agent_message(parts)
            if result.state == "input-required":
                await updater.requires_input(said)
            else:
                await updater.requires_auth(said)
            return
        if parts:
            await updater.add_artifact(parts, name="result")
        await updater.complete()

    async def _write_failure(self, updater: TaskUpdater, error: BaseException) -> None:
        detail: dict[str, Any] = {"type": type(error).__name__, "message": str(error)}
        if isinstance(error, RemoteCallError):
            detail.update(code=error.code, message=error.message)
        if isinstance(error, RemoteHandlerError):
            detail["exception_type"] = error.exception_type
            text = f"{error.exception_type}: {error.message}"
        else:
            text = f"{type(error).__name__}: {error}"
        said = updater.new_agent_message(proto_parts([{"text": text}]), metadata={"autogen.error": detail})
        await updater.failed(said)


class _BearerAuth:
    """Refuses the JSON-RPC routes without ``Authorization: Bearer <token>`` (401); cards stay public."""

    def __init__(self, app: ASGIApp, tokens: frozenset[str]) -> None:
        self.app, self.tokens = app, tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in ("GET", "HEAD"):
            header = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
            scheme, _, token = header.partition(" ")
            if not (scheme.lower() == "bearer" and any(hmac.compare_digest(token, t) for t in self.tokens)):
                reason = "wrong bearer token" if header else "no bearer token"
                response = JSONResponse(
                    {"error": f"{reason}: send Authorization: Bearer <token> (the agent card's securitySchemes)"},
                    status_code=401,
                    headers={"WWW-Authenticate": 'Bearer realm="a2a"'},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class A2AGateway:
    """Serves agent types of an AutoGen host as A2A agents (A2A 1.0 and 0.3, JSON-RPC and SSE).

    ``host`` is the host's address (the gateway then connects its own
    :class:`~io_backends.HttpWorkerAgentRuntime`) or a runtime you configured (TLS, ``auth_token``,
    ``call_timeout``) and started; you stop it, and the gateway's relay agent type (below) stays
    registered on it until then. Each of ``agents`` is an
    :class:`ExposedAgent`; its card is at ``<url>/<agent_type>/.well-known/agent-card.json`` and
    its JSON-RPC endpoint at ``<url>/<agent_type>`` (with one agent, also at ``/``).

    ``bearer_token`` (one string, or several accepted): the cards declare an HTTP bearer scheme
    and every JSON-RPC request must carry one; the cards stay public. ``public_url``: the base URL
    clients reach the gateway at, written in the cards (default ``http://<bind_host>:<port>``).
    ``serializers``: message serializers for the types the exposed agents answer and publish
    beyond :class:`A2AMessage`, :class:`A2AReply` and their ``message_type`` classes.

    Progress: the gateway registers an agent type of its own, ``a2a-gateway-<12 hex digits>``,
    subscribed to each exposed agent's ``progress_topic``; it hands each event to the calls running
    in the event's contextId (the topic's source).

    ``async with A2AGateway(...) as gateway:`` starts it and stops it; :attr:`url` is its base.
    """

    def __init__(
        self,
        host: str | HttpWorkerAgentRuntime,
        agents: Sequence[ExposedAgent],
        *,
        bind_host: str = "127.0.0.1",
        port: int = 0,
        public_url: str | None = None,
        bearer_token: str | Sequence[str] | None = None,
        serializers: Sequence[MessageSerializer[Any]] = (),
        log_level: str = "warning",
    ) -> None:
        if not agents:
            raise ValueError("an A2AGateway needs at least one ExposedAgent")
        types = [a.agent_type for a in agents]
        if len(set(types)) != len(types):
            raise ValueError(f"an agent type is exposed twice: {types}")
        self._owns_runtime = isinstance(host, str)
        self._runtime = HttpWorkerAgentRuntime(host) if isinstance(host, str) else host
        self._agents = list(agents)
        self._bind_host, self._port = bind_host, port
        self._public_url = public_url.rstrip("/") if public_url else None
        tokens = [bearer_token] if isinstance(bearer_token, str) else list(bearer_token or [])
        if any(not t.strip() for t in tokens):
            raise ValueError("a bearer token must not be empty: pass None for a gateway without authentication")
        self._tokens = frozenset(tokens)
        self._serializers = list(serializers)
        self._log_level = log_level
        self._relay_type = f"a2a-gateway-{uuid.uuid4().hex[:12]}"
        self._progress = _Progress()
        self._handlers: list[DefaultRequestHandler] = []
        self._server: uvicorn.Server | None = None
        self._serving: asyncio.Task[None] | None = None
        self._socket: socket.socket | None = None

    @property
    def runtime(self) -> HttpWorkerAgentRuntime:
        return self._runtime

    @property
    def port(self) -> int:
        if self._socket is None:
            raise RuntimeError("the A2AGateway is not started: await gateway.start() first")
        return int(self._socket.getsockname()[1])

    @property
    def url(self) -> str:
        """The base URL written in the cards."""
        if self._public_url is not None:
            return self._public_url
        host = f"[{self._bind_host}]" if ":" in self._bind_host else self._bind_host
        return f"http://{host}:{self.port}"

    def agent_url(self, agent_type: str) -> str:
        """The A2A URL of an exposed type (an A2A client resolves its card from it)."""
        return f"{self.url}/{agent_type}"

    async def start(self) -> None:
        """Join the host (as a worker, unless given a started runtime), then serve A2A on the socket."""
        if self._serving is not None:
            raise RuntimeError("the A2AGateway is already started")
        try:
            await self._start()
        except BaseException:
            await self._close()
            raise

    async def _start(self) -> None:
        runtime = self._runtime
        taken = [a.message_type for a in self._agents if isinstance(a.message_type, type)]
        runtime.add_message_serializer(
            [*a2a_serializers(), *(s for t in taken for s in known_serializers(t)), *self._serializers]
        )
        if self._owns_runtime:
            await runtime.start()
        progress = self._progress
        await _ProgressRelay.register(runtime, self._relay_type, lambda: _ProgressRelay(progress))
        for topic in sorted({a.progress_topic for a in self._agents}):
            await runtime.add_subscription(TypeSubscription(topic, self._relay_type))
        family = socket.AF_INET6 if ":" in self._bind_host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self._bind_host, self._port))
        sock.listen(128)
        self._socket = sock
        app = self._app()
        config = uvicorn.Config(app, log_level=self._log_level, lifespan="on", timeout_graceful_shutdown=2)
        server = self._server = uvicorn.Server(config)
        self._serving = asyncio.ensure_future(server.serve(sockets=[sock]))
        while not server.started:
            if self._serving.done():
                self._serving.result()
                raise RuntimeError("the A2AGateway's HTTP server stopped while starting")
            await asyncio.sleep(0.01)

    def _app(self) -> ASGIApp:
        routes: list[Any] = []
        bearer = bool(self._tokens)
        for agent in self._agents:
            card = agent_card(agent, self.agent_url(agent.agent_type), bearer=bearer)
            handler = DefaultRequestHandler(
                agent_executor=_Executor(agent, self._runtime, self._progress),
                task_store=InMemoryTaskStore(),
                agent_card=card,
            )
            self._handlers.append(handler)
            base = f"/{agent.agent_type}"
            routes += create_agent_card_routes(card, card_url=f"{base}/.well-known/agent-card.json")
            routes += create_jsonrpc_routes(handler, rpc_url=base, enable_v0_3_compat=True)
            if len(self._agents) == 1:
                routes += create_agent_card_routes(card)
                routes += create_jsonrpc_routes(handler, rpc_url="/", enable_v0_3_compat=True)

        handlers = self._handlers

        @contextlib.asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            yield
            for handler in handlers:
                await handler.aclose()

        app: ASGIApp = Starlette(routes=routes, lifespan=lifespan)
        return _BearerAuth(app, self._tokens) if bearer else app

    async def stop(self) -> None:
        """Stop serving (open streams get 2 s), then leave the host (if the gateway connected itself)."""
        server, serving = self._server, self._serving
        if server is None or serving is None:
            return  # not started, or already stopped
        server.should_exit = True
        try:
            await serving
        finally:
            await self._close()

    async def _close(self) -> None:
        if self._serving is not None and not self._serving.done():
            self._serving.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._serving
        self._server = self._serving = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        if self._owns_runtime:
            with contextlib.suppress(RuntimeError):  # never started, or already stopped
                await self._runtime.stop()

    async def serve_forever(self) -> None:
        """Start (unless started), serve until cancelled or SIGINT/SIGTERM, then stop."""
        if self._serving is None:
            await self.start()
        try:
            assert self._serving is not None
            await asyncio.shield(self._serving)
        finally:
            await self.stop()

    async def __aenter__(self) -> A2AGateway:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


async def serve_a2a(host: str | HttpWorkerAgentRuntime, agents: Sequence[ExposedAgent], **options: Any) -> None:
    """Serve ``agents`` of the host at ``host`` over A2A until cancelled (``A2AGateway(...).serve_forever()``)."""
    await A2AGateway(host, agents, **options).serve_forever()
