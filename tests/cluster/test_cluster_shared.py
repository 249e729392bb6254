"""Shared agent types placed cluster-wide (issue 13, docs/CLUSTER.md section 8), over real processes.

nats-server, three host processes (a, b, c), and pool workers in their own processes
(tests/e2e/_pool_worker.py: ``counter`` instances that count their calls and events), on hosts a
and b; callers are workers in the test's process, on every host. Every process is stopped by the
test that started it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import anyio
import pytest
from autogen_core import AgentId, TopicId, try_get_known_serializers_for_type

from io_backends import AgentTypeNotFoundError, HttpWorkerAgentRuntime
from io_backends.cluster import NatsServer
from tests.e2e._pool_processes import PoolProcesses, pool_processes, spawn
from tests.e2e._pool_worker import MESSAGES, Bump, Count, Tick

from ._hosts import HostProcess, hosts

pytestmark = [pytest.mark.anyio, pytest.mark.slow]  # (host and worker processes: run once, in the main suite)


@pytest.fixture
def processes() -> Iterator[PoolProcesses]:
    with pool_processes() as procs:
        yield procs


@pytest.fixture
def cluster() -> Iterator[dict[str, HostProcess]]:
    with NatsServer() as server, hosts(server.url, "a", "b", "c", cluster_name="shared") as started:
        yield {h.name: h for h in started}


@asynccontextmanager
async def caller(host: HostProcess) -> AsyncIterator[HttpWorkerAgentRuntime]:
    runtime = HttpWorkerAgentRuntime(host.address)
    for message in MESSAGES:
        runtime.add_message_serializer(try_get_known_serializers_for_type(message))
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


async def bump_all(runtime: HttpWorkerAgentRuntime, keys: list[str]) -> dict[str, Count]:
    with anyio.fail_after(15):
        answers = await asyncio.gather(*(runtime.send_message(Bump(), AgentId("counter", k)) for k in keys))
    assert all(isinstance(a, Count) and a.key == k for a, k in zip(answers, keys, strict=True))
    return dict(zip(keys, answers, strict=True))


async def bump_each_once_served(runtime: HttpWorkerAgentRuntime, keys: list[str]) -> dict[str, Count]:
    """One Bump per key, each retried until it is served (a call fails while the cluster is still
    noticing a failure); a failed call never ran, so each key is counted once."""

    async def bump(k: str) -> Count:
        while True:
            try:
                answer = await runtime.send_message(Bump(), AgentId("counter", k))
                assert isinstance(answer, Count)
                return answer
            except Exception:
                await anyio.sleep(0.05)

    with anyio.fail_after(15):
        answers = await asyncio.gather(*(bump(k) for k in keys))
    return dict(zip(keys, answers, strict=True))


async def test_each_key_of_a_shared_type_lives_once_in_the_cluster_whichever_host_calls_it(
    cluster: dict[str, HostProcess], processes: PoolProcesses
) -> None:
    a, b, c = cluster["a"], cluster["b"], cluster["c"]
    await anyio.to_thread.run_sync(spawn, processes, a.address, "a1", "a2")
    await anyio.to_thread.run_sync(spawn, processes, b.address, "b1")
    keys = [f"user-{i}" for i in range(40)]
    async with caller(a) as on_a, caller(b) as on_b, caller(c) as on_c:
        # Every host's callers ask for the same fresh keys at once: each key is placed once.
        started = time.perf_counter()
        rounds = await asyncio.gather(bump_all(on_a, keys), bump_all(on_b, keys), bump_all(on_c, keys))
        first_calls = time.perf_counter() - started
        for k in keys:
            answers = [r[k] for r in rounds]
            assert len({x.worker for x in answers}) == 1, f"{k} answered by several instances: {answers}"
            assert sorted(x.bumps for x in answers) == [1, 2, 3], "three calls, one instance's count"
        holder = {k: rounds[0][k].worker for k in keys}
        assert set(holder.values()) == {"a1", "a2", "b1"}, "keys spread over the pool's workers on both hosts"

        # Placed: later calls from any host reach the same instance, with its state.
        started = time.perf_counter()
        again = await bump_all(on_c, keys)
        placed_calls = time.perf_counter() - started
        assert {k: x.worker for k, x in again.items()} == holder and all(x.bumps == 4 for x in again.values())
        print(f"\n40 first calls from 3 hosts (placing) took {first_calls / placed_calls:.1f}x 40 placed ones")

        # A publish reaches exactly one instance per key, wherever it was published.
        for n, k in enumerate(keys):
            await (on_a, on_b, on_c)[n % 3].publish_message(Tick(), TopicId("ticks", k))
        with anyio.fail_after(10):
            while True:
                counts = await bump_all(on_b, keys)
                if all(x.ticks >= 1 for x in counts.values()):
                    break
                await anyio.sleep(0.05)
        await anyio.sleep(0.3)  # (a second delivery, if any, would arrive by now)
        counts = await bump_all(on_a, keys)
        assert all(x.ticks == 1 for x in counts.values()), {k: x.ticks for k, x in counts.items() if x.ticks != 1}
        assert {k: x.worker for k, x in counts.items()} == holder
        per_worker = {w: sum(1 for h in holder.values() if h == w) for w in set(holder.values())}
        assert {x.worker: x.worker_ticks for x in counts.values()} == per_worker, "an event reached a non-holder"


async def test_a_killed_hosts_keys_are_placed_again_on_the_survivors_and_the_others_keep_their_state(
    cluster: dict[str, HostProcess], processes: PoolProcesses
) -> None:
    a, b, c = cluster["a"], cluster["b"], cluster["c"]
    await anyio.to_thread.run_sync(spawn, processes, a.address, "a1")
    await anyio.to_thread.run_sync(spawn, processes, b.address, "b1")
    keys = [f"k{i}" for i in range(30)]
    async with caller(c) as on_c:
        first = await bump_all(on_c, keys)
        holder = {k: x.worker for k, x in first.items()}
        assert set(holder.values()) == {"a1", "b1"}
        killed_at = time.monotonic()
        a.kill()  # host a SIGKILLed: its worker a1 loses its host (it knows no other)

        after = await bump_each_once_served(on_c, keys)
        print(f"\nkeys of a SIGKILLed host served again from the survivor after {time.monotonic() - killed_at:.2f}s")
        for k, x in after.items():
            if holder[k] == "a1":
                assert x.worker == "b1" and x.bumps == 1, "a lost key starts afresh on a live host"
            else:
                assert (x.worker, x.bumps) == ("b1", 2), "a surviving host's key moved or lost its state"


async def test_with_nats_stopped_a_host_serves_the_keys_it_holds_and_all_keys_come_back_with_their_state(
    processes: PoolProcesses,
) -> None:
    with NatsServer() as server, hosts(server.url, "a", "b", cluster_name="outage") as (a, b):
        await anyio.to_thread.run_sync(spawn, processes, a.address, "a1")
        await anyio.to_thread.run_sync(spawn, processes, b.address, "b1")
        keys = [f"k{i}" for i in range(20)]
        async with caller(a) as on_a:
            holder = {k: x.worker for k, x in (await bump_all(on_a, keys)).items()}
            here = [k for k in keys if holder[k] == "a1"]
            there = [k for k in keys if holder[k] == "b1"]
            assert here and there
            server.stop()
            await asyncio.sleep(0.5)  # the hosts see the link drop
            assert all(x.bumps == 2 for x in (await bump_all(on_a, here)).values()), "local keys go on, with state"
            for k in (there[0], "never-placed"):
                started = time.monotonic()
                with pytest.raises(AgentTypeNotFoundError, match="not placed: the cluster link is down"):
                    await on_a.send_message(Bump(), AgentId("counter", k))
                assert time.monotonic() - started < 1.0  # at once
            server.start()
            back = time.monotonic()

            after = await bump_each_once_served(on_a, keys)
            print(f"\nNATS back -> every key of the shared type served again after {time.monotonic() - back:.2f}s")
            assert {k: x.worker for k, x in after.items()} == holder, "a key moved across the outage"
            assert all(after[k].bumps == 3 for k in here) and all(after[k].bumps == 2 for k in there)
