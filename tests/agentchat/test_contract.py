"""What io_backends.agentchat assumes of AgentChat, checked against the installed AgentChat.

Each test fails loudly, naming what changed, when an AgentChat release moves one of them; then
``io_backends/agentchat/_internals.py`` (or the serializer) needs a look before the ``agentchat``
extra's version range is widened.
"""

from __future__ import annotations

import inspect

import autogen_agentchat.messages as messages_module
import pytest
from autogen_agentchat.messages import BaseAgentEvent, BaseChatMessage, MessageFactory, StructuredMessage
from autogen_agentchat.teams._group_chat import _events
from autogen_agentchat.teams._group_chat._chat_agent_container import ChatAgentContainer
from autogen_agentchat.teams._group_chat._graph._digraph_group_chat import GraphFlowManager
from autogen_agentchat.teams._group_chat._magentic_one._magentic_one_orchestrator import MagenticOneOrchestrator
from autogen_agentchat.teams._group_chat._round_robin_group_chat import RoundRobinGroupChatManager
from autogen_agentchat.teams._group_chat._selector_group_chat import SelectorGroupChatManager
from autogen_agentchat.teams._group_chat._swarm_group_chat import SwarmGroupChatManager
from autogen_core import RoutedAgent
from autogen_core._serialization import PydanticJsonMessageSerializer
from pydantic import BaseModel

from io_backends.agentchat import MessageFactorySerializer, serializer_for
from io_backends.agentchat._internals import GROUP_CHAT_EVENTS
from io_backends.agentchat._message_classes import message_class

MANAGERS = [
    RoundRobinGroupChatManager,
    SelectorGroupChatManager,
    SwarmGroupChatManager,
    GraphFlowManager,
    MagenticOneOrchestrator,
]


def test_the_group_chat_events_are_the_ones_we_list() -> None:
    defined = {
        cls
        for cls in vars(_events).values()
        if isinstance(cls, type) and issubclass(cls, BaseModel) and cls.__module__ == _events.__name__
    }
    assert defined - {_events.SerializableException} == set(GROUP_CHAT_EVENTS), (
        "AgentChat's group-chat events changed: update io_backends/agentchat/_internals.py"
    )


@pytest.mark.parametrize("agent", [*MANAGERS, ChatAgentContainer], ids=lambda cls: cls.__name__)
def test_the_managers_and_containers_of_every_team_type_handle_only_those_events(agent: type[RoutedAgent]) -> None:
    handled = {message_type for message_type, _ in agent._handles_types()}
    assert handled <= set(GROUP_CHAT_EVENTS), f"{agent.__name__} now handles {handled - set(GROUP_CHAT_EVENTS)}"


def test_autogens_serializer_still_cannot_read_the_events_that_hold_messages() -> None:
    """Why MessageFactorySerializer exists. If this fails, AgentChat or autogen fixed it upstream."""
    holding = {
        cls
        for cls in GROUP_CHAT_EVENTS
        if isinstance(serializer_for(PydanticJsonMessageSerializer(cls)), MessageFactorySerializer)
    }
    assert {cls.__name__ for cls in holding} == {
        "GroupChatAgentResponse",
        "GroupChatMessage",
        "GroupChatStart",
        "GroupChatTeamResponse",
        "GroupChatTermination",
    }
    start = _events.GroupChatStart(messages=[messages_module.TextMessage(content="x", source="y")])
    with pytest.raises(TypeError, match="abstract"):
        PydanticJsonMessageSerializer(_events.GroupChatStart).deserialize(start.model_dump_json().encode())


def test_every_message_class_has_its_class_name_as_type_as_message_factory_keys_it() -> None:
    factory = MessageFactory()
    for name in messages_module.__all__:
        cls = getattr(messages_module, name)
        if not (isinstance(cls, type) and issubclass(cls, (BaseChatMessage, BaseAgentEvent))):
            continue
        if inspect.isabstract(cls) or cls is StructuredMessage or name.startswith("Base"):
            continue
        assert factory.is_registered(cls), f"MessageFactory no longer knows {name} by its class name"
        assert cls.model_fields["type"].default == cls.__name__, f"{name}'s 'type' is no longer its class name"
        assert message_class(cls.__name__) is cls


class Shape(BaseModel):
    sides: int

    class Corner(BaseModel):
        angle: float


def test_a_structured_message_type_is_its_class_name_with_the_contents_qualname() -> None:
    message = StructuredMessage[Shape](content=Shape(sides=3), source="x")
    assert message.type == "StructuredMessage[Shape]" == type(message).__name__ == message.dump()["type"]
    corner = StructuredMessage[Shape.Corner](content=Shape.Corner(angle=90), source="x")
    assert corner.type == "StructuredMessage[Shape.Corner]"
