"""What an exposed agent type is to A2A: its card, and how A2A messages and AutoGen values map.

Pure apart from a2a-sdk's protobuf types: no I/O. :class:`ExposedAgent` is what the user writes;
:func:`agent_card` builds its card; :func:`incoming` turns an A2A message into the message the
agent takes; :func:`outgoing_parts` turns what the agent answers (or publishes) into A2A parts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    HTTPAuthSecurityScheme,
    Message,
    Part,
    SecurityRequirement,
    SecurityScheme,
    StringList,
)
from a2a.utils.errors import InvalidParamsError
from google.protobuf import json_format

from ._messages import A2AMessage, A2AReply, JsonPart, message_parts, to_a2a_message, whole_numbers

DEFAULT_PROGRESS_TOPIC = "a2a.progress"
"""The topic type an exposed agent publishes its progress to (the topic's source: the contextId)."""

MODES = ("text/plain", "application/json")


@dataclass(frozen=True)
class ExposedAgent:
    """An AutoGen agent type served as an A2A agent by an :class:`A2AGateway`.

    * ``agent_type``: the type registered on the host (by any worker); each A2A conversation
      (``contextId``) is one instance, ``AgentId(agent_type, contextId)``.
    * Card fields: ``description`` (required by A2A), ``name`` (default: ``agent_type``),
      ``version``, ``skills`` (a2a-sdk ``AgentSkill`` values or their JSON as dicts:
      ``{"id", "name", "description", "tags", "examples"}``; default: one skill named after the
      agent, as A2A requires one), ``streaming`` (the card's
      ``capabilities.streaming``; off: ``SendStreamingMessage`` is refused with -32004),
      ``input_modes`` / ``output_modes``, ``provider`` / ``documentation_url`` / ``icon_url``.
    * ``message_type``: what the agent receives for an A2A message. :class:`A2AMessage` (the
      default: ``text`` = the text parts joined by newlines, ``data`` = the data parts' values,
      ``parts`` = the other parts, ``metadata``); a dataclass or Pydantic model class (built
      from the message's one data part, an object of its fields); or any function
      ``A2AMessage -> message`` (e.g. ``lambda m: TextMessage(content=m.text, source="user")``).
      The gateway and the agent's worker both need the type's serializer.
    * ``progress_topic``: events the agent publishes to ``TopicId(progress_topic, contextId)``
      while its call runs are streamed to the A2A client as ``TASK_STATE_WORKING`` status
      messages (and kept in the task's history).
    """

    agent_type: str
    description: str
    name: str | None = None
    version: str = "1.0.0"
    skills: Sequence[AgentSkill | Mapping[str, Any]] = ()
    streaming: bool = True
    message_type: type[Any] | Callable[[A2AMessage], Any] = A2AMessage
    progress_topic: str = DEFAULT_PROGRESS_TOPIC
    input_modes: Sequence[str] = MODES
    output_modes: Sequence[str] = MODES
    provider: Mapping[str, str] | None = None
    documentation_url: str = ""
    icon_url: str = ""
    extra_card: Mapping[str, Any] = field(default_factory=dict)
    """More card members in A2A 1.0 JSON (e.g. ``{"signatures": [...]}``), merged last."""

    def __post_init__(self) -> None:
        if not self.agent_type or "/" in self.agent_type:
            raise ValueError(f"not an agent type an A2A route can name: {self.agent_type!r}")
        if not self.description.strip():
            raise ValueError(
                f"an A2A agent card needs a description: give ExposedAgent({self.agent_type!r}, description=...)"
            )


def agent_card(agent: ExposedAgent, url: str, *, bearer: bool) -> AgentCard:
    """The card of ``agent`` served at ``url`` (its JSON-RPC interface, in 1.0 and 0.3)."""
    card = AgentCard(
        name=agent.name or agent.agent_type,
        description=agent.description,
        version=agent.version,
        supported_interfaces=[
            AgentInterface(url=url, protocol_binding="JSONRPC", protocol_version="1.0"),
            AgentInterface(url=url, protocol_binding="JSONRPC", protocol_version="0.3"),
        ],
        capabilities=AgentCapabilities(streaming=agent.streaming, push_notifications=False),
        default_input_modes=list(agent.input_modes),
        default_output_modes=list(agent.output_modes),
        skills=[s if isinstance(s, AgentSkill) else json_format.ParseDict(dict(s), AgentSkill()) for s in agent.skills]
        or [
            AgentSkill(
                id=agent.agent_type,
                name=agent.name or agent.agent_type,
                description=agent.description,
                tags=["autogen"],
            )
        ],
        documentation_url=agent.documentation_url,
        icon_url=agent.icon_url,
    )
    if agent.provider is not None:
        json_format.ParseDict({"provider": dict(agent.provider)}, card, ignore_unknown_fields=False)
    if bearer:
        card.security_schemes["bearer"].CopyFrom(
            SecurityScheme(http_auth_security_scheme=HTTPAuthSecurityScheme(scheme="Bearer"))
        )
        card.security_requirements.append(SecurityRequirement(schemes={"bearer": StringList()}))
    if agent.extra_card:
        json_format.ParseDict(dict(agent.extra_card), card)
    return card


def a2a_message_of(message: Message) -> A2AMessage:
    """An A2A message as an :class:`A2AMessage` (text parts joined, data values, other parts)."""
    wire = json_format.MessageToDict(message)
    texts: list[str] = []
    data: list[Any] = []
    others: list[JsonPart] = []
    for part in wire.get("parts", []):
        if "text" in part and len(part) == 1:
            texts.append(part["text"])
        elif "data" in part and len(part) == 1:
            data.append(whole_numbers(part["data"]))
        else:
            others.append(part)
    return A2AMessage(text="\n".join(texts), data=data, parts=others, metadata=dict(wire.get("metadata", {})))


def incoming(agent: ExposedAgent, message: A2AMessage) -> Any:
    """What ``agent`` receives for ``message``; :class:`InvalidParamsError` (-32602) if it cannot be built."""
    kind = agent.message_type
    if kind is A2AMessage:
        return message
    if isinstance(kind, type) and (dataclasses.is_dataclass(kind) or hasattr(kind, "model_validate")):
        fields = message.data[0] if len(message.data) == 1 else None
        if not isinstance(fields, dict):
            raise InvalidParamsError(
                message=f"the agent {agent.agent_type!r} takes a {kind.__name__}: "
                "send one data part, an object of its fields"
            )
        try:
            validate = getattr(kind, "model_validate", None)
            return validate(fields) if callable(validate) else kind(**fields)
        except Exception as exc:
            raise InvalidParamsError(
                message=f"the data part is not a {kind.__name__} for the agent {agent.agent_type!r}: {exc}".replace(
                    "\n", " "
                )
            ) from None
    try:
        return kind(message)
    except Exception as exc:
        raise InvalidParamsError(
            message=f"the agent {agent.agent_type!r} cannot take this message: {exc}".replace("\n", " ")
        ) from None


def outgoing_parts(value: Any) -> list[JsonPart]:
    """What an agent answered (or published) as A2A parts.

    ``None``: none; an :class:`A2AReply`: its parts (or its text); a ``str``: a text part; an
    :class:`A2AMessage`: its parts; a dataclass, Pydantic model, dict or list: one data part.
    Anything else raises ``CantHandleException``.
    """
    if value is None:
        return []
    if isinstance(value, A2AReply):
        return list(value.parts) or ([{"text": value.text}] if value.text else [])
    message = to_a2a_message(value)
    return message_parts(message) if (message.text or message.data or message.parts) else []


def proto_parts(parts: list[JsonPart]) -> list[Part]:
    return [json_format.ParseDict(part, Part()) for part in parts]


__all__ = [
    "DEFAULT_PROGRESS_TOPIC",
    "ExposedAgent",
    "a2a_message_of",
    "agent_card",
    "incoming",
    "outgoing_parts",
    "proto_parts",
]
