"""A team participant that runs in another worker process: :class:`RemoteParticipant`."""

from __future__ import annotations

import asyncio
import logging
import uuid
import weakref
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any, TypeVar

from autogen_agentchat.agents import BaseChatAgent
from autogen_agentchat.base import Response
from autogen_agentchat.messages import BaseAgentEvent, BaseChatMessage, TextMessage
from autogen_core import (
    AgentId,
    AgentRuntime,
    CancellationToken,
    MessageContext,
    MessageHandlerContext,
    RoutedAgent,
    TypeSubscription,
    event,
)
from pydantic import BaseModel

from io_backends import AgentTypeNotFoundError, HostConnectionError, TargetDisconnectedError

from ._message_classes import message_class
from ._messages import (
    ALL_MESSAGES,
    AgentChatParticipantDescribe,
    AgentChatParticipantDescription,
    AgentChatParticipantPause,
    AgentChatParticipantReset,
    AgentChatParticipantResume,
    AgentChatParticipantSaveState,
    AgentChatParticipantState,
    AgentChatParticipantStreamItem,
    AgentChatParticipantTurn,
    AgentChatParticipantTurnResult,
)
from ._serialization import serializers_for
from ._serve import participant_agent_type

logger = logging.getLogger("io_backends.agentchat")
AnswerT = TypeVar("AnswerT", bound=BaseModel)
LATE_ITEM_GRACE = 10.0
"""Seconds a turn's answer waits for stream items published before it that have not arrived yet."""


class ParticipantUnavailableError(ConnectionError):
    """No worker serves the participant, or its worker went away before it answered."""


class RemoteParticipant(BaseChatAgent):
    """A participant of a team that runs in another worker, served there by :func:`serve_participant`.

    List it in the team's participants as you would the agent itself; the team must run on
    ``runtime`` (``team = RoundRobinGroupChat([...], runtime=runtime)``). Each turn sends the new
    messages to the serving worker and yields the events the agent streams there (model-client
    token chunks included) as they come, then its response. ``on_reset``, ``on_pause``,
    ``on_resume``, ``save_state`` and ``load_state`` run on the served agent.

    Args:
        name: the participant's name, as the served agent is named.
        team: the team name both sides agree on (the participant is agent type ``"<team>.<name>"``).
        runtime: the worker runtime the team runs on.
        description: what the team's speaker selection sees (:meth:`lookup` asks the served agent).
        produced_message_types: the chat message types the agent responds with.
        key: which of the served agent's instances this participant talks to when the serving
            worker makes one per team (a fresh one for every ``RemoteParticipant`` by default).
    """

    def __init__(
        self,
        name: str,
        *,
        team: str,
        runtime: AgentRuntime,
        description: str = "A participant served by another worker.",
        produced_message_types: Sequence[type[BaseChatMessage]] = (TextMessage,),
        key: str | None = None,
    ) -> None:
        super().__init__(name, description)
        self._team = team
        self._runtime = runtime
        self._target = AgentId(participant_agent_type(team, name), key or uuid.uuid4().hex)
        self._produced_message_types = tuple(produced_message_types)
        runtime.add_message_serializer(serializers_for(ALL_MESSAGES))

    @classmethod
    async def lookup(
        cls, name: str, *, team: str, runtime: AgentRuntime, timeout: float = 10.0, key: str | None = None
    ) -> RemoteParticipant:
        """A participant with the served agent's own description and produced message types.

        Waits up to ``timeout`` seconds for a worker to serve it (workers may start after the
        team's process); then raises :class:`ParticipantUnavailableError`.
        """
        participant = cls(name, team=team, runtime=runtime, key=key)
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + timeout
        delay = 0.05
        while True:
            try:
                description = await participant._ask(AgentChatParticipantDescribe(), AgentChatParticipantDescription)
                break
            except ParticipantUnavailableError:
                if loop.time() + delay >= give_up_at:
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
        if description.name != name:
            raise ValueError(f"the agent served as {participant._target.type!r} is named {description.name!r}")
        participant._description = description.description
        participant._produced_message_types = tuple(
            message_class(type_name, (BaseChatMessage,)) for type_name in description.produced_message_types
        )
        return participant

    @property
    def team(self) -> str:
        return self._team

    @property
    def produced_message_types(self) -> Sequence[type[BaseChatMessage]]:
        return self._produced_message_types

    async def on_messages(self, messages: Sequence[BaseChatMessage], cancellation_token: CancellationToken) -> Response:
        response: Response | None = None
        async for item in self.on_messages_stream(messages, cancellation_token):
            if isinstance(item, Response):
                response = item
        assert response is not None, "on_messages_stream ends with a Response"
        return response

    async def on_messages_stream(
        self, messages: Sequence[BaseChatMessage], cancellation_token: CancellationToken
    ) -> AsyncGenerator[BaseAgentEvent | BaseChatMessage | Response, None]:
        streams = await _streams_of(self._runtime)
        turn = AgentChatParticipantTurn(messages=list(messages), stream_topic=streams.topic, turn_id=uuid.uuid4().hex)
        stream = streams.open(turn.turn_id)
        call = asyncio.ensure_future(self._ask(turn, AgentChatParticipantTurnResult, cancellation_token))
        try:
            async for item in stream.until(call):
                yield item
            yield call.result().response
        finally:
            streams.close(turn.turn_id)
            if not call.done():
                call.cancel()  # the consumer stopped early: the serving worker's turn is cancelled too

    async def on_reset(self, cancellation_token: CancellationToken) -> None:
        await self._call(AgentChatParticipantReset(), cancellation_token)

    async def on_pause(self, cancellation_token: CancellationToken) -> None:
        await self._call(AgentChatParticipantPause(), cancellation_token)

    async def on_resume(self, cancellation_token: CancellationToken) -> None:
        await self._call(AgentChatParticipantResume(), cancellation_token)

    async def save_state(self) -> Mapping[str, Any]:
        return (await self._ask(AgentChatParticipantSaveState(), AgentChatParticipantState)).state

    async def load_state(self, state: Mapping[str, Any]) -> None:
        await self._call(AgentChatParticipantState(state=dict(state)))

    async def _ask(
        self, message: BaseModel, answer: type[AnswerT], cancellation_token: CancellationToken | None = None
    ) -> AnswerT:
        result = await self._call(message, cancellation_token)
        if not isinstance(result, answer):
            raise TypeError(f"{self._target.type} answered a {type(message).__name__} with a {type(result).__name__}")
        return result

    async def _call(self, message: BaseModel, cancellation_token: CancellationToken | None = None) -> object:
        try:
            sender: AgentId | None = MessageHandlerContext.agent_id()  # the team's container of this participant
        except RuntimeError:  # not called from a handler (lookup, or the agent used on its own)
            sender = None
        try:
            return await self._runtime.send_message(
                message, self._target, sender=sender, cancellation_token=cancellation_token
            )
        except (AgentTypeNotFoundError, TargetDisconnectedError, HostConnectionError) as exc:
            raise ParticipantUnavailableError(self._unavailable(exc)) from exc

    def _unavailable(self, exc: Exception) -> str:
        who = f"participant {self.name!r} of team {self._team!r}"
        if isinstance(exc, AgentTypeNotFoundError):
            return (
                f"{who} is not served by any worker connected to the host: start one that runs "
                f"serve_participant(runtime, agent, team={self._team!r}) ({exc})"
            )
        if isinstance(exc, TargetDisconnectedError):
            return (
                f"the worker serving {who} went away before it answered: serve it again, then run a new team "
                f"object (from a saved state, if any) ({exc})"
            )
        return f"this worker lost its connection to the host while it waited for {who} ({exc})"


# ---------------------------------------------------------------------------- streams


class _TurnStream:
    """The stream items of one turn, yielded in ``seq`` order whatever order they arrive in."""

    def __init__(self) -> None:
        self._items: dict[int, BaseAgentEvent | BaseChatMessage] = {}
        self._next = 0
        self._arrived = asyncio.Event()

    def put(self, seq: int, message: BaseAgentEvent | BaseChatMessage) -> None:
        if seq >= self._next:
            self._items[seq] = message
            self._arrived.set()

    async def until(
        self, call: asyncio.Future[AgentChatParticipantTurnResult]
    ) -> AsyncGenerator[BaseAgentEvent | BaseChatMessage, None]:
        """Every item, up to the count the turn's answer gives (raises the call's error)."""
        expected: int | None = None
        while expected is None or self._next < expected:
            item = self._items.pop(self._next, None)
            if item is not None:
                self._next += 1
                yield item
                continue
            if expected is None and call.done():
                expected = call.result().stream_items
                continue
            self._arrived.clear()
            arrived = asyncio.ensure_future(self._arrived.wait())
            try:
                waits: set[asyncio.Future[Any]] = {arrived} if call.done() else {arrived, call}
                done, _ = await asyncio.wait(
                    waits, timeout=LATE_ITEM_GRACE if call.done() else None, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                arrived.cancel()
            if not done:
                raise RuntimeError(
                    f"the turn's answer counts {expected} streamed events, but only {self._next} arrived in "
                    f"{LATE_ITEM_GRACE:.0f}s after it"
                )


class _Streams:
    """The turns of this runtime's remote participants in flight, and the sink their items arrive at."""

    def __init__(self) -> None:
        self.topic = f"agentchat_stream.{uuid.uuid4().hex}"
        self._turns: dict[str, _TurnStream] = {}
        self._registered = False
        self._lock = asyncio.Lock()

    async def register(self, runtime: AgentRuntime) -> None:
        async with self._lock:
            if self._registered:
                return
            sink = lambda: _StreamSink(self)  # noqa: E731
            await _StreamSink.register(runtime, self.topic, sink, skip_direct_message_subscription=True)
            await runtime.add_subscription(TypeSubscription(topic_type=self.topic, agent_type=self.topic))
            self._registered = True

    def open(self, turn_id: str) -> _TurnStream:
        stream = self._turns[turn_id] = _TurnStream()
        return stream

    def close(self, turn_id: str) -> None:
        self._turns.pop(turn_id, None)

    def deliver(self, item: AgentChatParticipantStreamItem) -> None:
        stream = self._turns.get(item.turn_id)
        if stream is None:
            logger.debug("a stream item of turn %s, which is over (%s)", item.turn_id, type(item.message).__name__)
            return
        stream.put(item.seq, item.message)


_streams: weakref.WeakKeyDictionary[AgentRuntime, _Streams] = weakref.WeakKeyDictionary()


async def _streams_of(runtime: AgentRuntime) -> _Streams:
    streams = _streams.get(runtime)
    if streams is None:
        streams = _streams[runtime] = _Streams()
    await streams.register(runtime)
    return streams


class _StreamSink(RoutedAgent):
    def __init__(self, streams: _Streams) -> None:
        super().__init__("receives the events remote participants stream during their turns")
        self._streams = streams

    @event
    async def on_item(self, message: AgentChatParticipantStreamItem, ctx: MessageContext) -> None:
        self._streams.deliver(message)
