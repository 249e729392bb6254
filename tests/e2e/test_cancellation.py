"""Cancelling a call at the caller cancels the handler's token at the callee ($/cancelRequest)."""

from __future__ import annotations

import asyncio

import anyio
import pytest
from autogen_core import AgentId, CancellationToken, MessageContext, RoutedAgent, message_handler

from io_backends import CallDeadlineExceededError, HttpAgentServer

from ._common import Answer, Ask, Block, BlockingAgent, EchoAgent, Probe, wait_until
from .conftest import WorkerFactory

pytestmark = pytest.mark.anyio


class BlockRelay(RoutedAgent):
    """Forwards a Block to blocker/deep with its own call's cancellation token."""

    def __init__(self) -> None:
        super().__init__("block relay")

    @message_handler
    async def on_block(self, message: Block, ctx: MessageContext) -> Answer:
        result = await self.send_message(message, AgentId("blocker", "deep"), cancellation_token=ctx.cancellation_token)
        assert isinstance(result, Answer)
        return result


async def _settle(task: asyncio.Task[object]) -> None:
    done, _ = await asyncio.wait([task], timeout=5)
    assert done, "the caller did not finish after cancelling"


async def _assert_cancelled_remotely(probe: Probe) -> None:
    await asyncio.wait_for(probe.cancelled.wait(), 5)
    assert probe.callback_fired.is_set()  # add_callback callbacks ran too
    assert not probe.finished_normally


async def test_cancelling_the_awaiting_task_cancels_the_remote_handler(
    make_worker: WorkerFactory, server: HttpAgentServer
) -> None:
    with anyio.fail_after(20):
        callee = await make_worker()
        caller = await make_worker()
        probes = {"task": Probe()}
        await callee.register_factory("blocker", lambda: BlockingAgent(probes))
        await callee.register_factory("echo", EchoAgent)

        task = asyncio.ensure_future(caller.send_message(Block("task"), AgentId("blocker", "b")))
        await asyncio.wait_for(probes["task"].started.wait(), 5)
        task.cancel()
        await _settle(task)
        assert task.cancelled()
        with pytest.raises(asyncio.CancelledError):
            task.result()
        await _assert_cancelled_remotely(probes["task"])
        assert await wait_until(lambda: server.service.engine.pending_calls() == [], 5)
        # The connection and the agent are fine afterwards.
        assert await caller.send_message(Ask("after"), AgentId("echo", "e")) == Answer("e:retfa")


async def test_cancellation_token_cancels_the_remote_handler(make_worker: WorkerFactory) -> None:
    with anyio.fail_after(20):
        callee = await make_worker()
        caller = await make_worker()
        probes = {"token": Probe(), "pre": Probe()}
        await callee.register_factory("blocker", lambda: BlockingAgent(probes))

        token = CancellationToken()
        task = asyncio.ensure_future(
            caller.send_message(Block("token"), AgentId("blocker", "b"), cancellation_token=token)
        )
        await asyncio.wait_for(probes["token"].started.wait(), 5)
        token.cancel()
        await _settle(task)
        with pytest.raises(asyncio.CancelledError):
            task.result()
        await _assert_cancelled_remotely(probes["token"])

        # A token cancelled before the call: the caller sees CancelledError at once.
        spent = CancellationToken()
        spent.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller.send_message(Block("pre", limit=2), AgentId("blocker", "b"), cancellation_token=spent)


async def test_cancellation_travels_down_a_chain_of_calls(make_worker: WorkerFactory) -> None:
    """caller -> relay (worker 2) -> blocker (worker 3): cancelling at the top reaches the bottom."""
    with anyio.fail_after(20):
        bottom = await make_worker()
        middle = await make_worker()
        caller = await make_worker()
        probes = {"chain": Probe()}
        await bottom.register_factory("blocker", lambda: BlockingAgent(probes))
        await middle.register_factory("relay", BlockRelay)

        task = asyncio.ensure_future(caller.send_message(Block("chain"), AgentId("relay", "r")))
        await asyncio.wait_for(probes["chain"].started.wait(), 5)
        task.cancel()
        await _settle(task)
        assert task.cancelled()
        await _assert_cancelled_remotely(probes["chain"])


async def test_call_timeout_fails_the_call_and_cancels_the_handler(make_worker: WorkerFactory) -> None:
    with anyio.fail_after(20):
        callee = await make_worker()
        caller = await make_worker(call_timeout=0.3)
        probes = {"slow": Probe()}
        await callee.register_factory("blocker", lambda: BlockingAgent(probes))
        with pytest.raises(CallDeadlineExceededError) as info:
            await caller.send_message(Block("slow"), AgentId("blocker", "b"))
        assert isinstance(info.value, TimeoutError)
        await _assert_cancelled_remotely(probes["slow"])
