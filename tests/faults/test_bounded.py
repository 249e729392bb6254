"""Every buffer bounded, every answer bounded: hostile clients over raw sockets, host memory measured.

The host runs in a process of its own (on asyncio and on trio, one driver each) so that its
resident memory can be read from /proc; every loop is bounded in bytes and in time.
"""

from __future__ import annotations

import json
import os
import socket
import time

import anyio
import anyio.abc
import pytest
from autogen_core import AgentId
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection
from wsproto.events import Request as WSRequest

from io_backends import HttpAgentServer, HttpAgentService, RemoteCallError
from sansio_runtime import ErrorCode

from ._host_process import HostProcess, host_process
from ._raw import RawChannel, closed_by_host, http_exchange, open_raw_channel, rpc_request, status_of
from .conftest import Text, WorkerFactory

pytestmark = pytest.mark.anyio
MiB = 1024 * 1024
BACKENDS = pytest.mark.parametrize("backend", ["asyncio", "trio"])


def body_of(response: bytes) -> bytes:
    return response.split(b"\r\n\r\n", 1)[1]


async def settled_rss(host: HostProcess) -> int:
    """The host's RSS once it has stopped moving (a cheap way to let the allocator settle)."""
    await anyio.sleep(0.3)
    return host.rss()


class PeakRss:
    """Samples the host's RSS every 50 ms while in use; ``growth`` is the peak over the start."""

    def __init__(self, host: HostProcess, start: int) -> None:
        self.host = host
        self.start = start
        self.peak = start

    async def sample(self) -> None:
        while True:
            self.peak = max(self.peak, self.host.rss())
            await anyio.sleep(0.05)

    @property
    def growth(self) -> int:
        return self.peak - self.start


# ------------------------------------------------------------------ answers


@pytest.mark.slow  # measures the host's memory: run once, on the main Python (see .ci/run)
async def test_a_batch_answer_is_bounded_in_count_and_bytes() -> None:
    server = HttpAgentServer(port=0)
    server.start()
    try:
        port = server.port
        # 300 KB of tiny invalid entries: each would get a ~100-byte error.
        flood = b"[" + b",".join([b"1"] * 150_000) + b"]"
        response = await http_exchange(port, rpc_request(flood))
        assert status_of(response) == 200
        answer = json.loads(body_of(response))
        assert answer["error"]["code"] == ErrorCode.BATCH_TOO_LARGE and answer["id"] is None
        print(f"a {len(flood) // 1000} KB batch of junk: {len(body_of(response))} bytes of answer")
        assert len(body_of(response)) < 1000

        # 100 subscriptions, then 1,000 get_subscriptions in one batch (each answer ~12 KB).
        owner = await subscribe_many(port, 100)
        listing = [{"jsonrpc": "2.0", "id": i, "method": "runtime.get_subscriptions"} for i in range(1000)]
        for transport in ("rpc", "channel"):
            if transport == "rpc":
                response = await http_exchange(port, rpc_request(json.dumps(listing).encode()), timeout=20)
                raw = body_of(response)
            else:
                asker = await open_raw_channel(port)
                await asker.send_json(listing)
                raw = json.dumps(await asker.next_json(timeout=20), separators=(",", ":")).encode()  # as sent
                await asker.aclose()
            answers = json.loads(raw)
            assert sorted(a["id"] for a in answers) == list(range(1000))  # every request answered once
            full = [a for a in answers if "result" in a]
            cut = [a for a in answers if "error" in a]
            assert all(len(a["result"]) == 100 for a in full)
            assert {a["error"]["code"] for a in cut} == {ErrorCode.PAYLOAD_TOO_LARGE}
            print(
                f"{transport}: 1,000 get_subscriptions: {len(raw) / MiB:.2f} MiB of answer, "
                f"{len(full)} full answers, {len(cut)} replaced by -32008"
            )
            assert len(raw) <= 4 * MiB + 1000 * 300
        await owner.aclose()
    finally:
        await server.stop(grace=1)


# ------------------------------------------------------------------ pongs


def blocking_channel(port: int) -> socket.socket:
    """A plain blocking socket upgraded to /v1/channel (nothing reads it behind the test's back)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    ws = WSConnection(ConnectionType.CLIENT)
    sock.sendall(ws.send(WSRequest(host="x", target="/v1/channel")))
    while not any(isinstance(e, AcceptConnection) for e in ws.events()):
        ws.receive_data(sock.recv(65536))
    return sock


def flood_pings(port: int, limit_bytes: int, limit_seconds: float) -> tuple[int, bool]:
    """Send pings, never reading, until the host cuts us off, ``limit_bytes`` or ``limit_seconds``;
    then wait a moment more, the connection still open. Returns the bytes sent and whether the
    host cut the connection."""
    sock = blocking_channel(port)
    mask = os.urandom(4)
    payload = bytes(125)
    ping = bytes([0x89, 0x80 | 125]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    chunk = ping * 512  # 66 KB of pings per write
    sent = 0
    cut = False
    give_up = time.monotonic() + limit_seconds
    try:
        while sent < limit_bytes and time.monotonic() < give_up:
            sock.sendall(chunk)  # a host that stopped reading without closing: a timeout, cut off too
            sent += len(chunk)
    except OSError:
        cut = True
    time.sleep(0.3)
    sock.close()
    return sent, cut


@pytest.mark.slow  # measures the host's memory: run once, on the main Python (see .ci/run)
@BACKENDS
async def test_a_peer_that_pings_and_never_reads_is_cut_off(backend: str) -> None:
    with host_process("--max-outbound-bytes", str(MiB), backend=backend) as host:
        rss = PeakRss(host, await settled_rss(host))
        started = time.monotonic()
        async with anyio.create_task_group() as tg:
            tg.start_soon(rss.sample)
            sent, cut = await anyio.to_thread.run_sync(flood_pings, host.port, 128 * MiB, 30)
            tg.cancel_scope.cancel()
        grown = rss.growth
        print(
            f"{backend}: {sent / MiB:.0f} MiB of pings in {time.monotonic() - started:.1f}s, "
            f"host grew {grown / MiB:.1f} MiB, cut off: {cut}"
        )
        assert cut, f"still connected after {sent / MiB:.0f} MiB of unread pongs"
        assert grown < 24 * MiB, grown
        # Everyone else is unaffected.
        status = status_of(await http_exchange(host.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", timeout=3))
        assert status == 200


# ------------------------------------------------------------------ pipelined requests


async def subscribe_many(port: int, count: int) -> RawChannel:
    """A channel that owns ``count`` subscriptions (a ``runtime.get_subscriptions`` answer of ~120 bytes each)."""
    owner = await open_raw_channel(port)
    await owner.send_json({"jsonrpc": "2.0", "id": 0, "method": "runtime.register_agent", "params": {"type": "a"}})
    specs = [
        {"kind": "type", "id": f"sub-{i:04d}", "topic_type": f"topic-{i:04d}-" + "x" * 60, "agent_type": "a"}
        for i in range(count)
    ]
    await owner.send_json(
        [
            {"jsonrpc": "2.0", "id": i + 1, "method": "runtime.add_subscription", "params": {"subscription": s}}
            for i, s in enumerate(specs)
        ]
    )
    await owner.next_json()
    await owner.next_json()
    return owner


@pytest.mark.slow  # measures the host's memory: run once, on the main Python (see .ci/run)
@BACKENDS
async def test_a_client_that_pipelines_and_never_reads_stops_being_read(backend: str) -> None:
    """1.2 MB of pipelined ``POST /v1/rpc`` (each answered with ~12 KB), and the answers are never read."""
    with host_process("--idle-timeout", "2", backend=backend) as host:
        owner = await subscribe_many(host.port, 100)
        rss = PeakRss(host, await settled_rss(host))
        listing = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "runtime.get_subscriptions"}).encode()
        request = rpc_request(listing).replace(b"Connection: close\r\n", b"")
        chunk = request * (65536 // len(request))
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)  # no autotuning: the answers pile up at the host
        sock.settimeout(2)
        sock.connect(("127.0.0.1", host.port))

        def pipeline() -> int:  # a plain blocking socket: nothing reads it behind the test's back
            sent = 0
            try:
                while sent < 1.2e6:
                    sock.sendall(chunk)
                    sent += len(chunk)
            except TimeoutError:
                pass  # the host stopped reading us (and the socket buffers are full)
            return sent

        async with anyio.create_task_group() as tg:
            tg.start_soon(rss.sample)
            sent = await anyio.to_thread.run_sync(pipeline)
            # The host lets go of a peer that does not read its answers, after the idle timeout.
            started = time.monotonic()
            with anyio.move_on_after(15):
                while not closed_by_host(sock):
                    await anyio.sleep(0.1)
            dropped_after = time.monotonic() - started
            dropped = closed_by_host(sock)
            tg.cancel_scope.cancel()
        sock.close()
        grown = rss.growth
        await owner.aclose()
        print(
            f"{backend}: {sent / 1e6:.1f} MB of pipelined requests sent, never reading the answers: "
            f"host grew {grown / MiB:.1f} MiB; the host let go of the connection: {dropped} "
            f"({dropped_after:.1f}s after the last request)"
        )
        # ~6 MiB when the machine is quiet, up to ~17 under a loaded suite; 35 MiB before the fix
        assert grown < 24 * MiB, grown
        assert dropped


# ------------------------------------------------------------------ refused bodies


@BACKENDS
async def test_the_body_of_a_refused_request_is_not_read(backend: str) -> None:
    """20 clients send ``PUT /v1/rpc`` with 4 MiB bodies, all but the last byte, and stall."""
    with host_process("--auth-token", "s3cret", backend=backend) as host:
        before = await settled_rss(host)
        body = bytes(4 * MiB)
        statuses: list[int | None] = []
        streams: list[anyio.abc.ByteStream] = []

        async def stalled_put() -> None:
            stream = await anyio.connect_tcp("127.0.0.1", host.port)
            streams.append(stream)
            status: list[int] = []

            async def read_status() -> None:
                try:
                    status.append(status_of(await stream.receive()))
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    pass

            head = b"PUT /v1/rpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            async with anyio.create_task_group() as tg:
                tg.start_soon(read_status)
                await stream.send(head + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n")
                with anyio.move_on_after(5):
                    try:
                        await stream.send(body[:-1])
                    except (anyio.BrokenResourceError, OSError):
                        pass  # the host answered and let go before the body was through
                with anyio.move_on_after(5):
                    while not status:
                        await anyio.sleep(0.05)
                tg.cancel_scope.cancel()
            statuses.append(status[0] if status else None)

        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(stalled_put)
        await anyio.sleep(0.5)
        grown = host.rss() - before  # the 20 sockets are still open, stalled
        for stream in streams:
            await stream.aclose()
        print(f"{backend}: 20 stalled PUT /v1/rpc of 4 MiB: statuses {statuses}, host grew {grown / MiB:.1f} MiB")
        assert statuses == [405] * 20
        assert grown < 24 * MiB, grown


# ------------------------------------------------------------------ registrations


async def test_per_connection_limits_on_agent_types_and_subscriptions(worker: WorkerFactory) -> None:
    service = HttpAgentService(max_agent_types_per_connection=3, max_subscriptions_per_connection=5)
    server = HttpAgentServer(port=0, service=service)
    server.start()
    try:
        address = f"127.0.0.1:{server.port}"
        runtime = await worker(address, echo="t0")
        for i in (1, 2):
            await runtime.register_factory(f"t{i}", lambda: None)  # type: ignore[arg-type,return-value]
        with pytest.raises(RemoteCallError) as info:
            await runtime.register_factory("t3", lambda: None)  # type: ignore[arg-type,return-value]
        assert info.value.code == ErrorCode.TOO_MANY_AGENT_TYPES
        assert "max_agent_types_per_connection" in str(info.value)
        from autogen_core import TypeSubscription

        for i in range(5):
            await runtime.add_subscription(TypeSubscription(f"topic{i}", "t0"))
        with pytest.raises(RemoteCallError) as info:
            await runtime.add_subscription(TypeSubscription("topic5", "t0"))
        assert info.value.code == ErrorCode.TOO_MANY_SUBSCRIPTIONS
        # Another connection has limits of its own, and the first one still works.
        other = await worker(address, echo="u0")
        assert sorted(server.service.engine.agent_types()) == ["t0", "t1", "t2", "u0"]
        assert await other.send_message(Text("x"), AgentId("t0", "k")) == Text("X")
    finally:
        await server.stop(grace=1)


@pytest.mark.slow  # measures the host's memory: run once, on the main Python (see .ci/run)
async def test_the_default_limits_refuse_a_connection_registering_without_end() -> None:
    """One raw connection asks for 11,000 agent types and 51,000 subscriptions, in batches of 1,000."""
    server = HttpAgentServer(port=0)
    server.start()
    try:
        channel = await open_raw_channel(server.port)
        counts = {}
        for method, asked, make in (
            ("runtime.register_agent", 11_000, lambda i: {"type": f"type-{i}"}),
            (
                "runtime.add_subscription",
                51_000,
                lambda i: {"subscription": {"kind": "type", "id": f"s{i}", "topic_type": f"t{i}", "agent_type": "x"}},
            ),
        ):
            refused = 0
            for start in range(0, asked, 1000):
                await channel.send_json(
                    [
                        {"jsonrpc": "2.0", "id": i, "method": method, "params": make(i)}
                        for i in range(start, start + 1000)
                    ]
                )
                answers = await channel.next_json(timeout=10)
                refused += sum("error" in a for a in answers)
            counts[method] = asked - refused
        engine = server.service.engine
        held = (len(engine.agent_types()), len(engine.subscriptions()))
        print(f"one connection holds {held[0]} agent types and {held[1]} subscriptions")
        assert counts == {"runtime.register_agent": 10_000, "runtime.add_subscription": 50_000}
        assert len(engine.agent_types()) == 10_000 and len(engine.subscriptions()) == 50_000
        await channel.aclose()
    finally:
        await server.stop(grace=1)
