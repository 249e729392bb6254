"""The messages a worker builds for the host: a call's params, a published CloudEvent, a call's result.

Each puts a :class:`~._events.Payload` on the wire in the form its content type asks for (raw JSON
in ``data``, anything else as ``data_base64``; docs/PROTOCOL.md section 3.2), leaving out what is
unset rather than sending ``null``.
"""

from __future__ import annotations

from collections.abc import Mapping

from msgspec import UNSET, UnsetType

from . import _wire as wire
from ._events import Payload
from ._wire import AgentRef

_EMPTY: Mapping[str, str] = {}


def call_params(
    target: AgentRef,
    payload: Payload,
    *,
    source: AgentRef | None,
    metadata: Mapping[str, str] | None,
    timeout: float | None,
) -> wire.CallParams:
    """``agent.call`` params; ``timeout`` (seconds) becomes ``timeout_ms``, at least 1."""
    data, data_base64 = wire.pack_payload(payload.data, payload.data_content_type)
    timeout_ms: int | UnsetType = UNSET
    if timeout is not None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        timeout_ms = max(1, round(timeout * 1000))
    return wire.CallParams(
        target=target,
        data_type=payload.data_type,
        data_content_type=payload.data_content_type,
        data=data,
        data_base64=data_base64,
        source=UNSET if source is None else source,
        metadata=UNSET if not metadata else dict(metadata),
        timeout_ms=timeout_ms,
    )


def cloud_event(
    topic_type: str,
    topic_source: str,
    payload: Payload,
    event_id: str,
    sender: AgentRef | None,
    message_kind: str,
    trace_context: Mapping[str, str] | None,
) -> wire.CloudEvent:
    """The CloudEvent of ``agent.publish``, with AutoGen's extension attributes."""
    data, data_base64 = wire.pack_payload(payload.data, payload.data_content_type)
    trace = trace_context or _EMPTY
    return wire.CloudEvent(
        specversion=wire.CLOUDEVENTS_SPEC_VERSION,
        id=event_id,
        source=topic_source,
        type=topic_type,
        datacontenttype=payload.data_content_type,
        dataschema=payload.data_type,
        data=data,
        data_base64=data_base64,
        agagentsendertype=UNSET if sender is None else sender.type,
        agagentsenderkey=UNSET if sender is None else sender.key,
        agmsgkind=message_kind,
        traceparent=trace.get("traceparent", UNSET),
        tracestate=trace.get("tracestate", UNSET),
    )


def call_result(payload: Payload, metadata: Mapping[str, str] | None) -> wire.CallResult:
    """The ``result`` that answers an ``agent.call``. Raises PayloadEncodingError for "JSON" that is not."""
    data, data_base64 = wire.pack_payload(payload.data, payload.data_content_type)
    return wire.CallResult(
        data_type=payload.data_type,
        data_content_type=payload.data_content_type,
        data=data,
        data_base64=data_base64,
        metadata=UNSET if not metadata else dict(metadata),
    )


__all__ = ["call_params", "call_result", "cloud_event"]
