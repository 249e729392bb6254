"""Connections that say nothing are closed; too many connections are refused; EMFILE does not stop the host.

Each test runs the host in a process of its own, on asyncio and on trio (one driver each), over
real loopback sockets; hostile sockets come from 127.0.0.2 so that a per-address cap can tell
them from the legitimate worker on 127.0.0.1.
"""

from __future__ import annotations

import socket
import time

import anyio
import pytest
from autogen_core import AgentId

from ._host_process import host_process
from ._raw import closed_by_host, http_exchange, rpc_request, status_of
from .conftest import Text, WorkerFactory

pytestmark = pytest.mark.anyio
BACKENDS = pytest.mark.parametrize("backend", ["asyncio", "trio"])
ATTACKER = "127.0.0.2"


def attacker_socket(port: int, source: str = ATTACKER) -> socket.socket:
    sock = socket.socket()
    sock.bind((source, 0))
    sock.settimeout(5)
    sock.connect(("127.0.0.1", port))
    return sock


def answer_of(sock: socket.socket) -> bytes:
    """What the host wrote before closing (the socket must be closed by the host already)."""
    sock.settimeout(1)
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except OSError:
        pass
    return b"".join(chunks)


async def wait_all_closed(socks: list[socket.socket], limit: float) -> float | None:
    """Seconds until the host closed every socket, or None if some are still open after ``limit``."""
    started = time.monotonic()
    with anyio.move_on_after(limit):
        while not all(closed_by_host(s) for s in socks):
            await anyio.sleep(0.05)
        return time.monotonic() - started
    return None


@BACKENDS
async def test_connections_that_say_nothing_are_closed(backend: str) -> None:
    args = ("--request-head-timeout", "1", "--request-body-timeout", "1", "--idle-timeout", "1.5")
    with host_process(*args, backend=backend) as host:
        port = host.port
        kinds: dict[str, list[socket.socket]] = {
            kind: [attacker_socket(port) for _ in range(10)]
            for kind in ("idle", "slowloris", "short body", "kept alive")
        }
        for sock in kinds["short body"]:
            sock.sendall(rpc_request(b"x" * 100)[:-90])  # the head, and 10 bytes of a 100-byte body
        for sock in kinds["kept alive"]:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")  # answered, then nothing more
        started = time.monotonic()
        head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100

        async def slowloris() -> None:
            for i in range(len(head)):  # a byte of the head every 0.1 s, for ten seconds
                for sock in kinds["slowloris"]:
                    try:
                        sock.send(head[i : i + 1])
                    except OSError:
                        pass
                if all(closed_by_host(s) for s in kinds["slowloris"]):
                    return
                await anyio.sleep(0.1)

        timings: dict[str, float | None] = {}
        async with anyio.create_task_group() as tg:
            tg.start_soon(slowloris)
            for kind, socks in kinds.items():

                async def watch(kind: str = kind, socks: list[socket.socket] = socks) -> None:
                    timings[kind] = await wait_all_closed(socks, 10)

                tg.start_soon(watch)
        # A request that keeps within the timeouts is served as ever.
        response = await http_exchange(
            port, rpc_request(b'{"jsonrpc":"2.0","method":"$/cancelRequest","params":{"id":1}}')
        )
        answers = {kind: answer_of(socks[0]) for kind, socks in kinds.items()}
        for socks in kinds.values():
            for sock in socks:
                sock.close()
    print(
        f"{backend}: closed after "
        + ", ".join(f"{kind} {'still open' if t is None else f'{t:.1f}s'}" for kind, t in timings.items())
        + f" ({time.monotonic() - started:.1f}s in all)"
    )
    assert all(t is not None for t in timings.values()), timings
    assert status_of(response) == 204
    assert answers["idle"] == b""  # nothing was asked: closed without a word
    assert status_of(answers["slowloris"]) == 408
    assert status_of(answers["short body"]) == 408
    assert status_of(answers["kept alive"]) == 200 and answers["kept alive"].count(b"HTTP/1.1") == 1


@BACKENDS
async def test_connection_caps_keep_room_for_other_clients(backend: str, worker: WorkerFactory) -> None:
    args = ("--max-connections", "40", "--max-connections-per-address", "25")
    with host_process(*args, backend=backend) as host:
        port = host.port
        flood = [attacker_socket(port) for _ in range(30)]
        # Beyond the per-address cap, the host answers 503 at once and closes.
        assert await wait_all_closed(flood[25:], 5) is not None
        refused = [answer_of(s) for s in flood[25:]]
        assert all(status_of(r) == 503 and b"retry-after: 1" in r for r in refused), refused[0]
        assert not any(closed_by_host(s) for s in flood[:25])
        # A worker from another address still gets in, at once.
        started = time.monotonic()
        runtime = await worker(f"127.0.0.1:{port}", echo="echo", keepalive_interval=None)
        joined_after = time.monotonic() - started
        assert await runtime.send_message(Text("in"), AgentId("echo", "k")) == Text("IN")
        # The host-wide cap: 25 + the worker + 14 from a third address = 40, then 503 from any address.
        more = [attacker_socket(port, "127.0.0.3") for _ in range(16)]
        more_refused = await wait_all_closed(more[14:], 5) is not None
        held = sum(not closed_by_host(s) for s in flood + more)
        assert b"maximum of 40 connections" in answer_of(more[15])
        for sock in flood + more:
            sock.close()
    print(f"{backend}: worker joined {joined_after:.2f}s after 30 idle sockets from one address; held {held}")
    assert joined_after < 2
    assert more_refused and held == 39


@BACKENDS
async def test_out_of_descriptors_the_host_keeps_serving_and_takes_new_ones_later(
    backend: str, worker: WorkerFactory
) -> None:
    """128 descriptors, 160 idle sockets: the host serves the worker it has and lets the next one in."""
    with host_process("--request-head-timeout", "2", backend=backend, nofile=128) as host:
        address = f"127.0.0.1:{host.port}"
        options = {"keepalive_interval": None, "connect_timeout": 20}
        callee = await worker(address, echo="echo", **options)
        caller = await worker(address, **options)
        flood = await anyio.to_thread.run_sync(lambda: [attacker_socket(host.port) for _ in range(160)])
        await anyio.sleep(0.5)
        exhausted = host.open_descriptors()
        # The connections it has are served on...
        assert await caller.send_message(Text("during"), AgentId("echo", "k")) == Text("DURING")
        # ...and a new worker gets in once the idle sockets have timed out.
        started = time.monotonic()
        late = await worker(address, echo="late", **options)
        joined_after = time.monotonic() - started
        assert await caller.send_message(Text("late"), AgentId("late", "k")) == Text("LATE")
        alive = host.proc is not None and host.proc.poll() is None
        for sock in flood:
            sock.close()
        del callee, late
    print(f"{backend}: {exhausted} of 128 descriptors in use; a new worker joined after {joined_after:.1f}s")
    assert alive
    assert joined_after < 15
