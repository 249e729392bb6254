"""Reading what arrives: one frame into a message or a batch, and the parts of errors the engines look into.

Both engines read every frame through :func:`decode_frame`, so a frame is valid or invalid the
same way on both sides, and answered with the same error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import msgspec
from msgspec import Raw, UnsetType

from ._errors import ErrorCode
from ._wire import (
    FRAME_DECODER,
    MESSAGE_DECODER,
    RPC_ERROR_DECODER,
    HandlerErrorData,
    IncomingMessage,
    RpcError,
)

_json_validator: Final = msgspec.json.Decoder()

HANDLER_ERROR_DATA_DECODER: Final = msgspec.json.Decoder(HandlerErrorData)


def handler_error_of(error: RpcError) -> HandlerErrorData | None:
    """What a remote handler raised, read from the ``data`` of a HANDLER_ERROR (None for any
    other error, or when the data is missing or not that shape)."""
    if error.code != ErrorCode.HANDLER_ERROR or isinstance(error.data, UnsetType):
        return None
    try:
        return HANDLER_ERROR_DATA_DECODER.decode(error.data)
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
        return None


def is_unreadable_report(error: Raw) -> bool:
    """Whether an ``error`` member (of a worker's id-null error) reports an event it could not read."""
    try:
        return RPC_ERROR_DECODER.decode(error).code == ErrorCode.UNREADABLE_PAYLOAD
    except (msgspec.ValidationError, RecursionError):
        return False


@dataclass(frozen=True, slots=True)
class BadFrame:
    """A frame (or a batch entry) that is not a JSON-RPC message: the error that answers it."""

    code: ErrorCode
    message: str


def decode_frame(data: bytes | str) -> IncomingMessage | list[Raw] | BadFrame:
    """One frame as either engine reads it: a message, a batch of still-undecoded entries, or why not.

    Bad UTF-8 is refused here even inside the parts msgspec would keep as ``Raw`` without looking:
    the host forwards those into other clients' text frames, which bad bytes would break.
    """
    try:
        if not isinstance(data, str) and not data.isascii():
            data.decode("utf-8")
        return FRAME_DECODER.decode(data)
    except msgspec.ValidationError as exc:
        syntax = json_syntax_error(data)  # a type mismatch may come before a syntax error
        if syntax is None:
            return BadFrame(ErrorCode.INVALID_REQUEST, f"not a JSON-RPC 2.0 message: {exc}")
        return BadFrame(ErrorCode.PARSE_ERROR, f"invalid JSON: {syntax}")
    # UnicodeError: bad UTF-8, or lone surrogates in a str; RecursionError: nested too deeply to parse
    except (msgspec.DecodeError, UnicodeError, RecursionError) as exc:
        return BadFrame(ErrorCode.PARSE_ERROR, f"invalid JSON: {exc}")


def decode_batch_entry(entry: Raw) -> IncomingMessage | BadFrame:
    """One entry of a batch (already known to be valid JSON)."""
    try:
        return MESSAGE_DECODER.decode(entry)
    except msgspec.ValidationError as exc:
        return BadFrame(ErrorCode.INVALID_REQUEST, f"not a JSON-RPC 2.0 message: {exc}")


def decode_error_data(error: RpcError) -> object:
    """The decoded ``data`` member of an error, or None when it has none."""
    if isinstance(error.data, UnsetType):
        return None
    return _json_validator.decode(error.data)


def json_syntax_error(data: bytes | str) -> str | None:
    """Why ``data`` is not one JSON text, or None if it is.

    A typed msgspec decoder reports a member of the wrong type (ValidationError) as soon as it meets
    it, before it reaches a syntax error further on; this tells such a frame apart from real JSON.
    """
    try:
        _json_validator.decode(data)
    except (msgspec.DecodeError, UnicodeError) as exc:
        return str(exc)
    except RecursionError:
        return "nested too deeply"
    return None


__all__ = [
    "BadFrame",
    "decode_batch_entry",
    "decode_error_data",
    "decode_frame",
    "handler_error_of",
    "is_unreadable_report",
    "json_syntax_error",
]
