"""The host's OpenTelemetry spans: one per routed call, a child of the caller's span.

The caller's W3C trace context travels in the call's ``metadata`` (the worker puts it there,
:mod:`io_backends.worker._tracing`); the host reads it only while it records spans, starts a
``route <agent type>`` span (kind SERVER) under it when the call is routed and ends it when the
call ends, with the JSON-RPC error code when it failed. A trace then shows caller, host and callee
as three services (the callee's "process" span is, like the host's, a child of the caller's
"send" span: the host forwards the metadata untouched).

Off unless the service is given a tracer provider, or a global one is set when it is created: then
the engine reads no metadata and this module costs nothing per call.
"""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry.trace import (
    NoOpTracerProvider,
    ProxyTracerProvider,
    Span,
    SpanKind,
    Status,
    StatusCode,
    TracerProvider,
    get_tracer_provider,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from sansio_runtime import CallEnd, ErrorCode

TRACER_NAME = "io_backends.host"
_PROPAGATOR = TraceContextTextMapPropagator()
_CODE_NAMES = {int(code): code.name for code in ErrorCode}


def recording_provider(tracer_provider: TracerProvider | None) -> TracerProvider | None:
    """``tracer_provider``, or the global one if it is set (None: no spans are recorded)."""
    provider = tracer_provider if tracer_provider is not None else get_tracer_provider()
    if isinstance(provider, (ProxyTracerProvider, NoOpTracerProvider)):
        return None
    return provider


class HostTracing:
    """Spans of the calls routed through one host (open ones by the engine's call id)."""

    def __init__(self, tracer_provider: TracerProvider) -> None:
        self._tracer = tracer_provider.get_tracer(TRACER_NAME)
        self._spans: dict[int, Span] = {}

    def call_started(self, host_id: int, target_type: str, metadata: Mapping[str, str] | None) -> None:
        parent = _PROPAGATOR.extract(dict(metadata)) if metadata else None
        self._spans[host_id] = self._tracer.start_span(
            f"route {target_type}",
            context=parent,
            kind=SpanKind.SERVER,
            attributes={
                "messaging.operation": "route",
                "messaging.destination.name": target_type,
                "rpc.system": "jsonrpc",
                "rpc.method": "agent.call",
            },
        )

    def call_ended(self, host_id: int, duration: float, error_code: int | None, how: CallEnd) -> None:
        span = self._spans.pop(host_id, None)
        if span is None:
            return
        span.set_attribute("autogen.call.end", how.value)
        if error_code is not None:
            span.set_attribute("rpc.jsonrpc.error_code", error_code)
            span.set_status(Status(StatusCode.ERROR, _CODE_NAMES.get(error_code, str(error_code))))
        span.end()

    def call_refused(self, error_code: int) -> None:
        return None  # (a call refused before routing has no span: the caller's says why)

    @property
    def open_spans(self) -> int:
        return len(self._spans)


__all__ = ["TRACER_NAME", "HostTracing", "recording_provider"]
