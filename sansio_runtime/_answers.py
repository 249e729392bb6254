"""The host's own answers: a request's success, and the size budget of one answer.

The answer to one message (a single response, or a batch's array; on ``/v1/rpc`` the whole body)
never takes more than the message size limit for its entries: an entry that would not fit after
those before it is replaced by a short PAYLOAD_TOO_LARGE error for its id (docs/PROTOCOL.md 2.5).
"""

from __future__ import annotations

from msgspec import UnsetType

from . import _wire as wire
from ._errors import ErrorCode
from ._wire import RequestId


def ok(msg_id: RequestId | UnsetType) -> bytes | None:
    """The success answer (``null``) of a request; a notification gets none."""
    return None if isinstance(msg_id, UnsetType) else wire.response(msg_id, None)


def fit_answer(reply: bytes, request_id: RequestId | UnsetType | None, used: int, limit: int) -> bytes:
    """``reply`` itself if the answer it goes into (``used`` bytes so far) stays within ``limit``
    with it, else the PAYLOAD_TOO_LARGE error that takes its place."""
    if used + len(reply) <= limit:
        return reply
    message = (
        f"the answer ({len(reply)} bytes) would make the reply exceed the message size limit of "
        f"{limit} bytes: ask for less in one message"
    )
    return wire.error_response(
        None if isinstance(request_id, UnsetType) else request_id, ErrorCode.PAYLOAD_TOO_LARGE, message
    )


__all__ = ["fit_answer", "ok"]
