"""The host mounted in FastAPI and served by uvicorn (started here on a free loopback port), with
middleware in front: workers call and publish through it at ``http://127.0.0.1:port/agents``,
CloudEvents, status, metrics and the page are served under the mount, and the faults that apply
to a channel (bad frames, an oversized message, a taken client id, credentials) are answered as
the host's own server answers them."""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
import uvicorn
from autogen_core import AgentId, MessageContext, RoutedAgent, TopicId, TypeSubscription, message_handler
from cloudevents.core.bindings.http import to_binary_event
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent as SdkEvent
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from starlette.responses import JSONResponse

from io_backends import HostRejectedError, HttpWorkerAgentRuntime
from io_backends.host import HttpAgentService
from tests.e2e._common import Answer, Ask, EchoAgent, Note, all_serializers, wait_until
from tests.faults._raw import open_raw_channel

pytestmark = pytest.mark.anyio

Scope = dict[str, Any]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # uvicorn serves on asyncio


class Recorder:
    """Pure ASGI middleware that records every request it lets through."""

    def __init__(self, app: Callable[..., Any], log: list[tuple[str, str]]) -> None:
        self.app = app
        self.log = log

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            self.log.append((scope["type"], scope["path"]))
        await self.app(scope, receive, send)


class RejectHeader:
    """Pure ASGI middleware that refuses any request carrying ``X-Forbidden``."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket") and any(k == b"x-forbidden" for k, _ in scope["headers"]):
            if scope["type"] == "http":
                await JSONResponse({"refused": "by middleware"}, status_code=403)(scope, receive, send)
            else:
                await receive()
                await send({"type": "websocket.close", "code": 1008})
            return
        await self.app(scope, receive, send)


@dataclass
class Site:
    service: HttpAgentService
    port: int
    log: list[tuple[str, str]] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.port}/agents"


@pytest.fixture
async def site(request: pytest.FixtureRequest) -> AsyncIterator[Site]:
    """FastAPI with the host mounted at /agents behind two middlewares, under uvicorn on a free port."""
    service = HttpAgentService(**getattr(request, "param", {}))
    app = FastAPI()
    app.mount("/agents", service.asgi_app())

    @app.get("/")
    async def home() -> dict[str, str]:
        return {"app": "mine"}

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    site = Site(service, sock.getsockname()[1])
    app.add_middleware(Recorder, log=site.log)
    app.add_middleware(RejectHeader)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", ws="wsproto"))
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    try:
        with anyio.fail_after(10):
            while not server.started:
                assert not task.done(), task
                await asyncio.sleep(0.01)
        yield site
    finally:
        server.should_exit = True
        with anyio.fail_after(10):
            await task
        sock.close()


def request(
    port: int, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


async def fetch(
    port: int, method: str, path: str, body: bytes | None = None, **headers: str
) -> tuple[int, dict[str, str], bytes]:
    named = {k.replace("_", "-"): v for k, v in headers.items()}
    return await asyncio.wait_for(asyncio.to_thread(request, port, method, path, body, named), 15)


async def worker_at(address: str, **kwargs: Any) -> HttpWorkerAgentRuntime:
    worker = HttpWorkerAgentRuntime(address, **kwargs)
    worker.add_message_serializer(all_serializers())
    with anyio.fail_after(10):
        await worker.start()
    return worker


class Sink(RoutedAgent):
    def __init__(self, log: list[tuple[AgentId, Note, MessageContext]]) -> None:
        super().__init__("sink")
        self.log = log

    @message_handler
    async def on_note(self, message: Note, ctx: MessageContext) -> None:
        self.log.append((self.id, message, ctx))


async def test_workers_call_and_publish_through_the_mounted_host(site: Site) -> None:
    received: list[tuple[AgentId, Note, MessageContext]] = []
    echo = await worker_at(site.address, client_id="echo-worker")
    caller = await worker_at(site.address + "/")  # a trailing slash is the same base path
    try:
        await echo.register_factory("echo", lambda: EchoAgent())
        await echo.register_factory("sink", lambda: Sink(received))
        await echo.add_subscription(TypeSubscription("news", "sink"))
        for i in range(20):
            assert await caller.send_message(Ask(f"m{i}"), AgentId("echo", "k")) == Answer(f"k:{f'm{i}'[::-1]}")
        await caller.publish_message(Note("from a worker", 1), TopicId("news", "room"))
        # CloudEvents from the official SDK, under the mount, reach the same subscriber.
        event = SdkEvent(
            {"id": "ce-1", "source": "room", "type": "news", "dataschema": "Note"}, {"text": "ce", "seq": 2}
        )
        message = to_binary_event(event, JSONFormat())
        status, _, _ = await fetch(site.port, "POST", "/agents/v1/events", bytes(message.body), **dict(message.headers))
        assert status == 204
        assert await wait_until(lambda: len(received) == 2, 10)
        assert [(a, n.text, c.message_id) for a, n, c in received][1] == (AgentId("sink", "room"), "ce", "ce-1")
        # The user's app and the host share the server; the middleware saw the channels and requests.
        assert json.loads((await fetch(site.port, "GET", "/"))[2]) == {"app": "mine"}
        assert ("websocket", "/agents/v1/channel") in site.log and ("http", "/agents/v1/events") in site.log

        doc = json.loads((await fetch(site.port, "GET", "/agents/v1/status"))[2])
        (worker,) = [w for w in doc["workers"] if w["name"] == "echo-worker"]
        assert sorted(worker["agent_types"]) == ["echo", "sink"] and worker["subscriptions"] == 1
        assert doc["totals"]["calls_routed"] == 20 and worker["messages_in"] >= 20
        assert worker["address"].startswith("127.0.0.1:")
        metrics = (await fetch(site.port, "GET", "/agents/metrics"))[2].decode()
        samples = {s.name: s.value for f in text_string_to_metric_families(metrics) for s in f.samples if not s.labels}
        assert samples["autogen_http_host_calls_routed_total"] == 20
        assert samples["autogen_http_host_call_duration_seconds_count"] == 20
        status, headers, page = await fetch(site.port, "GET", "/agents/ui")
        assert status == 200 and "content-security-policy" in headers and b"v1/status" in page
        # A one-shot /v1/rpc call through the mount.
        call = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "agent.call",
            "params": {
                "target": {"type": "echo", "key": "h"},
                "data_type": "Ask",
                "data_content_type": "application/json",
                "data": {"text": "ab"},
            },
        }
        status, _, body = await fetch(
            site.port, "POST", "/agents/v1/rpc", json.dumps(call).encode(), content_type="application/json"
        )
        assert status == 200 and json.loads(body)["result"]["data"] == {"text": "h:ba"}, body
    finally:
        await caller.stop()
        await echo.stop()
    assert await wait_until(lambda: site.service.hub.mounted_count == 0, 5)
    assert site.service.engine.agent_types() == {}  # a stopped worker's types are released


async def test_middleware_in_front_refuses_and_the_host_routes_the_rest(site: Site) -> None:
    status, _, body = await fetch(site.port, "GET", "/agents/healthz", x_forbidden="1")
    assert status == 403 and json.loads(body) == {"refused": "by middleware"}
    with pytest.raises(ConnectionRefusedError):
        await open_raw_channel(site.port, [(b"x-forbidden", b"1")], target="/agents/v1/channel")
    assert site.service.hub.mounted_count == 0 and site.service.engine.agent_types() == {}
    status, _, body = await fetch(site.port, "GET", "/agents/nope")
    assert status == 404 and b"no such endpoint" in body
    status, headers, _ = await fetch(site.port, "GET", "/agents/v1/rpc")
    assert status == 405 and headers["allow"] == "POST"
    assert (await fetch(site.port, "GET", "/agents/v1/channel"))[0] == 426
    status, _, body = await fetch(site.port, "POST", "/agents/v1/rpc", b"{}", content_type="text/plain")
    assert status == 415
    too_big = b"x" * (site.service.max_message_size + 1)
    status, _, _ = await fetch(site.port, "POST", "/agents/v1/rpc", too_big, content_type="application/json")
    assert status == 413
    status, _, body = await fetch(
        site.port, "POST", "/agents/v1/events", b"{}", content_type="application/cloudevents+json"
    )
    assert status == 400 and b"missing required attribute" in body


async def test_channel_faults_are_answered_as_the_native_host_answers(site: Site) -> None:
    channel = await open_raw_channel(site.port, target="/agents/v1/channel")
    await channel.send_text("garbage")
    assert (await channel.next_json())["error"]["code"] == -32700
    await channel.send_json({"jsonrpc": "2.0", "id": 1, "method": "runtime.register_agent", "params": {"type": "a"}})
    assert (await channel.next_json())["result"] is None
    await channel.send_text('"' + "x" * (site.service.max_message_size + 10) + '"')
    assert await channel.wait_closed() == 1009
    assert await wait_until(lambda: site.service.engine.agent_types() == {}, 5)  # released with the close

    first = await open_raw_channel(site.port, [(b"x-client-id", b"worker-7")], target="/agents/v1/channel")
    with pytest.raises(ConnectionRefusedError) as refused:
        await open_raw_channel(site.port, [(b"x-client-id", b"worker-7")], target="/agents/v1/channel")
    assert refused.value.args[0] == 409
    await first.aclose()
    # The host still serves workers.
    worker = await worker_at(site.address)
    await worker.register_factory("echo", lambda: EchoAgent())
    assert await worker.send_message(Ask("ok"), AgentId("echo", "k")) == Answer("k:ko")
    await worker.stop()


@pytest.mark.parametrize("site", [{"auth_token": "s3cret"}], indirect=True)
async def test_credentials_on_the_mounted_host(site: Site) -> None:
    with pytest.raises(HostRejectedError) as missing:
        await worker_at(site.address)
    assert missing.value.status_code == 401
    worker = await worker_at(site.address, auth_token="s3cret")
    try:
        await worker.register_factory("echo", lambda: EchoAgent())
        assert await worker.send_message(Ask("ok"), AgentId("echo", "k")) == Answer("k:ko")
        for method, path in (("GET", "/v1/status"), ("GET", "/metrics"), ("GET", "/ui"), ("POST", "/v1/events")):
            status, headers, _ = await fetch(site.port, method, "/agents" + path, b"")
            assert status == 401 and headers["www-authenticate"] == "Bearer", path
        status, _, _ = await fetch(site.port, "GET", "/agents/v1/status", authorization="Bearer s3cret")
        assert status == 200
        assert (await fetch(site.port, "GET", "/agents/healthz"))[0] == 200
    finally:
        await worker.stop()


async def test_a_call_deadline_runs_out_under_the_mount(site: Site) -> None:
    """The hub's deadlines run on the server's loop: a call nobody answers fails with -32006."""
    target = await open_raw_channel(site.port, target="/agents/v1/channel")
    await target.send_json({"jsonrpc": "2.0", "id": 1, "method": "runtime.register_agent", "params": {"type": "mute"}})
    assert (await target.next_json())["result"] is None
    caller = await open_raw_channel(site.port, target="/agents/v1/channel")
    await caller.send_json(
        {
            "jsonrpc": "2.0",
            "id": 5,
            "method": "agent.call",
            "params": {
                "target": {"type": "mute", "key": "k"},
                "data_type": "Ask",
                "data_content_type": "application/json",
                "data": {"text": "x"},
                "timeout_ms": 200,
            },
        }
    )
    assert (await target.next_json())["method"] == "agent.call"
    answer = await caller.next_json(timeout=5)
    assert answer["id"] == 5 and answer["error"]["code"] == -32006
    assert (await target.next_json())["method"] == "$/cancelRequest"
    await caller.aclose()
    await target.aclose()
