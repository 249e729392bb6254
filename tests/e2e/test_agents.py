"""Agent types, instances and state as a worker hosts them, through a real host."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anyio
import pytest
from autogen_core import AgentId, MessageContext, RoutedAgent, message_handler

from io_backends import AgentTypeAlreadyRegisteredError, HttpAgentServer
from io_backends import HttpAgentServer as OurServer
from io_backends import HttpAgentService as OurService
from io_backends import HttpWorkerAgentRuntime as OurRuntime

from ._common import Answer, Ask, EchoAgent
from .conftest import WorkerFactory

pytestmark = pytest.mark.anyio


class CounterAgent(RoutedAgent):
    """Counts the asks it answered; its state is that count."""

    def __init__(self, description: str = "counter") -> None:
        super().__init__(description)
        self.count = 0

    @message_handler
    async def on_ask(self, message: Ask, ctx: MessageContext) -> Answer:
        self.count += 1
        return Answer(f"{self.id.key}#{self.count}:{message.text}")

    async def save_state(self) -> Mapping[str, Any]:
        return {"count": self.count}

    async def load_state(self, state: Mapping[str, Any]) -> None:
        self.count = int(state["count"])


async def test_agent_types_are_unique_across_workers_and_freed_on_stop(
    make_worker: WorkerFactory, server: HttpAgentServer
) -> None:
    with anyio.fail_after(20):
        owner = await make_worker()
        rival = await make_worker()
        caller = await make_worker()
        await owner.register_factory("solo", EchoAgent)

        with pytest.raises(AgentTypeAlreadyRegisteredError) as info:
            await rival.register_factory("solo", EchoAgent)
        assert isinstance(info.value, ValueError)
        # The host still routes "solo" to its owner only; the refused rival may try again later.
        owner_client = server.service.engine.agent_types()["solo"]
        assert await caller.send_message(Ask("who"), AgentId("solo", "a")) == Answer("a:ohw")
        owner_agent = await owner.try_get_underlying_agent_instance(AgentId("solo", "a"), EchoAgent)
        assert owner_agent.asks == ["who"]

        # Registering again on the owner is refused locally, as by a local runtime.
        with pytest.raises(ValueError):
            await owner.register_factory("solo", EchoAgent)

        await owner.stop()
        # Freed as soon as stop() returns (no grace period to wait out).
        assert "solo" not in server.service.engine.agent_types()
        successor = await make_worker()
        await successor.register_factory("solo", EchoAgent)
        assert await caller.send_message(Ask("now"), AgentId("solo", "a")) == Answer("a:won")
        successor_agent = await successor.try_get_underlying_agent_instance(AgentId("solo", "a"), EchoAgent)
        assert successor_agent.asks == ["now"]
        assert server.service.engine.agent_types()["solo"] != owner_client
        # The type is taken again, so the rival is still refused.
        with pytest.raises(AgentTypeAlreadyRegisteredError):
            await rival.register_factory("solo", EchoAgent)


async def test_register_agent_instance(make_worker: WorkerFactory) -> None:
    with anyio.fail_after(20):
        host_worker = await make_worker()
        caller = await make_worker()
        alice, bob = CounterAgent("alice"), CounterAgent("bob")
        assert await host_worker.register_agent_instance(alice, AgentId("person", "alice")) == AgentId(
            "person", "alice"
        )
        await host_worker.register_agent_instance(bob, AgentId("person", "bob"))
        assert alice.id == AgentId("person", "alice") and alice.runtime is host_worker

        assert await caller.send_message(Ask("hi"), AgentId("person", "alice")) == Answer("alice#1:hi")
        assert await caller.send_message(Ask("yo"), AgentId("person", "bob")) == Answer("bob#1:yo")
        assert await caller.send_message(Ask("again"), AgentId("person", "alice")) == Answer("alice#2:again")
        assert (alice.count, bob.count) == (2, 1)

        assert await host_worker.try_get_underlying_agent_instance(AgentId("person", "alice"), CounterAgent) is alice
        assert await host_worker.try_get_underlying_agent_instance(AgentId("person", "bob")) is bob
        with pytest.raises(TypeError):
            await host_worker.try_get_underlying_agent_instance(AgentId("person", "bob"), EchoAgent)

        # A key with no registered instance cannot be created: the caller hears so, at once.
        with pytest.raises(LookupError):
            await caller.send_message(Ask("?"), AgentId("person", "carol"))
        # The same id twice is refused; so is mixing factories and instances in one type.
        with pytest.raises(ValueError):
            await host_worker.register_agent_instance(CounterAgent(), AgentId("person", "alice"))
        with pytest.raises(ValueError):
            await host_worker.register_factory("person", CounterAgent)
        # The type belongs to this worker at the host.
        with pytest.raises(AgentTypeAlreadyRegisteredError):
            await caller.register_agent_instance(CounterAgent(), AgentId("person", "dave"))


async def test_state_and_metadata_of_hosted_agents(make_worker: WorkerFactory) -> None:
    with anyio.fail_after(20):
        worker = await make_worker()
        caller = await make_worker()
        await worker.register_factory("counter", CounterAgent)
        for text in ("a", "b", "c"):
            await caller.send_message(Ask(text), AgentId("counter", "one"))
        await caller.send_message(Ask("z"), AgentId("counter", "two"))

        one, two = AgentId("counter", "one"), AgentId("counter", "two")
        assert await worker.agent_save_state(one) == {"count": 3}
        metadata = await worker.agent_metadata(one)
        assert metadata["type"] == "counter" and metadata["key"] == "one"
        assert metadata["description"] == "counter"

        saved = await worker.save_state()
        assert saved == {str(one): {"count": 3}, str(two): {"count": 1}}

        await worker.agent_load_state(one, {"count": 10})
        assert await caller.send_message(Ask("x"), one) == Answer("one#11:x")

        # load_state restores every agent, creating the ones not instantiated yet.
        await worker.load_state({str(one): {"count": 0}, str(two): {"count": 5}, "counter/three": {"count": 7}})
        assert await caller.send_message(Ask("y"), one) == Answer("one#1:y")
        assert await caller.send_message(Ask("y"), two) == Answer("two#6:y")
        assert await caller.send_message(Ask("y"), AgentId("counter", "three")) == Answer("three#8:y")

        # A fresh worker restores the whole state saved by another one.
        snapshot = await worker.save_state()
        await worker.stop()
        replacement = await make_worker()
        await replacement.register_factory("counter", CounterAgent)
        await replacement.load_state(snapshot)
        assert await caller.send_message(Ask("w"), AgentId("counter", "three")) == Answer("three#9:w")

        # Agents of types this worker does not host are not its to inspect.
        with pytest.raises(LookupError):
            await caller.agent_save_state(one)
        with pytest.raises(LookupError):
            await caller.agent_metadata(one)


def test_seed_import_path_gives_our_classes() -> None:
    from autogen_http_runtime.runtimes.http import HttpAgentServer, HttpAgentService, HttpWorkerAgentRuntime

    assert HttpWorkerAgentRuntime is OurRuntime
    assert HttpAgentServer is OurServer
    assert HttpAgentService is OurService
    assert HttpWorkerAgentRuntime.__module__.startswith("io_backends")
    from autogen_core import AgentRuntime

    assert issubclass(HttpWorkerAgentRuntime, AgentRuntime)
