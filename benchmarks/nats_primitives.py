"""What the NATS primitives under the cluster cost, as ratios to a raw loopback TCP ping-pong
and to a call through one of our hosts, all measured in one run (docs/CLUSTER.md, "Costs").

    python benchmarks/nats_primitives.py [--quick] [--json PATH]

One process, one asyncio loop, a real nats-server (the cluster extra) on loopback:

* ``tcp_rtt``: asyncio TCP ping-pong of a 100 B frame (the floor; 2 Python hops per round trip);
* ``nats_request``: request-reply through nats-server, responder on another connection
  (2 Python hops + 2 server hops), and ``nats_pingpong``: the same with two plain subjects;
* ``kv_create`` / ``kv_update_cas`` / ``kv_get``: sequential JetStream KV operations (file store);
* ``host_call``: ``send_message`` between two workers through one ``HttpAgentServer``, the call a
  cross-host call must stay within 2x of;
* ``publish``: one-way messages per second, 100 B, counted at 1 and at 3 subscriber connections,
  and the same count of frames over raw TCP.

Every loop is bounded by a count and by a time cap.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import struct
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
for path in (BENCH_DIR, BENCH_DIR.parent):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import nats  # noqa: E402
from _agents import ECHO_ID, ECHO_TYPE, EchoAgent, Payload, payload_serializers  # noqa: E402
from nats.aio.msg import Msg  # noqa: E402

from io_backends import HttpAgentServer, HttpWorkerAgentRuntime  # noqa: E402
from io_backends.cluster import NatsServer  # noqa: E402

LOOPBACK = "127.0.0.1"
BODY = b"x" * 100
FRAME = struct.Struct(">I")
CAP = 20.0  # seconds per measurement, at most


@dataclass
class Latency:
    count: int
    p50_us: float
    p99_us: float
    mean_us: float


async def _timed(op: Callable[[int], Awaitable[object]], count: int, warmup: int = 50) -> Latency:
    for i in range(warmup):
        await op(-1 - i)
    samples: list[float] = []
    limit = time.monotonic() + CAP
    for i in range(count):
        start = time.perf_counter()
        await op(i)
        samples.append(time.perf_counter() - start)
        if time.monotonic() > limit:
            break
    samples.sort()
    return Latency(
        len(samples),
        round(samples[len(samples) // 2] * 1e6, 1),
        round(samples[min(len(samples) - 1, int(len(samples) * 0.99))] * 1e6, 1),
        round(statistics.fmean(samples) * 1e6, 1),
    )


# ------------------------------------------------------------------ raw TCP


async def tcp_rtt(count: int) -> Latency:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                header = await reader.readexactly(FRAME.size)
                writer.write(header + await reader.readexactly(FRAME.unpack(header)[0]))
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(echo, LOOPBACK, 0)
    reader, writer = await asyncio.open_connection(LOOPBACK, server.sockets[0].getsockname()[1])
    frame = FRAME.pack(len(BODY)) + BODY

    async def ping(_: int) -> None:
        writer.write(frame)
        header = await reader.readexactly(FRAME.size)
        await reader.readexactly(FRAME.unpack(header)[0])

    try:
        return await _timed(ping, count)
    finally:
        writer.close()
        server.close()
        await server.wait_closed()


async def tcp_oneway(count: int) -> float:
    """Frames per second one way over TCP, counted by the reader."""
    done = asyncio.Event()
    received = 0

    async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal received
        try:
            while received < count:
                header = await reader.readexactly(FRAME.size)
                await reader.readexactly(FRAME.unpack(header)[0])
                received += 1
        finally:
            done.set()
            writer.close()

    server = await asyncio.start_server(sink, LOOPBACK, 0)
    _, writer = await asyncio.open_connection(LOOPBACK, server.sockets[0].getsockname()[1])
    frame = FRAME.pack(len(BODY)) + BODY
    start = time.perf_counter()
    for i in range(count):
        writer.write(frame)
        if i % 256 == 0:
            await writer.drain()
    await writer.drain()
    await asyncio.wait_for(done.wait(), CAP)
    rate = received / (time.perf_counter() - start)
    writer.close()
    server.close()
    await server.wait_closed()
    return rate


# ------------------------------------------------------------------ NATS


async def nats_request(url: str, count: int) -> Latency:
    responder, requester = await nats.connect(url), await nats.connect(url)

    async def answer(msg: Msg) -> None:
        await msg.respond(msg.data)

    await responder.subscribe("bench.calls", cb=answer)
    await responder.flush()
    try:
        return await _timed(lambda _: requester.request("bench.calls", BODY, timeout=5), count)
    finally:
        await responder.close()
        await requester.close()


async def nats_pingpong(url: str, count: int) -> Latency:
    """Request-reply made of two plain subjects (what a JSON-RPC-frames-over-subjects design does)."""
    a, b = await nats.connect(url), await nats.connect(url)
    waiter: list[asyncio.Future[bytes]] = []

    async def pong(msg: Msg) -> None:
        await b.publish("bench.pong", msg.data)

    async def back(msg: Msg) -> None:
        waiter.pop().set_result(msg.data)

    await b.subscribe("bench.ping", cb=pong)
    await a.subscribe("bench.pong", cb=back)
    await a.flush()
    await b.flush()

    async def ping(_: int) -> None:
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        waiter.append(future)
        await a.publish("bench.ping", BODY)
        await asyncio.wait_for(future, 5)

    try:
        return await _timed(ping, count)
    finally:
        await a.close()
        await b.close()


async def kv_ops(url: str, count: int) -> dict[str, Latency]:
    nc = await nats.connect(url)
    kv = await nc.jetstream().create_key_value(bucket="bench", history=1)
    revisions: dict[int, int] = {}

    async def create(i: int) -> None:
        revisions[i] = await kv.create(f"k{i + 100}", BODY)

    async def update(i: int) -> None:
        revisions[i] = await kv.update(f"k{i + 100}", BODY, last=revisions[i])

    async def get(i: int) -> None:
        await kv.get(f"k{i + 100}")

    try:
        return {
            "kv_create": await _timed(create, count),
            "kv_update_cas": await _timed(update, count),
            "kv_get": await _timed(get, count),
        }
    finally:
        await nc.close()


async def nats_publish(url: str, count: int, subscribers: int) -> float:
    """Messages per second published by one connection, counted at the slowest subscriber."""
    pub = await nats.connect(url, pending_size=8 * 1024 * 1024)
    subs = [await nats.connect(url, pending_size=8 * 1024 * 1024) for _ in range(subscribers)]
    counts = [0] * subscribers
    done = asyncio.Event()

    for i, sub in enumerate(subs):

        async def on(msg: Msg, i: int = i) -> None:
            counts[i] += 1
            if min(counts) >= count:
                done.set()

        await sub.subscribe("bench.events", cb=on, pending_msgs_limit=count + 1)
        await sub.flush()
    start = time.perf_counter()
    for i in range(count):
        await pub.publish("bench.events", BODY)
        if i % 1024 == 0:
            await asyncio.sleep(0)  # let the subscribers' readers run in this one loop
    await pub.flush()
    try:
        await asyncio.wait_for(done.wait(), CAP)
    except asyncio.TimeoutError:
        pass
    rate = min(counts) / (time.perf_counter() - start)
    for c in [pub, *subs]:
        await c.close()
    return rate


# ------------------------------------------------------------------ one host of ours


async def host_call(count: int) -> Latency:
    server = HttpAgentServer(port=0)
    server.start()
    address = f"{LOOPBACK}:{server.port}"
    callee, caller = HttpWorkerAgentRuntime(address), HttpWorkerAgentRuntime(address)
    for rt in (callee, caller):
        rt.add_message_serializer(payload_serializers())
        await rt.start()
    await EchoAgent.register(callee, ECHO_TYPE, EchoAgent)
    message = Payload("x" * 90)
    try:
        return await _timed(lambda _: caller.send_message(message, ECHO_ID), count)
    finally:
        await caller.stop()
        await callee.stop()
        await server.stop(grace=1)


# ------------------------------------------------------------------ the run


async def run(quick: bool) -> dict[str, object]:
    n = 300 if quick else 3000
    results: dict[str, object] = {}
    with NatsServer() as server:
        results["tcp_rtt"] = await tcp_rtt(n)
        results["nats_request"] = await nats_request(server.url, n)
        results["nats_pingpong"] = await nats_pingpong(server.url, n)
        results.update(await kv_ops(server.url, n // 3))
        results["host_call"] = await host_call(n)
        pubs = 20_000 if quick else 100_000
        results["tcp_oneway_per_s"] = round(await tcp_oneway(pubs))
        results["publish_1sub_per_s"] = round(await nats_publish(server.url, pubs, 1))
        results["publish_3sub_per_s"] = round(await nats_publish(server.url, pubs, 3))
    return results


def _report(results: dict[str, object]) -> str:
    tcp = results["tcp_rtt"]
    call = results["host_call"]
    assert isinstance(tcp, Latency) and isinstance(call, Latency)
    lines = [
        f"cpus {os.cpu_count()}, load {os.getloadavg()[0]:.2f}, "
        f"loop {type(asyncio.get_event_loop_policy()).__module__}; p50 in microseconds, ratios of p50",
        f"{'measure':16} {'n':>6} {'p50_us':>9} {'p99_us':>9} {'x tcp_rtt':>10} {'x host_call':>12}",
    ]
    for name, value in results.items():
        if isinstance(value, Latency):
            lines.append(
                f"{name:16} {value.count:6} {value.p50_us:9.1f} {value.p99_us:9.1f} "
                f"{value.p50_us / tcp.p50_us:10.2f} {value.p50_us / call.p50_us:12.2f}"
            )
    tcp_rate = results["tcp_oneway_per_s"]
    assert isinstance(tcp_rate, int)
    for name in ("tcp_oneway_per_s", "publish_1sub_per_s", "publish_3sub_per_s"):
        rate = results[name]
        assert isinstance(rate, int)
        lines.append(f"{name:20} {rate:10} msg/s   x tcp_oneway {rate / tcp_rate:.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts (a few seconds)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop (as a host may)")
    args = parser.parse_args(argv)
    if args.uvloop:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    results = asyncio.run(run(args.quick))
    print(_report(results))
    if args.json:
        plain = {k: (v.__dict__ if isinstance(v, Latency) else v) for k, v in results.items()}
        args.json.write_text(json.dumps(plain, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
