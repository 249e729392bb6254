"""Direct messaging (send_message) between workers through a real host over loopback sockets."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import anyio
import pytest
from autogen_core import AgentId

from io_backends import AgentTypeNotFoundError, HttpAgentServer, RemoteCallError, RemoteHandlerError
from sansio_runtime import ErrorCode

from ..faults._raw import open_raw_channel
from ._common import Answer, Ask, EchoAgent, Fail, RelayAgent, http_call
from .conftest import WorkerFactory

pytestmark = pytest.mark.anyio


async def test_rpc_across_workers(make_worker: WorkerFactory) -> None:
    with anyio.fail_after(20):
        callee = await make_worker()
        caller = await make_worker()
        await callee.register_factory("echo", EchoAgent)
        assert await caller.send_message(Ask("hello"), AgentId("echo", "k1")) == Answer("k1:olleh")
        # A second key is a second agent instance on the callee.
        assert await caller.send_message(Ask("abc"), AgentId("echo", "k2")) == Answer("k2:cba")
        first = await callee.try_get_underlying_agent_instance(AgentId("echo", "k1"), EchoAgent)
        second = await callee.try_get_underlying_agent_instance(AgentId("echo", "k2"), EchoAgent)
        assert first.asks == ["hello"] and second.asks == ["abc"]


async def test_rpc_within_one_worker(make_worker: WorkerFactory) -> None:
    """The runtime itself, and a handler on the worker, call an agent hosted by that same worker."""
    with anyio.fail_after(20):
        worker = await make_worker()
        outsider = await make_worker()
        await worker.register_factory("echo", EchoAgent)
        await worker.register_factory("relay", lambda: RelayAgent(AgentId("echo", "same")))
        assert await worker.send_message(Ask("self"), AgentId("echo", "x")) == Answer("x:fles")
        # Caller (relay) and callee (echo) are both on `worker`; the outer call comes from elsewhere.
        answer = await outsider.send_message(Ask("loop"), AgentId("relay", "r"))
        assert answer == Answer("relay(r)[same:pool]")
        # ... and also when the outer call starts on the same worker.
        assert await worker.send_message(Ask("ab"), AgentId("relay", "r2")) == Answer("relay(r2)[same:ba]")


async def test_nested_rpc_through_a_third_worker(make_worker: WorkerFactory) -> None:
    with anyio.fail_after(20):
        front_worker = await make_worker()
        back_worker = await make_worker()
        caller = await make_worker()
        await back_worker.register_factory("back", EchoAgent)
        await front_worker.register_factory("front", lambda: RelayAgent(AgentId("back", "deep")))
        answer = await caller.send_message(Ask("nested"), AgentId("front", "f"))
        assert answer == Answer("relay(f)[deep:detsen]")
        back = await back_worker.try_get_underlying_agent_instance(AgentId("back", "deep"), EchoAgent)
        assert back.asks == ["nested"]
        # The inner call names the relaying agent as its sender; an explicit sender travels too.
        assert back.senders == [AgentId("front", "f")]
        await caller.send_message(Ask("s"), AgentId("back", "deep"), sender=AgentId("someone", "me"))
        assert back.senders[-1] == AgentId("someone", "me")


async def test_concurrent_callers_with_colliding_request_ids(
    make_worker: WorkerFactory, server: HttpAgentServer
) -> None:
    """4 workers x 200 concurrent calls; every worker numbers its requests from 1."""
    workers, per_worker = 4, 200
    with anyio.fail_after(45):
        callee = await make_worker()
        await callee.register_factory("echo", EchoAgent)
        callers = [await make_worker() for _ in range(workers)]

        async def one(w: int, i: int) -> tuple[str, Answer]:
            payload = f"w{w}-i{i}-" + "x" * (i % 7)
            answer = await callers[w].send_message(Ask(payload), AgentId("echo", f"k{i % 5}"))
            return payload, answer

        results = await asyncio.gather(*(one(w, i) for w in range(workers) for i in range(per_worker)))
        assert len(results) == workers * per_worker
        for n, (payload, answer) in enumerate(results):
            i = n % per_worker
            assert answer == Answer(f"k{i % 5}:{payload[::-1]}"), (payload, answer)
        assert server.service.engine.pending_calls() == []


async def test_unknown_agent_type_fails_at_once(make_worker: WorkerFactory) -> None:
    with anyio.fail_after(10):
        caller = await make_worker()
        started = time.perf_counter()
        with pytest.raises(AgentTypeNotFoundError) as info:
            await caller.send_message(Ask("anyone?"), AgentId("nobody", "k"))
        elapsed = time.perf_counter() - started
        assert elapsed < 1.0, elapsed
        assert isinstance(info.value, LookupError)
        assert "nobody" in str(info.value)
        # The channel is still usable.
        with pytest.raises(LookupError):
            await caller.send_message(Ask("again"), AgentId("nobody", "k"))


async def test_handler_exceptions_propagate_and_the_channel_survives(make_worker: WorkerFactory) -> None:
    with anyio.fail_after(20):
        callee = await make_worker()
        caller = await make_worker()
        await callee.register_factory("echo", EchoAgent)
        target = AgentId("echo", "k")

        with pytest.raises(ValueError) as value_error:
            await caller.send_message(Fail("ValueError", "bad value 42"), target)
        assert isinstance(value_error.value, RemoteHandlerError)
        assert value_error.value.exception_type == "ValueError"
        assert "ValueError" in str(value_error.value) and "bad value 42" in str(value_error.value)

        try:
            await caller.send_message(Fail("KeyError", "missing"), target)
        except KeyError as exc:  # a remote KeyError is a KeyError (hence a LookupError) too
            assert isinstance(exc, RemoteHandlerError) and exc.exception_type == "KeyError"
        else:
            pytest.fail("no exception")

        with pytest.raises(RemoteHandlerError) as domain:
            await caller.send_message(Fail("DomainError", "the domain said no"), target)
        assert domain.value.exception_type == "DomainError"
        assert "the domain said no" in str(domain.value)
        assert isinstance(domain.value, RemoteCallError)
        assert not isinstance(domain.value, ValueError)

        # The same channel and the same agent keep working afterwards, in both directions.
        assert await caller.send_message(Ask("still here"), target) == Answer("k:ereh llits")
        await caller.register_factory("echo2", EchoAgent)
        assert await callee.send_message(Ask("back"), AgentId("echo2", "z")) == Answer("z:kcab")


@pytest.mark.parametrize("start_first", [True, False], ids=["start-then-register", "register-then-start"])
async def test_start_before_or_after_register_factory(make_worker: WorkerFactory, start_first: bool) -> None:
    with anyio.fail_after(20):
        caller = await make_worker()
        callee = await make_worker(start=False)
        if start_first:
            await callee.start()
            await callee.register_factory("echo", EchoAgent)
        else:
            await callee.register_factory("echo", EchoAgent)  # the seed's order
            await callee.start()
        assert await caller.send_message(Ask("order"), AgentId("echo", "o")) == Answer("o:redro")


def _batch_call(id: object, agent_type: str, key: str, data_type: str, data: object) -> dict[str, object]:
    return {
        "jsonrpc": "2.0",
        "id": id,
        "method": "agent.call",
        "params": {
            "target": {"type": agent_type, "key": key},
            "data_type": data_type,
            "data_content_type": "application/json",
            "data": data,
        },
    }


BATCH = [
    _batch_call(1, "echo", "k1", "Ask", {"text": "one"}),
    _batch_call("fails", "echo", "k2", "Fail", {"exception_type": "ValueError", "message": "no"}),
    _batch_call(3, "nobody", "k", "Ask", {"text": "x"}),
    _batch_call(4, "echo", "k3", "Ask", {"text": "four"}),
]


def _check_batch_answers(answers: list[dict[str, Any]]) -> None:
    by_id = {a["id"]: a for a in answers}
    assert len(answers) == len(by_id) == 4, answers  # one answer per call, each under its own id
    assert by_id[1]["result"]["data"] == {"text": "k1:eno"}
    assert by_id[4]["result"]["data"] == {"text": "k3:ruof"}
    assert by_id["fails"]["error"]["code"] == ErrorCode.HANDLER_ERROR
    assert by_id["fails"]["error"]["message"] == "no", by_id["fails"]
    assert by_id["fails"]["error"]["data"]["exception_type"] == "ValueError", by_id["fails"]
    assert by_id[3]["error"]["code"] == ErrorCode.AGENT_TYPE_NOT_FOUND
    assert "result" not in by_id["fails"] and "error" not in by_id[1] and "error" not in by_id[4]


async def test_batch_calls_answered_separately_over_http(make_worker: WorkerFactory, server: HttpAgentServer) -> None:
    """A /v1/rpc batch of calls through the real host to an agent on a real worker: every call gets
    its own answer under its own id, and a failing one (its handler raises; no such agent) fails no other."""
    with anyio.fail_after(20):
        callee = await make_worker()
        await callee.register_factory("echo", EchoAgent)
        status, answers = await http_call(server.port, "POST", "/v1/rpc", BATCH)
        assert status == 200 and isinstance(answers, list)
        _check_batch_answers(answers)
        agents = [
            await callee.try_get_underlying_agent_instance(AgentId("echo", key), EchoAgent) for key in ("k1", "k3")
        ]
        assert [a.asks for a in agents] == [["one"], ["four"]]


async def test_batch_calls_answered_separately_over_a_channel(
    make_worker: WorkerFactory, server: HttpAgentServer
) -> None:
    """The same batch sent as one WebSocket message: the host answers each call on its own, as its
    target answers it (the answer to the unknown type comes at once, in a batch of its own)."""
    with anyio.fail_after(20):
        callee = await make_worker()
        await callee.register_factory("echo", EchoAgent)
        channel = await open_raw_channel(server.port)
        try:
            await channel.send_json(BATCH)
            answers: list[dict[str, Any]] = []
            while len(answers) < 4:
                message = await channel.next_json()
                answers.extend(message if isinstance(message, list) else [message])
            _check_batch_answers(answers)
        finally:
            await channel.aclose()
