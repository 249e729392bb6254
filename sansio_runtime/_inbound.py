"""What a worker makes of the messages the host sends it, one reader per kind of message.

Each reader turns a decoded JSON-RPC message into the event the worker runtime acts on, or into
the error that answers it (:class:`Refusal`). They hold no state: the :class:`WorkerEngine`
decides what is pending and what is not, these only read.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

import msgspec
from msgspec import Raw, UnsetType

from . import _wire as wire
from ._errors import ErrorCode
from ._events import (
    CallFailed,
    CallSucceeded,
    IncomingCall,
    IncomingEvent,
    Payload,
    RequestFailed,
    RequestSucceeded,
    WorkerEvent,
)
from ._wire import AgentRef, RequestId, RpcError, SubscriptionSpec

EMPTY: Mapping[str, str] = {}
_READ_ERRORS = (msgspec.ValidationError, wire.PayloadEncodingError, RecursionError)


class RequestKind(enum.Enum):
    """What a request of ours was, and so what its answer must hold."""

    CALL = "call"
    """``agent.call``: a CallResult."""
    RUNTIME = "runtime"
    """``runtime.register_agent`` and the like: ``null``."""
    SUBSCRIPTIONS = "subscriptions"
    """``runtime.get_subscriptions``: a list of subscriptions."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """A message the worker cannot take: answer it with this error (id None: the id is unknown)."""

    id: RequestId | None
    code: ErrorCode
    message: str


def read_call(m: wire.IncomingMessage, epoch: int) -> IncomingCall | Refusal:
    """An ``agent.call`` request from the host, as an :class:`IncomingCall` of connection ``epoch``."""
    call_id = m.id
    if call_id is None or isinstance(call_id, UnsetType):
        return Refusal(None, ErrorCode.INVALID_REQUEST, "agent.call needs an id")
    if isinstance(m.params, UnsetType):
        return Refusal(call_id, ErrorCode.INVALID_PARAMS, "params are required")
    try:
        params = wire.CALL_PARAMS_DECODER.decode(m.params)
        data = wire.unpack_payload(params.data, params.data_base64)
    except _READ_ERRORS as exc:
        return Refusal(call_id, ErrorCode.INVALID_PARAMS, f"invalid params: {exc}")
    return IncomingCall(
        call_id=call_id,
        target=params.target,
        source=None if isinstance(params.source, UnsetType) else params.source,
        payload=Payload(params.data_type, params.data_content_type, data),
        metadata=EMPTY if isinstance(params.metadata, UnsetType) else params.metadata,
        timeout_ms=None if isinstance(params.timeout_ms, UnsetType) else params.timeout_ms,
        epoch=epoch,
    )


def read_event(params: Raw) -> IncomingEvent | Refusal | None:
    """An ``agent.event`` delivery: the event for its recipients here, None if the publishing agent
    is the only one (it never receives its own event), or why it cannot be read."""
    try:
        delivery = wire.EVENT_DELIVERY_DECODER.decode(params)
        event = wire.CLOUD_EVENT_DECODER.decode(delivery.event)
        data = wire.unpack_payload(event.data, event.data_base64)
    except _READ_ERRORS as exc:
        return Refusal(None, ErrorCode.INVALID_PARAMS, f"invalid agent.event: {exc}")
    sender: AgentRef | None = None
    if not isinstance(event.agagentsendertype, UnsetType) and not isinstance(event.agagentsenderkey, UnsetType):
        sender = AgentRef(event.agagentsendertype, event.agagentsenderkey)
    recipients = tuple(
        AgentRef(agent_type, event.source)
        for agent_type in delivery.recipients
        if sender is None or sender.type != agent_type or sender.key != event.source
    )
    if not recipients:
        return None
    trace: dict[str, str] = {}
    if not isinstance(event.traceparent, UnsetType):
        trace["traceparent"] = event.traceparent
    if not isinstance(event.tracestate, UnsetType):
        trace["tracestate"] = event.tracestate
    content_type = "application/json" if isinstance(event.datacontenttype, UnsetType) else event.datacontenttype
    data_type = "" if isinstance(event.dataschema, UnsetType) else event.dataschema
    return IncomingEvent(
        event_id=event.id,
        topic_type=event.type,
        topic_source=event.source,
        sender=sender,
        recipients=recipients,
        payload=Payload(data_type, content_type, data),
        message_kind=wire.MESSAGE_KIND_PUBLISH if isinstance(event.agmsgkind, UnsetType) else event.agmsgkind,
        trace_context=trace,
    )


def read_cancel(params: Raw | UnsetType) -> RequestId | None:
    """The host id a ``$/cancelRequest`` names, or None if it names none readably."""
    if isinstance(params, UnsetType):
        return None
    try:
        return wire.CANCEL_DECODER.decode(params).id
    except (msgspec.ValidationError, RecursionError):
        return None


def read_answer(request_id: int, kind: RequestKind, m: wire.IncomingMessage) -> WorkerEvent:
    """The event that settles our request ``request_id`` (of ``kind``) with the answer ``m``."""
    failed: RpcError
    if not isinstance(m.error, UnsetType):
        failed = read_error(m.error)
    elif isinstance(m.result, UnsetType):
        failed = RpcError(ErrorCode.INTERNAL_ERROR, "the host answered with neither result nor error")
    elif kind is RequestKind.RUNTIME:
        return RequestSucceeded(request_id)
    elif kind is RequestKind.SUBSCRIPTIONS:
        subscriptions = read_subscriptions(m.result)
        if not isinstance(subscriptions, RpcError):
            return RequestSucceeded(request_id, subscriptions)
        failed = subscriptions
    else:
        answer = read_call_result(request_id, m.result)
        if not isinstance(answer, RpcError):
            return answer
        failed = answer
    return CallFailed(request_id, failed) if kind is RequestKind.CALL else RequestFailed(request_id, failed)


def read_call_result(request_id: int, result: Raw) -> CallSucceeded | RpcError:
    """The ``result`` of our ``agent.call``, or the error to fail it with when it is malformed."""
    try:
        answer = wire.CALL_RESULT_DECODER.decode(result)
        data = wire.unpack_payload(answer.data, answer.data_base64)
    except _READ_ERRORS as exc:
        return RpcError(ErrorCode.INTERNAL_ERROR, f"malformed call result: {exc}")
    metadata = EMPTY if isinstance(answer.metadata, UnsetType) else answer.metadata
    return CallSucceeded(request_id, Payload(answer.data_type, answer.data_content_type, data), metadata)


def read_subscriptions(result: Raw) -> tuple[SubscriptionSpec, ...] | RpcError:
    """The ``result`` of ``runtime.get_subscriptions``, or the error when it is malformed."""
    try:
        return tuple(wire.SUBSCRIPTION_LIST_DECODER.decode(result))
    except (msgspec.ValidationError, RecursionError) as exc:
        return RpcError(ErrorCode.INTERNAL_ERROR, f"malformed result: {exc}")


def read_error(raw: Raw) -> RpcError:
    """An ``error`` member (a malformed one is read as INTERNAL_ERROR)."""
    try:
        return wire.RPC_ERROR_DECODER.decode(raw)
    except (msgspec.ValidationError, RecursionError):
        return RpcError(ErrorCode.INTERNAL_ERROR, "the peer sent a malformed error object")


__all__ = [
    "EMPTY",
    "Refusal",
    "RequestKind",
    "read_answer",
    "read_call",
    "read_call_result",
    "read_cancel",
    "read_error",
    "read_event",
    "read_subscriptions",
]
