"""The one module of ours that names AgentChat internals: the events its group-chat teams exchange.

They live in a private module (``autogen_agentchat.teams._group_chat._events``). We need them for
one thing: a team's manager publishes ``GroupChatTermination`` (to its own output topic) without
any agent declaring a handler for it, so no serializer is ever registered for it, and a runtime
that serializes every message (ours, gRPC's) fails where the in-process runtime, which serializes
nothing, does not. ``tests/agentchat/test_contract.py`` fails loudly when AgentChat renames,
removes or adds one of these.
"""

from __future__ import annotations

from autogen_agentchat.teams._group_chat._events import (
    GroupChatAgentResponse,
    GroupChatError,
    GroupChatMessage,
    GroupChatPause,
    GroupChatRequestPublish,
    GroupChatReset,
    GroupChatResume,
    GroupChatStart,
    GroupChatTeamResponse,
    GroupChatTermination,
)
from pydantic import BaseModel

GROUP_CHAT_EVENTS: tuple[type[BaseModel], ...] = (
    GroupChatAgentResponse,
    GroupChatError,
    GroupChatMessage,
    GroupChatPause,
    GroupChatRequestPublish,
    GroupChatReset,
    GroupChatResume,
    GroupChatStart,
    GroupChatTeamResponse,
    GroupChatTermination,
)
"""Every message model of AgentChat's group-chat protocol (``SerializableException`` is a field, not a message)."""
