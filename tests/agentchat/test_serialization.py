"""The worker's registry carries AgentChat's messages whole: every kind, nested at any depth, custom
types included; and io_backends never imports AgentChat by itself."""

from __future__ import annotations

import subprocess
import sys
from typing import Any, Literal

import pytest
from autogen_agentchat.base import Response, TaskResult
from autogen_agentchat.messages import (
    BaseAgentEvent,
    BaseChatMessage,
    BaseTextChatMessage,
    CodeExecutionEvent,
    CodeGenerationEvent,
    HandoffMessage,
    MemoryQueryEvent,
    ModelClientStreamingChunkEvent,
    MultiModalMessage,
    SelectorEvent,
    SelectSpeakerEvent,
    StopMessage,
    StructuredMessage,
    TextMessage,
    ThoughtEvent,
    ToolCallExecutionEvent,
    ToolCallRequestEvent,
    ToolCallSummaryMessage,
    UserInputRequestedEvent,
)
from autogen_agentchat.teams._group_chat._events import (
    GroupChatAgentResponse,
    GroupChatError,
    GroupChatMessage,
    GroupChatStart,
    GroupChatTeamResponse,
    GroupChatTermination,
    SerializableException,
)
from autogen_core import JSON_DATA_CONTENT_TYPE, FunctionCall, Image, try_get_known_serializers_for_type
from autogen_core.code_executor import CodeBlock, CodeResult
from autogen_core.models import AssistantMessage, FunctionExecutionResult, RequestUsage, UserMessage
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from io_backends.agentchat import MessageFactorySerializer
from io_backends.worker._serialization import MessageSerializers

from ._scenarios import Plan, Verdict

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]


def image() -> Image:
    import PIL.Image

    return Image(PIL.Image.new("RGB", (2, 2), color=(255, 0, 0)))


def chat_messages() -> list[BaseChatMessage]:
    usage = RequestUsage(prompt_tokens=3, completion_tokens=4)
    return [
        TextMessage(content="hello", source="user", metadata={"k": "v"}),
        MultiModalMessage(content=["look", image()], source="alice", models_usage=usage),
        HandoffMessage(
            content="to bob",
            source="alice",
            target="bob",
            context=[UserMessage(content="hi", source="user"), AssistantMessage(content="yo", source="alice")],
        ),
        ToolCallSummaryMessage(
            content="sum",
            source="bob",
            tool_calls=[FunctionCall(id="1", name="f", arguments="{}")],
            results=[FunctionExecutionResult(content="3", name="f", call_id="1", is_error=False)],
        ),
        StopMessage(content="stop", source="carol"),
        StructuredMessage[Plan](content=Plan(steps=["a"], urgent=True), source="bob", format_string="{steps}"),
        Verdict(content="fine", score=7, source="alice"),
    ]


def agent_events() -> list[BaseAgentEvent]:
    return [
        ToolCallRequestEvent(content=[FunctionCall(id="1", name="f", arguments='{"x": 1}')], source="bob"),
        ToolCallExecutionEvent(
            content=[FunctionExecutionResult(content="3", name="f", call_id="1", is_error=False)], source="bob"
        ),
        MemoryQueryEvent(content=[], source="bob"),
        UserInputRequestedEvent(request_id="r", content="", source="user_proxy"),
        ModelClientStreamingChunkEvent(content="tok", source="bob", full_message_id="m"),
        ThoughtEvent(content="hmm", source="bob"),
        SelectSpeakerEvent(content=["bob"], source="manager"),
        SelectorEvent(content="bob", source="manager"),
        CodeGenerationEvent(retry_attempt=0, content="x", code_blocks=[CodeBlock(code="1", language="py")], source="c"),
        CodeExecutionEvent(retry_attempt=0, result=CodeResult(exit_code=0, output="1"), source="c"),
    ]


def events() -> list[BaseModel]:
    chats, inner = chat_messages(), agent_events()
    responses = [Response(chat_message=m, inner_messages=inner + chats) for m in chats]
    error = SerializableException(error_type="ValueError", error_message="bad", traceback="tb")
    return [
        GroupChatStart(messages=chats, output_task_messages=False),
        GroupChatStart(messages=None),
        *[GroupChatAgentResponse(response=response, name="n") for response in responses],
        GroupChatTeamResponse(result=TaskResult(messages=[*chats, *inner], stop_reason="done"), name="team"),
        *[GroupChatMessage(message=m) for m in [*chats, *inner]],
        GroupChatTermination(message=StopMessage(content="end", source="m"), error=error),
        GroupChatError(error=error),
    ]


def registry_for(cls: type[Any]) -> MessageSerializers:
    registry = MessageSerializers()
    registry.add_serializer(try_get_known_serializers_for_type(cls))  # as a team's agents register them
    return registry


@pytest.mark.parametrize("event", events(), ids=lambda e: type(e).__name__)
def test_every_group_chat_event_comes_back_whole(event: BaseModel) -> None:
    registry = registry_for(type(event))
    name = registry.type_name(event)
    data = registry.serialize(event, type_name=name, data_content_type=JSON_DATA_CONTENT_TYPE)
    back = registry.deserialize(data, type_name=name, data_content_type=JSON_DATA_CONTENT_TYPE)
    assert type(back) is type(event)
    assert back.model_dump(mode="json") == event.model_dump(mode="json")  # (an Image has no ==)
    assert _classes(back) == _classes(event)


def _classes(value: Any) -> list[str]:
    """The classes of every message inside ``value``, in order."""
    found: list[str] = []
    if isinstance(value, (BaseChatMessage, BaseAgentEvent)):
        found.append(type(value).__name__)
    if isinstance(value, (BaseModel, Response)):
        for name in value.__dict__:
            found += _classes(getattr(value, name))
    elif isinstance(value, (list, tuple)):
        for item in value:
            found += _classes(item)
    return found


def test_a_group_chat_event_brings_the_events_no_agent_registers() -> None:
    # A manager publishes GroupChatTermination to its output topic, and no agent handles it.
    registry = registry_for(GroupChatStart)
    assert registry.is_registered("GroupChatTermination", JSON_DATA_CONTENT_TYPE)
    assert registry.is_registered("GroupChatRequestPublish", JSON_DATA_CONTENT_TYPE)


class Quote(BaseModel):
    """An application's own model holding messages, without SerializeAsAny on its fields."""

    quoted: BaseChatMessage
    thread: list[BaseChatMessage | BaseAgentEvent]
    by_name: dict[str, TextMessage]
    maybe: StopMessage | None = None


def test_an_applications_model_that_holds_messages_is_carried_whole_too() -> None:
    quote = Quote(
        quoted=Verdict(content="ok", score=1, source="a"),
        thread=[*chat_messages()[:2], ThoughtEvent(content="t", source="b")],
        by_name={"x": TextMessage(content="x", source="y")},
    )
    registry = registry_for(Quote)
    data = registry.serialize(quote, type_name="Quote", data_content_type=JSON_DATA_CONTENT_TYPE)
    back = registry.deserialize(data, type_name="Quote", data_content_type=JSON_DATA_CONTENT_TYPE)
    assert back.quoted == quote.quoted and type(back.quoted) is Verdict
    assert [m.dump() for m in back.thread] == [m.dump() for m in quote.thread]
    assert _classes(back.thread) == ["TextMessage", "MultiModalMessage", "ThoughtEvent"]
    assert back.by_name == quote.by_name and back.maybe is None


def test_a_model_without_messages_keeps_autogens_serializer() -> None:
    class Plain(BaseModel):
        text: str

    registry = registry_for(Plain)
    assert registry.serialize(Plain(text="a"), type_name="Plain", data_content_type=JSON_DATA_CONTENT_TYPE) == (
        b'{"text":"a"}'
    )
    with pytest.raises(ValueError, match="holds no AgentChat messages"):
        MessageFactorySerializer(Plain)


def test_an_unknown_message_type_is_an_error_that_says_what_to_do() -> None:
    serializer = MessageFactorySerializer(GroupChatMessage)
    payload = b'{"message": {"type": "NoSuchMessage", "source": "x", "content": "y"}}'
    with pytest.raises(ValueError, match=r"unknown AgentChat message type 'NoSuchMessage': import the module"):
        serializer.deserialize(payload)
    with pytest.raises(ValueError, match="needs its class name in a 'type' field"):
        serializer.deserialize(b'{"message": {"source": "x", "content": "y"}}')
    with pytest.raises(ValueError, match="where a BaseChatMessage belongs"):  # an event where a chat message goes
        MessageFactorySerializer(GroupChatStart).deserialize(
            b'{"messages": [{"type": "ThoughtEvent", "source": "x", "content": "y"}]}'
        )
    with pytest.raises(ValueError, match="not valid JSON"):
        serializer.deserialize(b"{")


def test_two_message_classes_with_one_name_are_refused_not_guessed() -> None:
    def twin(module: str) -> type[BaseChatMessage]:
        namespace = {"__module__": module, "__annotations__": {"type": Literal["Twin"]}, "type": "Twin"}
        return type("Twin", (BaseTextChatMessage,), namespace)

    first, second = twin("first_module"), twin("second_module")
    serializer = MessageFactorySerializer(GroupChatMessage)
    payload = GroupChatMessage(message=first(content="x", source="y")).model_dump_json().encode()
    with pytest.raises(ValueError, match=r"more than one AgentChat message class is named 'Twin' \(first_module"):
        serializer.deserialize(payload)
    assert second is not first


def test_structured_message_of_a_model_no_one_parametrized_yet_is_made_from_it() -> None:
    script = """
import json, sys
from pydantic import BaseModel
from autogen_agentchat.messages import StructuredMessage
from autogen_agentchat.teams._group_chat._events import GroupChatMessage
from io_backends.agentchat import MessageFactorySerializer

class Sketch(BaseModel):
    lines: int

    class Note(BaseModel):
        text: str

assert not StructuredMessage.__subclasses__()
for name, content, expected in [
    ("StructuredMessage[Sketch]", {"lines": 3}, Sketch(lines=3)),
    ("StructuredMessage[Sketch.Note]", {"text": "t"}, Sketch.Note(text="t")),
]:
    payload = {"message": {"type": name, "source": "a", "content": content}}
    event = MessageFactorySerializer(GroupChatMessage).deserialize(json.dumps(payload).encode())
    assert type(event.message).__name__ == name, type(event.message)
    assert event.message.content == expected
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "ok", result.stderr


def test_io_backends_never_imports_agentchat_by_itself() -> None:
    script = """
import sys
from dataclasses import dataclass
from pydantic import BaseModel
from autogen_core import try_get_known_serializers_for_type
from io_backends import HttpWorkerAgentRuntime

class Model(BaseModel):
    text: str

@dataclass
class Data:
    text: str

runtime = HttpWorkerAgentRuntime("127.0.0.1:1")
runtime.add_message_serializer(try_get_known_serializers_for_type(Model) + try_get_known_serializers_for_type(Data))
assert not [m for m in sys.modules if m.startswith("autogen_agentchat")], "AgentChat was imported"
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.stdout.strip() == "ok", result.stderr


_text = st.text(max_size=30)
_chat = st.one_of(
    st.builds(
        TextMessage,
        content=_text,
        source=st.from_regex(r"[a-z]{1,8}", fullmatch=True),
        metadata=st.dictionaries(_text, _text, max_size=3),
    ),
    st.builds(StopMessage, content=_text, source=_text),
    st.builds(HandoffMessage, content=_text, source=_text, target=_text),
    st.builds(Verdict, content=_text, source=_text, score=st.integers(-(2**31), 2**31)),
    st.builds(
        StructuredMessage[Plan],
        content=st.builds(Plan, steps=st.lists(_text, max_size=3), urgent=st.booleans()),
        source=_text,
    ),
)
_event = st.one_of(
    st.builds(ThoughtEvent, content=_text, source=_text),
    st.builds(ModelClientStreamingChunkEvent, content=_text, source=_text),
    st.builds(SelectSpeakerEvent, content=st.lists(_text, max_size=3), source=_text),
)
_any = st.one_of(_chat, _event)
_nested = st.one_of(
    st.builds(GroupChatStart, messages=st.none() | st.lists(_chat, max_size=5)),
    st.builds(
        GroupChatAgentResponse,
        response=st.builds(Response, chat_message=_chat, inner_messages=st.none() | st.lists(_any, max_size=5)),
        name=_text,
    ),
    st.builds(
        GroupChatTeamResponse,
        result=st.builds(TaskResult, messages=st.lists(_any, max_size=5), stop_reason=st.none() | _text),
        name=_text,
    ),
    st.builds(GroupChatMessage, message=_any),
    st.builds(
        Quote,
        quoted=_chat,
        thread=st.lists(_any, max_size=4),
        by_name=st.dictionaries(_text, _chat.filter(lambda m: type(m) is TextMessage), max_size=2),
    ),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_nested)
def test_any_nesting_of_messages_comes_back_as_it_went(model: BaseModel) -> None:
    serializer = MessageFactorySerializer(type(model))
    back = serializer.deserialize(serializer.serialize(model))
    assert back == model
    assert _classes(back) == _classes(model)
