"""Scale figures: routing cost as unrelated subscriptions grow, many connections, many subscriptions.

* routing: time the host engine takes to route one publish (cache hit, and cache miss on a new
  topic) with 10 ... 10,000 unrelated subscriptions, next to autogen-core's SubscriptionManager
  (what the gRPC host uses) doing the same lookups and absorbing one subscription change;
* connections: a host in its own process, N WebSocket workers connected to it: the host's
  resident memory per connection (from /proc), and a publish fanned out to all of them;
* subscriptions: one worker adds 10,000 subscriptions over the wire; the time per add.
Every loop is bounded in count; every figure in a row comes from the same run.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _publish_frame(topic: str, n: int) -> bytes:
    event = {"specversion": "1.0", "id": f"e{n}", "source": "s", "type": topic, "data": {"x": n}}
    return json.dumps({"jsonrpc": "2.0", "method": "agent.publish", "params": event}).encode()


def routing_cost(sizes: tuple[int, ...], publishes: int) -> list[dict[str, Any]]:
    from sansio_runtime import HostEngine

    rows: list[dict[str, Any]] = []
    for size in sizes:
        engine = HostEngine()
        owner = engine.connect()
        frames = [
            json.dumps({"jsonrpc": "2.0", "id": 1, "method": "runtime.register_agent", "params": {"type": "hit"}}),
            json.dumps(
                {
                    "jsonrpc": "2.0",
                    "id": 2,
                    "method": "runtime.add_subscription",
                    "params": {
                        "subscription": {"id": "hit", "kind": "type", "topic_type": "news", "agent_type": "hit"}
                    },
                }
            ),
        ]
        for i in range(size):  # unrelated: other exact topics and other prefixes of many lengths
            if i % 2:
                sub = {"id": f"u{i}", "kind": "type", "topic_type": f"other.{i}", "agent_type": f"a{i % 97}"}
            else:
                sub = {
                    "id": f"u{i}",
                    "kind": "type_prefix",
                    "topic_type_prefix": f"zz{i % 13}.{i}.",
                    "agent_type": f"a{i % 89}",
                }
            frames.append(
                json.dumps(
                    {
                        "jsonrpc": "2.0",
                        "id": 3 + i,
                        "method": "runtime.add_subscription",
                        "params": {"subscription": sub},
                    }
                )
            )
        for frame in frames:
            engine.receive(owner, frame, 0.0)
        engine.data_to_send()
        publisher = engine.connect()
        hit = [_publish_frame("news", n) for n in range(publishes)]
        miss = [_publish_frame(f"news.{n}", n) for n in range(publishes)]  # a new topic each time
        gc.collect()  # start each size from the same heap state; the timed loops still run the GC
        t0 = time.perf_counter()
        for frame in hit:
            engine.receive(publisher, frame, 0.0)
            engine.data_to_send()
        t1 = time.perf_counter()
        for frame in miss:
            engine.receive(publisher, frame, 0.0)
            engine.data_to_send()
        t2 = time.perf_counter()
        rows.append(
            {
                "subscriptions": size,
                "ours_hit_us": (t1 - t0) / publishes * 1e6,
                "ours_miss_us": (t2 - t1) / publishes * 1e6,
                **_autogen_manager(size, publishes),
            }
        )
    return rows


def _autogen_manager(size: int, publishes: int) -> dict[str, float]:
    """autogen-core's SubscriptionManager (the gRPC host's): lookups, and one change with warm caches."""
    from autogen_core import TopicId, TypePrefixSubscription, TypeSubscription
    from autogen_core._runtime_impl_helpers import SubscriptionManager

    async def measure() -> dict[str, float]:
        manager = SubscriptionManager()
        await manager.add_subscription(TypeSubscription("news", "hit"))
        for i in range(size):
            if i % 2:
                await manager.add_subscription(TypeSubscription(f"other.{i}", f"a{i % 97}"))
            else:
                await manager.add_subscription(TypePrefixSubscription(f"zz{i % 13}.{i}.", f"a{i % 89}"))
        t0 = time.perf_counter()
        for _ in range(publishes):
            await manager.get_subscribed_recipients(TopicId("news", "s"))
        t1 = time.perf_counter()
        for n in range(publishes):
            await manager.get_subscribed_recipients(TopicId(f"news.{n}", "s"))
        t2 = time.perf_counter()
        await manager.add_subscription(TypeSubscription("late", "hit"))  # rebuilds every cached topic
        t3 = time.perf_counter()
        return {
            "autogen_hit_us": (t1 - t0) / publishes * 1e6,
            "autogen_miss_us": (t2 - t1) / publishes * 1e6,
            "autogen_change_ms": (t3 - t2) * 1e3,
        }

    return asyncio.run(measure())


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def _open_workers(port: int, count: int) -> list[Any]:
    from io_backends.sansio import CHANNEL_PATH, parse_host_address
    from io_backends.worker._connect import open_asyncio_channel

    address = parse_host_address(f"127.0.0.1:{port}")
    channels = []
    for i in range(count):
        channel = await open_asyncio_channel(
            address,
            target=CHANNEL_PATH,
            headers=[(b"x-client-id", f"scale-{i}".encode())],
            ssl_context=None,
            max_message_size=1 << 22,
            max_outbound_bytes=1 << 26,
            connect_timeout=10,
        )
        channels.append(channel)
    return channels


def connections(count: int, subscriptions: int) -> dict[str, Any]:
    """A host process, ``count`` workers on it, then ``subscriptions`` added by one of them."""
    host = subprocess.Popen(
        [sys.executable, "-m", "io_backends", "--port", "0", "--log-level", "WARNING"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert host.stdout is not None
        port = int(host.stdout.readline().rsplit(":", 1)[1])
        time.sleep(0.2)
        before = _rss_kib(host.pid)
        result = asyncio.run(_drive(port, count, subscriptions, host.pid, before))
        return {"connections": count, "host_rss_before_mib": before / 1024, **result}
    finally:
        host.send_signal(signal.SIGTERM)
        try:
            host.wait(timeout=15)
        except subprocess.TimeoutExpired:
            host.kill()


async def _drive(port: int, count: int, subscriptions: int, pid: int, before: int) -> dict[str, Any]:
    events = [0]
    answers = [0]
    fanned_out = asyncio.Event()
    all_added = asyncio.Event()

    def on_message(message: str | bytes) -> None:
        text = message if isinstance(message, str) else message.decode()
        if '"agent.event"' in text:
            events[0] += 1
            if events[0] == count:
                fanned_out.set()
        elif '"bulk-' in text or '"id":"bulk' in text:
            answers[0] += 1
            if answers[0] == subscriptions:
                all_added.set()

    t0 = time.perf_counter()
    channels = await _open_workers(port, count)
    connect_s = time.perf_counter() - t0
    servers = [asyncio.ensure_future(c.serve(on_message)) for c in channels]
    for i, channel in enumerate(channels):  # every worker hosts one type subscribed to "fanout"
        channel.send_message(
            json.dumps(
                {"jsonrpc": "2.0", "id": 1, "method": "runtime.register_agent", "params": {"type": f"t{i}"}}
            ).encode()
        )
        channel.send_message(
            json.dumps(
                {
                    "jsonrpc": "2.0",
                    "id": 2,
                    "method": "runtime.add_subscription",
                    "params": {
                        "subscription": {"id": f"f{i}", "kind": "type", "topic_type": "fanout", "agent_type": f"t{i}"}
                    },
                }
            ).encode()
        )
    await asyncio.sleep(1.0)
    after = _rss_kib(pid)
    t1 = time.perf_counter()
    channels[0].send_message(_publish_frame("fanout", 0))
    await asyncio.wait_for(fanned_out.wait(), 30)
    fanout_ms = (time.perf_counter() - t1) * 1e3

    adder = channels[0]
    t2 = time.perf_counter()
    for i in range(subscriptions):
        adder.send_message(
            json.dumps(
                {
                    "jsonrpc": "2.0",
                    "id": f"bulk-{i}",
                    "method": "runtime.add_subscription",
                    "params": {
                        "subscription": {
                            "id": f"bulk{i}",
                            "kind": "type",
                            "topic_type": f"bulk.{i}",
                            "agent_type": "t0",
                        }
                    },
                }
            ).encode()
        )
        if i % 500 == 499:
            await adder.drain(1 << 20)
    await asyncio.wait_for(all_added.wait(), 60)
    add_us = (time.perf_counter() - t2) / max(1, subscriptions) * 1e6
    for channel in channels:
        channel.close(1000)
    await asyncio.gather(*servers, return_exceptions=True)
    return {
        "connect_s": connect_s,
        "host_rss_after_mib": after / 1024,
        "host_kib_per_connection": (after - before) / count,
        "fanout_ms": fanout_ms,
        "subscriptions_added": subscriptions,
        "add_subscription_us": add_us,
    }


def render_scale(routing: list[dict[str, Any]], conns: dict[str, Any]) -> str:
    lines = [
        "=== scale ===",
        "routing cost per publish (µs) as unrelated subscriptions grow:",
        f"  {'subs':>6} {'ours hit':>9} {'ours miss':>10} {'autogen hit':>12} {'autogen miss':>13}"
        f" {'autogen change ms':>18}",
    ]
    for r in routing:
        lines.append(
            f"  {r['subscriptions']:>6} {r['ours_hit_us']:>9.2f} {r['ours_miss_us']:>10.2f} "
            f"{r['autogen_hit_us']:>12.2f} {r['autogen_miss_us']:>13.2f} {r['autogen_change_ms']:>18.2f}"
        )
    first, last = routing[0], routing[-1]
    lines.append(
        f"  ours {last['subscriptions']} vs {first['subscriptions']}: "
        f"hit {last['ours_hit_us'] / first['ours_hit_us']:.2f}x, "
        f"miss {last['ours_miss_us'] / first['ours_miss_us']:.2f}x; autogen miss "
        f"{last['autogen_miss_us'] / first['autogen_miss_us']:.2f}x"
    )
    lines.append(
        f"{conns['connections']} workers connected in {conns['connect_s']:.1f} s; host RSS "
        f"{conns['host_rss_before_mib']:.1f} -> {conns['host_rss_after_mib']:.1f} MiB "
        f"({conns['host_kib_per_connection']:.1f} KiB per connection, with one type and one subscription each)"
    )
    lines.append(f"one publish fanned out to all {conns['connections']} workers in {conns['fanout_ms']:.1f} ms")
    lines.append(
        f"{conns['subscriptions_added']} subscriptions added over the wire: {conns['add_subscription_us']:.1f} µs each"
    )
    return "\n".join(lines)


def run_scale(quick: bool) -> str:
    sizes = (10, 100, 1000) if quick else (10, 100, 1000, 10_000)
    routing_cost(sizes[:1], publishes=200)  # warm-up, not reported
    routing = routing_cost(sizes, publishes=200 if quick else 2000)
    conns = connections(count=50 if quick else 1000, subscriptions=500 if quick else 10_000)
    return render_scale(routing, conns)
