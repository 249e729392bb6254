"""The error codes of the wire protocol, the WebSocket close codes, and the engine's own exception.

Every number here is part of the wire contract documented in ``docs/PROTOCOL.md``.
"""

from __future__ import annotations

from enum import IntEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # (the wire types import this module)
    from ._wire import RpcError


class ErrorCode(IntEnum):
    """JSON-RPC 2.0 error codes: the five standard ones and the protocol's own (-32001 ... -32099)."""

    PARSE_ERROR = -32700
    """The frame is not valid JSON."""
    INVALID_REQUEST = -32600
    """Valid JSON, but not a JSON-RPC 2.0 request, notification or response."""
    METHOD_NOT_FOUND = -32601
    """No such method (or not available on this endpoint)."""
    INVALID_PARAMS = -32602
    """The params do not match the method's schema."""
    INTERNAL_ERROR = -32603
    """A bug or an unexpected condition on the side that answers."""

    AGENT_TYPE_NOT_FOUND = -32001
    """No connected worker hosts the target agent type."""
    AGENT_TYPE_ALREADY_REGISTERED = -32002
    """Another connection (or this one) already registered the agent type."""
    TARGET_DISCONNECTED = -32003
    """The worker hosting the target went away before it answered."""
    HANDLER_ERROR = -32004
    """The target agent's handler raised; ``data`` holds ``{"exception_type", "message"}``."""
    CANCELLED = -32005
    """The caller cancelled the call (``$/cancelRequest``) or disconnected."""
    DEADLINE_EXCEEDED = -32006
    """The call's ``timeout_ms`` ran out before the target answered."""
    UNAUTHORIZED = -32007
    """The caller is not allowed to do this (wrong or missing credentials)."""
    PAYLOAD_TOO_LARGE = -32008
    """The message is larger than the receiver's limit."""
    SUBSCRIPTION_ALREADY_EXISTS = -32009
    """A subscription with this id is already registered."""
    SUBSCRIPTION_NOT_FOUND = -32010
    """No subscription has this id."""
    FORBIDDEN = -32011
    """The thing belongs to another connection (an agent type, a subscription)."""
    TOO_MANY_PENDING_CALLS = -32012
    """The caller already has the maximum number of calls in flight."""
    CONNECTION_LOST = -32013
    """The worker's own connection to the host was lost before the answer came (worker side only)."""
    AGENT_NOT_FOUND = -32014
    """The target worker hosts the type but could not create or find the agent (worker side)."""
    UNREADABLE_PAYLOAD = -32015
    """The receiver cannot read a payload: it has no serializer for its ``data_type`` and content
    type, or that serializer failed on the bytes. ``data`` holds ``{"data_type", "data_content_type"}``."""

    BATCH_TOO_LARGE = -32018
    """A batch has more entries than the host accepts in one message; none of them was processed."""
    TOO_MANY_AGENT_TYPES = -32019
    """The connection already registered the most agent types one connection may register."""
    TOO_MANY_SUBSCRIPTIONS = -32020
    """The connection already added the most subscriptions one connection may add."""


class CloseCode(IntEnum):
    """WebSocket close codes the host uses (RFC 6455 section 7.4 plus the protocol's 4xxx codes)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    """The host is shutting down."""
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    INVALID_PAYLOAD = 1007
    """A text frame was not valid UTF-8."""
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    """A message exceeded ``max_message_size``."""
    INTERNAL_ERROR = 1011
    SLOW_CONSUMER = 4008
    """The peer stopped reading and its outbound buffer filled up."""
    DUPLICATE_CLIENT = 4009
    """Another live connection already uses the client id this one asked for."""


class LocalProtocolError(Exception):
    """The caller of an engine used it wrongly (for example: answered a call that is not pending).

    Like h11's ``LocalProtocolError``: it is raised to the code driving the engine, never sent on the
    wire, and always means a bug on the local side.
    """


class PayloadTooLargeError(ValueError):
    """A message would exceed the engine's ``max_message_size`` and was not queued.

    :attr:`error` is the PAYLOAD_TOO_LARGE error the caller gets.
    """

    def __init__(self, error: RpcError) -> None:
        super().__init__(error.message)
        self.error = error


CLOSED_WITH: dict[int, tuple[ErrorCode, str]] = {
    # What a worker's pending requests fail with when the host ends the connection with a close code.
    CloseCode.GOING_AWAY: (ErrorCode.CONNECTION_LOST, "the host shut down (close 1001) before it answered"),
    CloseCode.MESSAGE_TOO_BIG: (
        ErrorCode.PAYLOAD_TOO_LARGE,
        "the host closed the connection (1009) because a message was over its size limit; set the "
        "worker's max_message_size= to at most the host's",
    ),
    CloseCode.SLOW_CONSUMER: (
        ErrorCode.CONNECTION_LOST,
        "the host cut the connection off (4008) because this worker stopped reading",
    ),
}
