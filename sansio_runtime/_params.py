"""Reading the params of a request the host received: decode them, or refuse the request.

The host reads only what it routes on (a call's target, payload form and deadline; an event's
envelope); everything else travels to the receiver untouched.

A method handler of the host raises :class:`Rejection` to answer its request with an error
instead of a result; everything here raises it for params that do not fit.
"""

from __future__ import annotations

from typing import TypeVar

import msgspec
from msgspec import Raw, UnsetType

from . import _wire as wire
from ._errors import ErrorCode
from ._limits import MAX_NAME_LENGTH

_T = TypeVar("_T")


class Rejection(Exception):
    """Raised inside a method handler: answer the request with this error."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def decode_params(decoder: msgspec.json.Decoder[_T], params: Raw | UnsetType) -> _T:
    """The params as ``decoder`` reads them; INVALID_PARAMS when they are missing or do not fit."""
    if isinstance(params, UnsetType):
        raise Rejection(ErrorCode.INVALID_PARAMS, "params are required")
    try:
        return decoder.decode(params)
    except (msgspec.ValidationError, RecursionError) as exc:  # RecursionError: nested too deeply to decode here
        raise Rejection(ErrorCode.INVALID_PARAMS, f"invalid params: {exc}") from None


def check_name_lengths(*names: str) -> None:
    """INVALID_PARAMS for a name longer than the host keeps (:data:`~._limits.MAX_NAME_LENGTH`)."""
    for name in names:
        if len(name) > MAX_NAME_LENGTH:
            raise Rejection(
                ErrorCode.INVALID_PARAMS, f"names are at most {MAX_NAME_LENGTH} characters, not {len(name)}"
            )


def check_placed_key(agent_type: str, key: str) -> None:
    """INVALID_PARAMS for a key of a shared type longer than the host keeps (it keeps every placed key)."""
    if len(key) > MAX_NAME_LENGTH:
        raise Rejection(
            ErrorCode.INVALID_PARAMS,
            f"keys of shared agent type {agent_type!r} are at most {MAX_NAME_LENGTH} characters, not {len(key)}",
        )


def read_call(params: Raw | UnsetType, now: float) -> tuple[wire.CallRouting, float | None]:
    """What the host reads of ``agent.call`` params, and the call's deadline (None: none)."""
    call = decode_params(wire.CALL_ROUTING_DECODER, params)
    if not wire.has_exactly_one_payload(call.data, call.data_base64):
        raise Rejection(ErrorCode.INVALID_PARAMS, "exactly one of data, data_base64 is required")
    if isinstance(call.timeout_ms, UnsetType):
        return call, None
    if call.timeout_ms <= 0:
        raise Rejection(ErrorCode.INVALID_PARAMS, "timeout_ms must be a positive integer")
    try:  # before any state changes: an int too large for a float must not leave a half-made call
        return call, now + call.timeout_ms / 1000.0
    except OverflowError:
        raise Rejection(ErrorCode.INVALID_PARAMS, "timeout_ms is too large") from None


def read_publish(params: Raw | UnsetType) -> wire.EventRouting:
    """What the host reads of ``agent.publish`` params (a CloudEvent)."""
    event = decode_params(wire.EVENT_ROUTING_DECODER, params)
    if event.specversion != wire.CLOUDEVENTS_SPEC_VERSION:
        raise Rejection(ErrorCode.INVALID_PARAMS, f'specversion must be "1.0", not {event.specversion!r}')
    if not wire.has_exactly_one_payload(event.data, event.data_base64):
        raise Rejection(ErrorCode.INVALID_PARAMS, "exactly one of data, data_base64 is required")
    return event


__all__ = ["Rejection", "check_name_lengths", "check_placed_key", "decode_params", "read_call", "read_publish"]
