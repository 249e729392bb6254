"""Serve one participant of a named team from this worker: :func:`serve_participant`."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from autogen_agentchat.base import ChatAgent, Response, Team
from autogen_core import AgentRuntime, AgentType, MessageContext, RoutedAgent, TopicId, rpc

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

_NAME = re.compile(r"[\w\-.]+\Z")
STREAM_SOURCE = "default"


def participant_agent_type(team: str, name: str) -> str:
    """The agent type a participant is served under: ``"<team>.<name>"``."""
    if not _NAME.match(team):
        raise ValueError(f"team name {team!r} may only hold letters, digits, '_', '-' and '.'")
    if not name.isidentifier():
        raise ValueError(f"participant name {name!r} must be a valid Python identifier (as AgentChat requires)")
    return f"{team}.{name}"


async def serve_participant(
    runtime: AgentRuntime,
    agent: ChatAgent | Callable[[], ChatAgent],
    *,
    team: str,
    name: str | None = None,
) -> AgentType:
    """Serve ``agent`` on ``runtime`` as participant ``name`` of the team named ``team``.

    A team in another process lists it as ``RemoteParticipant(name, team=team, runtime=...)``;
    every turn, reset, pause, resume and state save or load of that participant runs here.

    ``agent`` is a chat agent, or a function that makes one: with a function, every team object
    that lists the participant gets its own agent (several teams may run at once); one agent
    serves one team at a time. ``name`` defaults to the agent's name (give it with a function).
    Returns the agent type registered (``"<team>.<name>"``). Call it before or after
    ``runtime.start()``; a team's turn that comes while no worker serves the participant fails
    with a clear error.
    """
    if isinstance(agent, Team):
        raise TypeError("serve_participant serves a ChatAgent; a Team cannot be a remote participant yet")
    if isinstance(agent, ChatAgent):
        instance = agent
        name = name or agent.name
        if name != agent.name:
            raise ValueError(f"the agent is named {agent.name!r}, not {name!r}")
        make: Callable[[], ChatAgent] = lambda: instance  # noqa: E731
        shared = True
    elif callable(agent):
        if name is None:
            raise TypeError("serve_participant(runtime, factory, team=..., name=...) needs the participant's name")
        make, shared = agent, False
    else:
        raise TypeError(f"serve_participant needs a ChatAgent or a function returning one, not {type(agent).__name__}")
    agent_type = participant_agent_type(team, name)
    busy: set[int] = set()  # ids of the shared agents in a turn

    def factory() -> ServedParticipant:
        made = make()
        if not isinstance(made, ChatAgent):
            raise TypeError(f"the factory of participant {name!r} returned a {type(made).__name__}, not a ChatAgent")
        if made.name != name:
            raise ValueError(f"the factory of participant {name!r} made an agent named {made.name!r}")
        return ServedParticipant(made, busy if shared else None)

    registered = await ServedParticipant.register(runtime, agent_type, factory, skip_direct_message_subscription=True)
    runtime.add_message_serializer(serializers_for(ALL_MESSAGES))
    return registered


class ServedParticipant(RoutedAgent):
    """The core agent that runs a chat agent's side of :class:`RemoteParticipant`'s calls."""

    def __init__(self, agent: ChatAgent, busy: set[int] | None) -> None:
        super().__init__(agent.description)
        self._agent = agent
        self._busy = busy

    @rpc
    async def on_turn(self, message: AgentChatParticipantTurn, ctx: MessageContext) -> AgentChatParticipantTurnResult:
        agent = self._agent
        if self._busy is not None:
            if id(agent) in self._busy:
                raise RuntimeError(
                    f"participant {agent.name!r} is in a turn of another team: serve a function that makes the "
                    "agent (serve_participant(runtime, make_agent, team=..., name=...)) to serve several teams"
                )
            self._busy.add(id(agent))
        try:
            topic = TopicId(message.stream_topic, STREAM_SOURCE)
            response: Response | None = None
            seq = 0
            async for item in agent.on_messages_stream(message.messages, ctx.cancellation_token):
                if isinstance(item, Response):
                    response = item
                    continue
                stream_item = AgentChatParticipantStreamItem(turn_id=message.turn_id, seq=seq, message=item)
                await self.publish_message(stream_item, topic, cancellation_token=ctx.cancellation_token)
                seq += 1
            if response is None:
                raise RuntimeError(f"participant {agent.name!r} ended its turn without a Response")
            return AgentChatParticipantTurnResult(response=response, stream_items=seq)
        finally:
            if self._busy is not None:
                self._busy.discard(id(agent))

    @rpc
    async def on_reset(self, message: AgentChatParticipantReset, ctx: MessageContext) -> None:
        await self._agent.on_reset(ctx.cancellation_token)

    @rpc
    async def on_pause(self, message: AgentChatParticipantPause, ctx: MessageContext) -> None:
        await self._agent.on_pause(ctx.cancellation_token)

    @rpc
    async def on_resume(self, message: AgentChatParticipantResume, ctx: MessageContext) -> None:
        await self._agent.on_resume(ctx.cancellation_token)

    @rpc
    async def on_save_state(
        self, message: AgentChatParticipantSaveState, ctx: MessageContext
    ) -> AgentChatParticipantState:
        return AgentChatParticipantState(state=dict(await self._agent.save_state()))

    @rpc
    async def on_load_state(self, message: AgentChatParticipantState, ctx: MessageContext) -> None:
        await self._agent.load_state(message.state)

    @rpc
    async def on_describe(
        self, message: AgentChatParticipantDescribe, ctx: MessageContext
    ) -> AgentChatParticipantDescription:
        agent = self._agent
        return AgentChatParticipantDescription(
            name=agent.name,
            description=agent.description,
            produced_message_types=[t.__name__ for t in agent.produced_message_types],
        )

    async def save_state(self) -> Mapping[str, Any]:
        """The chat agent's state (``runtime.save_state()`` on the serving worker includes it)."""
        return await self._agent.save_state()

    async def load_state(self, state: Mapping[str, Any]) -> None:
        await self._agent.load_state(state)
