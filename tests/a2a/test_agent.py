"""A2AAgent end to end: a caller worker -> our host -> the worker hosting the A2AAgent -> an a2a-sdk
server (another process, uvicorn on loopback), and back."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import anyio
import pytest
from autogen_core import (
    AgentId,
    CancellationToken,
    MessageContext,
    RoutedAgent,
    SingleThreadedAgentRuntime,
    message_handler,
    try_get_known_serializers_for_type,
)

from io_backends import HttpWorkerAgentRuntime, RemoteHandlerError
from io_backends.a2a import (
    A2AAgent,
    A2AAuthError,
    A2AHttpError,
    A2AMessage,
    A2ARemote,
    A2AReply,
    A2ATaskFailedError,
    A2ATimeoutError,
    A2AUnreachableError,
)

from ..e2e._common import StringSerializer
from .conftest import RemoteAgent, running

pytestmark = pytest.mark.anyio

Workers = tuple[HttpWorkerAgentRuntime, HttpWorkerAgentRuntime]
CALL_TIMEOUT = 20.0


@dataclass
class ForecastQuery:
    city: str
    op: str = "forecast"


@dataclass
class Forecast:
    city: str
    high: int
    unit: str


@pytest.fixture
async def remote(remote_agent: RemoteAgent) -> AsyncIterator[A2ARemote]:
    async with A2ARemote(remote_agent.url) as shared:
        yield shared


async def _weather(workers: Workers, remote: A2ARemote, **options: object) -> HttpWorkerAgentRuntime:
    caller, callee = workers
    await A2AAgent.register(callee, "weather", lambda: A2AAgent(remote, **options))  # type: ignore[arg-type]
    return caller


def _carry(workers: Workers, *types: type) -> None:
    """Both workers read and write ``types`` (a message crossing the host needs its serializer at both ends)."""
    for worker in workers:
        for cls in types:
            worker.add_message_serializer(try_get_known_serializers_for_type(cls))


async def _ask(caller: HttpWorkerAgentRuntime, message: object, key: str = "conv-1") -> object:
    with anyio.fail_after(CALL_TIMEOUT):
        return await caller.send_message(message, AgentId("weather", key))


async def test_text_answer_is_the_reply(workers: Workers, remote: A2ARemote) -> None:
    caller = await _weather(workers, remote)
    reply = await _ask(caller, A2AMessage("hello there"))
    assert reply == A2AReply(
        text="you said: hello there",
        parts=[{"text": "you said: hello there"}],
        state="completed",
        task_id="",
        context_id="conv-1",
    )


async def test_a_str_gets_a_str(workers: Workers, remote: A2ARemote) -> None:
    caller, callee = workers
    for worker in workers:
        worker.add_message_serializer(StringSerializer())
    caller = await _weather((caller, callee), remote)
    assert await _ask(caller, "hi") == "you said: hi"


async def test_data_answer_from_a_task_with_artifacts(workers: Workers, remote: A2ARemote) -> None:
    _carry(workers, ForecastQuery)
    caller = await _weather(workers, remote)
    reply = await _ask(caller, ForecastQuery("Paris"))
    assert isinstance(reply, A2AReply)
    assert reply.data == [{"city": "Paris", "high": 21, "unit": "C"}]  # whole numbers come back as int
    assert isinstance(reply.data[0]["high"], int)
    assert reply.text == "Paris: 21 C"
    assert [a["name"] for a in reply.artifacts] == ["forecast", "summary"]
    assert reply.state == "completed" and reply.task_id and reply.context_id == "conv-1"


async def test_a_message_type_of_the_users_choice(workers: Workers, remote: A2ARemote) -> None:
    """A dataclass in, a dataclass out: from_a2a builds the reply type from the data part."""
    _carry(workers, ForecastQuery, Forecast)
    caller = await _weather(workers, remote, from_a2a=lambda reply: Forecast(**reply.data[0]))
    assert await _ask(caller, ForecastQuery("Oslo")) == Forecast("Oslo", 21, "C")


@pytest.mark.parametrize("mode", ["streaming", "polling"])
async def test_appended_artifact_chunks_make_one_artifact(
    workers: Workers, remote_agent: RemoteAgent, polled_agent: RemoteAgent, mode: str
) -> None:
    agent = remote_agent if mode == "streaming" else polled_agent
    async with A2ARemote(agent.url) as remote:
        caller = await _weather(workers, remote)
        reply = await _ask(caller, A2AMessage("chunks"))
    assert isinstance(reply, A2AReply)
    assert reply.parts == [{"text": "one "}, {"text": "two "}, {"text": "three"}]
    assert reply.text == "one \ntwo \nthree"
    assert [a["artifactId"] for a in reply.artifacts] == ["a1"]


async def test_context_id_follows_the_agent_id_key(workers: Workers, remote: A2ARemote) -> None:
    caller = await _weather(workers, remote)
    answers = [
        await _ask(caller, A2AMessage("context"), "alice"),
        await _ask(caller, A2AMessage("context"), "alice"),
        await _ask(caller, A2AMessage("context"), "bob"),
    ]
    assert [a.text for a in answers if isinstance(a, A2AReply)] == [
        "context=alice turn=1",
        "context=alice turn=2",
        "context=bob turn=1",
    ]


async def test_input_required_then_the_next_message_continues_the_task(workers: Workers, remote: A2ARemote) -> None:
    caller = await _weather(workers, remote)
    question = await _ask(caller, A2AMessage("ask"))
    assert isinstance(question, A2AReply)
    assert (question.state, question.text) == ("input-required", "which city?")
    answer = await _ask(caller, A2AMessage("Lisbon"))
    assert isinstance(answer, A2AReply)
    assert (answer.state, answer.text, answer.task_id) == ("completed", "weather in Lisbon: sunny", question.task_id)


class Relay(RoutedAgent):
    """An ordinary AutoGen agent that asks the A2A agent, passing its own call's cancellation token."""

    def __init__(self) -> None:
        super().__init__("relay")

    @message_handler
    async def on_message(self, message: A2AMessage, ctx: MessageContext) -> A2AReply:
        reply = await self.send_message(
            message, AgentId("weather", self.id.key), cancellation_token=ctx.cancellation_token
        )
        assert isinstance(reply, A2AReply)
        return reply


async def _wait_for(predicate: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        await asyncio.sleep(0.05)
    return False


@pytest.mark.parametrize("mode", ["streaming", "polling"])
async def test_cancelling_the_call_cancels_the_remote_task(
    workers: Workers, remote_agent: RemoteAgent, polled_agent: RemoteAgent, mode: str
) -> None:
    """caller --(token)--> Relay (caller's worker) --> A2AAgent (callee's worker) --CancelTask--> remote."""
    agent = remote_agent if mode == "streaming" else polled_agent
    caller, _ = workers
    started_before = set(agent.log()["started"])
    async with A2ARemote(agent.url) as remote:
        await _weather(workers, remote)
        await Relay.register(caller, "relay", Relay)
        token = CancellationToken()
        call = asyncio.ensure_future(
            caller.send_message(A2AMessage("slow"), AgentId("relay", f"cancel-{mode}"), cancellation_token=token)
        )
        assert await _wait_for(lambda: set(agent.log()["started"]) - started_before, 15), (
            "the remote task never started"
        )
        [task_id] = set(agent.log()["started"]) - started_before
        began = time.monotonic()
        token.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(call, 5)
        assert await _wait_for(lambda: task_id in agent.log()["cancelled"], 5), "the remote executor saw no cancel"
        assert time.monotonic() - began < 5


@pytest.mark.parametrize(
    ("word", "why"), [("crash", "the model backend is down"), ("crash-late", "the model backend went down mid-task")]
)
async def test_a_remote_crash_reaches_the_caller_typed(
    workers: Workers, remote: A2ARemote, word: str, why: str
) -> None:
    """Before the first event (a JSON-RPC error answer) and after it (an SSE error event)."""
    caller = await _weather(workers, remote)
    with pytest.raises(RemoteHandlerError) as caught:
        await _ask(caller, A2AMessage(word))
    assert caught.value.exception_type == "A2ARemoteInternalError"
    assert f"the A2A agent at {remote.url} answered -32603 INTERNAL_ERROR: {why}; the remote agent" in str(caught.value)


@pytest.mark.parametrize(
    ("word", "what", "why"),
    [("fail", "failed", "no forecast for Atlantis"), ("reject", "rejected", "I only do weather")],
)
async def test_a_failed_task_reaches_the_caller_typed(
    workers: Workers, remote: A2ARemote, word: str, what: str, why: str
) -> None:
    caller = await _weather(workers, remote)
    with pytest.raises(RemoteHandlerError) as caught:
        await _ask(caller, A2AMessage(word))
    assert caught.value.exception_type == "A2ATaskFailedError"
    assert f"the A2A agent at {remote.url} {what} the task " in str(caught.value)
    assert str(caught.value).endswith(f": {why}")


async def test_errors_are_typed_in_process(remote_agent: RemoteAgent) -> None:
    """In one process (autogen's own runtime) the caller catches the A2A exception class itself."""
    runtime = SingleThreadedAgentRuntime()
    async with A2ARemote(remote_agent.url) as remote:
        await A2AAgent.register(runtime, "weather", lambda: A2AAgent(remote))
        runtime.start()
        try:
            with anyio.fail_after(CALL_TIMEOUT), pytest.raises(A2ATaskFailedError) as caught:
                await runtime.send_message(A2AMessage("fail"), AgentId("weather", "local"))
            assert (caught.value.state, caught.value.remote_message) == ("failed", "no forecast for Atlantis")
        finally:
            await runtime.stop()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_a_server_that_is_down_fails_fast_and_clearly(workers: Workers) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    async with A2ARemote(url) as remote:
        caller = await _weather(workers, remote)
        began = time.monotonic()
        with pytest.raises(RemoteHandlerError) as caught:
            await _ask(caller, A2AMessage("hello"))
    assert time.monotonic() - began < 5
    assert caught.value.exception_type == "A2AUnreachableError"
    assert str(caught.value).startswith(f"A2AUnreachableError: cannot reach the A2A agent at {url} (")
    assert str(caught.value).endswith("): check the URL and that the agent is running")


async def test_a_server_that_never_answers_times_out() -> None:
    """A socket that accepts and reads but never writes: the read timeout ends the call."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        async with A2ARemote(url, read_timeout=0.5) as remote:
            began = time.monotonic()
            with (
                anyio.fail_after(10),
                pytest.raises(A2ATimeoutError, match="did not answer in time: raise read_timeout="),
            ):
                await remote.card()
            assert time.monotonic() - began < 5


async def test_a_server_that_dies_mid_task_is_an_error_not_a_hang(workers: Workers) -> None:
    with running() as agent:
        async with A2ARemote(agent.url) as remote:
            caller = await _weather(workers, remote)
            call = asyncio.ensure_future(_ask(caller, A2AMessage("slow")))
            assert await _wait_for(lambda: bool(agent.log()["started"]), 15)
            agent.process.kill()
            with pytest.raises(RemoteHandlerError) as caught:
                await asyncio.wait_for(call, 10)
    assert caught.value.exception_type == "A2AUnreachableError", caught.value


async def test_an_url_without_an_agent_card_says_so(workers: Workers, remote_agent: RemoteAgent) -> None:
    url = f"{remote_agent.url}/not/an/agent"
    async with A2ARemote(url) as remote:
        with anyio.fail_after(CALL_TIMEOUT), pytest.raises(A2AHttpError) as caught:
            await remote.card()
    assert caught.value.status_code == 404
    assert str(caught.value) == (
        f"no A2A agent card at {url} (HTTP 404): give the agent's base URL (its card is served at "
        "/.well-known/agent-card.json) or the card's own URL"
    )


async def test_the_card_can_be_given_by_its_own_url(remote_agent: RemoteAgent) -> None:
    async with A2ARemote(f"{remote_agent.url}/.well-known/agent-card.json") as remote:
        card = await remote.card()
    assert card.name == "weather" and [s.id for s in card.skills] == ["forecast"]


async def test_a_bearer_token_is_sent_when_configured(workers: Workers, guarded_agent: RemoteAgent) -> None:
    async with A2ARemote(guarded_agent.url, bearer_token="s3cret") as remote:
        caller = await _weather(workers, remote)
        reply = await _ask(caller, A2AMessage("hello"))
    assert isinstance(reply, A2AReply) and reply.text == "you said: hello"
    assert guarded_agent.log()["authorization"][-1] == "Bearer s3cret"


@pytest.mark.parametrize("token", [None, "wrong"])
async def test_a_refused_token_is_a_clear_error(
    workers: Workers, guarded_agent: RemoteAgent, token: str | None
) -> None:
    async with A2ARemote(guarded_agent.url, bearer_token=token) as remote:
        caller = await _weather(workers, remote)
        with pytest.raises(RemoteHandlerError) as caught:
            await _ask(caller, A2AMessage("hello"))
    assert caught.value.exception_type == "A2AAuthError"
    assert str(caught.value) == (
        f"A2AAuthError: the A2A agent at {guarded_agent.url} refused the request with HTTP 401 (its card asks "
        "for 'bearer' (http auth Bearer)): pass bearer_token= (or headers=) to A2ARemote, or check the credentials"
    )


async def test_a_refused_token_is_typed_in_process(guarded_agent: RemoteAgent) -> None:
    async with A2ARemote(guarded_agent.url, streaming=False) as remote:
        runtime = SingleThreadedAgentRuntime()
        await A2AAgent.register(runtime, "weather", lambda: A2AAgent(remote))
        runtime.start()
        try:
            with anyio.fail_after(CALL_TIMEOUT), pytest.raises(A2AAuthError) as caught:
                await runtime.send_message(A2AMessage("hello"), AgentId("weather", "local"))
            assert caught.value.status_code == 401
        finally:
            await runtime.stop()


async def test_an_a2a_0_3_agent(workers: Workers, legacy_agent: RemoteAgent) -> None:
    """A card that offers only A2A 0.3: a2a-sdk's compatibility transport (message/stream, tasks/cancel)."""
    _carry(workers, ForecastQuery)
    async with A2ARemote(legacy_agent.url) as remote:
        caller = await _weather(workers, remote)
        text = await _ask(caller, A2AMessage("hello"))
        assert isinstance(text, A2AReply) and text.text == "you said: hello"
        data = await _ask(caller, ForecastQuery("Rome"))
        assert isinstance(data, A2AReply) and data.data == [{"city": "Rome", "high": 21, "unit": "C"}]
        with pytest.raises(RemoteHandlerError) as caught:
            await _ask(caller, A2AMessage("crash"))
        assert caught.value.exception_type == "A2ARemoteInternalError"
        before = set(legacy_agent.log()["started"])
        token = CancellationToken()
        call = asyncio.ensure_future(
            caller.send_message(A2AMessage("slow"), AgentId("weather", "k"), cancellation_token=token)
        )
        assert await _wait_for(lambda: set(legacy_agent.log()["started"]) - before, 15)
        [task_id] = set(legacy_agent.log()["started"]) - before
        token.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(call, 5)
        assert await _wait_for(lambda: task_id in legacy_agent.log()["cancelled"], 5)


async def test_an_unreachable_agent_is_typed_in_process() -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    runtime = SingleThreadedAgentRuntime()
    await A2AAgent.register(runtime, "weather", lambda: A2AAgent(url))
    runtime.start()
    try:
        with anyio.fail_after(CALL_TIMEOUT), pytest.raises(A2AUnreachableError):
            await runtime.send_message(A2AMessage("hello"), AgentId("weather", "local"))
    finally:
        await runtime.stop()


async def test_a_call_cancelled_before_it_is_sent_sends_nothing(remote_agent: RemoteAgent) -> None:
    token = CancellationToken()
    token.cancel()
    started = list(remote_agent.log()["started"])
    async with A2ARemote(remote_agent.url) as remote:
        with pytest.raises(asyncio.CancelledError):
            await remote.send(A2AMessage("slow"), context_id="never", cancellation_token=token)
    await asyncio.sleep(0.3)
    assert remote_agent.log()["started"] == started
