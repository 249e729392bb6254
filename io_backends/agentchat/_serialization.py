"""Serializers that rebuild AgentChat's messages, where autogen's Pydantic serializer cannot.

AgentChat's group-chat events (``GroupChatStart``, ``GroupChatAgentResponse``, ...) and its
``Response`` and ``TaskResult`` hold their messages in fields typed with the abstract
``BaseChatMessage`` and ``BaseAgentEvent``. autogen's ``PydanticJsonMessageSerializer`` writes
them in full, but reads them back with ``model_validate_json``, which tries to build the abstract
class itself and fails with a ``TypeError``. AgentChat's own answer is ``MessageFactory``: every
message carries its class name in its ``type`` field, and the factory builds that class.

:class:`MessageFactorySerializer` does the same for any Pydantic model whose fields (at any depth:
lists, unions, nested models and dataclasses) hold AgentChat messages: it parses the JSON, builds
each message from its ``type`` (with the class's own ``load``, as ``MessageFactory.create`` does),
and validates the model around the built messages. Pydantic keeps an instance handed to a field
typed with one of its base classes, so nothing is built twice.

The ``type`` names are resolved among the message classes defined in this process, so custom
message types (the ones a team registers with ``custom_message_types``) are found as soon as their
module is imported, on either side of the wire; ``StructuredMessage[Plan]`` is made from
``StructuredMessage`` and the ``Plan`` model where no one made it yet. Two classes with the same
name are refused with a clear error, never guessed.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import inspect
import re
import types
import typing
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import msgspec
from autogen_agentchat.messages import BaseAgentEvent, BaseChatMessage, BaseMessage
from autogen_core import JSON_DATA_CONTENT_TYPE, MessageSerializer, try_get_known_serializers_for_type
from pydantic import BaseModel

ModelT = TypeVar("ModelT", bound=BaseModel)
Convert = Callable[[Any], Any]
"""Turns the JSON value of one field into the value to validate (messages built); None: unchanged."""

_GENERIC = re.compile(r"(\w+)\[([\w, ]+)\]\Z")  # StructuredMessage[Plan]
_SEQUENCES = {list, tuple, set, frozenset, collections.abc.Sequence, collections.abc.MutableSequence}
_MAPPINGS = {dict, collections.abc.Mapping, collections.abc.MutableMapping}


class MessageFactorySerializer(MessageSerializer[ModelT]):
    """A JSON serializer for a Pydantic model that holds AgentChat messages (see the module docstring).

    Registered by ``HttpWorkerAgentRuntime`` by itself in place of autogen's serializer for such a
    model; use :func:`serializer_for` to make one for another runtime.
    """

    def __init__(self, cls: type[ModelT], type_name: str | None = None) -> None:
        convert = _model_converter(cls)
        if convert is None:
            raise ValueError(f"{cls.__qualname__} holds no AgentChat messages: autogen's serializer reads it")
        self.cls = cls
        self._convert = convert
        self._type_name = type_name or cls.__name__

    @property
    def data_content_type(self) -> str:
        return JSON_DATA_CONTENT_TYPE

    @property
    def type_name(self) -> str:
        return self._type_name

    def serialize(self, message: ModelT) -> bytes:
        # serialize_as_any: a message in a field typed with a base class is written in full even
        # where the model's author did not annotate the field with SerializeAsAny.
        return message.model_dump_json(serialize_as_any=True).encode("utf-8")

    def deserialize(self, payload: bytes) -> ModelT:
        try:
            data = msgspec.json.decode(payload)
        except msgspec.DecodeError as exc:
            raise ValueError(f"a {self._type_name} payload is not valid JSON: {exc}") from None
        return self.cls.model_validate(self._convert(data))


def serializer_for(serializer: MessageSerializer[Any]) -> MessageSerializer[Any]:
    """The serializer to register instead of ``serializer``: a :class:`MessageFactorySerializer`
    for a Pydantic model that holds AgentChat messages, else ``serializer`` itself."""
    cls = getattr(serializer, "cls", None)
    if (
        serializer.data_content_type == JSON_DATA_CONTENT_TYPE
        and isinstance(cls, type)
        and issubclass(cls, BaseModel)
        and _model_converter(cls) is not None
    ):
        return MessageFactorySerializer(cls, serializer.type_name)
    return serializer


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


# ---------------------------------------------------------------------------- message classes


class _MessageClasses:
    """AgentChat message classes by ``type`` name (the class ``__name__``, as MessageFactory keys them)."""

    def __init__(self) -> None:
        self._by_name: dict[str, type[BaseMessage]] = {}
        self._ambiguous: dict[str, list[type[BaseMessage]]] = {}

    def resolve(self, name: object, bases: tuple[type[BaseMessage], ...]) -> type[BaseMessage]:
        if not isinstance(name, str):
            raise ValueError(f"an AgentChat message needs its class name in a 'type' field, got {name!r}")
        cls = self._by_name.get(name)
        if cls is None and name not in self._ambiguous:
            self._rescan()  # a class defined (or a StructuredMessage[...] made) since the last look
            cls = self._by_name.get(name)
            generic = _GENERIC.match(name)
            if cls is None and generic is not None:
                cls = self._parametrize(generic[1], generic[2].split(","), name)
        if name in self._ambiguous:
            found = ", ".join(f"{c.__module__}.{c.__qualname__}" for c in self._ambiguous[name])
            raise ValueError(f"more than one AgentChat message class is named {name!r} ({found}): rename one")
        if cls is None:
            raise ValueError(
                f"unknown AgentChat message type {name!r}: import the module that defines it in this process "
                "too (and list it in the team's custom_message_types)"
            )
        if not issubclass(cls, bases):
            expected = " or ".join(base.__name__ for base in bases)
            raise ValueError(f"an AgentChat message of type {name!r} where a {expected} belongs")
        return cls

    def _parametrize(self, base_name: str, arg_names: list[str], name: str) -> type[BaseMessage] | None:
        """``StructuredMessage[Plan]`` where no one made it yet in this process, but ``Plan`` is defined."""
        base = self._by_name.get(base_name)
        if base is None or len(base.__pydantic_generic_metadata__["parameters"]) != len(arg_names):
            return None
        args = [_model_named(arg.strip()) for arg in arg_names]
        if None in args:
            return None
        cls: type[BaseMessage] = base[tuple(args) if len(args) > 1 else args[0]]  # type: ignore[index]
        if cls.__name__ != name:
            return None
        self._by_name[name] = cls
        return cls

    def _rescan(self) -> None:
        by_name: dict[str, type[BaseMessage]] = {}
        ambiguous: dict[str, list[type[BaseMessage]]] = {}
        for cls in _concrete_message_classes():
            other = by_name.setdefault(cls.__name__, cls)
            if other is not cls:
                ambiguous.setdefault(cls.__name__, [other]).append(cls)
        self._by_name, self._ambiguous = by_name, ambiguous


def _model_named(name: str) -> type[BaseModel] | None:
    """The one Pydantic model class named ``name`` in this process (None if there is none)."""
    found: list[type[BaseModel]] = []
    seen: set[type[BaseModel]] = set()
    stack: list[type[BaseModel]] = [BaseModel]
    while stack:
        for sub in stack.pop().__subclasses__():
            if sub not in seen:
                seen.add(sub)
                stack.append(sub)
                if sub.__name__ == name:
                    found.append(sub)
    if len(found) > 1:
        listed = ", ".join(f"{c.__module__}.{c.__qualname__}" for c in found)
        raise ValueError(f"more than one Pydantic model is named {name!r} ({listed}): rename one")
    return found[0] if found else None


def _concrete_message_classes() -> Iterator[type[BaseMessage]]:
    seen: set[type[BaseMessage]] = set()
    stack: list[type[BaseMessage]] = [BaseChatMessage, BaseAgentEvent]  # type: ignore[type-abstract]
    while stack:
        for sub in stack.pop().__subclasses__():
            if sub in seen:
                continue
            seen.add(sub)
            stack.append(sub)
            if not inspect.isabstract(sub):  # StructuredMessage itself included: agents list it as produced
                yield sub


_CLASSES = _MessageClasses()


def message_class(name: object, bases: tuple[type[BaseMessage], ...] = (BaseChatMessage, BaseAgentEvent)) -> type[Any]:
    """The AgentChat message class named ``name`` in this process, one of ``bases``; ValueError if none or several."""
    return _CLASSES.resolve(name, bases)


# ---------------------------------------------------------------------------- converters

_converters: dict[type[Any], Convert | None] = {}


def _model_converter(cls: type[Any]) -> Convert | None:
    """For a Pydantic model or a dataclass: converts its JSON object's fields that hold messages."""
    if cls in _converters:
        return _converters[cls]
    _converters[cls] = None  # a model that refers to itself: the inner reference is left to Pydantic
    fields = [(name, c) for name, annotation in _field_annotations(cls) if (c := _converter(annotation))]
    _converters[cls] = _fields_converter(fields) if fields else None
    return _converters[cls]


def _fields_converter(fields: list[tuple[str, Convert]]) -> Convert:
    def convert(value: Any) -> Any:
        if not isinstance(value, dict):
            return value  # Pydantic reports what is wrong with it
        out = dict(value)
        for name, field_convert in fields:
            if name in out:
                out[name] = field_convert(out[name])
        return out

    return convert


def _field_annotations(cls: type[Any]) -> list[tuple[str, Any]]:
    if issubclass(cls, BaseModel):
        return [(name, field.annotation) for name, field in cls.model_fields.items()]
    hints = typing.get_type_hints(cls, include_extras=True)
    return [(field.name, hints.get(field.name, Any)) for field in dataclasses.fields(cls)]


def _converter(annotation: Any) -> Convert | None:
    """How to convert a JSON value of ``annotation``; None where it holds no AgentChat message."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _converter(args[0])
    if origin is typing.Union or origin is types.UnionType:
        return _union_converter(args)
    if origin in _SEQUENCES and args:
        return _sequence_converter(args)
    if origin in _MAPPINGS and len(args) == 2:
        return _mapping_converter(args[1])
    if not isinstance(annotation, type) or origin is not None:
        return None
    if issubclass(annotation, BaseMessage):
        return _message_converter((annotation,))
    if issubclass(annotation, BaseModel) or dataclasses.is_dataclass(annotation):
        return _model_converter(annotation)
    return None


def _message_converter(bases: tuple[type[BaseMessage], ...]) -> Convert:
    def convert(value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        cls = _CLASSES.resolve(value.get("type"), bases)
        inner = _model_converter(cls)  # a message class may itself hold messages
        return cls.load(inner(value) if inner is not None else value)

    return convert


def _union_converter(args: tuple[Any, ...]) -> Convert | None:
    members = [arg for arg in args if arg is not type(None)]
    messages = tuple(m for m in members if isinstance(m, type) and issubclass(m, BaseMessage))
    others = [c for m in members if m not in messages and (c := _converter(m)) is not None]
    if not messages and not others:
        return None
    if not others:
        return _message_converter(messages)
    if not messages and len(others) == 1:
        return others[0]
    as_message = _message_converter(messages) if messages else None

    def convert(value: Any) -> Any:  # a union of several shapes: pick by the value's own shape
        if as_message is not None and isinstance(value, dict) and "type" in value:
            return as_message(value)
        for other in others:
            converted = other(value)
            if converted is not value:
                return converted
        return value

    return convert


def _sequence_converter(args: tuple[Any, ...]) -> Convert | None:
    if len(args) == 1 or (len(args) == 2 and args[1] is Ellipsis):
        item = _converter(args[0])
        if item is None:
            return None
        return lambda value: [item(v) for v in value] if isinstance(value, list) else value
    items = [_converter(arg) for arg in args]  # tuple[X, Y]: one converter a position
    if not any(items):
        return None

    def convert(value: Any) -> Any:
        if not isinstance(value, list) or len(value) != len(items):
            return value
        return [c(v) if c else v for c, v in zip(items, value, strict=True)]

    return convert


def _mapping_converter(value_annotation: Any) -> Convert | None:
    item = _converter(value_annotation)
    if item is None:
        return None
    return lambda value: {k: item(v) for k, v in value.items()} if isinstance(value, dict) else value


def serializers_for(classes: Iterable[type[BaseModel]]) -> list[MessageSerializer[Any]]:
    """The serializers for ``classes``: a :class:`MessageFactorySerializer` where a class holds
    AgentChat messages, autogen's otherwise (for any runtime's ``add_message_serializer``)."""
    return [serializer_for(s) for cls in classes for s in try_get_known_serializers_for_type(cls)]
