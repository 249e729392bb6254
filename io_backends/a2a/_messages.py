"""What AutoGen agents send to an A2A agent and what they get back, and how those map to A2A parts.

Pure: dataclasses and functions over A2A 1.0's JSON form of a part (``{"text": ...}``,
``{"data": ...}``, ``{"url": ..., "mediaType": ..., "filename": ...}``, ``{"raw": <base64>}``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from autogen_core.exceptions import CantHandleException

JsonPart = dict[str, Any]
"""One A2A part in A2A 1.0's JSON form."""


@dataclass
class A2AMessage:
    """The default message an AutoGen agent sends to an :class:`A2AAgent`.

    ``text`` becomes one text part (when not empty), each item of ``data`` one data part (any JSON
    value), and ``parts`` (A2A 1.0 JSON parts, e.g. ``{"url": ..., "mediaType": "image/png"}``)
    follow as they are. ``metadata`` is the A2A message's own.
    """

    text: str = ""
    data: list[Any] = field(default_factory=list)
    parts: list[JsonPart] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class A2AReply:
    """What an :class:`A2AAgent` answers with by default.

    * ``text``: the text parts of the answer, joined by newlines (as a2a-sdk's helpers join them);
    * ``data``: the value of each data part, in order (JSON numbers that are whole come back as
      ``int``: A2A carries every number as a double);
    * ``parts``: every part of the answer in A2A 1.0 JSON, files included;
    * ``artifacts``: the task's artifacts as A2A sent them (``artifactId``, ``name``, ``parts``);
    * ``state``: ``"completed"``, or ``"input-required"`` / ``"auth-required"`` when the agent
      waits for more: the next message to the same AgentId continues that task;
    * ``task_id`` (``""`` when the agent answered with a plain message) and ``context_id``.

    The answer's parts are the artifacts' parts when the task has artifacts, else the parts of the
    message the agent answered with (the direct message, or the task's last status message).
    """

    text: str = ""
    data: list[Any] = field(default_factory=list)
    parts: list[JsonPart] = field(default_factory=list)
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    state: str = "completed"
    task_id: str = ""
    context_id: str = ""


def to_a2a_message(message: Any) -> A2AMessage:
    """The default reading of what an AutoGen agent sent: an :class:`A2AMessage` as it is, a ``str``
    as text, a dataclass, a Pydantic model, a dict or a list as one data part.

    Anything else raises autogen's ``CantHandleException`` naming what to do.
    """
    if isinstance(message, A2AMessage):
        return message
    if isinstance(message, str):
        return A2AMessage(text=message)
    if dataclasses.is_dataclass(message) and not isinstance(message, type):
        return A2AMessage(data=[dataclasses.asdict(message)])
    dump = getattr(message, "model_dump", None)
    if callable(dump):  # a Pydantic model (duck-typed: Pydantic is not a dependency of this package)
        return A2AMessage(data=[dump(mode="json")])
    if isinstance(message, (dict, list)):
        return A2AMessage(data=[message])
    raise CantHandleException(
        f"an A2AAgent cannot send a {type(message).__qualname__} to an A2A agent: send an A2AMessage, a str, "
        "a dataclass, a Pydantic model, a dict or a list, or give the A2AAgent a to_a2a= function"
    )


def message_parts(message: A2AMessage) -> list[JsonPart]:
    """The A2A parts of ``message``, in order: its text, its data items, its own parts."""
    parts: list[JsonPart] = []
    if message.text:
        parts.append({"text": message.text})
    parts.extend({"data": item} for item in message.data)
    parts.extend(dict(part) for part in message.parts)
    if not parts:
        raise ValueError("an A2A message needs at least one part: give the A2AMessage text=, data= or parts=")
    return parts


def reply_of(parts: list[JsonPart], **fields: Any) -> A2AReply:
    """The :class:`A2AReply` whose answer is ``parts`` (``fields``: the reply's other fields)."""
    texts = [part["text"] for part in parts if isinstance(part.get("text"), str)]
    data = [whole_numbers(part["data"]) for part in parts if "data" in part]
    return A2AReply(text="\n".join(texts), data=data, parts=parts, **fields)


def whole_numbers(value: Any) -> Any:
    """``value`` with every float that is a whole number turned into an ``int`` (recursively)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {key: whole_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [whole_numbers(item) for item in value]
    return value
