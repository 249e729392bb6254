"""The one module of ours that names AgentChat internals: the events its group-chat teams exchange.

They live in a private module (``autogen_agentchat.teams._group_chat._events``). We need them for
one thing: a team's manager publishes ``GroupChatTermination`` (to its own output topic) without
any agent declaring a handler for it, so no serializer is ever registered for it, and a runtime
that serializes every message (ours, gRPC's) fails where the in-process runtime, which serializes
nothing, does not. ``tests/agentchat/test_contract.py`` fails loudly when AgentChat renames,
removes or adds one of these.
"""

from __future__ import annotations

import importlib
import warnings

from pydantic import BaseModel

_MODULE = "autogen_agentchat.teams._group_chat._events"

_NAMES = (
    "GroupChatAgentResponse",
    "GroupChatError",
    "GroupChatMessage",
    "GroupChatPause",
    "GroupChatRequestPublish",
    "GroupChatReset",
    "GroupChatResume",
    "GroupChatStart",
    "GroupChatTeamResponse",
    "GroupChatTermination",
)


def _group_chat_events() -> tuple[type[BaseModel], ...]:
    try:
        events = importlib.import_module(_MODULE)
    except ImportError:
        events = None
    found = tuple(cls for name in _NAMES if isinstance(cls := getattr(events, name, None), type))
    if len(found) != len(_NAMES):  # a newer AgentChat than the agentchat extra allows
        warnings.warn(
            f"this AgentChat moved its group-chat events ({_MODULE}); a team's manager may fail to publish "
            "GroupChatTermination on HttpWorkerAgentRuntime: install the versions the agentchat extra pins",
            RuntimeWarning,
            stacklevel=2,
        )
    return found


GROUP_CHAT_EVENTS = _group_chat_events()
"""Every message model of AgentChat's group-chat protocol (``SerializableException`` is a field,
not a message); the ones it still has, with a warning, if AgentChat moved them."""
