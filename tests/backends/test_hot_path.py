"""Handler tasks (kept alive without a done callback each, started eagerly where Python can) and
the write coalescing of the asyncio channel."""

from __future__ import annotations

import asyncio
import gc
import sys
import weakref

import anyio
import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection
from wsproto.events import Request as WSRequest

from io_backends.worker._channel import AsyncioChannel
from io_backends.worker._tasks import EAGER, HandlerTasks

pytestmark = pytest.mark.anyio


async def test_waiting_handlers_survive_sweeps_and_garbage_collection() -> None:
    """A handler waiting on a future nothing else holds is kept alive only by HandlerTasks."""
    tasks = HandlerTasks()
    loop = asyncio.get_running_loop()
    waits: list[weakref.ref[asyncio.Future[None]]] = []
    finished: list[int] = []

    async def handler(i: int) -> None:
        future: asyncio.Future[None] = loop.create_future()
        waits.append(weakref.ref(future))
        await future
        finished.append(i)

    for i in range(500):  # several sweeps happen on the way
        tasks.spawn(handler(i))
    await asyncio.sleep(0)
    gc.collect()
    for ref in waits:
        future = ref()
        assert future is not None, "a waiting handler was garbage-collected"
        future.set_result(None)
    with anyio.fail_after(5):
        while len(finished) < 500:
            await asyncio.sleep(0.01)
    assert sorted(finished) == list(range(500))


async def test_cancel_all_cancels_the_handlers_still_running() -> None:
    tasks = HandlerTasks()
    cancelled: list[int] = []

    async def handler(i: int) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(i)
            raise

    for i in range(10):
        tasks.spawn(handler(i))
    await asyncio.sleep(0)
    await tasks.cancel_all()
    assert sorted(cancelled) == list(range(10))


async def test_a_handler_runs_in_a_real_task_from_its_first_step() -> None:
    """Timeouts and anyio cancel scopes need a current task even before the first await."""
    tasks = HandlerTasks()
    seen: list[object] = []
    done = asyncio.Event()

    async def handler() -> None:
        seen.append(asyncio.current_task())
        with anyio.fail_after(1):
            if sys.version_info >= (3, 11):
                async with asyncio.timeout(1):
                    await asyncio.sleep(0)
        done.set()

    tasks.spawn(handler())
    if EAGER:  # Python 3.12+: the first step has already run
        assert seen and seen[0] is not None
    with anyio.fail_after(2):
        await done.wait()
    assert seen[0] is not None


class _CountingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return False


def _open_server_side() -> WSConnection:
    server, client = WSConnection(ConnectionType.SERVER), WSConnection(ConnectionType.CLIENT)
    server.receive_data(client.send(WSRequest(host="test", target="/v1/channel")))
    next(server.events())
    server.send(AcceptConnection())
    return server


async def test_a_lone_send_is_written_at_once_and_concurrent_sends_share_a_write() -> None:
    transport = _CountingTransport()
    ws = _open_server_side()
    channel = AsyncioChannel(ws, max_message_size=1 << 20, max_outbound_bytes=1 << 20, transport=transport)
    await asyncio.sleep(0)  # nothing else is ready to run now
    channel.send_message(b'{"n":0}')
    assert len(transport.writes) == 1  # written before the sender even yields

    async def sender(i: int) -> None:
        channel.send_message(b'{"n":%d}' % i)

    transport.writes.clear()
    await asyncio.gather(*(sender(i) for i in range(32)))
    await asyncio.sleep(0)
    joined = b"".join(transport.writes)
    assert all(b'{"n":%d}' % i in joined for i in range(32))
    assert len(transport.writes) <= 2, len(transport.writes)  # not one system call per sender


class _ReadTrackingTransport(_CountingTransport):
    def __init__(self) -> None:
        super().__init__()
        self.paused = 0
        self.resumed = 0

    def pause_reading(self) -> None:
        self.paused += 1

    def resume_reading(self) -> None:
        self.resumed += 1


def _frames(texts: list[str]) -> bytes:
    """Unmasked text frames, as the host sends them."""
    out = bytearray()
    for text in texts:
        data = text.encode()
        assert len(data) < 126
        out += bytes((0x81, len(data))) + data
    return bytes(out)


def _open_client_side() -> WSConnection:
    client, server = WSConnection(ConnectionType.CLIENT), WSConnection(ConnectionType.SERVER)
    server.receive_data(client.send(WSRequest(host="test", target="/v1/channel")))
    next(server.events())
    client.receive_data(server.send(AcceptConnection()))
    next(client.events())
    return client


async def test_a_burst_is_delivered_in_order_in_batches_while_reading_pauses() -> None:
    transport = _ReadTrackingTransport()
    ws = _open_client_side()
    channel = AsyncioChannel(
        ws, max_message_size=1 << 20, max_outbound_bytes=1 << 20, transport=transport, max_batch=16
    )
    turns: list[int] = []  # how many messages each loop turn delivered
    got: list[str | bytes] = []
    counted = [0]

    def on_message(message: str | bytes) -> None:
        got.append(message)
        counted[0] += 1

    async def count_turns() -> None:
        while len(got) < 1000:
            await asyncio.sleep(0)
            turns.append(counted[0])
            counted[0] = 0

    channel.start(on_message)
    counter = asyncio.ensure_future(count_turns())
    channel.data_received(_frames([f"m{i}" for i in range(1000)]))
    assert len(got) == 16 and transport.paused == 1  # the rest waits, and so does the socket
    counted[0] = 0
    with anyio.fail_after(5):
        await counter
    assert got == [f"m{i}" for i in range(1000)]
    assert max(turns) <= 16
    assert transport.resumed == 1

    # What arrived before the connection was lost is still delivered, before the end.
    ended: list[int] = []
    channel2 = AsyncioChannel(
        _open_client_side(), max_message_size=1 << 20, max_outbound_bytes=1 << 20, transport=transport, max_batch=16
    )
    got.clear()
    channel2.start(on_message, on_end=lambda: ended.append(len(got)))
    channel2.data_received(_frames([f"n{i}" for i in range(100)]))
    channel2.connection_lost(None)
    assert got == [f"n{i}" for i in range(100)] and ended == [100]
