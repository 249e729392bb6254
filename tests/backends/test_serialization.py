"""The msgspec path of the worker's serializers gives the same data as autogen's own serializer."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest
from autogen_core import JSON_DATA_CONTENT_TYPE, try_get_known_serializers_for_type
from autogen_core._serialization import SerializationRegistry
from hypothesis import given, settings
from hypothesis import strategies as st

from io_backends.worker._serialization import MessageSerializers


@dataclass
class Flat:
    text: str
    count: int
    ratio: float
    flag: bool
    tags: list[str]
    scores: dict[str, float]
    pair: tuple[int, str]


@dataclass
class Stamped:
    text: str
    at: datetime


@dataclass
class WithDerived:
    text: str
    size: int = field(init=False, default=0)


def _both(cls: type[Any]) -> tuple[MessageSerializers, SerializationRegistry]:
    ours, reference = MessageSerializers(), SerializationRegistry()
    ours.add_serializer(try_get_known_serializers_for_type(cls))
    reference.add_serializer(try_get_known_serializers_for_type(cls))
    return ours, reference


def _name(cls: type[Any]) -> str:
    return cls.__name__


floats = st.floats()  # NaN and infinities included: json.dumps writes those as NaN / Infinity
texts = st.text()  # lone surrogates included: msgspec refuses them, json.dumps escapes them
flat_messages = st.builds(
    Flat,
    texts,
    st.integers(min_value=-(2**80), max_value=2**80),
    floats,
    st.booleans(),
    st.lists(texts, max_size=3),
    st.dictionaries(texts, floats, max_size=3),
    st.tuples(st.integers(), texts),
)


def _same(a: object, b: object) -> bool:
    """Equal, counting NaN equal to NaN (and tuples equal to the lists JSON turns them into)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if type(a) is type(b) and hasattr(a, "__dataclass_fields__"):
        return all(_same(getattr(a, k), getattr(b, k)) for k in a.__dataclass_fields__)
    return bool(a == b)


@settings(max_examples=300, deadline=None)
@given(flat_messages)
def test_what_we_send_reads_back_as_what_autogen_sends(message: Flat) -> None:
    ours, reference = _both(Flat)
    kw = {"type_name": _name(Flat), "data_content_type": JSON_DATA_CONTENT_TYPE}
    expected = reference.deserialize(reference.serialize(message, **kw), **kw)
    sent = ours.serialize(message, **kw)
    assert _same(json.loads(sent), json.loads(reference.serialize(message, **kw)))
    assert _same(reference.deserialize(sent, **kw), expected)
    assert _same(ours.deserialize(sent, **kw), expected)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=60), flat_messages.map(lambda m: json.dumps(m.__dict__).encode())))
def test_what_we_read_is_what_autogen_reads(payload: bytes) -> None:
    ours, reference = _both(Flat)
    kw = {"type_name": _name(Flat), "data_content_type": JSON_DATA_CONTENT_TYPE}
    try:
        expected: object = reference.deserialize(payload, **kw)
    except Exception as exc:
        with pytest.raises(type(exc)):
            ours.deserialize(payload, **kw)
    else:
        assert _same(ours.deserialize(payload, **kw), expected)


def test_fields_msgspec_cannot_stand_in_for_go_through_autogen() -> None:
    kw = {"type_name": _name(Stamped), "data_content_type": JSON_DATA_CONTENT_TYPE}
    ours, _ = _both(Stamped)
    with pytest.raises(TypeError):  # json.dumps refuses a datetime; msgspec would have written it
        ours.serialize(Stamped("x", datetime(2026, 1, 1)), **kw)
    ours, reference = _both(WithDerived)
    kw["type_name"] = _name(WithDerived)
    assert ours.serialize(WithDerived("x"), **kw) == reference.serialize(WithDerived("x"), **kw)  # keeps "size"


def test_a_type_registered_again_with_another_serializer_is_left_to_it() -> None:
    class Upper:
        data_content_type = JSON_DATA_CONTENT_TYPE
        type_name = _name(Flat)

        def serialize(self, message: Any) -> bytes:
            return b'"custom"'

        def deserialize(self, payload: bytes) -> Any:
            return "custom"

    ours, _ = _both(Flat)
    ours.add_serializer(Upper())  # type: ignore[arg-type]
    kw = {"type_name": _name(Flat), "data_content_type": JSON_DATA_CONTENT_TYPE}
    assert ours.serialize(Flat("a", 1, 1.0, True, [], {}, (1, "b")), **kw) == b'"custom"'
    assert ours.deserialize(b"{}", **kw) == "custom"
