"""A late answer never settles someone else's call: a host SIGKILLed and restarted while handlers run."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import anyio
import pytest
from autogen_core import AgentId, MessageContext, RoutedAgent, message_handler

from io_backends import HostConnectionError

from ._host_process import host_process
from ._raw import agent_types_at
from .conftest import Text, WorkerFactory

pytestmark = pytest.mark.anyio
CALLS = 20


@dataclass
class Gates:
    """Handlers wait on the gate named by their message's prefix ("old-3" waits on "old")."""

    gates: dict[str, asyncio.Event] = field(default_factory=lambda: {"old": asyncio.Event(), "new": asyncio.Event()})
    started: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)


class Gated(RoutedAgent):
    def __init__(self, gates: Gates) -> None:
        super().__init__("answers when its gate opens")
        self._gates = gates

    @message_handler
    async def on_text(self, message: Text, ctx: MessageContext) -> Text:
        self._gates.started.append(message.text)
        await self._gates.gates[message.text.split("-")[0]].wait()
        if ctx.cancellation_token.is_cancelled():
            self._gates.cancelled.append(message.text)
        return Text(message.text)


async def test_answers_of_handlers_from_before_a_host_restart_never_settle_new_calls(worker: WorkerFactory) -> None:
    gates = Gates()
    options = {"reconnect_initial_delay": 0.05, "reconnect_max_delay": 0.2, "keepalive_interval": None}
    with host_process() as host:
        address = f"127.0.0.1:{host.port}"
        callee = await worker(address, **options)
        await callee.register_factory("gated", lambda: Gated(gates))
        caller = await worker(address, **options)
        old = [
            asyncio.ensure_future(caller.send_message(Text(f"old-{i}"), AgentId("gated", str(i)))) for i in range(CALLS)
        ]
        with anyio.fail_after(10):
            while len(gates.started) < CALLS:
                await anyio.sleep(0.01)

        host.kill()  # the handlers of the old calls are still running
        results = await asyncio.wait_for(asyncio.gather(*old, return_exceptions=True), timeout=5)
        assert all(isinstance(r, HostConnectionError) for r in results), results
        host.start()  # the same port; the new host numbers its calls from 1 again
        with anyio.fail_after(15):
            while not (
                caller.connected and callee.connected and await anyio.to_thread.run_sync(agent_types_at, host.port) == 1
            ):
                await anyio.sleep(0.05)

        new = [
            asyncio.ensure_future(caller.send_message(Text(f"new-{i}"), AgentId("gated", str(i)))) for i in range(CALLS)
        ]
        with anyio.fail_after(10):
            while len(gates.started) < 2 * CALLS:
                await anyio.sleep(0.01)
        gates.gates["old"].set()  # the old handlers answer now, while the new calls (same host ids) wait
        await anyio.sleep(0.3)
        gates.gates["new"].set()
        answers = await asyncio.wait_for(asyncio.gather(*new, return_exceptions=True), timeout=10)

    wrong = [(i, a) for i, a in enumerate(answers) if a != Text(f"new-{i}")]
    print(f"{len(wrong)} of {CALLS} new calls got another call's answer")
    assert not wrong, wrong
    # The handlers of the lost connection saw their cancellation token cancelled.
    assert sorted(gates.cancelled) == sorted(f"old-{i}" for i in range(CALLS))
