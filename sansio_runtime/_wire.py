"""Wire types: msgspec Structs for JSON-RPC 2.0 envelopes, CloudEvents and the method params.

Agent payloads never get decoded here. A JSON payload travels as ``msgspec.Raw`` (its bytes are
spliced into the frame unchanged); any other payload travels as base64 text in ``data_base64``.
The host therefore routes on envelopes alone and never re-encodes what agents send each other.
"""

from __future__ import annotations

import base64
import binascii
import functools
from typing import Final, Union

import msgspec
from msgspec import UNSET, Raw, Struct, UnsetType

JSONRPC_VERSION: Final = "2.0"
CLOUDEVENTS_SPEC_VERSION: Final = "1.0"

# Method names (docs/PROTOCOL.md, "Methods").
REGISTER_AGENT: Final = "runtime.register_agent"
UNREGISTER_AGENT: Final = "runtime.unregister_agent"
ADD_SUBSCRIPTION: Final = "runtime.add_subscription"
REMOVE_SUBSCRIPTION: Final = "runtime.remove_subscription"
GET_SUBSCRIPTIONS: Final = "runtime.get_subscriptions"
AGENT_CALL: Final = "agent.call"
AGENT_PUBLISH: Final = "agent.publish"
AGENT_EVENT: Final = "agent.event"
CANCEL_REQUEST: Final = "$/cancelRequest"

MESSAGE_KIND_PUBLISH: Final = "publish"

RequestId = Union[int, str]


JSON_CONTENT_TYPE: Final = "application/json"


@functools.lru_cache(maxsize=256)
def media_type(content_type: str) -> str:
    """A content type as receivers compare it: the part before any ``;``, trimmed, lower-cased."""
    return content_type.split(";", 1)[0].strip().lower()


def is_json_content_type(content_type: str) -> bool:
    """True for ``application/json`` and ``application/*+json``: such payloads travel as raw JSON."""
    ct = media_type(content_type)
    return ct == JSON_CONTENT_TYPE or (ct.startswith("application/") and ct.endswith("+json"))


@functools.lru_cache(maxsize=256)
def reader_content_types(content_type: str) -> tuple[str, ...]:
    """The content types whose serializer may read a payload sent as ``content_type``, best first.

    Its own media type (case and parameters do not matter), then, for any other JSON media type
    (``application/*+json``), ``application/json``: ``docs/PROTOCOL.md`` section 3.2.
    """
    own = media_type(content_type)
    if own != JSON_CONTENT_TYPE and is_json_content_type(own):
        return (own, JSON_CONTENT_TYPE)
    return (own,)


# --------------------------------------------------------------------------------------------
# Shared shapes


class AgentRef(Struct, frozen=True, gc=False):
    """An agent's id on the wire: ``{"type": ..., "key": ...}``."""

    type: str
    key: str


class RpcError(Struct, frozen=True, omit_defaults=True):
    """A JSON-RPC error object. ``data`` stays raw JSON (decode it with :func:`decode_error_data`)."""

    code: int
    message: str
    data: Raw | UnsetType = UNSET


class HandlerErrorData(Struct, frozen=True):
    """``data`` of a ``HANDLER_ERROR``: what the remote handler raised."""

    exception_type: str
    message: str


class AgentTypeLostData(Struct, frozen=True):
    """``data`` of the ``AGENT_TYPE_ALREADY_REGISTERED`` error (id null) a host sends a worker whose
    agent type another host of the cluster took over while this one was cut off."""

    agent_type: str
    holder: str


class UnreadablePayloadData(Struct, frozen=True, kw_only=True, omit_defaults=True):
    """``data`` of an ``UNREADABLE_PAYLOAD`` error: the names of the payload that could not be read."""

    data_type: str
    data_content_type: str
    event_id: str | UnsetType = UNSET
    """Set when the payload was an event's (reported to the host with id null)."""


class TypeSubscriptionSpec(Struct, frozen=True, gc=False, tag="type", tag_field="kind"):
    """Agents of ``agent_type`` receive events whose topic type equals ``topic_type``."""

    id: str
    topic_type: str
    agent_type: str


class TypePrefixSubscriptionSpec(Struct, frozen=True, gc=False, tag="type_prefix", tag_field="kind"):
    """Agents of ``agent_type`` receive events whose topic type starts with ``topic_type_prefix``."""

    id: str
    topic_type_prefix: str
    agent_type: str


SubscriptionSpec = Union[TypeSubscriptionSpec, TypePrefixSubscriptionSpec]


# --------------------------------------------------------------------------------------------
# Params of each method


class RegisterAgentParams(Struct, frozen=True, omit_defaults=True):
    """``runtime.register_agent`` params (``runtime.unregister_agent`` reads ``type`` only)."""

    type: str
    shared: bool = False
    """Host the type together with other connections that register it shared (docs/PROTOCOL.md 7.9)."""


class AddSubscriptionParams(Struct, frozen=True):
    subscription: SubscriptionSpec


class RemoveSubscriptionParams(Struct, frozen=True):
    id: str


class CancelParams(Struct, frozen=True):
    id: RequestId


class CallParams(Struct, frozen=True, kw_only=True, omit_defaults=True):
    """``agent.call`` params (worker to host, and host to the target worker, unchanged)."""

    target: AgentRef
    data_type: str
    data_content_type: str
    data: Raw | UnsetType = UNSET
    data_base64: str | UnsetType = UNSET
    source: AgentRef | UnsetType | None = UNSET
    metadata: dict[str, str] | UnsetType = UNSET
    timeout_ms: int | UnsetType = UNSET


class CallRouting(Struct, frozen=True):
    """The part of ``agent.call`` params the host reads to route a call (the rest is skipped)."""

    target: AgentRef
    data_type: str
    data_content_type: str
    data: Raw | UnsetType = UNSET
    data_base64: str | UnsetType = UNSET
    timeout_ms: int | UnsetType = UNSET
    metadata: Raw | UnsetType = UNSET
    """Kept raw: the target checks it; the host reads it only when it observes calls (tracing)."""


class CallResult(Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The ``result`` of ``agent.call``."""

    data_type: str
    data_content_type: str
    data: Raw | UnsetType = UNSET
    data_base64: str | UnsetType = UNSET
    metadata: dict[str, str] | UnsetType = UNSET


class CloudEvent(Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A CloudEvents 1.0 event in structured JSON mode, with AutoGen's extension attributes.

    ``type`` is the topic type, ``source`` the topic source, ``dataschema`` the AutoGen message
    type name. Unknown extension attributes are allowed on the wire and forwarded untouched by the
    host (which only reads :class:`EventRouting`).
    """

    specversion: str
    id: str
    source: str
    type: str
    datacontenttype: str | UnsetType = UNSET
    dataschema: str | UnsetType = UNSET
    data: Raw | UnsetType = UNSET
    data_base64: str | UnsetType = UNSET
    agagentsendertype: str | UnsetType = UNSET
    agagentsenderkey: str | UnsetType = UNSET
    agmsgkind: str | UnsetType = UNSET
    traceparent: str | UnsetType = UNSET
    tracestate: str | UnsetType = UNSET


class EventRouting(Struct, frozen=True):
    """The part of a CloudEvent the host reads to route it."""

    specversion: str
    id: str
    source: str
    type: str
    data: Raw | UnsetType = UNSET
    data_base64: str | UnsetType = UNSET


class EventDelivery(Struct, frozen=True):
    """``agent.event`` params: the event as published, plus the agent types it is for on this worker."""

    recipients: list[str]
    event: Raw


# --------------------------------------------------------------------------------------------
# Envelopes

Params = Union[
    Raw,
    RegisterAgentParams,
    AddSubscriptionParams,
    RemoveSubscriptionParams,
    CancelParams,
    CallParams,
    CloudEvent,
    EventDelivery,
]
ResultValue = Union[Raw, CallResult, list[SubscriptionSpec], None]


class IncomingMessage(Struct, frozen=True):
    """Any JSON-RPC 2.0 message as decoded from a frame; which fields are set says what it is."""

    jsonrpc: str | UnsetType = UNSET
    id: int | str | UnsetType | None = UNSET
    method: str | UnsetType = UNSET
    params: Raw | UnsetType = UNSET
    result: Raw | UnsetType = UNSET
    error: Raw | UnsetType = UNSET


class Request(Struct, frozen=True):
    jsonrpc: str
    id: RequestId
    method: str
    params: Params


class Notification(Struct, frozen=True):
    jsonrpc: str
    method: str
    params: Params


class Response(Struct, frozen=True):
    jsonrpc: str
    id: RequestId | None
    result: ResultValue


class ErrorResponse(Struct, frozen=True):
    jsonrpc: str
    id: RequestId | None
    error: RpcError


# --------------------------------------------------------------------------------------------
# Codecs

_encoder: Final = msgspec.json.Encoder()
encode = _encoder.encode
FRAME_DECODER: Final = msgspec.json.Decoder(Union[IncomingMessage, list[Raw]])
MESSAGE_DECODER: Final = msgspec.json.Decoder(IncomingMessage)
RPC_ERROR_DECODER: Final = msgspec.json.Decoder(RpcError)
CALL_PARAMS_DECODER: Final = msgspec.json.Decoder(CallParams)
CALL_ROUTING_DECODER: Final = msgspec.json.Decoder(CallRouting)
METADATA_DECODER: Final = msgspec.json.Decoder(dict[str, str])
CALL_RESULT_DECODER: Final = msgspec.json.Decoder(CallResult)
CLOUD_EVENT_DECODER: Final = msgspec.json.Decoder(CloudEvent)
EVENT_ROUTING_DECODER: Final = msgspec.json.Decoder(EventRouting)
EVENT_DELIVERY_DECODER: Final = msgspec.json.Decoder(EventDelivery)
REGISTER_AGENT_DECODER: Final = msgspec.json.Decoder(RegisterAgentParams)
ADD_SUBSCRIPTION_DECODER: Final = msgspec.json.Decoder(AddSubscriptionParams)
REMOVE_SUBSCRIPTION_DECODER: Final = msgspec.json.Decoder(RemoveSubscriptionParams)
CANCEL_DECODER: Final = msgspec.json.Decoder(CancelParams)
SUBSCRIPTION_LIST_DECODER: Final = msgspec.json.Decoder(list[SubscriptionSpec])
_json_validator: Final = msgspec.json.Decoder()


def request(id: RequestId, method: str, params: Params) -> bytes:
    return encode(Request(JSONRPC_VERSION, id, method, params))


def notification(method: str, params: Params) -> bytes:
    return encode(Notification(JSONRPC_VERSION, method, params))


def response(id: RequestId | None, result: ResultValue) -> bytes:
    return encode(Response(JSONRPC_VERSION, id, result))


def error_response(id: RequestId | None, code: int, message: str, data: Raw | UnsetType = UNSET) -> bytes:
    return encode(ErrorResponse(JSONRPC_VERSION, id, RpcError(code, message, data)))


def forwarded_error(id: RequestId | None, error: RpcError) -> bytes:
    return encode(ErrorResponse(JSONRPC_VERSION, id, error))


def handler_error_data(exception_type: str, message: str) -> Raw:
    return Raw(encode(HandlerErrorData(exception_type, message)))


def agent_type_lost_data(agent_type: str, holder: str) -> Raw:
    return Raw(encode(AgentTypeLostData(agent_type, holder)))


def unreadable_payload_data(data_type: str, data_content_type: str, event_id: str | UnsetType = UNSET) -> Raw:
    return Raw(
        encode(UnreadablePayloadData(data_type=data_type, data_content_type=data_content_type, event_id=event_id))
    )


class PayloadEncodingError(ValueError):
    """A payload cannot be put on the wire as declared (e.g. "JSON" bytes that are not JSON)."""


def pack_payload(data: bytes, content_type: str) -> tuple[Raw | UnsetType, str | UnsetType]:
    """Choose the wire form of payload bytes: raw JSON for JSON content types, else base64."""
    if is_json_content_type(content_type):
        try:
            _json_validator.decode(data)
        # msgspec raises UnicodeDecodeError for bad UTF-8, RecursionError for nesting deeper than it can parse
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise PayloadEncodingError(f"payload declared {content_type!r} is not valid JSON: {exc}") from exc
        return Raw(data), UNSET
    return UNSET, base64.b64encode(data).decode("ascii")


def unpack_payload(data: Raw | UnsetType, data_base64: str | UnsetType) -> bytes:
    """The payload bytes from their wire form. Raises :class:`PayloadEncodingError` if neither or both are set."""
    if not isinstance(data, UnsetType):
        if not isinstance(data_base64, UnsetType):
            raise PayloadEncodingError("both data and data_base64 are set")
        return bytes(data)
    if isinstance(data_base64, UnsetType):
        raise PayloadEncodingError("neither data nor data_base64 is set")
    try:
        return base64.b64decode(data_base64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise PayloadEncodingError(f"data_base64 is not valid base64: {exc}") from exc


def has_exactly_one_payload(data: Raw | UnsetType, data_base64: str | UnsetType) -> bool:
    return isinstance(data, UnsetType) != isinstance(data_base64, UnsetType)
