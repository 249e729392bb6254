"""The messages between a team's :class:`RemoteParticipant` and the worker serving the participant.

Each is an ordinary ``agent.call`` (or, for :class:`ParticipantStreamItem`, ``agent.publish``)
payload, a Pydantic model carried as JSON; ``docs/AGENTCHAT.md`` describes them for workers
written in other languages. Their names are their AutoGen type names, so they are prefixed to stay
clear of an application's own types.
"""

from __future__ import annotations

from typing import Any

from autogen_agentchat.base import Response
from autogen_agentchat.messages import BaseAgentEvent, BaseChatMessage
from pydantic import BaseModel, SerializeAsAny


class AgentChatParticipantTurn(BaseModel):
    """Take a turn: the messages the team sent the participant since its last turn.

    Answered with :class:`AgentChatParticipantTurnResult` once the agent's response is ready; every
    event the agent streams before it is published to ``stream_topic`` first.
    """

    messages: list[SerializeAsAny[BaseChatMessage]]
    stream_topic: str
    """The topic type the caller's stream sink subscribes to (source ``"default"``)."""
    turn_id: str
    """Names this turn in its :class:`AgentChatParticipantStreamItem` s."""


class AgentChatParticipantStreamItem(BaseModel):
    """One event or inner message the agent yielded during a turn, in order (``seq`` from 0)."""

    turn_id: str
    seq: int
    message: SerializeAsAny[BaseAgentEvent | BaseChatMessage]


class AgentChatParticipantTurnResult(BaseModel):
    """The agent's response, and how many stream items were published before it."""

    response: Response
    stream_items: int


class AgentChatParticipantReset(BaseModel):
    """``on_reset``."""


class AgentChatParticipantPause(BaseModel):
    """``on_pause``."""


class AgentChatParticipantResume(BaseModel):
    """``on_resume``."""


class AgentChatParticipantSaveState(BaseModel):
    """``save_state``: answered with :class:`AgentChatParticipantState`."""


class AgentChatParticipantState(BaseModel):
    """The agent's state, as its ``save_state`` returned it (JSON values): the answer to
    :class:`AgentChatParticipantSaveState`, and the call that loads it (``load_state``)."""

    state: dict[str, Any]


class AgentChatParticipantDescribe(BaseModel):
    """Who the served agent is: answered with :class:`AgentChatParticipantDescription`."""


class AgentChatParticipantDescription(BaseModel):
    name: str
    description: str
    produced_message_types: list[str]
    """The ``type`` names of the chat messages the agent may respond with."""


ALL_MESSAGES: tuple[type[BaseModel], ...] = (
    AgentChatParticipantTurn,
    AgentChatParticipantTurnResult,
    AgentChatParticipantReset,
    AgentChatParticipantPause,
    AgentChatParticipantResume,
    AgentChatParticipantSaveState,
    AgentChatParticipantState,
    AgentChatParticipantDescribe,
    AgentChatParticipantDescription,
    AgentChatParticipantStreamItem,
)
"""Every message of this module, for registering their serializers."""
