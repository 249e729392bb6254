"""The worker's OpenTelemetry spans, named as the gRPC runtime names them, at no cost when off.

Without a tracer provider every span is the invalid span and no trace context leaves the
process, so the span blocks and the context propagation are skipped: the same outcome, cheaper.
With one, the caller's W3C trace context travels in the call's ``metadata`` (and the event's
``traceparent``), and the callee's "process" span is its child: caller, host and callee share one
trace (autogen-core's helper only *links* them, which starts a new trace in every process).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager

from opentelemetry import context as otel_context
from opentelemetry.trace import (
    NoOpTracer,
    NoOpTracerProvider,
    ProxyTracer,
    ProxyTracerProvider,
    TracerProvider,
    get_tracer_provider,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from .._compat import (
    ExtraMessageRuntimeAttributes,
    MessageRuntimeTracingConfig,
    MessagingDestination,
    MessagingOperation,
    TraceHelper,
    get_telemetry_grpc_metadata,
)

NO_SPAN: AbstractContextManager[object] = contextlib.nullcontext()
_RECHECK = 1.0  # seconds between looks at the global tracer provider while none is set
_PROPAGATOR = TraceContextTextMapPropagator()


class Tracing:
    """Spans for one worker runtime (``tracer_provider=None``: the global provider, when one is set)."""

    __slots__ = ("_checked_at", "_helper", "_on")

    def __init__(self, tracer_provider: TracerProvider | None) -> None:
        self._helper = TraceHelper(tracer_provider, MessageRuntimeTracingConfig("Worker Runtime"))
        tracer = self._helper.tracer
        # Whether spans are recorded: known for good unless the tracer follows the global provider.
        self._on: bool | None = (
            False if isinstance(tracer, NoOpTracer) else None if isinstance(tracer, ProxyTracer) else True
        )
        self._checked_at = -math.inf

    def enabled(self) -> bool:
        """Whether spans are recorded at all. A tracer that follows the global provider (which may
        be set later, once) looks at it again at most once a second."""
        on = self._on
        if on is not None:
            return on
        now = time.monotonic()
        if now - self._checked_at < _RECHECK:
            return False
        self._checked_at = now
        if isinstance(get_tracer_provider(), (ProxyTracerProvider, NoOpTracerProvider)):
            return False
        self._on = True
        return True

    def block(
        self,
        operation: MessagingOperation,
        destination: MessagingDestination,
        parent: Mapping[str, str] | None,
        *,
        attributes: dict[str, str] | None = None,
        extraAttributes: ExtraMessageRuntimeAttributes | None = None,
    ) -> AbstractContextManager[object]:
        """A span named as gRPC's runtime names it (``create``, ``send``, ``publish``, ``process``)."""
        if not self.enabled():
            return NO_SPAN
        return self._helper.trace_block(
            operation, destination, parent, attributes=attributes, extraAttributes=extraAttributes
        )

    def metadata(self) -> dict[str, str] | None:
        """The current trace context to send along (None when nothing is recorded)."""
        return get_telemetry_grpc_metadata() if self.enabled() else None

    def remote_parent(self, trace_context: Mapping[str, str]) -> AbstractContextManager[object]:
        """Make the sender's span the current one while a message is processed."""
        return _remote_parent(trace_context) if self.enabled() else NO_SPAN


@contextlib.contextmanager
def _remote_parent(trace_context: Mapping[str, str]) -> Iterator[None]:
    token = otel_context.attach(_PROPAGATOR.extract(dict(trace_context)))
    try:
        yield
    finally:
        otel_context.detach(token)


__all__ = ["NO_SPAN", "Tracing"]
