"""The NATS behaviours the cluster design (docs/CLUSTER.md) rests on, checked against a real
nats-server with nats-py. Each test pins one fact; when an upgrade changes one, the design must
be looked at again, so these tests name what depends on them.

Key-value store (JetStream): create-if-absent, compare-and-set, per-key TTL, watchers.
Core NATS: request-reply, no-responders, per-publisher order of fan-out.
Outages: what nats-py does with publishes, requests, KV writes and watchers while the server is
away and after it is back.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import nats
import nats.errors
import nats.js.errors
import pytest
from nats.aio.msg import Msg
from nats.js.kv import KeyValue

from io_backends.cluster import NatsCluster, NatsServer

from .conftest import Connect

pytestmark = pytest.mark.anyio


class Watch:
    """Every entry a KV watcher delivers, with the time it arrived (the initial None skipped)."""

    def __init__(self, watcher: KeyValue.KeyWatcher) -> None:
        self.watcher = watcher
        self.entries: list[tuple[float, KeyValue.Entry]] = []
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for entry in self.watcher:
            if entry is not None:
                self.entries.append((time.monotonic(), entry))

    def seen(self) -> list[tuple[str, str | None, bytes | None]]:
        return [(e.key, e.operation, e.value) for _, e in self.entries]

    async def until(self, count: int, timeout: float) -> None:
        limit = time.monotonic() + timeout
        while len(self.entries) < count and time.monotonic() < limit:
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        self._task.cancel()
        await self.watcher.stop()


@asynccontextmanager
async def watching(kv: KeyValue, keys: str = ">") -> AsyncIterator[Watch]:
    watch = Watch(await kv.watch(keys))
    await asyncio.sleep(0.05)
    try:
        yield watch
    finally:
        await watch.stop()


async def live(kv: KeyValue, key: str) -> KeyValue.Entry | None:
    """The key's entry, or None if it is absent, deleted, or only an expiry marker (see
    test_an_expiry_marker_looks_like_a_live_empty_key_to_get_and_create)."""
    try:
        entry = await kv.get(key)
    except nats.js.errors.KeyNotFoundError:
        return None
    return None if entry.value is None and entry.operation is None else entry


# ---------------------------------------------------------------------------------------------
# Key-value: the registry and placements


async def test_create_if_absent_race_has_exactly_one_winner(connect: Connect) -> None:
    """Two hosts registering the same agent type (or placing the same key) at once: one wins.
    The loser gets KeyWrongLastSequenceError, and the value is the winner's."""
    a, b = await connect(), await connect()
    kv_a = await a.jetstream().create_key_value(bucket="registry")
    kv_b = await b.jetstream().key_value("registry")
    for round_ in range(2):  # the second round re-creates keys deleted after the first
        names = [f"type-{i}" for i in range(40)]
        results = await asyncio.gather(
            *(kv.create(name, who, msg_ttl=None) for name in names for kv, who in ((kv_a, b"A"), (kv_b, b"B"))),
            return_exceptions=True,
        )
        for i, name in enumerate(names):
            first, second = results[2 * i], results[2 * i + 1]
            wins = [r for r in (first, second) if isinstance(r, int)]
            losses = [r for r in (first, second) if isinstance(r, nats.js.errors.KeyWrongLastSequenceError)]
            assert len(wins) == 1 and len(losses) == 1, (round_, name, first, second)
            entry = await kv_a.get(name)
            assert entry.value == (b"A" if isinstance(first, int) else b"B")
            assert entry.revision == wins[0]
        for name in names:
            await kv_a.delete(name)


async def test_update_with_revision_is_compare_and_set(connect: Connect) -> None:
    """Taking over a dead host's entry: update(last=revision) succeeds for one writer only, and a
    delete(last=revision) never removes an entry someone else rewrote meanwhile."""
    a, b = await connect(), await connect()
    kv_a = await a.jetstream().create_key_value(bucket="registry")
    kv_b = await b.jetstream().key_value("registry")
    rev = await kv_a.create("echo", b"host-1")
    results = await asyncio.gather(
        kv_a.update("echo", b"host-2", last=rev), kv_b.update("echo", b"host-3", last=rev), return_exceptions=True
    )
    assert sorted(type(r).__name__ for r in results) == ["KeyWrongLastSequenceError", "int"]
    winner = next(r for r in results if isinstance(r, int))
    assert (await kv_a.get("echo")).revision == winner
    with pytest.raises(nats.js.errors.KeyWrongLastSequenceError):
        await kv_a.update("echo", b"stale", last=rev)
    with pytest.raises(nats.js.errors.APIError) as deleted:
        await kv_b.delete("echo", last=rev)  # stale: refused, the entry stays
    assert deleted.value.err_code == 10071
    assert (await kv_a.get("echo")).revision == winner
    assert await kv_b.delete("echo", last=winner)
    with pytest.raises(nats.js.errors.KeyNotFoundError):
        await kv_a.get("echo")


async def test_per_key_ttl_is_whole_seconds(connect: Connect) -> None:
    """create(msg_ttl=) sends the TTL as whole seconds (nats-py: str(int(ttl))): under 1 s it is
    0, which the server refuses; the server too reads "1500ms" as 1 s. The bucket's own ttl
    (max_age) has no such floor."""
    nc = await connect()
    js = nc.jetstream()
    kv = await js.create_key_value(bucket="ttl")
    with pytest.raises(nats.js.errors.BadRequestError) as refused:
        await kv.create("half", b"x", msg_ttl=0.5)
    assert refused.value.err_code == 10165  # invalid per-message TTL
    assert await kv.create("one", b"x", msg_ttl=1) > 0
    info = await js.stream_info("KV_ttl")
    assert info.config.allow_msg_ttl, "nats-py creates every bucket with per-message TTL allowed"


async def test_ttl_expiry_is_seen_by_watchers_only_with_limit_markers(connect: Connect) -> None:
    """A key whose TTL runs out is heard of by a watcher only if the bucket has limit_marker_ttl
    (a server-placed marker, operation PURGE). Without it the registry cannot learn of an expiry
    except by polling."""
    nc = await connect()
    js = nc.jetstream()
    plain = await js.create_key_value(bucket="plain")
    marked = await js.create_key_value(bucket="marked", limit_marker_ttl=1)
    async with watching(plain) as plain_watch, watching(marked) as marked_watch:
        created = time.monotonic()
        await plain.create("host-1", b"alive", msg_ttl=1)
        await marked.create("host-1", b"alive", msg_ttl=1)
        await marked_watch.until(2, timeout=5)
        await asyncio.sleep(0.3)  # let the plain bucket's expiry pass too
        assert plain_watch.seen() == [("host-1", None, b"alive")]
        assert marked_watch.seen() == [("host-1", None, b"alive"), ("host-1", "PURGE", b"")]
        expired_after = marked_watch.entries[1][0] - created
        assert 0.9 <= expired_after < 3.0, expired_after  # measured: 1.0-1.3 s for a 1 s TTL
    with pytest.raises(nats.js.errors.KeyNotFoundError):
        await plain.get("host-1")
    assert await plain.create("host-1", b"again", msg_ttl=1) > 0, "an expired key can be created again"


async def test_an_expiry_marker_looks_like_a_live_empty_key_to_get_and_create(connect: Connect) -> None:
    """nats-py 2.16 reads only KV-Operation headers, not the server's Nats-Marker-Reason: while the
    marker of an expired key lives (limit_marker_ttl), get() returns an entry with value None and
    operation None, and create() fails with KeyWrongLastSequenceError as if the key were there.
    Claiming such a key takes a compare-and-set on the marker's revision."""
    nc = await connect()
    kv = await nc.jetstream().create_key_value(bucket="marked", limit_marker_ttl=5)
    await kv.create("echo", b"host-1", msg_ttl=1)
    await asyncio.sleep(1.6)
    marker = await kv.get("echo")
    assert (marker.value, marker.operation) == (None, None) and marker.revision == 2
    with pytest.raises(nats.js.errors.KeyWrongLastSequenceError):
        await kv.create("echo", b"host-2")
    rev = await kv.update("echo", b"host-2", last=marker.revision)
    assert (await kv.get("echo")).value == b"host-2" and rev == 3
    with pytest.raises(nats.js.errors.KeyWrongLastSequenceError):
        await kv.update("echo", b"host-3", last=marker.revision)  # still exactly one winner


async def test_a_refreshed_key_outlives_its_ttl(connect: Connect) -> None:
    """A presence key kept alive: each write carries the TTL again (js.publish with msg_ttl and an
    expected revision; plain put() and update() cannot set a TTL). A write without a TTL makes
    the key permanent."""
    nc = await connect()
    js = nc.jetstream()
    kv = await js.create_key_value(bucket="presence", limit_marker_ttl=1)
    rev = await kv.create("host-1", b"1", msg_ttl=1)
    await kv.create("host-2", b"1", msg_ttl=1)
    await kv.update("host-3", b"forever", last=await kv.create("host-3", b"1", msg_ttl=1))
    for _ in range(4):  # 2 s of refreshes at 0.5 s
        await asyncio.sleep(0.5)
        ack = await js.publish(
            "$KV.presence.host-1", b"1", msg_ttl=1, headers={"Nats-Expected-Last-Subject-Sequence": str(rev)}
        )
        rev = ack.seq
    assert (await kv.get("host-1")).revision == rev
    assert await live(kv, "host-2") is None
    live_3 = await live(kv, "host-3")
    assert live_3 is not None and live_3.value == b"forever"


async def test_bucket_ttl_below_one_second_works_and_is_refreshed_by_put(connect: Connect) -> None:
    """The bucket-wide ttl (stream max_age) takes fractions of a second and every put renews it;
    with limit markers the expiry reaches watchers (measured: ttl + 0.05-0.3 s)."""
    nc = await connect()
    kv = await nc.jetstream().create_key_value(bucket="beats", ttl=0.5, limit_marker_ttl=1)
    async with watching(kv) as watch:
        start = time.monotonic()
        for _ in range(6):  # alive for 0.9 s, then silent
            await kv.put("host-1", b"beat")
            await asyncio.sleep(0.15)
        silent_from = time.monotonic() - 0.15
        await watch.until(7, timeout=5)
        ops = [op for _, op, _ in watch.seen()]
        assert ops == [None] * 6 + ["PURGE"], ops
        gone_after = watch.entries[-1][0] - silent_from
        assert 0.4 <= gone_after < 2.5, gone_after
        assert watch.entries[-1][0] - start > 0.9


async def test_watch_sees_current_state_then_changes_in_order(connect: Connect) -> None:
    """A new watcher first gets the latest entry of each key (a full re-sync), then every change
    in order, deletes and purges included (operation DEL / PURGE)."""
    nc = await connect()
    kv = await nc.jetstream().create_key_value(bucket="registry")
    await kv.put("a", b"1")
    await kv.put("a", b"2")
    await kv.put("b", b"1")
    async with watching(kv) as watch:
        await watch.until(2, timeout=2)
        assert watch.seen() == [("a", None, b"2"), ("b", None, b"1")]
        await kv.create("c", b"1")
        await kv.update("c", b"2", last=(await kv.get("c")).revision)
        await kv.delete("a")
        await kv.purge("b")
        await watch.until(6, timeout=2)
        assert watch.seen()[2:] == [("c", None, b"1"), ("c", None, b"2"), ("a", "DEL", b""), ("b", "PURGE", b"")]
        revisions = [e.revision for _, e in watch.entries]
        assert revisions == sorted(revisions)


# ---------------------------------------------------------------------------------------------
# Core NATS: calls and events


async def test_request_reply_and_no_responders(connect: Connect) -> None:
    """A request to a subject nobody listens on fails at once (NoRespondersError), not at its
    timeout: a call to a host whose process is gone fails fast."""
    server, client = await connect(), await connect()

    async def answer(msg: Msg) -> None:
        await msg.respond(msg.data.upper())

    await server.subscribe("host.h1.calls", cb=answer)
    await server.flush()
    assert (await client.request("host.h1.calls", b"hi", timeout=2)).data == b"HI"
    start = time.monotonic()
    with pytest.raises(nats.errors.NoRespondersError):
        await client.request("host.h2.calls", b"hi", timeout=5)
    assert time.monotonic() - start < 1.0


async def test_a_frame_to_nobody_comes_back_as_a_503_to_its_reply_subject(connect: Connect) -> None:
    """A plain publish that names a reply subject, to a subject nobody listens on, is answered at
    once by the server with an empty 503 status message on that reply subject, naming the subject
    it was for (Nats-Subject). A host that sends its frames to a peer with reply=<its own subject>
    learns at once that the peer is gone, with no request, inbox or timer of its own."""
    host_a = await connect()
    got: asyncio.Future[Msg] = asyncio.get_running_loop().create_future()

    async def on_frame(msg: Msg) -> None:
        got.set_result(msg)

    await host_a.subscribe("agrt.test.host.a", cb=on_frame)
    await host_a.flush()
    start = time.monotonic()
    await host_a.publish(
        "agrt.test.host.b", b'{"jsonrpc":"2.0","id":1,"method":"agent.call"}', reply="agrt.test.host.a"
    )
    msg = await asyncio.wait_for(got, 2)
    assert time.monotonic() - start < 0.5
    assert msg.data == b"" and msg.headers is not None
    assert msg.headers.get("Status") == "503"
    assert msg.headers.get("Nats-Subject") == "agrt.test.host.b"


_RESPONDER = """
import asyncio, sys, nats
async def main():
    nc = await nats.connect(sys.argv[1])
    async def hold(msg):
        print("got", flush=True)  # never answers
    await nc.subscribe("host.h1.calls", cb=hold)
    await nc.flush()
    print("ready", flush=True)
    await asyncio.sleep(60)
asyncio.run(main())
"""


async def test_a_killed_responder_leaves_its_request_waiting_but_the_next_fails_at_once(
    nats_server: NatsServer, connect: Connect
) -> None:
    """A host SIGKILLed while answering a request: the caller hears nothing (the request waits
    for its own timeout), but its subscription goes with its connection, so the next request
    (a probe) gets NoRespondersError at once. Heartbeats or probes must fail in-flight calls."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _RESPONDER, nats_server.url], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"ready"
        client = await connect()
        pending = asyncio.ensure_future(client.request("host.h1.calls", b"work", timeout=1.5))
        assert await asyncio.to_thread(proc.stdout.readline) == b"got\n"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)
        killed = time.monotonic()
        await asyncio.sleep(0.05)
        with pytest.raises(nats.errors.NoRespondersError):
            await client.request("host.h1.calls", b"probe", timeout=5)
        assert time.monotonic() - killed < 1.0
        with pytest.raises(nats.errors.TimeoutError):
            await pending
        assert time.monotonic() - killed > 1.0, "the in-flight request only ended by its timeout"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


async def test_fan_out_keeps_each_publishers_order_exactly_once(connect: Connect) -> None:
    """Events to three hosts from two publishers: every subscriber gets every event once, each
    publisher's in the order published (there is no order between publishers)."""
    publishers = [await connect(), await connect()]
    subscribers = [await connect() for _ in range(3)]
    received: list[list[tuple[int, int]]] = [[] for _ in subscribers]
    for i, sub in enumerate(subscribers):

        async def on_event(msg: Msg, into: list[tuple[int, int]] = received[i]) -> None:
            publisher, seq = msg.data.split(b":")
            into.append((int(publisher), int(seq)))

        await sub.subscribe("events.news", cb=on_event)
        await sub.flush()
    count = 2000
    for seq in range(count):
        for p, pub in enumerate(publishers):
            await pub.publish("events.news", b"%d:%d" % (p, seq))
    for pub in publishers:
        await pub.flush()
    limit = time.monotonic() + 10
    while any(len(r) < 2 * count for r in received) and time.monotonic() < limit:
        await asyncio.sleep(0.02)
    for r in received:
        assert len(r) == 2 * count
        for p in range(2):
            assert [seq for who, seq in r if who == p] == list(range(count))


async def test_max_payload_is_1_mib_unless_the_server_says_more() -> None:
    """NATS refuses messages over the server's max_payload (1 MiB by default; nats-py raises
    MaxPayloadError before sending). A host's frames go up to max_message_size (4 MiB) plus the
    forwarding allowance, so a cluster's NATS needs max_payload raised, and a host must compare
    nc.max_payload with its own limit when it connects."""
    from sansio_runtime import DEFAULT_MAX_MESSAGE_SIZE, FORWARDING_ALLOWANCE

    frame = b"x" * (DEFAULT_MAX_MESSAGE_SIZE + FORWARDING_ALLOWANCE)
    with NatsServer() as small, NatsServer(max_payload=8 * 1024 * 1024) as large:
        nc_small, nc_large = await nats.connect(small.url), await nats.connect(large.url)
        try:
            assert nc_small.max_payload == 1024 * 1024
            with pytest.raises(nats.errors.MaxPayloadError):
                await nc_small.publish("host.h1.calls", frame)
            assert nc_large.max_payload == 8 * 1024 * 1024
            got: asyncio.Future[int] = asyncio.get_running_loop().create_future()

            async def on(msg: Msg) -> None:
                got.set_result(len(msg.data))

            await nc_large.subscribe("host.h1.calls", cb=on)
            await nc_large.publish("host.h1.calls", frame)
            assert await asyncio.wait_for(got, 5) == len(frame)
        finally:
            await nc_small.close()
            await nc_large.close()


# ---------------------------------------------------------------------------------------------
# NATS stopped and back


async def test_reconnect_after_a_restart_is_quick_with_a_short_wait(nats_server: NatsServer, connect: Connect) -> None:
    """With reconnect_time_wait=0.05 and unlimited attempts a client is back within a fraction of
    a second of the server's return (nats-py's defaults: 2 s wait, and it gives up for good after
    60 attempts, i.e. about 2 minutes of outage: a host must not use them)."""
    events: list[tuple[str, float]] = []

    async def disconnected() -> None:
        events.append(("disconnected", time.monotonic()))

    async def reconnected() -> None:
        events.append(("reconnected", time.monotonic()))

    nc = await connect(disconnected_cb=disconnected, reconnected_cb=reconnected)
    stopped = time.monotonic()
    nats_server.stop()
    await _until(lambda: not nc.is_connected, 2)
    assert events and events[0][0] == "disconnected" and events[0][1] - stopped < 1.0
    await asyncio.sleep(0.5)
    assert nc.is_reconnecting
    nats_server.start()
    back = time.monotonic()
    await _until(lambda: nc.is_connected, 5)
    assert nc.is_connected and events[-1][0] == "reconnected"
    assert events[-1][1] - back < 1.5, events[-1][1] - back


async def _until(condition: object, timeout: float) -> None:
    limit = time.monotonic() + timeout
    while not condition() and time.monotonic() < limit:  # type: ignore[operator]
        await asyncio.sleep(0.01)


async def test_default_client_buffers_while_away_and_sends_late(nats_server: NatsServer, connect: Connect) -> None:
    """nats-py's default (pending_size 2 MiB) queues what is published while the server is away
    and sends it on reconnect: a request that already timed out reaches its responder afterwards,
    and a KV create that timed out is applied after all. (Here the responder is on the same
    connection, which resubscribes before it flushes; on another connection the late message may
    as well be lost, if that one resubscribes later.) A host must not let this happen to calls and
    registrations."""
    nc = await connect()
    calls: list[bytes] = []

    async def on_call(msg: Msg) -> None:
        calls.append(msg.data)
        await msg.respond(b"done")

    await nc.subscribe("host.h1.calls", cb=on_call)
    kv = await nc.jetstream().create_key_value(bucket="registry")
    nats_server.stop()
    await _until(lambda: not nc.is_connected, 2)
    with pytest.raises(nats.errors.TimeoutError):
        await nc.request("host.h1.calls", b"call while away", timeout=0.3)
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(kv.create("echo", b"host-1"), 0.3)
    assert calls == []
    nats_server.start()
    await _until(lambda: nc.is_connected, 5)
    await _until(lambda: calls, 3)
    assert calls == [b"call while away"], "the timed-out request still reached its responder"
    entry = await kv.get("echo")
    assert entry.value == b"host-1", "the timed-out create was applied later"


async def test_pending_size_zero_fails_at_once_while_away(nats_server: NatsServer, connect: Connect) -> None:
    """With pending_size=0 nothing is queued while the server is away: publish, request and KV
    writes raise OutboundBufferLimitError at once, so a cross-host call fails at once and no
    ghost write lands later."""
    nc = await connect(pending_size=0)
    kv = await nc.jetstream().create_key_value(bucket="registry")
    await kv.put("warm", b"1")  # works normally while connected
    assert (await nc.request("$JS.API.INFO", b"", timeout=2)).data
    nats_server.stop()
    await _until(lambda: not nc.is_connected, 2)
    start = time.monotonic()
    with pytest.raises(nats.errors.OutboundBufferLimitError):
        await nc.publish("events.news", b"x")
    with pytest.raises(nats.errors.OutboundBufferLimitError):
        await nc.request("host.h1.calls", b"x", timeout=5)
    with pytest.raises(nats.errors.OutboundBufferLimitError):
        await kv.create("echo", b"host-1")
    assert time.monotonic() - start < 0.5
    nats_server.start()
    await _until(lambda: nc.is_connected, 5)
    with pytest.raises(nats.js.errors.KeyNotFoundError):
        await kv.get("echo")
    assert await kv.create("echo", b"host-1") > 0


async def test_a_watcher_is_dead_after_a_server_restart_and_a_new_one_resyncs(
    nats_server: NatsServer, connect: Connect
) -> None:
    """A KV watcher made before the server restarted hears nothing afterwards (nats-py does not
    recreate its consumer), though the data is kept. After every reconnect a host must watch
    again: the new watcher's first entries are the whole current state."""
    reconnected = asyncio.Event()

    async def on_reconnect() -> None:
        reconnected.set()

    nc = await connect(reconnected_cb=on_reconnect)
    kv = await nc.jetstream().create_key_value(bucket="registry", limit_marker_ttl=1)
    await kv.put("a", b"1")
    old = Watch(await kv.watchall())
    await old.until(1, timeout=2)
    nats_server.restart()
    await asyncio.wait_for(reconnected.wait(), 5)  # is_connected may still be True right after the restart
    await kv.put("b", b"1")
    await kv.delete("a")
    async with watching(kv) as new:
        await new.until(2, timeout=3)
        assert new.seen() == [("b", None, b"1"), ("a", "DEL", b"")]  # in revision order, tombstones too
    await asyncio.sleep(0.5)
    assert old.seen() == [("a", None, b"1")], "the old watcher heard nothing after the restart"
    await old.stop()


# ---------------------------------------------------------------------------------------------
# A NATS cluster


@pytest.mark.slow
async def test_cluster_member_loss_fails_clients_over_and_kv_stays_exclusive() -> None:
    """Three routed servers, a KV bucket with 3 replicas: when the server a client is connected
    to stops, the client moves to another member, the data is there, and create-if-absent still
    has exactly one winner."""
    with NatsCluster(3) as cluster:
        reconnected = asyncio.Event()

        async def on_reconnect() -> None:
            reconnected.set()

        async def quiet(_: Exception) -> None:
            pass

        options = dict(reconnect_time_wait=0.05, max_reconnect_attempts=-1, error_cb=quiet)
        a = await nats.connect(
            cluster.urls[0:1] + cluster.urls[1:], dont_randomize=True, reconnected_cb=on_reconnect, **options
        )  # type: ignore[arg-type]
        b = await nats.connect(cluster.urls[2], **options)  # type: ignore[arg-type]
        try:
            js = a.jetstream()
            kv = await _retry(lambda: js.create_key_value(bucket="registry", replicas=3))
            await kv.create("echo", b"host-1")
            assert a.connected_url is not None and a.connected_url.port == cluster.servers[0].port
            cluster.servers[0].stop()
            await asyncio.wait_for(reconnected.wait(), 10)
            assert a.connected_url is not None and a.connected_url.port != cluster.servers[0].port
            entry = await _retry(lambda: kv.get("echo"))
            assert entry.value == b"host-1"
            # Until the bucket's stream has a leader again (an election, after its leader stopped),
            # writes fail with NoStreamResponseError: nothing was stored, so they can be retried.
            await _retry(lambda: kv.put("settled", b"1"))
            kv_b = await b.jetstream().key_value("registry")
            for i in range(20):
                key = f"k{i}"
                results = await asyncio.gather(kv.create(key, b"A"), kv_b.create(key, b"B"), return_exceptions=True)
                if any(isinstance(r, nats.js.errors.NoStreamResponseError) for r in results):
                    continue  # a stream leader election again (a loaded machine): no verdict on this key
                wins = [r for r in results if isinstance(r, int)]
                # The loser's create() re-reads the key to tell "deleted" from "there"; in a cluster
                # that read may not see the winner's write yet, and then the loser gets
                # KeyNotFoundError instead of KeyWrongLastSequenceError. Either is a loss.
                losses = [
                    r
                    for r in results
                    if isinstance(r, nats.js.errors.KeyNotFoundError | nats.js.errors.KeyWrongLastSequenceError)
                ]
                assert len(wins) == 1 and len(losses) == 1, results
                assert (await _retry(lambda key=key: kv_b.get(key))).revision == wins[0]  # type: ignore[attr-defined]
        finally:
            await a.close()
            await b.close()


async def _retry(make: object, attempts: int = 50) -> object:
    """JetStream in a cluster answers 'temporarily unavailable' while a stream leader is elected."""
    for _ in range(attempts - 1):
        try:
            return await make()  # type: ignore[operator]
        except (
            nats.js.errors.ServiceUnavailableError,
            nats.js.errors.NoStreamResponseError,
            nats.errors.TimeoutError,
            nats.errors.NoRespondersError,
        ):
            await asyncio.sleep(0.1)
    return await make()  # type: ignore[operator]
