"""The worker's message serializers: autogen's registry, with msgspec doing the common case faster.

Most messages agents exchange are plain dataclasses, serialized by autogen's
``DataclassJsonMessageSerializer`` as ``json.dumps(asdict(message))`` and read back as
``cls(**json.loads(payload))``. msgspec does the same 10 to 30 times faster when sending and 3
to 4 times faster when reading (measured on a 100-byte and a 1 MB message). It is used only
where the outcome is the same:

* sending, for a dataclass whose fields (all of them ``init`` fields) are annotated with
  ``str``, ``int``, ``float``, ``bool`` and ``list``/``tuple``/``dict[str, ...]`` of those: the
  JSON text differs only in spacing and in not escaping non-ASCII characters, which any JSON
  reader reads as the same data. A value ``json.dumps`` would write differently (a NaN or an
  infinite float, which msgspec writes as ``null``) or that msgspec cannot write sends the
  message through autogen's serializer instead. (A value outside its annotation that
  ``json.dumps`` would refuse, such as a ``datetime`` in a ``str`` field, is written by msgspec
  as a string.)
* reading, for every ``DataclassJsonMessageSerializer``: msgspec parses the payload into the
  same dicts, lists and scalars as ``json.loads``; anything it will not parse (``NaN``, a lone
  surrogate escape, invalid UTF-8, ...) goes to autogen's serializer, which decides as before.

Every other serializer, and a type registered again with another serializer, is autogen's alone.

Reading a received payload (:meth:`MessageSerializers.read`) never returns autogen's
``UnknownPayload``: a payload no serializer here can read raises :class:`UnreadablePayload`,
whose message names the type, the content type and the serializer to register. Content types
are compared as ``docs/PROTOCOL.md`` section 3.2 says (:func:`sansio_runtime.reader_content_types`).

One substitution, once ``autogen_agentchat`` is imported: autogen's Pydantic serializer cannot
read back a model whose fields hold AgentChat messages (typed with the abstract
``BaseChatMessage``), so such a model gets ``io_backends.agentchat``'s MessageFactory-aware
serializer instead, with serializers for the other events AgentChat's teams publish
(:func:`_for_agentchat`).
"""

from __future__ import annotations

import dataclasses
import difflib
import sys
import typing
from collections.abc import Sequence
from typing import Any

import msgspec
from autogen_core import JSON_DATA_CONTENT_TYPE, PROTOBUF_DATA_CONTENT_TYPE, MessageSerializer

from sansio_runtime import NONE_PAYLOAD, Payload, media_type, reader_content_types

from .._compat import DataclassJsonMessageSerializer, PydanticJsonMessageSerializer, SerializationRegistry

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode
_SCALARS = (str, int, bool)


class UnreadablePayload(Exception):
    """No serializer here can read a payload; the message says why and what to register."""

    def __init__(self, payload: Payload, reason: str) -> None:
        super().__init__(reason)
        self.payload = payload


class MessageSerializers(SerializationRegistry):
    """autogen's ``SerializationRegistry``, with the fast dataclass path described above."""

    def __init__(self) -> None:
        super().__init__()
        # type name -> (the dataclass, whether it may hold floats; None: send it through autogen's)
        self._dataclass_json: dict[str, tuple[type[Any], bool | None]] = {}
        self._content_types: dict[str, set[str]] = {}  # type name -> media types it has serializers for

    def add_serializer(self, serializer: MessageSerializer[Any] | Sequence[MessageSerializer[Any]]) -> None:
        if isinstance(serializer, Sequence):
            for one in serializer:
                self.add_serializer(one)
            return
        for one in _for_agentchat(serializer):
            declared = one.data_content_type
            own = media_type(declared)
            super().add_serializer(one if own == declared else _AsMediaType(one, own))
            self._content_types.setdefault(one.type_name, set()).add(own)
            if own != JSON_DATA_CONTENT_TYPE:
                continue
            if type(one) is DataclassJsonMessageSerializer:  # exactly autogen's: a subclass may differ
                cls: type[Any] = one.cls
                self._dataclass_json[one.type_name] = (cls, _floats_in(cls))
            else:
                self._dataclass_json.pop(one.type_name, None)

    def payload_of(self, message: Any, data_type: str, preferred_format: str) -> Payload:
        """``message`` serialized as the ``preferred_format`` (``payload_serialization_format=``) if
        ``data_type`` has a serializer for it here, else as one it has.

        gRPC's runtime sends every RPC payload as JSON whatever the format, so a protobuf-format
        worker must still be able to exchange dataclasses (and a JSON one protobuf messages).
        """
        content_type = preferred_format
        for candidate in (preferred_format, JSON_DATA_CONTENT_TYPE, PROTOBUF_DATA_CONTENT_TYPE):
            if self.is_registered(data_type, candidate):
                content_type = candidate
                break
        return Payload(
            data_type, content_type, self.serialize(message, type_name=data_type, data_content_type=content_type)
        )

    def result_payload(self, result: Any, preferred_format: str) -> Payload:
        """A handler's result as its answer's payload (``None`` is :data:`~sansio_runtime.NONE_PAYLOAD`)."""
        if result is None:
            return NONE_PAYLOAD
        return self.payload_of(result, self.type_name(result), preferred_format)

    def content_types(self, type_name: str) -> set[str]:
        """The media types ``type_name`` has serializers for here."""
        return self._content_types.get(type_name, set())

    def serialize(self, message: Any, *, type_name: str, data_content_type: str) -> bytes:
        entry = self._dataclass_json.get(type_name) if data_content_type == JSON_DATA_CONTENT_TYPE else None
        if entry is not None and entry[1] is not None:
            data = _as_json_dumps_would(message, may_hold_floats=entry[1])
            if data is not None:
                return data
        if not self.is_registered(type_name, data_content_type):
            raise ValueError(
                f"Unknown type {type_name} with content type {data_content_type}: "
                + self._advice(type_name, data_content_type, "this worker")
            )
        # Anything else: autogen's serializer writes it, or raises its own error.
        return super().serialize(message, type_name=type_name, data_content_type=data_content_type)

    def read(self, payload: Payload, where: str) -> Any:
        """The message in a received ``payload``. ``where`` names this worker in the error's message
        (e.g. "this worker", "the worker hosting 'echo'").

        Raises :class:`UnreadablePayload` when no serializer here reads its type name and content
        type, or when that serializer fails on the bytes.
        """
        type_name = payload.data_type
        if payload.is_none:
            return None
        for content_type in reader_content_types(payload.data_content_type):
            if self.is_registered(type_name, content_type):
                try:
                    return self.deserialize(payload.data, type_name=type_name, data_content_type=content_type)
                except Exception as exc:
                    raise UnreadablePayload(
                        payload,
                        f"the serializer for type {type_name!r} ({content_type}) on {where} cannot read the "
                        f"payload: {type(exc).__name__}: {exc}; the sender and {where} must register the "
                        "same message class",
                    ) from exc
        raise UnreadablePayload(payload, self._advice(type_name, payload.data_content_type, where))

    def _advice(self, type_name: str, content_type: str, where: str) -> str:
        """Why ``where`` has no serializer for ``type_name`` as ``content_type``, and what to register."""
        others = sorted(self.content_types(type_name))
        if others:
            return (
                f"{where} has serializers for type {type_name!r} only as {', '.join(others)}, not as "
                f"{content_type!r}: register one for {content_type!r} there, or give both sides the same "
                "payload_serialization_format="
            )
        missing = f"{where} has no serializer for type {type_name!r} ({content_type})"
        known = list(self._content_types)
        close = [k for k in known if k.lower() == type_name.lower()] or difflib.get_close_matches(type_name, known, 1)
        if close:
            return f"{missing}, but has one for {close[0]!r}: is the type name misspelled?"
        hint = f"try_get_known_serializers_for_type({type_name.rsplit('.', 1)[-1] or type_name})"
        return f"{missing}; register one there with runtime.add_message_serializer({hint})"

    def deserialize(self, payload: bytes, *, type_name: str, data_content_type: str) -> Any:
        entry = self._dataclass_json.get(type_name) if data_content_type == JSON_DATA_CONTENT_TYPE else None
        if entry is not None:
            try:
                fields = _decode(payload)
            except msgspec.DecodeError:
                fields = None
            if isinstance(fields, dict):
                return entry[0](**fields)
        # Anything else: autogen's serializer reads it, or raises its own error.
        return super().deserialize(payload, type_name=type_name, data_content_type=data_content_type)


class _AsMediaType:
    """A serializer registered under its content type's media type (lower case, no parameters),
    the form received content types are compared in."""

    def __init__(self, serializer: MessageSerializer[Any], content_type: str) -> None:
        self._serializer = serializer
        self._content_type = content_type

    @property
    def data_content_type(self) -> str:
        return self._content_type

    @property
    def type_name(self) -> str:
        return self._serializer.type_name

    def deserialize(self, payload: bytes) -> Any:
        return self._serializer.deserialize(payload)

    def serialize(self, message: Any) -> bytes:
        return self._serializer.serialize(message)


def _for_agentchat(serializer: MessageSerializer[Any]) -> Sequence[MessageSerializer[Any]]:
    """What to register for ``serializer``: itself, or for a Pydantic model once AgentChat is
    imported, what ``io_backends.agentchat.serializers_in_place_of`` says.

    A model that holds AgentChat messages refers to ``autogen_agentchat.messages``, so while that
    is not imported there is nothing to look at (and io_backends never imports AgentChat itself).
    """
    if type(serializer) is not PydanticJsonMessageSerializer or "autogen_agentchat.messages" not in sys.modules:
        return (serializer,)
    from io_backends.agentchat import serializers_in_place_of

    return serializers_in_place_of(serializer)


def _as_json_dumps_would(message: Any, *, may_hold_floats: bool) -> bytes | None:
    """``message`` as msgspec writes it, or None where that is not the data ``json.dumps`` writes."""
    try:
        data = _encode(message)
    except Exception:
        return None
    if may_hold_floats and b"null" in data:  # a NaN or an infinity, which json.dumps writes as NaN
        return None
    return data


def _floats_in(cls: type[Any]) -> bool | None:
    """Whether ``cls``'s fields may hold floats; None if msgspec cannot stand in for json.dumps."""
    try:
        hints = typing.get_type_hints(cls)
        fields = dataclasses.fields(cls)
    except Exception:
        return None
    floats = False
    for field in fields:
        if not field.init:
            return None  # msgspec leaves it out; asdict keeps it
        kind = _plain(hints.get(field.name))
        if kind is None:
            return None
        floats = floats or kind
    return floats


def _plain(annotation: object) -> bool | None:
    """For a plain-JSON annotation, whether it admits floats; None for any other annotation."""
    if annotation is float:
        return True
    if annotation in _SCALARS:
        return False
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is list and len(args) == 1:
        return _plain(args[0])
    if origin is tuple and args:
        kinds = [_plain(arg) for arg in args if arg is not Ellipsis]
        return None if None in kinds else any(kinds)
    if origin is dict and len(args) == 2 and args[0] is str:
        return _plain(args[1])
    return None
