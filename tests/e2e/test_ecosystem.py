"""The host's endpoints around the protocol, over real sockets with real workers: ``POST /v1/events``
(requests built by the official ``cloudevents`` SDK), ``GET /v1/status``, ``GET /metrics``,
``GET /ui``, their credentials and their switches; on both host drivers (asyncio protocols, anyio
streams)."""

from __future__ import annotations

import asyncio
import http.client
import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from autogen_core import AgentId, MessageContext, RoutedAgent, TopicId, TypeSubscription, message_handler
from cloudevents.core.bindings.http import to_binary_event, to_structured_event
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent as SdkEvent
from prometheus_client.parser import text_string_to_metric_families

from io_backends import HttpAgentServer, HttpWorkerAgentRuntime
from io_backends.host import HttpAgentService

from ._common import Answer, Ask, EchoAgent, Note, all_serializers, wait_until

pytestmark = pytest.mark.anyio

Headers = dict[str, str]


class Sink(RoutedAgent):
    def __init__(self, log: list[tuple[AgentId, Note, MessageContext]]) -> None:
        super().__init__("sink")
        self.log = log

    @message_handler
    async def on_note(self, message: Note, ctx: MessageContext) -> None:
        self.log.append((self.id, message, ctx))


def request(
    port: int, method: str, path: str, body: bytes | None = None, headers: Headers | None = None
) -> tuple[int, Headers, bytes]:
    """One blocking HTTP/1.1 request (run it in a thread)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


async def fetch(
    port: int, method: str, path: str, body: bytes | None = None, headers: Headers | None = None
) -> tuple[int, Headers, bytes]:
    return await asyncio.wait_for(asyncio.to_thread(request, port, method, path, body, headers), 15)


def sdk_event(data: Any, **attributes: str) -> SdkEvent:
    base = {"id": "e-1", "source": "room-1", "type": "news", "specversion": "1.0", "dataschema": "Note"}
    base.update(attributes)
    return SdkEvent(attributes=base, data=data)


def http_message(message: Any) -> tuple[bytes, Headers]:
    """The body and headers of a cloudevents HTTPMessage."""
    return bytes(message.body), {str(k): str(v) for k, v in message.headers.items()}


@pytest.fixture(params=["asyncio", "anyio"])
async def service(request: pytest.FixtureRequest) -> AsyncIterator[tuple[HttpAgentService, int]]:
    """A host on a free loopback port: the asyncio driver (``start()``) or the anyio one (``serve()``)."""
    server = HttpAgentServer("127.0.0.1", port=0)
    if request.param == "asyncio":
        server.start()
        try:
            yield server.service, server.port
        finally:
            with anyio.fail_after(10):
                await server.stop(grace=2)
        return
    async with anyio.create_task_group() as tg:
        port = await tg.start(server.serve)
        try:
            yield server.service, port
        finally:
            with anyio.fail_after(10):
                await server.stop(grace=2)


async def worker_at(port: int, **kwargs: Any) -> HttpWorkerAgentRuntime:
    worker = HttpWorkerAgentRuntime(f"http://127.0.0.1:{port}", **kwargs)
    worker.add_message_serializer(all_serializers())
    with anyio.fail_after(10):
        await worker.start()
    return worker


async def test_cloudevents_from_the_sdk_reach_a_subscribed_agent(service: tuple[HttpAgentService, int]) -> None:
    """Binary, structured and batch requests built by the official SDK become AutoGen events."""
    _, port = service
    log: list[tuple[AgentId, Note, MessageContext]] = []
    worker = await worker_at(port)
    try:
        await worker.register_factory("sink", lambda: Sink(log))
        await worker.add_subscription(TypeSubscription("news", "sink"))
        json_format = JSONFormat()

        body, headers = http_message(to_binary_event(sdk_event({"text": "binary", "seq": 1}, id="b-1"), json_format))
        assert "ce-specversion" in headers
        status, _, answer = await fetch(port, "POST", "/v1/events", body, headers)
        assert status == 204 and answer == b""

        event = sdk_event({"text": "structured", "seq": 2}, id="s-1", source="room-2")
        body, headers = http_message(to_structured_event(event, json_format))
        assert headers["content-type"].startswith("application/cloudevents+json")
        assert (await fetch(port, "POST", "/v1/events", body, headers))[0] == 204

        batch = [sdk_event({"text": f"batch {i}", "seq": 10 + i}, id=f"batch-{i}", source="room-3") for i in range(3)]
        batch_body = b"[" + b",".join(json_format.write(e) for e in batch) + b"]"  # (the SDK has no batch writer)
        headers = {"content-type": "application/cloudevents-batch+json"}
        assert (await fetch(port, "POST", "/v1/events", batch_body, headers))[0] == 204

        assert await wait_until(lambda: len(log) == 5, 10), [n.text for _, n, _ in log]
        by_text = {note.text: (agent, ctx) for agent, note, ctx in log}
        agent, ctx = by_text["binary"]
        assert agent == AgentId("sink", "room-1") and ctx.message_id == "b-1"
        assert ctx.topic_id == TopicId("news", "room-1") and ctx.sender is None and not ctx.is_rpc
        assert by_text["structured"][0] == AgentId("sink", "room-2")
        assert [n.seq for _, n, _ in log if n.text.startswith("batch")] == [10, 11, 12]  # in batch order
    finally:
        await worker.stop()


async def test_malformed_events_are_refused_with_a_reason(service: tuple[HttpAgentService, int]) -> None:
    host, port = service
    cases = [
        (
            {"content-type": "application/cloudevents+json"},
            b'{"specversion":"1.0","id":"1","type":"news"}',
            400,
            "missing required attribute(s): source",
        ),
        ({"content-type": "application/cloudevents+avro"}, b"x", 415, "not supported"),
        ({"content-type": "application/json"}, b'{"a":1}', 400, "not a CloudEvent"),
        (
            {"content-type": "application/cloudevents-batch+json"},
            b'[{"specversion":"1.0","id":"1","source":"s","type":"news"},{"specversion":"1.0","id":"2","type":"n"}]',
            400,
            "event 1 of the batch",
        ),
        ({"content-type": "application/cloudevents+json"}, b"not json", 400, "not one CloudEvent"),
    ]
    for headers, body, status, says in cases:
        got, answer_headers, answer = await fetch(port, "POST", "/v1/events", body, headers)
        assert got == status, (body, answer)
        assert answer_headers["content-type"] == "application/json"
        assert says in json.loads(answer)["error"]["message"], answer
    assert host.engine.stats.events_published == 0  # a bad batch publishes nothing
    status, headers, _ = await fetch(port, "GET", "/v1/events")
    assert status == 405 and headers["allow"] == "POST"
    too_big = b"x" * (host.max_message_size + 1)
    status, _, answer = await fetch(port, "POST", "/v1/events", too_big, {"ce-specversion": "1.0"})
    assert status == 413, answer
    # The host still serves (the 413 closed only that connection).
    assert (await fetch(port, "GET", "/healthz"))[0] == 200


async def test_status_shows_workers_types_subscriptions_and_traffic(service: tuple[HttpAgentService, int]) -> None:
    _, port = service
    worker = await worker_at(port, client_id="echo-worker")
    caller = await worker_at(port)
    try:
        await worker.register_factory("echo", lambda: EchoAgent())
        await worker.add_subscription(TypeSubscription("news", "echo"))
        for i in range(5):
            answer = await caller.send_message(Ask(f"hi {i}"), AgentId("echo", "k"))
            assert isinstance(answer, Answer)
        status, headers, body = await fetch(port, "GET", "/v1/status")
        assert status == 200 and headers["content-type"] == "application/json"
        doc = json.loads(body)
        assert doc["version"] == 1 and doc["totals"]["workers"] == 2
        assert doc["totals"]["calls_routed"] == 5 and doc["totals"]["calls_failed"] == 0
        (echo,) = [w for w in doc["workers"] if w["name"] == "echo-worker"]
        assert echo["agent_types"] == ["echo"] and echo["subscriptions"] == 1 and echo["pending_calls"] == 0
        assert echo["messages_in"] >= 7 and echo["messages_out"] >= 5 and echo["bytes_in"] > 0
        assert echo["address"].startswith("127.0.0.1:")
        assert doc["agent_types"] == [{"type": "echo", "owner": echo["id"], "owner_name": "echo-worker"}]
        assert [(s["topic"], s["agent_type"]) for s in doc["subscriptions"]] == [("news", "echo")]
        await anyio.sleep(0.3)  # past the minimum sample interval: the next document has rates
        for i in range(5):
            await caller.send_message(Ask(f"again {i}"), AgentId("echo", "k"))
        doc = json.loads((await fetch(port, "GET", "/v1/status"))[2])
        assert doc["rates"]["calls_per_second"] > 0
        await caller.stop()
        doc = json.loads((await fetch(port, "GET", "/v1/status"))[2])
        assert [w["name"] for w in doc["workers"]] == ["echo-worker"]
    finally:
        await worker.stop()


async def test_metrics_parse_and_count_what_happened(service: tuple[HttpAgentService, int]) -> None:
    _, port = service
    worker = await worker_at(port)
    try:
        await worker.register_factory("echo", lambda: EchoAgent())
        for i in range(3):
            await worker.send_message(Ask(f"m{i}"), AgentId("echo", "k"))
        with pytest.raises(Exception, match="no connected worker"):
            await worker.send_message(Ask("x"), AgentId("nobody", "k"))
        status, headers, body = await fetch(port, "GET", "/metrics")
        assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body.decode())
            for s in family.samples
        }
        assert samples[("autogen_http_host_calls_routed_total", ())] == 3
        assert samples[("autogen_http_host_call_duration_seconds_count", ())] == 3
        failed = (("code", "-32001"), ("error", "agent_type_not_found"))
        assert samples[("autogen_http_host_calls_failed_total", failed)] == 1
        assert samples[("autogen_http_host_connections", (("kind", "channel"),))] == 1
        assert samples[("autogen_http_host_received_bytes_total", ())] > 0
        status, headers, body = await fetch(port, "GET", "/metrics", headers={"accept": "application/openmetrics-text"})
        assert status == 200 and headers["content-type"].startswith("application/openmetrics-text")
        assert body.endswith(b"# EOF\n")
    finally:
        await worker.stop()


async def test_status_page_is_served_with_its_policy(service: tuple[HttpAgentService, int]) -> None:
    _, port = service
    status, headers, body = await fetch(port, "GET", "/ui")
    assert status == 200 and headers["content-type"] == "text/html; charset=utf-8"
    assert "default-src 'none'" in headers["content-security-policy"] and b"v1/status" in body


@pytest.mark.parametrize("service", ["asyncio"], indirect=True)
async def test_every_route_takes_the_same_credentials(service: tuple[HttpAgentService, int]) -> None:
    del service  # a host of its own, with a token
    server = HttpAgentServer("127.0.0.1", port=0, auth_token="s3cret")
    server.start()
    try:
        port = server.port
        event = b'{"specversion":"1.0","id":"1","source":"s","type":"news","data":null}'
        routes = [
            ("POST", "/v1/events", event, {"content-type": "application/cloudevents+json"}, 204),
            ("GET", "/v1/status", None, {}, 200),
            ("GET", "/metrics", None, {}, 200),
            ("GET", "/ui", None, {}, 200),
            (
                "POST",
                "/v1/rpc",
                b'{"jsonrpc":"2.0","id":1,"method":"runtime.get_subscriptions"}',
                {"content-type": "application/json"},
                200,
            ),
        ]
        for method, path, body, headers, ok in routes:
            status, answer_headers, _ = await fetch(port, method, path, body, headers)
            assert status == 401 and answer_headers["www-authenticate"] == "Bearer", path
            wrong = {**headers, "authorization": "Bearer nope"}
            assert (await fetch(port, method, path, body, wrong))[0] == 401, path
            right = {**headers, "authorization": "Bearer s3cret"}
            assert (await fetch(port, method, path, body, right))[0] == ok, path
        assert (await fetch(port, "GET", "/healthz"))[0] == 200  # health needs no credentials
    finally:
        await server.stop(grace=2)


@pytest.mark.parametrize("service", ["asyncio"], indirect=True)
async def test_routes_can_be_turned_off(service: tuple[HttpAgentService, int], monkeypatch: pytest.MonkeyPatch) -> None:
    del service
    off = HttpAgentService(events=False, status=False, metrics=False, ui=False)
    server = HttpAgentServer("127.0.0.1", port=0, service=off)
    server.start()
    try:
        for method, path in (("POST", "/v1/events"), ("GET", "/v1/status"), ("GET", "/metrics"), ("GET", "/ui")):
            status, _, body = await fetch(server.port, method, path, b"{}")
            assert status == 404 and b"turned off" in body, path
        assert (await fetch(server.port, "GET", "/healthz"))[0] == 200
    finally:
        await server.stop(grace=2)
    # Without prometheus-client, /metrics names the extra (and metrics=True refuses to start).
    from io_backends.host import _metrics, _service

    def unavailable(*args: object, **kwargs: object) -> None:
        raise _metrics.MetricsUnavailable("no prometheus-client here")

    monkeypatch.setattr(_service, "HostMetrics", unavailable)
    with pytest.raises(_metrics.MetricsUnavailable):
        HttpAgentService(metrics=True)
    server = HttpAgentServer("127.0.0.1", port=0, service=HttpAgentService())
    server.start()
    try:
        status, _, body = await fetch(server.port, "GET", "/metrics")
        assert status == 501 and b"autogen-http-runtime-ng[metrics]" in body
    finally:
        await server.stop(grace=2)
