"""What the host asks of this worker's agents: each call and each event, run in a handler task.

A call's handler answers through the engine, to the connection that delivered the call only (if
that connection is lost meanwhile, the call's cancellation token is cancelled and the engine drops
the answer). An event's message is read once and handed to each recipient in a task of its own,
as autogen's runtimes do. Nothing a handler does, and no payload nobody can read, escapes as an
exception into the connection; each becomes an answer, a report to the host, or a log line.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from autogen_core import Agent, AgentId, CancellationToken, MessageContext, MessageHandlerContext, TopicId

from sansio_runtime import IncomingCall, IncomingCallCancelled, IncomingEvent, WorkerEngine

from ._serialization import MessageSerializers, UnreadablePayload
from ._tasks import HandlerTasks
from ._tracing import Tracing

logger = logging.getLogger("io_backends.runtime")

# autogen validates every AgentId and TopicId it makes with a regular expression; messages keep
# naming the same few agents and topics, and both are immutable, so each is made once.
agent_id = functools.lru_cache(maxsize=4096)(AgentId)
topic_id = functools.lru_cache(maxsize=1024)(TopicId)

AgentLookup = Callable[[AgentId], Awaitable[Agent]]


class Dispatcher:
    """Runs this worker's handlers for what the host delivers (see the module docs)."""

    def __init__(
        self,
        engine: WorkerEngine,
        serializers: MessageSerializers,
        tracing: Tracing,
        get_agent: AgentLookup,
        flush: Callable[[], None],
        payload_format: str,
    ) -> None:
        self._engine = engine
        self._serializers = serializers
        self._tracing = tracing
        self._get_agent = get_agent
        self._flush = flush
        self._payload_format = payload_format
        self.handlers = HandlerTasks()
        # The cancellation token of each call being handled, by (connection epoch, host call id).
        self._call_tokens: dict[tuple[int, int | str], CancellationToken] = {}
        self._unreadable_seen: set[tuple[str, str]] = set()

    def call(self, call: IncomingCall) -> None:
        self.handlers.spawn(self._handle_call(call))

    def cancelled(self, cancelled: IncomingCallCancelled) -> None:
        token = self._call_tokens.get((cancelled.epoch, cancelled.call_id))
        if token is not None:
            token.cancel()

    def event(self, event: IncomingEvent) -> None:
        """One task per recipient, each handed the same message (as autogen's runtimes do)."""
        try:
            message = self._serializers.read(event.payload, "this worker")
        except UnreadablePayload as exc:
            self._engine.event_unreadable(event, str(exc))
            self._warn_unreadable(
                f"dropped event {event.event_id} on topic {event.topic_type}/{event.topic_source}", exc
            )
            return
        try:  # this runs in the connection's callback: a bad event must not escape it
            topic = topic_id(event.topic_type, event.topic_source)
            sender = None if event.sender is None else agent_id(event.sender.type, event.sender.key)
            recipients = [agent_id(to.type, to.key) for to in event.recipients]
        except Exception:
            logger.exception("cannot read event %s (%s)", event.event_id, event.payload.data_type)
            return
        for recipient in recipients:
            self.handlers.spawn(self._deliver(recipient, message, topic, sender, event))

    async def _handle_call(self, call: IncomingCall) -> None:
        token = CancellationToken()
        key = (call.epoch, call.call_id)
        self._call_tokens[key] = token
        engine = self._engine
        epoch = call.epoch
        try:
            try:
                recipient = agent_id(call.target.type, call.target.key)
                sender = None if call.source is None else agent_id(call.source.type, call.source.key)
            except ValueError as exc:  # names outside AutoGen's rules (docs/PROTOCOL.md 3.3)
                engine.respond_invalid_call(call.call_id, f"not a valid AutoGen agent id: {exc}", epoch=epoch)
                return
            try:
                agent = await self._get_agent(recipient)
            except LookupError as exc:
                engine.respond_agent_not_found(call.call_id, str(exc), epoch=epoch)
                return
            try:
                message = self._serializers.read(call.payload, f"the worker hosting {recipient.type!r}")
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
                reply = self._serializers.result_payload(result, self._payload_format)
            except Exception as exc:
                message = f"cannot serialize the result: {exc}"
                engine.respond_handler_error(call.call_id, type(exc).__name__, message, epoch=epoch)
            else:
                engine.respond(call.call_id, reply, epoch=epoch, metadata=self._tracing.metadata())
        except asyncio.CancelledError:
            engine.respond_cancelled(call.call_id, epoch=epoch)
            if not token.is_cancelled():
                raise
        except Exception as exc:
            engine.respond_handler_error(call.call_id, type(exc).__name__, str(exc), epoch=epoch)
        finally:
            del self._call_tokens[key]
            self._flush()

    async def _deliver(
        self, recipient: AgentId, message: Any, topic: TopicId, sender: AgentId | None, event: IncomingEvent
    ) -> None:
        try:
            agent = await self._get_agent(recipient)
            context = MessageContext(
                sender=sender,
                topic_id=topic,
                is_rpc=False,
                cancellation_token=CancellationToken(),
                message_id=event.event_id,
            )
            await self._run_handler(agent, message, context, event.trace_context, event.payload.data_type)
        except Exception:
            logger.exception("error handling event %s on topic %s for %s", event.event_id, topic, recipient)

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
        tracing = self._tracing
        with MessageHandlerContext.populate_context(agent.id):
            if not tracing.enabled():
                return await agent.on_message(message, ctx=context)
            with (
                tracing.remote_parent(trace_context),
                tracing.block(
                    "process",
                    agent.id,
                    parent=trace_context,
                    attributes=attributes,
                    extraAttributes={"message_type": message_type},
                ),
            ):
                return await agent.on_message(message, ctx=context)

    def _warn_unreadable(self, what: str, exc: UnreadablePayload) -> None:
        """Log, once per type name and content type, a payload this worker cannot read."""
        key = (exc.payload.data_type, exc.payload.data_content_type)
        if key in self._unreadable_seen:
            return
        self._unreadable_seen.add(key)
        logger.warning("%s: %s (later ones are counted in runtime.stats, not logged)", what, exc)


__all__ = ["AgentLookup", "Dispatcher", "agent_id", "topic_id"]
