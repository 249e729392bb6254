"""The small immutable things the engines hand back to the code that drives them.

Host side: :class:`Send` and :class:`Close` are instructions for the backend.
Worker side: the other classes are events the worker runtime reacts to.

They are frozen msgspec Structs (built in C: a few are made for every message), except
:class:`CallFailed`, a frozen dataclass that derives one field from another.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, NewType, Union

import msgspec

from ._errors import CloseCode
from ._frames import handler_error_of
from ._wire import AgentRef, HandlerErrorData, RpcError, SubscriptionSpec

ClientId = NewType("ClientId", int)
"""The host engine's handle for one connection (a WebSocket channel or one HTTP request)."""


# ------------------------------------------------------------------------------------------
# Host engine outputs


class Send(msgspec.Struct, frozen=True, gc=False):
    """Send ``data`` (one JSON-RPC message or batch, UTF-8 JSON) to ``client`` as one frame."""

    client: ClientId
    data: bytes


class Close(msgspec.Struct, frozen=True, gc=False):
    """Close the connection of ``client`` with a WebSocket close ``code`` (a ``/v1/rpc`` client is
    answered with the HTTP status of that code).

    The engine already treats the client as closing; the backend closes the socket and then calls
    ``HostEngine.disconnect``.
    """

    client: ClientId
    code: CloseCode
    reason: str


HostOutput = Union[Send, Close]


# ------------------------------------------------------------------------------------------
# Worker engine events


class Payload(msgspec.Struct, frozen=True, gc=False):
    """An agent message as bytes, with the names autogen's serializers need to decode it."""

    data_type: str
    data_content_type: str
    data: bytes

    @property
    def is_none(self) -> bool:
        """Whether this is the payload of ``None`` (:data:`NONE_PAYLOAD`)."""
        return self.data_type == NONE_TYPE_NAME and self.data == b"null"


NONE_TYPE_NAME: Final = "NoneType"
"""``data_type`` of the answer of a handler that returned None (its data is JSON ``null``)."""
NONE_PAYLOAD: Final = Payload(NONE_TYPE_NAME, "application/json", b"null")
"""The payload of ``None``: what a handler that returns nothing answers (docs/PROTOCOL.md 3.2)."""


class CallSucceeded(msgspec.Struct, frozen=True):
    """The answer to our ``agent.call`` number ``request_id``."""

    request_id: int
    payload: Payload
    metadata: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class CallFailed:
    """Our ``agent.call`` number ``request_id`` failed (remotely, by deadline, or connection loss)."""

    request_id: int
    error: RpcError
    handler_error: HandlerErrorData | None = field(default=None, compare=False)
    """For a HANDLER_ERROR: what the remote handler raised, read from the error's ``data`` (set by
    the engine; derived from ``error``, so it takes no part in comparisons)."""

    def __post_init__(self) -> None:
        if self.handler_error is None:
            object.__setattr__(self, "handler_error", handler_error_of(self.error))


class RequestSucceeded(msgspec.Struct, frozen=True):
    """A ``runtime.*`` request of ours succeeded; ``subscriptions`` is set for get_subscriptions."""

    request_id: int
    subscriptions: tuple[SubscriptionSpec, ...] | None = None


class RequestFailed(msgspec.Struct, frozen=True):
    """A ``runtime.*`` request of ours failed."""

    request_id: int
    error: RpcError


class IncomingCall(msgspec.Struct, frozen=True):
    """The host asks one of our agents to handle a message; answer with ``respond``/``respond_error``.

    ``call_id`` is the host's id for the call, unique only on the connection that delivered it;
    ``epoch`` names that connection (:attr:`WorkerEngine.epoch`). Pass both back when answering:
    an answer for a connection that is gone is dropped, never matched to a newer call.
    """

    call_id: int | str
    target: AgentRef
    source: AgentRef | None
    payload: Payload
    metadata: Mapping[str, str]
    timeout_ms: int | None
    epoch: int


class IncomingCallCancelled(msgspec.Struct, frozen=True, gc=False):
    """Call ``call_id`` of connection ``epoch`` is over: cancel its handler; its answer is not needed.

    Either the caller gave up (``$/cancelRequest``) or the connection that delivered the call was
    lost (``WorkerEngine.connection_lost``): the host has already answered the caller.
    """

    call_id: int | str
    epoch: int


class IncomingEvent(msgspec.Struct, frozen=True):
    """A published event for some of our agents (``recipients``; the publishing agent is left out)."""

    event_id: str
    topic_type: str
    topic_source: str
    sender: AgentRef | None
    recipients: tuple[AgentRef, ...]
    payload: Payload
    message_kind: str
    trace_context: Mapping[str, str]


class PeerError(msgspec.Struct, frozen=True):
    """The host reported an error not tied to any request of ours (JSON-RPC error with id null)."""

    error: RpcError


WorkerEvent = Union[
    CallSucceeded,
    CallFailed,
    RequestSucceeded,
    RequestFailed,
    IncomingCall,
    IncomingCallCancelled,
    IncomingEvent,
    PeerError,
]
