"""Shared helpers of the engine fuzz suites: decode what an engine sent, the way a peer would.

Every frame an engine emits is checked to be UTF-8, valid JSON (for both msgspec and the stdlib
``json`` module), and a well-formed JSON-RPC 2.0 message or non-empty batch of messages. It is
then *normalized* into plain tuples that tests compare against what their model expects:

* ``("ok", idkey, result_bytes)``                 a success response (``result`` byte for byte)
* ``("err", idkey, code, message, data_bytes)``   an error response (``data_bytes`` None if absent)
* ``("call", host_id, params_bytes)``             an ``agent.call`` request
* ``("cancel", id)``                              a ``$/cancelRequest`` notification
* ``("event", recipients, event_bytes)``          an ``agent.event`` notification
* ``("request", method, idkey, params_bytes)``    any other request or notification

``idkey`` keeps the JSON type of an id apart (``5`` and ``"5"`` are different ids).
Expected tuples may hold :data:`ANY` or :class:`Canon` where the exact bytes do not matter.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, Union

import msgspec
from hypothesis import strategies as st
from msgspec import UNSET, Raw, Struct, UnsetType

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)
"""Small JSON values for payloads, results and error data in the state machines."""

IdKey = Union[tuple[str, Union[int, str]], None]


def idkey(value: object) -> IdKey:
    """A hashable id that keeps 5 and "5" apart (and never confuses True with 1)."""
    if value is None:
        return None
    assert not isinstance(value, bool), value
    if isinstance(value, int):
        return ("int", value)
    assert isinstance(value, str), value
    return ("str", value)


class _Any:
    """Equal to anything (for members whose exact value the model does not predict)."""

    def __eq__(self, other: object) -> bool:
        return True

    def __hash__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return "ANY"


ANY: Any = _Any()


class Canon:
    """Equal to JSON bytes that decode to ``value`` (when key order or spacing is not specified)."""

    def __init__(self, value: object) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Canon):
            return bool(self.value == other.value)
        if isinstance(other, (bytes, bytearray)):
            return bool(json.loads(other) == self.value)
        return NotImplemented

    def __hash__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return f"Canon({self.value!r})"


# ------------------------------------------------------------------------------------------------
# Strict decoding of what an engine sends (independent of the engine's own wire structs)


class _Message(Struct, forbid_unknown_fields=True):
    jsonrpc: str
    id: Union[int, str, UnsetType, None] = UNSET
    method: Union[str, UnsetType] = UNSET
    params: Union[Raw, UnsetType] = UNSET
    result: Union[Raw, UnsetType] = UNSET
    error: Union[Raw, UnsetType] = UNSET


class _Error(Struct, forbid_unknown_fields=True):
    code: int
    message: str
    data: Union[Raw, UnsetType] = UNSET


class _Cancel(Struct, forbid_unknown_fields=True):
    id: Union[int, str]


class _Delivery(Struct, forbid_unknown_fields=True):
    recipients: list[str]
    event: Raw


_FRAME = msgspec.json.Decoder(Union[_Message, list[_Message]])
_ERROR = msgspec.json.Decoder(_Error)
_CANCEL = msgspec.json.Decoder(_Cancel)
_DELIVERY = msgspec.json.Decoder(_Delivery)


def _strict_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _any_int(digits: str) -> object:
    return int(digits) if len(digits) <= 4300 else digits  # past the stdlib's int conversion limit


def check_json_text(data: bytes) -> object:
    """Assert ``data`` is UTF-8 JSON text by the letter of RFC 8259; return the decoded value."""
    text = data.decode("utf-8")  # raises on bad UTF-8
    return json.loads(text, parse_constant=_strict_constant, parse_int=_any_int)


def normalize_message(m: _Message) -> tuple[Any, ...]:
    assert m.jsonrpc == "2.0", m
    if not isinstance(m.method, UnsetType):
        assert isinstance(m.result, UnsetType) and isinstance(m.error, UnsetType), m
        assert not isinstance(m.params, UnsetType), f"{m.method} without params"
        params = bytes(m.params)
        if m.method == "agent.call":
            assert isinstance(m.id, int) and not isinstance(m.id, bool), m
            return ("call", m.id, params)
        if m.method == "$/cancelRequest":
            assert isinstance(m.id, UnsetType), "$/cancelRequest is always a notification"
            return ("cancel", _CANCEL.decode(params).id)
        if m.method == "agent.event":
            assert isinstance(m.id, UnsetType), "agent.event is always a notification"
            delivery = _DELIVERY.decode(params)
            assert delivery.recipients, "an agent.event with no recipients"
            assert delivery.recipients == sorted(set(delivery.recipients)), delivery.recipients
            return ("event", tuple(delivery.recipients), bytes(delivery.event))
        rid = None if isinstance(m.id, UnsetType) else idkey(m.id)
        return ("request", m.method, rid, params)
    assert not isinstance(m.id, UnsetType), f"a response without id: {m}"
    assert isinstance(m.result, UnsetType) != isinstance(m.error, UnsetType), m
    if not isinstance(m.result, UnsetType):
        assert m.id is not None, "a success response with id null"
        return ("ok", idkey(m.id), bytes(m.result))
    assert not isinstance(m.error, UnsetType)
    error = _ERROR.decode(m.error)
    data = None if isinstance(error.data, UnsetType) else bytes(error.data)
    return ("err", idkey(m.id), error.code, error.message, data)


def normalize_frame(data: bytes) -> tuple[str, Any]:
    """``("single", message)`` or ``("batch", [message, ...])`` for one frame an engine sent."""
    check_json_text(data)
    frame = _FRAME.decode(data)
    if isinstance(frame, list):
        assert frame, "an empty batch was sent"
        return ("batch", [normalize_message(m) for m in frame])
    return ("single", normalize_message(frame))


def error_codes(frame: tuple[str, Any]) -> list[int]:
    """The error codes in one normalized frame (asserting every message in it is an error)."""
    kind, body = frame
    messages = body if kind == "batch" else [body]
    codes = []
    for m in messages:
        assert m[0] == "err", f"expected an error, got {m}"
        codes.append(m[2])
    return codes


# ------------------------------------------------------------------------------------------------
# Order-insensitive comparison with wildcards


def match_multiset(expected: Sequence[Any], actual: Sequence[Any], eq: Callable[[Any, Any], bool]) -> bool:
    """Whether ``actual`` is a permutation of ``expected`` under ``eq`` (greedy; wildcards are rare)."""
    if len(expected) != len(actual):
        return False
    left = list(expected)
    for a in actual:
        for i, e in enumerate(left):
            if eq(e, a):
                del left[i]
                break
        else:
            return False
    return True


def frame_eq(expected: tuple[str, Any], actual: tuple[str, Any]) -> bool:
    if expected[0] != actual[0]:
        return False
    if expected[0] == "batch":
        return match_multiset(expected[1], actual[1], lambda e, a: bool(e == a))
    return bool(expected[1] == actual[1])
