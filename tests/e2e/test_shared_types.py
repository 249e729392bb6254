"""Several worker processes hosting one agent type (``shared_agent_types=True``), over loopback.

A pool of three worker processes hosts ``counter``, whose instances keep in-memory counts. The
caller is a worker in this process; the host is a real server on a loopback port.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter as Tally
from collections.abc import Iterator

import anyio
import pytest
from autogen_core import AgentId, TopicId, try_get_known_serializers_for_type

from io_backends import (
    AgentTypeAlreadyRegisteredError,
    HttpAgentServer,
    HttpWorkerAgentRuntime,
    TargetDisconnectedError,
)

from ._common import http_call, wait_until
from ._pool_processes import PoolProcesses, pool_processes, spawn
from ._pool_worker import MESSAGES, Bump, Count, Counter, Hold, Tick
from .conftest import WorkerFactory

pytestmark = pytest.mark.anyio


@pytest.fixture
def processes() -> Iterator[PoolProcesses]:
    with pool_processes() as procs:
        yield procs


KEYS = [f"user-{i}" for i in range(50)]


async def caller(make_worker: WorkerFactory) -> HttpWorkerAgentRuntime:
    runtime = await make_worker(serializers=False)
    for message in MESSAGES:
        runtime.add_message_serializer(try_get_known_serializers_for_type(message))
    return runtime


async def bump_all(runtime: HttpWorkerAgentRuntime, keys: list[str]) -> dict[str, Count]:
    with anyio.fail_after(10):
        answers = await asyncio.gather(*(runtime.send_message(Bump(), AgentId("counter", k)) for k in keys))
    assert all(isinstance(a, Count) and a.key == k for a, k in zip(answers, keys, strict=True))
    return dict(zip(keys, answers, strict=True))


async def test_a_pool_of_worker_processes_places_each_key_on_one_worker(
    server: HttpAgentServer, make_worker: WorkerFactory, processes: PoolProcesses
) -> None:
    await anyio.to_thread.run_sync(spawn, processes, f"127.0.0.1:{server.port}", "p0", "p1", "p2")
    runtime = await caller(make_worker)
    engine = server.service.engine

    # Keys spread over the pool, and each key is always answered by the same worker (state kept).
    first = await bump_all(runtime, KEYS)
    holder = {k: c.worker for k, c in first.items()}
    assert set(holder.values()) == {"p0", "p1", "p2"}
    assert all(c.bumps == 1 for c in first.values())
    second = await bump_all(runtime, KEYS)
    assert {k: c.worker for k, c in second.items()} == holder
    assert all(c.bumps == 2 for c in second.values())

    # The host reports each worker's keys (stats and /healthz).
    per_worker = dict(Tally(holder.values()))
    assert engine.stats.shared_types == {"counter": per_worker}
    status, health = await http_call(server.port, "GET", "/healthz")
    assert status == 200 and health["shared_agent_types"] == {"counter": per_worker}

    # A publish reaches exactly one instance per key, on the worker holding it (never once per worker).
    for k in KEYS:
        await runtime.publish_message(Tick(), TopicId("ticks", k))

    async def ticks() -> dict[str, Count]:
        return await bump_all(runtime, KEYS)

    with anyio.fail_after(10):
        while True:
            counts = await ticks()
            if all(c.ticks == 1 for c in counts.values()):
                break
            await anyio.sleep(0.05)
    assert {k: c.worker for k, c in counts.items()} == holder
    worker_totals = {c.worker: c.worker_ticks for c in counts.values()}
    assert worker_totals == per_worker, "some worker got an event for a key it does not hold"

    # A worker SIGKILLed: its calls in flight fail at once, its keys move, the others' stay (with state).
    lost_keys = [k for k, w in holder.items() if w == "p0"]
    in_flight = [asyncio.ensure_future(runtime.send_message(Hold(), AgentId("counter", k))) for k in lost_keys]
    await asyncio.sleep(0.2)
    assert not any(t.done() for t in in_flight)
    killed_at = time.monotonic()
    processes["p0"].send_signal(signal.SIGKILL)
    results = await asyncio.wait_for(asyncio.gather(*in_flight, return_exceptions=True), timeout=2)
    assert time.monotonic() - killed_at < 2
    assert all(isinstance(r, TargetDisconnectedError) for r in results), results
    assert await wait_until(lambda: "p0" not in engine.stats.shared_types["counter"], 2)
    after_kill = await bump_all(runtime, KEYS)
    for k, c in after_kill.items():
        if holder[k] == "p0":
            assert c.worker in {"p1", "p2"} and c.bumps == 1, "a lost key starts afresh on a live worker"
        else:
            assert (c.worker, c.bumps) == (holder[k], 4), "a surviving worker's key moved or lost its state"
    holder = {k: c.worker for k, c in after_kill.items()}

    # A worker joining takes new keys only.
    await anyio.to_thread.run_sync(spawn, processes, f"127.0.0.1:{server.port}", "p3")
    again = await bump_all(runtime, KEYS)
    assert {k: c.worker for k, c in again.items()} == holder
    new_keys = [f"new-{i}" for i in range(30)]
    fresh = await bump_all(runtime, new_keys)
    assert "p3" in {c.worker for c in fresh.values()}
    assert engine.stats.shared_types == {
        "counter": dict(Tally([*holder.values(), *(c.worker for c in fresh.values())]))
    }


async def test_mixing_shared_and_unshared_registrations_is_refused(make_worker: WorkerFactory) -> None:
    shared = await make_worker(shared_agent_types=True)
    await shared.register_factory("counter", lambda: Counter("in-process"))
    alone = await make_worker()
    with pytest.raises(AgentTypeAlreadyRegisteredError, match="already registered by other workers, shared: pass"):
        await alone.register_factory("counter", lambda: Counter("alone"))
    await alone.register_factory("solo", lambda: Counter("alone"))
    with pytest.raises(AgentTypeAlreadyRegisteredError, match="already registered by another worker, not shared"):
        await shared.register_factory("solo", lambda: Counter("in-process"))
    # without the flag, gRPC's uniqueness is unchanged
    other = await make_worker()
    with pytest.raises(
        AgentTypeAlreadyRegisteredError, match=r"^Agent type solo already registered by another worker$"
    ):
        await other.register_factory("solo", lambda: Counter("other"))


async def test_pool_members_rejoin_shared_after_a_host_restart(make_worker: WorkerFactory) -> None:
    first = HttpAgentServer("127.0.0.1", port=0)
    first.start()
    port = first.port
    options = {"reconnect_initial_delay": 0.05, "reconnect_max_delay": 0.3, "address": f"http://127.0.0.1:{port}"}
    for i in range(2):
        member = await make_worker(shared_agent_types=True, client_id=f"m{i}", **options)
        for message in MESSAGES:
            member.add_message_serializer(try_get_known_serializers_for_type(message))
        await Counter.register(member, "counter", lambda i=i: Counter(f"m{i}"))  # type: ignore[misc]
    assert list(first.service.engine.stats.shared_types["counter"]) == ["m0", "m1"]
    subscriptions = await member.get_subscriptions()
    assert len([s for s in subscriptions if getattr(s, "topic_type", None) == "ticks"]) == 2  # a copy each
    await first.stop(grace=1)
    second = HttpAgentServer("127.0.0.1", port=port)
    second.start()
    try:
        with anyio.fail_after(10):
            while len(second.service.engine.stats.shared_types.get("counter", {})) < 2:
                await anyio.sleep(0.02)
        assert second.service.engine.agent_types() == {}  # rejoined shared, not as sole owner
        runtime = await make_worker(serializers=False, address=f"http://127.0.0.1:{port}")
        for message in MESSAGES:
            runtime.add_message_serializer(try_get_known_serializers_for_type(message))
        answers = await bump_all(runtime, [f"k{i}" for i in range(20)])
        assert {c.worker for c in answers.values()} == {"m0", "m1"}
    finally:
        await second.stop(grace=1)
