"""A peer built on an AutoGen ``AgentRuntime``: the host/worker topologies every runtime shares.

Each concrete runtime only supplies a :class:`RuntimeDriver` (start/stop a host and workers);
the agents, registrations and subscriptions are identical for all of them.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial
from typing import Any

from _agents import ECHO_ID, PUB_TOPIC, Payload, Tally, register_counter, register_echo
from _config import Mode
from _endpoints import Deliveries, NotApplicable, Peer, PubSubEnds, RoleSpec, RpcClient
from _roles import RemoteDeliveries, RoleChannel, RoleProcess
from autogen_core import AgentRuntime

TEARDOWN_TIMEOUT_S = 10.0
logger = logging.getLogger("benchmarks")


class RuntimeDriver(ABC):
    """Starts and stops one host and its workers. A fresh driver is made for every topology."""

    @abstractmethod
    async def start_host(self) -> int:
        """Start the host on 127.0.0.1 and return its port once it accepts connections."""

    @abstractmethod
    async def stop_host(self) -> None: ...

    @abstractmethod
    async def start_worker(self, port: int) -> AgentRuntime:
        """A started worker connected to the host on ``port``, with the Payload serializer added."""

    @abstractmethod
    async def stop_worker(self, runtime: AgentRuntime) -> None: ...


class AgentRpcClient:
    """``send_message`` from the caller worker to the echo agent on another worker."""

    def __init__(self, runtime: AgentRuntime) -> None:
        self._runtime = runtime

    async def call(self, body: str) -> str:
        reply = await self._runtime.send_message(Payload(body), ECHO_ID)
        if not isinstance(reply, Payload):
            raise TypeError(f"echo replied with {type(reply).__name__}, not Payload")
        return reply.body


class AgentPublisher:
    def __init__(self, runtime: AgentRuntime) -> None:
        self._runtime = runtime

    async def publish(self, body: str) -> None:
        await self._runtime.publish_message(Payload(body), PUB_TOPIC)


class LocalDeliveries:
    def __init__(self, tally: Tally) -> None:
        self._tally = tally

    async def snapshot(self) -> Deliveries:
        return Deliveries(self._tally.count, self._tally.last_monotonic)


async def _bounded(what: str, step: Callable[[], Awaitable[Any]]) -> None:
    """Run a teardown step; log (never raise or hang on) its failure."""
    try:
        await asyncio.wait_for(step(), TEARDOWN_TIMEOUT_S)
    except Exception as exc:
        logger.warning("teardown: %s failed: %s: %s", what, type(exc).__name__, exc)


def spread(subscribers: int, workers: int) -> list[tuple[int, ...]]:
    """Round-robin counter indices over ``workers`` workers."""
    return [tuple(range(w, subscribers, workers)) for w in range(workers)]


class RuntimePeer(Peer):
    def __init__(self, name: str, driver_factory: Callable[[], RuntimeDriver], multiproc: bool = True) -> None:
        self.name = name
        self._new_driver = driver_factory
        self._multiproc = multiproc

    # --- shared building blocks ---

    async def _host(self, stack: AsyncExitStack, driver: RuntimeDriver) -> int:
        port = await driver.start_host()
        stack.push_async_callback(_bounded, "stop host", driver.stop_host)
        return port

    async def _workers(self, stack: AsyncExitStack, driver: RuntimeDriver, port: int, count: int) -> list[AgentRuntime]:
        """Start ``count`` workers; on exit they are stopped concurrently (teardown is not measured)."""
        runtimes: list[AgentRuntime] = []

        async def stop_all() -> None:
            await asyncio.gather(*(_bounded("stop worker", partial(driver.stop_worker, rt)) for rt in runtimes))

        stack.push_async_callback(stop_all)
        for _ in range(count):
            runtimes.append(await driver.start_worker(port))
        return runtimes

    def _check_mode(self, mode: Mode) -> None:
        if mode == "multiproc" and not self._multiproc:
            raise NotApplicable(f"{self.name} runs in a single process only")

    # --- topologies ---

    @asynccontextmanager
    async def rpc_topology(self, mode: Mode) -> AsyncIterator[RpcClient]:
        self._check_mode(mode)
        driver = self._new_driver()
        async with AsyncExitStack() as stack:
            if mode == "oneproc":
                port = await self._host(stack, driver)
                callee, caller = await self._workers(stack, driver, port, 2)
                await register_echo(callee)
            else:
                host = await stack.enter_async_context(RoleProcess.spawn(RoleSpec("host", self.name)))
                port = int(host.info["port"])
                await stack.enter_async_context(RoleProcess.spawn(RoleSpec("worker", self.name, port, echo=True)))
                (caller,) = await self._workers(stack, driver, port, 1)
            yield AgentRpcClient(caller)

    @asynccontextmanager
    async def pubsub_topology(self, mode: Mode, subscribers: int, workers: int) -> AsyncIterator[PubSubEnds]:
        self._check_mode(mode)
        driver = self._new_driver()
        async with AsyncExitStack() as stack:
            if mode == "oneproc":
                port = await self._host(stack, driver)
                publisher, *subscriber_workers = await self._workers(stack, driver, port, 1 + workers)
                tally = Tally()
                for runtime, counters in zip(subscriber_workers, spread(subscribers, workers), strict=True):
                    for index in counters:
                        await register_counter(runtime, index, tally)
                deliveries: LocalDeliveries | RemoteDeliveries = LocalDeliveries(tally)
            else:
                host = await stack.enter_async_context(RoleProcess.spawn(RoleSpec("host", self.name)))
                port = int(host.info["port"])
                specs = [RoleSpec("worker", self.name, port, counters=c) for c in spread(subscribers, workers)]
                helpers = await stack.enter_async_context(RoleProcess.spawn_all(specs))
                deliveries = RemoteDeliveries(helpers)
                (publisher,) = await self._workers(stack, driver, port, 1)
            yield PubSubEnds(AgentPublisher(publisher), deliveries)

    # --- multiproc helper processes ---

    async def run_role(self, spec: RoleSpec) -> None:
        channel = await RoleChannel.open()
        driver = self._new_driver()
        async with AsyncExitStack() as stack:
            if spec.role == "host":
                port = await self._host(stack, driver)
                channel.send("READY", port=port)
                await channel.serve()
                return
            (runtime,) = await self._workers(stack, driver, spec.port, 1)
            tally = Tally()
            if spec.echo:
                await register_echo(runtime)
            for index in spec.counters:
                await register_counter(runtime, index, tally)
            channel.send("READY")
            await channel.serve(lambda: Deliveries(tally.count, tally.last_monotonic))
