"""Workers coming and going while calls are in flight; re-entrant calls; a storm of cancellations."""

from __future__ import annotations

import asyncio

import anyio
import pytest
from autogen_core import AgentId, MessageContext, RoutedAgent, message_handler

from io_backends import AgentTypeNotFoundError, HostConnectionError, HttpAgentServer, TargetDisconnectedError

from ._common import Answer, Ask, Block, BlockingAgent, EchoAgent, Probe, wait_until
from .conftest import WorkerFactory

pytestmark = pytest.mark.anyio


class PingPong(RoutedAgent):
    """``Ask(n)``: asks ``other`` (same key) for ``n - 1`` and prefixes its own type."""

    def __init__(self, other: str) -> None:
        super().__init__("ping pong")
        self.other = other

    @message_handler
    async def on_ask(self, message: Ask, ctx: MessageContext) -> Answer:
        n = int(message.text)
        if n == 0:
            return Answer(self.id.type)
        inner = await self.send_message(Ask(str(n - 1)), AgentId(self.other, self.id.key))
        assert isinstance(inner, Answer)
        return Answer(f"{self.id.type}>{inner.text}")


async def test_reentrant_calls_between_two_workers(make_worker: WorkerFactory) -> None:
    """A handler waiting on a call to the other worker still serves the calls that come back to it."""
    with anyio.fail_after(20):
        a = await make_worker()
        b = await make_worker()
        await a.register_factory("ping", lambda: PingPong("pong"))
        await b.register_factory("pong", lambda: PingPong("ping"))
        assert await a.send_message(Ask("7"), AgentId("ping", "k")) == Answer(">".join(["ping", "pong"] * 4))
        many = await asyncio.gather(*(b.send_message(Ask("4"), AgentId("ping", f"k{i}")) for i in range(20)))
        assert many == [Answer("ping>pong>ping>pong>ping")] * 20


async def test_callee_stopping_fails_its_callers_at_once(make_worker: WorkerFactory) -> None:
    with anyio.fail_after(20):
        callee = await make_worker()
        caller = await make_worker()
        probes = {"gone": Probe()}
        await callee.register_factory("blocker", lambda: BlockingAgent(probes))
        task = asyncio.ensure_future(caller.send_message(Block("gone"), AgentId("blocker", "b")))
        await asyncio.wait_for(probes["gone"].started.wait(), 5)
        await callee.stop()
        with pytest.raises(TargetDisconnectedError) as info:
            await asyncio.wait_for(task, 2)
        assert isinstance(info.value, ConnectionError)
        with pytest.raises(AgentTypeNotFoundError):
            await caller.send_message(Block("again"), AgentId("blocker", "b"))


async def test_caller_stopping_cancels_the_handlers_working_for_it(
    make_worker: WorkerFactory, server: HttpAgentServer
) -> None:
    with anyio.fail_after(20):
        callee = await make_worker()
        caller = await make_worker()
        probes = {"orphan": Probe()}
        await callee.register_factory("blocker", lambda: BlockingAgent(probes))
        task = asyncio.ensure_future(caller.send_message(Block("orphan"), AgentId("blocker", "b")))
        await asyncio.wait_for(probes["orphan"].started.wait(), 5)
        await caller.stop()
        with pytest.raises(HostConnectionError):
            await asyncio.wait_for(task, 2)
        await asyncio.wait_for(probes["orphan"].cancelled.wait(), 5)
        assert server.service.engine.pending_calls() == []


async def test_a_stopped_worker_can_start_again(make_worker: WorkerFactory) -> None:
    with anyio.fail_after(20):
        worker = await make_worker()
        caller = await make_worker()
        await worker.register_factory("echo", EchoAgent)
        assert await caller.send_message(Ask("1"), AgentId("echo", "k")) == Answer("k:1")
        await worker.stop()
        with pytest.raises(AgentTypeNotFoundError):
            await caller.send_message(Ask("2"), AgentId("echo", "k"))
        await worker.start()  # registers its agent types again
        assert await caller.send_message(Ask("3"), AgentId("echo", "k")) == Answer("k:3")
        assert await worker.send_message(Ask("4"), AgentId("echo", "k")) == Answer("k:4")


async def test_storm_of_cancellations_leaves_nothing_pending(
    make_worker: WorkerFactory, server: HttpAgentServer
) -> None:
    """200 concurrent calls, every other one cancelled mid-flight: the rest answer correctly."""
    with anyio.fail_after(30):
        callee = await make_worker()
        caller = await make_worker()
        probes: dict[str, Probe] = {}
        await callee.register_factory("blocker", lambda: BlockingAgent(probes))
        await callee.register_factory("echo", EchoAgent)
        n = 200
        tasks = [
            asyncio.ensure_future(
                caller.send_message(Block(f"t{i}", limit=0.3 if i % 2 else 5), AgentId("blocker", f"k{i % 7}"))
            )
            for i in range(n)
        ]
        await asyncio.sleep(0.05)
        for task in tasks[::2]:
            task.cancel()
        _, pending = await asyncio.wait(tasks, timeout=20)
        assert not pending
        for i, task in enumerate(tasks):
            if i % 2 == 0:
                assert task.cancelled()
            else:
                assert task.result() == Answer("finished")
        # Every cancelled call's handler saw its token cancelled (or never started).
        assert await wait_until(
            lambda: all(probes[f"t{i}"].cancelled.is_set() for i in range(0, n, 2) if f"t{i}" in probes), 10
        )
        assert await wait_until(lambda: server.service.engine.pending_calls() == [], 5)
        assert await caller.send_message(Ask("calm"), AgentId("echo", "e")) == Answer("e:mlac")
