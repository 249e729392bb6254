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


async def test_the_host_records_a_route_span_under_the_callers_span() -> None:
    """Caller, host and callee as three services: the host's span is a child of the caller's send."""
    from io_backends import HttpAgentServer, HttpAgentService, HttpWorkerAgentRuntime

    from ._common import Fail, all_serializers

    host_provider, host_spans = traced()
    server = HttpAgentServer("127.0.0.1", port=0, service=HttpAgentService(tracer_provider=host_provider))
    server.start()
    workers = []
    try:
        caller_provider, caller_spans = traced()
        for provider in (caller_provider, None):
            worker = HttpWorkerAgentRuntime(f"127.0.0.1:{server.port}", tracer_provider=provider)
            worker.add_message_serializer(all_serializers())
            await worker.start()
            workers.append(worker)
        caller, callee = workers
        await callee.register_factory("echo", EchoAgent)
        assert await caller.send_message(Ask("traced"), AgentId("echo", "t")) == Answer("t:decart")
        with pytest.raises(Exception, match="boom"):
            await caller.send_message(Fail("ValueError", "boom"), AgentId("echo", "t"))
        [route, failed] = [s for s in host_spans.get_finished_spans() if s.name == "route echo"]
        send = spans(caller_spans, "send")[0]
        assert route.context.trace_id == send.context.trace_id
        assert route.parent is not None and route.parent.span_id == send.context.span_id and route.parent.is_remote
        assert route.attributes is not None and route.attributes["autogen.call.end"] == "answered"
        assert route.status.is_ok and not failed.status.is_ok
        assert failed.attributes is not None and "rpc.jsonrpc.error_code" in failed.attributes
        assert server.service.tracing is not None and server.service.tracing.open_spans == 0
    finally:
        for worker in workers:
            await worker.stop()
        await server.stop(grace=2)


def test_the_command_line_exports_host_spans_over_otlp() -> None:
    """``autogen-http-host --otlp-endpoint`` posts the host's spans to a (loopback) collector."""
    import http.server
    import subprocess
    import sys
    import threading

    pytest.importorskip("opentelemetry.exporter.otlp.proto.http")
    posts: list[tuple[str, bytes]] = []

    class Collector(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            posts.append((self.path, self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    collector = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=collector.serve_forever, daemon=True).start()
    script = f"""
import asyncio, signal, os, sys
from autogen_core import AgentId
from io_backends import HttpWorkerAgentRuntime
from opentelemetry.sdk.trace import TracerProvider
sys.path.insert(0, {str(__import__("pathlib").Path(__file__).resolve().parents[2])!r})
from tests.e2e._common import Ask, EchoAgent, all_serializers

async def main(port):
    workers = []
    for provider in (TracerProvider(), None):
        w = HttpWorkerAgentRuntime(f"127.0.0.1:{{port}}", tracer_provider=provider)
        w.add_message_serializer(all_serializers())
        await w.start()
        workers.append(w)
    await workers[1].register_factory("echo", EchoAgent)
    await workers[0].send_message(Ask("x"), AgentId("echo", "k"))
    for w in workers:
        await w.stop()

import subprocess
host = subprocess.Popen([sys.executable, "-m", "io_backends", "--port", "0",
                         "--otlp-endpoint", "http://127.0.0.1:{collector.server_address[1]}"],
                        stdout=subprocess.PIPE, text=True)
line = host.stdout.readline()
port = int(line.rsplit(":", 1)[1])
asyncio.run(main(port))
host.send_signal(signal.SIGTERM)
sys.exit(host.wait(timeout=20))
"""
    try:
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        assert posts and all(path == "/v1/traces" for path, _ in posts)
        body = b"".join(b for _, b in posts)
        assert b"route echo" in body and b"autogen-http-host" in body  # span name, service.name
    finally:
        collector.shutdown()
