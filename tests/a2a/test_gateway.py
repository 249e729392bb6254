"""The expose side: a2a-sdk's own client against our A2AGateway, in front of our host and a worker.

Everything over loopback sockets: the host (HttpAgentServer), a worker hosting the agent, the
gateway (a2a-sdk's server under uvicorn, a worker of the host itself), and a2a-sdk's client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import anyio
import httpx
import pytest
from a2a.client import A2ACardResolver, ClientConfig, ClientFactory
from a2a.types import CancelTaskRequest, GetTaskRequest, Message, Part, Role, SendMessageRequest, Task, TaskState
from a2a.utils.errors import TaskNotCancelableError, TaskNotFoundError
from autogen_core import (
    AgentId,
    CancellationToken,
    MessageContext,
    RoutedAgent,
    TopicId,
    message_handler,
    try_get_known_serializers_for_type,
)
from google.protobuf import json_format

from io_backends import HttpAgentServer, HttpWorkerAgentRuntime, RemoteHandlerError
from io_backends.a2a import A2AAgent, A2AGateway, A2AMessage, A2ARemote, A2AReply, ExposedAgent
from io_backends.a2a._exposed import agent_card

from .conftest import TEARDOWN_TIMEOUT

pytestmark = pytest.mark.anyio
TOKEN = "gw-s3cret"
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Forecast:
    city: str
    high: int


@dataclass
class Ask:
    """What the test's ordinary AutoGen callers send (and get back)."""

    text: str


def _say(text: str) -> A2AReply:
    return A2AReply(text=text, parts=[{"text": text}])


class Weather(RoutedAgent):
    """The agent behind the host; what it does is chosen by the first word of the text."""

    cancelled: ClassVar[list[str]] = []
    turns: ClassVar[dict[str, int]] = {}

    def __init__(self) -> None:
        super().__init__("weather")

    @message_handler
    async def on_a2a(self, message: A2AMessage, ctx: MessageContext) -> Any:
        word = message.text.split(" ", 1)[0]
        if message.data:
            city = message.data[0]["city"]
            return Forecast(city=city, high=21)
        if word == "turn":
            n = Weather.turns[self.id.key] = Weather.turns.get(self.id.key, 0) + 1
            return _say(f"turn {n} of {self.id.key}")
        if word == "steps":
            for step in ("looking up", "thinking"):
                await self.publish_message(A2AMessage(step), TopicId("a2a.progress", self.id.key))
            return _say("sunny")
        if word == "slow":
            stop: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            ctx.cancellation_token.link_future(stop)  # CancelTask fires the token (our $/cancelRequest)
            try:
                await asyncio.wait_for(stop, 30)
            except asyncio.CancelledError:
                Weather.cancelled.append(self.id.key)
                raise
            return _say("too slow")
        if word == "boom":
            raise ValueError("no forecast for Atlantis")
        if word == "badparts":
            return A2AReply(parts=[{"notapart": 1}])
        if word == "ask":
            return A2AReply(state="input-required", parts=[{"text": "which city?"}])
        if word == "Paris":
            return _say("Paris: sunny")
        return _say(f"you said: {message.text}")

    @message_handler
    async def on_ask(self, message: Ask, ctx: MessageContext) -> Ask:
        return Ask(f"autogen caller said: {message.text}")


class Stack:
    def __init__(self, host: HttpAgentServer, worker: HttpWorkerAgentRuntime, gateway: A2AGateway) -> None:
        self.host, self.worker, self.gateway = host, worker, gateway
        self.url = gateway.agent_url("weather")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@contextlib.asynccontextmanager
async def _stack(**gateway_options: Any) -> AsyncIterator[Stack]:
    host = HttpAgentServer("127.0.0.1", port=0)
    host.start()
    address = f"http://127.0.0.1:{host.port}"
    worker = HttpWorkerAgentRuntime(address)
    worker.add_message_serializer(try_get_known_serializers_for_type(A2AMessage))
    worker.add_message_serializer(try_get_known_serializers_for_type(A2AReply))
    worker.add_message_serializer(try_get_known_serializers_for_type(Forecast))
    worker.add_message_serializer(try_get_known_serializers_for_type(Ask))
    gateway = A2AGateway(
        address,
        [
            ExposedAgent(
                "weather",
                description="Answers weather questions.",
                skills=[{"id": "f", "name": "Forecast", "description": "Tomorrow's weather.", "tags": ["weather"]}],
            )
        ],
        serializers=try_get_known_serializers_for_type(Forecast),
        **gateway_options,
    )
    try:
        with anyio.fail_after(15):
            await worker.start()
            await Weather.register(worker, "weather", Weather)
            await gateway.start()
        yield Stack(host, worker, gateway)
    finally:
        with anyio.fail_after(TEARDOWN_TIMEOUT):
            await gateway.stop()
            await worker.stop()
            await host.stop(grace=2)


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    async with _stack() as s:
        yield s


@pytest.fixture
async def guarded() -> AsyncIterator[Stack]:
    async with _stack(bearer_token=TOKEN) as s:
        yield s


def _message(text: str = "", *, context_id: str = "", task_id: str = "", data: Any = None) -> Message:
    parts = [Part(text=text)] if text else []
    if data is not None:
        parts.append(json_format.ParseDict({"data": data}, Part()))
    return Message(
        role=Role.ROLE_USER, message_id=f"m-{text}-{context_id}", parts=parts, context_id=context_id, task_id=task_id
    )


@contextlib.asynccontextmanager
async def _client(url: str, *, streaming: bool = False, token: str | None = None) -> AsyncIterator[Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(timeout=20, headers=headers) as http:
        yield await ClientFactory(ClientConfig(httpx_client=http, streaming=streaming)).create_from_url(url)


async def _sent(client: Any, request: SendMessageRequest) -> Task:
    """The Task a non-streaming client got for ``request`` (our gateway always answers with one)."""
    [response] = [r async for r in client.send_message(request)]
    assert response.HasField("task"), response
    return response.task


def _streamed_text(events: list[dict[str, Any]]) -> str:
    return "".join(
        p.get("text", "") for e in events if "artifactUpdate" in e for p in e["artifactUpdate"]["artifact"]["parts"]
    )


def _artifact_text(task: Any) -> str:
    return "".join(p.text for a in task.artifacts for p in a.parts)


async def test_the_card_is_discovered(stack: Stack) -> None:
    async with httpx.AsyncClient() as http:
        card = await A2ACardResolver(http, stack.url).get_agent_card()
        root = await A2ACardResolver(http, stack.gateway.url).get_agent_card()
    assert card.name == "weather" and card.description == "Answers weather questions."
    assert [(i.url, i.protocol_version) for i in card.supported_interfaces] == [(stack.url, "1.0"), (stack.url, "0.3")]
    assert card.capabilities.streaming and [s.id for s in card.skills] == ["f"]
    assert not card.security_schemes
    assert root == card  # one exposed agent: its card at the gateway's root too


async def test_send_calls_the_agent_per_context(stack: Stack) -> None:
    async with _client(stack.url) as client:
        replies = []
        for context_id in ("ctx-a", "ctx-a", "ctx-b"):
            task = await _sent(client, SendMessageRequest(message=_message("turn", context_id=context_id)))
            assert task.status.state == TaskState.TASK_STATE_COMPLETED and task.context_id == context_id
            replies.append(_artifact_text(task))
        task = await _sent(client, SendMessageRequest(message=_message(data={"city": "Oslo"})))
    assert replies == ["turn 1 of ctx-a", "turn 2 of ctx-a", "turn 1 of ctx-b"]
    [part] = task.artifacts[0].parts
    assert json_format.MessageToDict(part)["data"] == {"city": "Oslo", "high": 21}
    assert task.context_id  # the gateway (a2a-sdk) chose one, and it was the AgentId key


async def test_stream_carries_progress_then_the_answer(stack: Stack) -> None:
    async with _client(stack.url, streaming=True) as client:
        updates = [
            json_format.MessageToDict(e)
            async for e in client.send_message(SendMessageRequest(message=_message("steps", context_id="s1")))
        ]
        final_task = await client.get_task(GetTaskRequest(id=updates[0]["task"]["id"]))
    said = [
        p["text"]
        for u in updates
        if "statusUpdate" in u
        for p in u["statusUpdate"]["status"].get("message", {}).get("parts", [])
    ]
    states = [u["statusUpdate"]["status"]["state"] for u in updates if "statusUpdate" in u]
    assert said == ["looking up", "thinking"]
    assert states[-1] == "TASK_STATE_COMPLETED" and set(states[:-1]) == {"TASK_STATE_WORKING"}
    artifacts = [u["artifactUpdate"]["artifact"] for u in updates if "artifactUpdate" in u]
    assert [a["parts"] for a in artifacts] == [[{"text": "sunny"}]]
    assert [p.text for m in final_task.history for p in m.parts][-2:] == ["looking up", "thinking"]


async def test_get_and_cancel_reach_the_handler(stack: Stack) -> None:
    Weather.cancelled.clear()
    async with _client(stack.url) as client:
        request = SendMessageRequest(message=_message("slow", context_id="c1"))
        request.configuration.return_immediately = True
        task = await _sent(client, request)
        running = await client.get_task(GetTaskRequest(id=task.id))
        assert running.status.state in (TaskState.TASK_STATE_SUBMITTED, TaskState.TASK_STATE_WORKING)
        cancelled = await client.cancel_task(CancelTaskRequest(id=task.id))
        assert cancelled.status.state == TaskState.TASK_STATE_CANCELED
        with anyio.fail_after(5):
            while Weather.cancelled != ["c1"]:  # our $/cancelRequest fired the handler's token
                await anyio.sleep(0.02)
        assert (await client.get_task(GetTaskRequest(id=task.id))).status.state == TaskState.TASK_STATE_CANCELED
        with pytest.raises(TaskNotCancelableError):
            await client.cancel_task(CancelTaskRequest(id=task.id))
        with pytest.raises(TaskNotFoundError):
            await client.get_task(GetTaskRequest(id="no-such-task"))


async def test_a_failing_handler_fails_the_task(stack: Stack) -> None:
    async with _client(stack.url) as client:
        task = await _sent(client, SendMessageRequest(message=_message("boom")))
    assert task.status.state == TaskState.TASK_STATE_FAILED
    assert [p.text for p in task.status.message.parts] == ["ValueError: no forecast for Atlantis"]
    error = json_format.MessageToDict(task.status.message)["metadata"]["autogen.error"]
    assert error["exception_type"] == "ValueError" and error["code"] == -32004


async def test_an_answer_that_is_not_a2a_fails_the_task(stack: Stack) -> None:
    async with _client(stack.url) as client:
        task = await _sent(client, SendMessageRequest(message=_message("badparts")))
    assert task.status.state == TaskState.TASK_STATE_FAILED
    assert "ParseError" in task.status.message.parts[0].text and "notapart" in task.status.message.parts[0].text


async def test_input_required_continues_the_task(stack: Stack) -> None:
    async with _client(stack.url) as client:
        task = await _sent(client, SendMessageRequest(message=_message("ask", context_id="q")))
        assert task.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
        assert [p.text for p in task.status.message.parts] == ["which city?"]
        follow_up = SendMessageRequest(message=_message("Paris", context_id="q", task_id=task.id))
        done = await _sent(client, follow_up)
    assert done.id == task.id and done.status.state == TaskState.TASK_STATE_COMPLETED
    assert _artifact_text(done) == "Paris: sunny"


async def test_bearer_auth_refused_and_accepted(guarded: Stack) -> None:
    async with httpx.AsyncClient() as http:
        card = await A2ACardResolver(http, guarded.url).get_agent_card()  # the card stays public
    assert json_format.MessageToDict(card)["securitySchemes"] == {
        "bearer": {"httpAuthSecurityScheme": {"scheme": "Bearer"}}
    }
    for token in (None, "wrong"):
        async with _client(guarded.url, token=token) as client:
            with pytest.raises(Exception, match="401") as caught:
                _ = [r async for r in client.send_message(SendMessageRequest(message=_message("hello")))]
            assert "HTTP Error 401" in str(caught.value)
    async with _client(guarded.url, token=TOKEN) as client:
        task = await _sent(client, SendMessageRequest(message=_message("hello")))
    assert _artifact_text(task) == "you said: hello"


async def test_autogen_callers_and_a2a_clients_share_the_agent(stack: Stack) -> None:
    caller = HttpWorkerAgentRuntime(f"http://127.0.0.1:{stack.host.port}")
    caller.add_message_serializer(try_get_known_serializers_for_type(Ask))
    caller.add_message_serializer(try_get_known_serializers_for_type(A2AMessage))
    caller.add_message_serializer(try_get_known_serializers_for_type(A2AReply))
    await caller.start()
    try:
        async with _client(stack.url, streaming=True) as client:

            async def a2a(i: int) -> str:
                request = SendMessageRequest(message=_message(f"hello {i}", context_id=f"mix-{i}"))
                return _streamed_text([json_format.MessageToDict(e) async for e in client.send_message(request)])

            async def autogen(i: int) -> str:
                answer = await caller.send_message(Ask(f"hi {i}"), AgentId("weather", f"mix-{i}"))
                return str(answer.text)

            results = await asyncio.gather(*(f(i) for i in range(8) for f in (a2a, autogen)))
        assert results == [x for i in range(8) for x in (f"you said: hello {i}", f"autogen caller said: hi {i}")]
        with pytest.raises(RemoteHandlerError, match="no forecast for Atlantis"):
            await caller.send_message(A2AMessage("boom"), AgentId("weather", "direct"))
    finally:
        await caller.stop()


BAD_REQUESTS: list[tuple[str, bytes, int]] = [
    ("not JSON", b"{not json", -32700),
    ("a batch", b"[]", -32600),
    ("no method", json.dumps({"jsonrpc": "2.0", "id": 1}).encode(), -32600),
    ("unknown method", json.dumps({"jsonrpc": "2.0", "id": 1, "method": "Nope", "params": {}}).encode(), -32601),
    (
        "bad params",
        json.dumps({"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {"message": 5}}).encode(),
        -32602,
    ),
    (
        "push notifications",
        json.dumps(
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "CreateTaskPushNotificationConfig",
                "params": {"taskId": "t", "url": "http://127.0.0.1:1/"},
            }
        ).encode(),
        -32003,
    ),
]


async def test_bad_requests_get_a2a_errors_and_disturb_no_one(stack: Stack) -> None:
    async with _client(stack.url, streaming=True) as client:
        slow = SendMessageRequest(message=_message("steps", context_id="bystander"))
        bystander = asyncio.ensure_future(_collect(client.send_message(slow)))
        async with httpx.AsyncClient(timeout=10) as http:
            for what, body, code in BAD_REQUESTS:
                answer = await http.post(
                    stack.url, content=body, headers={"Content-Type": "application/json", "A2A-Version": "1.0"}
                )
                assert answer.status_code == 200, what
                assert answer.json()["error"]["code"] == code, (what, answer.text)
            unknown = {"jsonrpc": "2.0", "id": 2, "method": "GetTask", "params": {"id": "nope"}}
            answer = await http.post(stack.url, json=unknown, headers={"A2A-Version": "1.0"})
            assert answer.json()["error"]["code"] == -32001
            no_text = {
                "jsonrpc": "2.0",
                "id": 3,
                "method": "SendMessage",
                "params": {"message": {"messageId": "x", "role": "ROLE_USER", "parts": [{"data": 1}]}},
            }
            assert (await http.post(stack.url, json=no_text, headers={"A2A-Version": "1.0"})).status_code == 200
        events = [json_format.MessageToDict(e) for e in await bystander]
        assert events[-1]["statusUpdate"]["status"]["state"] == "TASK_STATE_COMPLETED"
        events = [
            json_format.MessageToDict(e)
            async for e in client.send_message(SendMessageRequest(message=_message("hello again")))
        ]
        assert _streamed_text(events) == "you said: hello again"


async def _collect(stream: Any) -> list[Any]:
    return [r async for r in stream]


async def test_a_typed_agent_refuses_other_parts_and_an_absent_agent_fails_the_task() -> None:
    host = HttpAgentServer("127.0.0.1", port=0)
    host.start()
    address = f"http://127.0.0.1:{host.port}"
    gateway = A2AGateway(address, [ExposedAgent("weather", description="forecasts", message_type=Forecast)])
    try:
        await gateway.start()
        async with httpx.AsyncClient(timeout=10) as http:
            body = {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "SendMessage",
                "params": {"message": {"messageId": "x", "role": "ROLE_USER", "parts": [{"text": "Oslo"}]}},
            }
            answer = (await http.post(gateway.agent_url("weather"), json=body, headers={"A2A-Version": "1.0"})).json()
        assert answer["error"]["code"] == -32602
        assert "takes a Forecast: send one data part, an object of its fields" in answer["error"]["message"]
        async with _client(gateway.agent_url("weather")) as client:  # no worker hosts "weather"
            task = await _sent(client, SendMessageRequest(message=_message(data={"city": "Oslo", "high": 3})))
        assert task.status.state == TaskState.TASK_STATE_FAILED
        assert "AgentTypeNotFoundError" in task.status.message.parts[0].text
    finally:
        await gateway.stop()
        await host.stop(grace=2)


async def test_the_cli_serves_until_sigterm(stack: Stack) -> None:
    """``python -m io_backends.a2a`` in a process of its own, in front of the same host."""
    env = {**os.environ, "GW_TOKEN": TOKEN}
    address = f"http://127.0.0.1:{stack.host.port}"
    command = [
        sys.executable,
        "-m",
        "io_backends.a2a",
        address,
        "--expose",
        "weather=Weather.",
        "--token-env",
        "GW_TOKEN",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        line = await anyio.to_thread.run_sync(_first_line, process)
        assert line.startswith("A2A gateway at http://127.0.0.1:"), line
        url = line.split()[-1] + "/weather"
        async with _client(url, token=TOKEN) as client:
            task = await _sent(client, SendMessageRequest(message=_message("hello cli")))
        assert _artifact_text(task) == "you said: hello cli"
        process.send_signal(signal.SIGTERM)
        assert await anyio.to_thread.run_sync(lambda: process.wait(TEARDOWN_TIMEOUT)) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(TEARDOWN_TIMEOUT)
        assert process.stdout is not None
        process.stdout.close()


def _first_line(process: subprocess.Popen[str]) -> str:
    from .conftest import START_TIMEOUT, _read_line

    return _read_line(process, START_TIMEOUT)


async def test_a2a_0_3_requests_and_list_tasks(stack: Stack) -> None:
    """0.3's method names and JSON on the same endpoint (a2a-sdk's compatibility layer); ListTasks."""
    send = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "message/send",
        "params": {
            "message": {
                "kind": "message",
                "messageId": "v03",
                "role": "user",
                "contextId": "old-client",
                "parts": [{"kind": "text", "text": "hello 0.3"}],
            }
        },
    }
    async with httpx.AsyncClient(timeout=10) as http:
        task = (await http.post(stack.url, json=send, headers={"A2A-Version": "0.3"})).json()["result"]
        listed = {"jsonrpc": "2.0", "id": 2, "method": "ListTasks", "params": {"contextId": "old-client"}}
        tasks = (await http.post(stack.url, json=listed, headers={"A2A-Version": "1.0"})).json()["result"]["tasks"]
    assert task["kind"] == "task" and task["status"]["state"] == "completed"
    assert task["artifacts"][0]["parts"] == [{"kind": "text", "text": "you said: hello 0.3"}]
    assert [t["id"] for t in tasks] == [task["id"]]


async def test_our_a2a_agent_through_the_gateway_round_trip(guarded: Stack) -> None:
    """Consume meets expose: an A2AAgent calls the gateway, which calls the agent on the host;
    cancelling the AutoGen call cancels the A2A task, which cancels the handler."""
    Weather.cancelled.clear()
    caller = HttpWorkerAgentRuntime(f"http://127.0.0.1:{guarded.host.port}")
    await caller.start()
    try:
        async with A2ARemote(guarded.url, bearer_token=TOKEN) as remote:
            await A2AAgent.register(caller, "weather-via-a2a", lambda: A2AAgent(remote))
            reply = await caller.send_message(A2AMessage("hello loop"), AgentId("weather-via-a2a", "loop-1"))
            assert isinstance(reply, A2AReply) and reply.text == "you said: hello loop"
            assert reply.context_id == "loop-1" and reply.state == "completed"
            token = CancellationToken()
            call = asyncio.ensure_future(
                caller.send_message(A2AMessage("slow"), AgentId("weather-via-a2a", "loop-2"), cancellation_token=token)
            )
            await asyncio.sleep(0.5)
            token.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            with anyio.fail_after(5):
                while Weather.cancelled != ["loop-2"]:
                    await anyio.sleep(0.02)
    finally:
        await caller.stop()


def test_the_card_takes_every_field_of_the_exposed_agent() -> None:
    exposed = ExposedAgent(
        "t",
        description="d",
        name="Tee",
        version="2.1",
        streaming=False,
        provider={"organization": "Acme", "url": "https://acme.example"},
        documentation_url="https://acme.example/docs",
        input_modes=["text/plain"],
        extra_card={"capabilities": {"extensions": [{"uri": "urn:x"}]}},
    )
    card = json_format.MessageToDict(agent_card(exposed, "http://127.0.0.1:1/t", bearer=False))
    assert (card["name"], card["version"], card["documentationUrl"]) == ("Tee", "2.1", "https://acme.example/docs")
    assert card["provider"] == {"organization": "Acme", "url": "https://acme.example"}
    assert card["capabilities"] == {"streaming": False, "pushNotifications": False, "extensions": [{"uri": "urn:x"}]}
    assert card["defaultInputModes"] == ["text/plain"] and "securitySchemes" not in card
    assert card["skills"] == [{"id": "t", "name": "Tee", "description": "d", "tags": ["autogen"]}]
    with pytest.raises(ValueError, match="needs a description"):
        ExposedAgent("t", description=" ")
