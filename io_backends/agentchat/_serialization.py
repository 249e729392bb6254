"""Serializers that carry AgentChat's messages whole, where autogen's Pydantic serializer cannot.

AgentChat's group-chat events (``GroupChatStart``, ``GroupChatAgentResponse``, ...), its
``Response`` and its ``TaskResult`` hold their messages in fields typed with the abstract
``BaseChatMessage`` and ``BaseAgentEvent``. autogen's ``PydanticJsonMessageSerializer`` writes
them, but reads them back with ``model_validate_json``, which tries to build the abstract class
itself and fails with a ``TypeError``. AgentChat's own answer is ``MessageFactory``: a message is
written with its ``dump()``, which holds its class name in ``type``, and read back with that
class's ``load()``.

:class:`MessageFactorySerializer` does the same for any Pydantic model whose fields hold AgentChat
messages, at any depth (lists, tuples, dicts, unions, nested models and dataclasses): every
message is written with its own ``dump()``, whatever the field's annotation (so a field typed
``BaseChatMessage`` without ``SerializeAsAny`` loses nothing either), and read back with the
``load()`` of the class its ``type`` names (see ``_message_classes``). The model is then
validated around the built messages: Pydantic keeps an instance handed to a field typed with one
of its base classes, so nothing is built twice.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

import msgspec
from autogen_agentchat.messages import BaseMessage
from autogen_core import JSON_DATA_CONTENT_TYPE, MessageSerializer, try_get_known_serializers_for_type
from pydantic import BaseModel

from ._message_classes import message_class

ModelT = TypeVar("ModelT", bound=BaseModel)
_SEQUENCES = {list, tuple, set, frozenset, collections.abc.Sequence, collections.abc.MutableSequence}
_MAPPINGS = {dict, collections.abc.Mapping, collections.abc.MutableMapping}


class MessageFactorySerializer(MessageSerializer[ModelT]):
    """A JSON serializer for a Pydantic model that holds AgentChat messages (see the module docstring).

    ``HttpWorkerAgentRuntime`` registers one by itself in place of autogen's serializer for such a
    model; :func:`serializers_for` makes them for another runtime.
    """

    def __init__(self, cls: type[ModelT], type_name: str | None = None) -> None:
        shape = _model_shape(cls)
        if shape is None:
            raise ValueError(f"{cls.__qualname__} holds no AgentChat messages: autogen's serializer reads it")
        self.cls = cls
        self._shape = shape
        self._type_name = type_name or cls.__name__

    @property
    def data_content_type(self) -> str:
        return JSON_DATA_CONTENT_TYPE

    @property
    def type_name(self) -> str:
        return self._type_name

    def serialize(self, message: ModelT) -> bytes:
        return msgspec.json.encode(self._shape.write(message, message.model_dump(mode="json")))

    def deserialize(self, payload: bytes) -> ModelT:
        try:
            data = msgspec.json.decode(payload)
        except msgspec.DecodeError as exc:
            raise ValueError(f"a {self._type_name} payload is not valid JSON: {exc}") from None
        return self.cls.model_validate(self._shape.read(data))


def serializer_for(serializer: MessageSerializer[Any]) -> MessageSerializer[Any]:
    """A :class:`MessageFactorySerializer` in place of ``serializer`` for a Pydantic model that
    holds AgentChat messages; ``serializer`` itself for anything else."""
    cls = getattr(serializer, "cls", None)
    if (
        serializer.data_content_type == JSON_DATA_CONTENT_TYPE
        and isinstance(cls, type)
        and issubclass(cls, BaseModel)
        and _model_shape(cls) is not None
    ):
        return MessageFactorySerializer(cls, serializer.type_name)
    return serializer


def serializers_for(classes: Iterable[type[Any]]) -> list[MessageSerializer[Any]]:
    """The serializers for ``classes``, AgentChat-aware (for any runtime's ``add_message_serializer``)."""
    return [serializer_for(s) for cls in classes for s in try_get_known_serializers_for_type(cls)]


def serializers_in_place_of(serializer: MessageSerializer[Any]) -> list[MessageSerializer[Any]]:
    """What ``HttpWorkerAgentRuntime`` registers when asked to register ``serializer``:
    :func:`serializer_for` it, and with one of AgentChat's group-chat events, all of them (a team
    publishes ``GroupChatTermination`` without registering it; see ``_internals``)."""
    from ._internals import GROUP_CHAT_EVENTS

    out = [serializer_for(serializer)]
    cls = getattr(serializer, "cls", None)
    if cls in GROUP_CHAT_EVENTS:
        out += serializers_for(event for event in GROUP_CHAT_EVENTS if event is not cls)
    return out


# ---------------------------------------------------------------------------- shapes


class _Shape:
    """Where the messages are in the values of one annotation, and how to write and read them."""

    def fits(self, value: Any) -> bool:
        """Whether a Python value has this shape (to pick a member of a union)."""
        raise NotImplementedError

    def fits_data(self, data: Any) -> bool:
        """Whether a JSON value has this shape."""
        raise NotImplementedError

    def write(self, value: Any, data: Any) -> Any:
        """``data`` (Pydantic's JSON of ``value``) with every message in it as the message's ``dump()``."""
        raise NotImplementedError

    def read(self, data: Any) -> Any:
        """``data`` with every message in it built (with its class's ``load()``), ready to validate."""
        raise NotImplementedError


class _Message(_Shape):
    def __init__(self, bases: tuple[type[BaseMessage], ...]) -> None:
        self._bases = bases

    def fits(self, value: Any) -> bool:
        return isinstance(value, BaseMessage)

    def fits_data(self, data: Any) -> bool:
        return isinstance(data, dict) and "type" in data

    def write(self, value: Any, data: Any) -> Any:
        if not isinstance(value, BaseMessage):
            return data
        dumped = value.dump()
        inner = _model_shape(type(value))  # a message may itself hold messages
        return inner.write(value, dumped) if inner is not None else dumped

    def read(self, data: Any) -> Any:
        if not isinstance(data, dict):
            return data  # Pydantic says what is wrong with it
        cls = message_class(data.get("type"), self._bases)
        inner = _model_shape(cls)
        return cls.load(inner.read(data) if inner is not None else data)


class _Items(_Shape):
    def __init__(self, item: _Shape) -> None:
        self._item = item

    def fits(self, value: Any) -> bool:
        return isinstance(value, (list, tuple, set, frozenset))

    def fits_data(self, data: Any) -> bool:
        return isinstance(data, list)

    def write(self, value: Any, data: Any) -> Any:
        if not isinstance(data, list) or not self.fits(value) or len(value) != len(data):
            return data
        return [self._item.write(v, d) for v, d in zip(value, data, strict=True)]

    def read(self, data: Any) -> Any:
        return [self._item.read(d) for d in data] if isinstance(data, list) else data


class _Positions(_Shape):
    """``tuple[X, Y]``: a shape a position (None where a position holds no messages)."""

    def __init__(self, items: list[_Shape | None]) -> None:
        self._items = items

    def fits(self, value: Any) -> bool:
        return isinstance(value, tuple) and len(value) == len(self._items)

    def fits_data(self, data: Any) -> bool:
        return isinstance(data, list) and len(data) == len(self._items)

    def write(self, value: Any, data: Any) -> Any:
        if not self.fits(value) or not self.fits_data(data):
            return data
        return [s.write(v, d) if s else d for s, v, d in zip(self._items, value, data, strict=True)]

    def read(self, data: Any) -> Any:
        if not self.fits_data(data):
            return data
        return [s.read(d) if s else d for s, d in zip(self._items, data, strict=True)]


class _Values(_Shape):
    """``dict[str, X]``."""

    def __init__(self, item: _Shape) -> None:
        self._item = item

    def fits(self, value: Any) -> bool:
        return isinstance(value, Mapping)

    def fits_data(self, data: Any) -> bool:
        return isinstance(data, dict)

    def write(self, value: Any, data: Any) -> Any:
        if not isinstance(value, Mapping) or not isinstance(data, dict):
            return data
        return {k: self._item.write(value[k], d) if k in value else d for k, d in data.items()}

    def read(self, data: Any) -> Any:
        return {k: self._item.read(d) for k, d in data.items()} if isinstance(data, dict) else data


class _Fields(_Shape):
    """A Pydantic model or a dataclass: the fields that hold messages."""

    def __init__(self, cls: type[Any]) -> None:
        self._cls = cls
        self.fields: list[tuple[str, _Shape]] = []

    def fits(self, value: Any) -> bool:
        return isinstance(value, self._cls)

    def fits_data(self, data: Any) -> bool:
        return isinstance(data, dict)

    def write(self, value: Any, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        out = dict(data)
        for name, shape in self.fields:
            if name in out:
                out[name] = shape.write(getattr(value, name), out[name])
        return out

    def read(self, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        out = dict(data)
        for name, shape in self.fields:
            if name in out:
                out[name] = shape.read(out[name])
        return out


class _Union(_Shape):
    """A union: the member a value's own shape fits (a message first, by its ``type``)."""

    def __init__(self, members: list[_Shape]) -> None:
        self._members = members

    def fits(self, value: Any) -> bool:
        return any(m.fits(value) for m in self._members)

    def fits_data(self, data: Any) -> bool:
        return any(m.fits_data(data) for m in self._members)

    def write(self, value: Any, data: Any) -> Any:
        member = next((m for m in self._members if m.fits(value)), None)
        return data if member is None else member.write(value, data)

    def read(self, data: Any) -> Any:
        member = next((m for m in self._members if m.fits_data(data)), None)
        return data if member is None else member.read(data)


_model_shapes: dict[type[Any], _Fields | None] = {}


def _model_shape(cls: type[Any]) -> _Fields | None:
    """The shape of a Pydantic model or dataclass; None if no field of it holds messages."""
    if cls in _model_shapes:
        return _model_shapes[cls]
    shape = _model_shapes[cls] = _Fields(cls)  # a model that holds itself refers to this one
    shape.fields = [(name, s) for name, annotation in _field_annotations(cls) if (s := _shape(annotation))]
    if not shape.fields:
        _model_shapes[cls] = None
    return _model_shapes[cls]


def _field_annotations(cls: type[Any]) -> list[tuple[str, Any]]:
    if issubclass(cls, BaseModel):
        return [(name, field.annotation) for name, field in cls.model_fields.items()]
    hints = typing.get_type_hints(cls, include_extras=True)
    return [(field.name, hints.get(field.name, Any)) for field in dataclasses.fields(cls)]


def _shape(annotation: Any) -> _Shape | None:
    """The shape of ``annotation``'s values; None where they hold no AgentChat message."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _shape(args[0])
    if origin is typing.Union or origin is types.UnionType:
        return _union_shape(args)
    if origin in _SEQUENCES and args:
        return _sequence_shape(args)
    if origin in _MAPPINGS and len(args) == 2:
        item = _shape(args[1])
        return None if item is None else _Values(item)
    if not isinstance(annotation, type) or origin is not None:
        return None
    if issubclass(annotation, BaseMessage):
        return _Message((annotation,))
    if issubclass(annotation, BaseModel) or dataclasses.is_dataclass(annotation):
        return _model_shape(annotation)
    return None


def _union_shape(args: Sequence[Any]) -> _Shape | None:
    members = [arg for arg in args if arg is not type(None)]
    bases = tuple(m for m in members if isinstance(m, type) and issubclass(m, BaseMessage))
    shapes: list[_Shape] = [_Message(bases)] if bases else []
    shapes += [s for m in members if m not in bases and (s := _shape(m)) is not None]
    if not shapes:
        return None
    return shapes[0] if len(shapes) == 1 else _Union(shapes)


def _sequence_shape(args: Sequence[Any]) -> _Shape | None:
    if len(args) == 1 or (len(args) == 2 and args[1] is Ellipsis):
        item = _shape(args[0])
        return None if item is None else _Items(item)
    items = [_shape(arg) for arg in args]
    return _Positions(items) if any(items) else None
