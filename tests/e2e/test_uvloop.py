"""Host and workers on uvloop, whose transports do not subclass asyncio's (where uvloop installs)."""

from __future__ import annotations

import asyncio
import sys

import anyio
import pytest
from autogen_core import AgentId, TopicId, TypeSubscription

from io_backends import HttpAgentServer, HttpWorkerAgentRuntime

from ._common import Answer, Ask, EchoAgent, Note, all_serializers, wait_until

uvloop = pytest.importorskip("uvloop")


async def _round_trip() -> None:
    server = HttpAgentServer("127.0.0.1", port=0)
    server.start()
    workers = [HttpWorkerAgentRuntime(f"127.0.0.1:{server.port}") for _ in range(2)]
    callee, caller = workers
    try:
        with anyio.fail_after(10):
            for worker in workers:
                worker.add_message_serializer(all_serializers())
                await worker.start()
            await callee.register_factory("echo", EchoAgent, expected_class=EchoAgent)
            await callee.add_subscription(TypeSubscription("notes", "echo"))
            calls = (caller.send_message(Ask(f"m{i}"), AgentId("echo", "k")) for i in range(50))
            answers = await asyncio.gather(*calls)
            assert answers == [Answer(f"k:{f'm{i}'[::-1]}") for i in range(50)]
            for i in range(20):
                await caller.publish_message(Note("n", seq=i), TopicId("notes", "k"))
            agent = await callee.try_get_underlying_agent_instance(AgentId("echo", "k"), EchoAgent)
            assert await wait_until(lambda: len(agent.notes) == 20, timeout=5)
            assert [n.seq for n in agent.notes] == list(range(20))
    finally:
        for worker in workers:
            await worker.stop()
        await server.stop(grace=1)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.Runner(loop_factory=...) is 3.11+")
def test_calls_and_events_on_uvloop() -> None:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert type(runner.get_loop()).__module__.startswith("uvloop")
        runner.run(_round_trip())
