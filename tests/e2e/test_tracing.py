"""OpenTelemetry: a call and a publish keep one trace id from caller to callee, through the host."""

from __future__ import annotations

import anyio
import pytest
from autogen_core import AgentId, TopicId, TypeSubscription
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from ._common import Answer, Ask, EchoAgent, Note, wait_until
from .conftest import WorkerFactory

pytestmark = pytest.mark.anyio


def traced() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def spans(exporter: InMemorySpanExporter, operation: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name.startswith(f"autogen {operation}")]


async def test_send_message_spans_share_one_trace_across_workers(make_worker: WorkerFactory) -> None:
    with anyio.fail_after(20):
        caller_provider, caller_spans = traced()
        callee_provider, callee_spans = traced()
        caller = await make_worker(tracer_provider=caller_provider)
        callee = await make_worker(tracer_provider=callee_provider)
        await callee.register_factory("echo", EchoAgent)

        assert await caller.send_message(Ask("traced"), AgentId("echo", "t")) == Answer("t:decart")
        assert await wait_until(lambda: len(spans(callee_spans, "process")) == 1, 5)

        [create] = spans(caller_spans, "create")
        [send] = spans(caller_spans, "send")
        [process] = spans(callee_spans, "process")
        trace_id = create.context.trace_id
        assert trace_id != 0
        assert send.context.trace_id == trace_id and process.context.trace_id == trace_id
        # The callee's span is a child of the caller's send span: the traceparent crossed the host.
        assert send.parent is not None and send.parent.span_id == create.context.span_id
        assert process.parent is not None and process.parent.span_id == send.context.span_id
        assert process.parent.is_remote
        assert "echo" in process.name
        assert process.attributes is not None and process.attributes.get("messaging.message.type") == "Ask"


async def test_publish_spans_share_one_trace_across_workers(make_worker: WorkerFactory) -> None:
    with anyio.fail_after(20):
        publisher_provider, publisher_spans = traced()
        subscriber_provider, subscriber_spans = traced()
        publisher = await make_worker(tracer_provider=publisher_provider)
        subscriber = await make_worker(tracer_provider=subscriber_provider)
        await subscriber.register_factory("echo", EchoAgent)
        await subscriber.add_subscription(TypeSubscription("traced-topic", "echo"))

        await publisher.publish_message(Note("hello"), TopicId("traced-topic", "s"))
        assert await wait_until(lambda: len(spans(subscriber_spans, "process")) == 1, 10)

        [publish] = spans(publisher_spans, "publish")
        [process] = spans(subscriber_spans, "process")
        assert process.context.trace_id == publish.context.trace_id
        assert process.parent is not None and process.parent.span_id == publish.context.span_id
        agent = await subscriber.try_get_underlying_agent_instance(AgentId("echo", "s"), EchoAgent)
        assert [n.text for n in agent.notes] == ["hello"]


async def test_one_shared_provider_sees_the_whole_trace(make_worker: WorkerFactory) -> None:
    with anyio.fail_after(20):
        provider, exporter = traced()
        caller = await make_worker(tracer_provider=provider)
        callee = await make_worker(tracer_provider=provider)
        await callee.register_factory("echo", EchoAgent)
        await caller.send_message(Ask("one"), AgentId("echo", "a"))
        await caller.send_message(Ask("two"), AgentId("echo", "b"))
        assert await wait_until(lambda: len(spans(exporter, "process")) == 2, 5)
        by_trace: dict[int, set[str]] = {}
        for span in exporter.get_finished_spans():
            by_trace.setdefault(span.context.trace_id, set()).add(span.name.split()[1])
        # Two calls, two traces, each with its create, send and process spans.
        assert sorted(by_trace.values(), key=sorted) == [{"create", "send", "process"}] * 2
