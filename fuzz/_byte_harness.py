"""Feed arbitrary bytes through the host's whole input path (h11, wsproto, the engine), no sockets.

Shared by the Hypothesis tests in ``test_byte_streams.py`` and the atheris harness
``atheris_host.py``. One run: a fresh :class:`HttpAgentService`, one connection whose peer sends
the given chunks and then closes; afterwards the service must be idle, own nothing for that
connection, and still answer a well-formed request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import anyio
import anyio.abc
from wsproto import ConnectionType, WSConnection
from wsproto.events import Message
from wsproto.events import Request as WSRequest

from io_backends import HttpAgentService


class ScriptedStream(anyio.abc.ByteStream):
    """A byte stream whose peer sends ``chunks`` then closes; everything written is kept."""

    def __init__(self, chunks: Sequence[bytes]) -> None:
        self._chunks = list(chunks)
        self.written = bytearray()
        self.closed = False

    async def receive(self, max_bytes: int = 65536) -> bytes:
        await anyio.lowlevel.checkpoint()
        if self.closed:
            raise anyio.ClosedResourceError
        if not self._chunks:
            raise anyio.EndOfStream
        chunk = self._chunks.pop(0)
        if len(chunk) > max_bytes:
            self._chunks.insert(0, chunk[max_bytes:])
            chunk = chunk[:max_bytes]
        return chunk or b"\0"

    async def send(self, item: bytes) -> None:
        await anyio.lowlevel.checkpoint()
        if self.closed:
            raise anyio.ClosedResourceError
        self.written += item

    async def send_eof(self) -> None:
        await anyio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        self.closed = True


class _Crashes(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def upgrade_request() -> bytes:
    """A valid WebSocket upgrade to /v1/channel, as a worker sends it."""
    return WSConnection(ConnectionType.CLIENT).send(WSRequest(host="fuzz", target="/v1/channel"))


def client_frames(texts: Sequence[str]) -> bytes:
    """Masked client text frames for ``texts`` (after a handshake that is assumed done)."""
    ws = WSConnection(ConnectionType.CLIENT)
    ws.send(WSRequest(host="fuzz", target="/v1/channel"))
    ws.receive_data(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + _accept_for(ws) + b"\r\n\r\n"
    )
    list(ws.events())
    return b"".join(ws.send(Message(data=t)) for t in texts)


def _accept_for(ws: WSConnection) -> bytes:
    from wsproto.utilities import generate_accept_token

    key = ws.handshake._nonce  # the key wsproto put in its own request
    assert key is not None
    return generate_accept_token(key)


async def run_connection(chunks: Sequence[bytes], *, timeout: float = 5.0) -> ScriptedStream:
    """Serve one scripted connection; raise AssertionError if the host misbehaved."""
    service = HttpAgentService(max_message_size=64 * 1024, keepalive_interval=None)
    crashes = _Crashes()
    logger = logging.getLogger("io_backends")
    logger.addHandler(crashes)
    stream = ScriptedStream(chunks)
    try:
        with anyio.fail_after(timeout):
            async with anyio.create_task_group() as tg:
                tg.start_soon(service.run_timers)
                await service.handle_connection(stream)
                tg.cancel_scope.cancel()
    finally:
        logger.removeHandler(crashes)
    assert not crashes.records, [r.getMessage() for r in crashes.records]
    assert service.connection_count == 0
    engine = service.engine
    assert list(engine.clients()) == [], "a connection outlived its socket"
    assert engine.agent_types() == {} and engine.subscriptions() == [] and engine.pending_calls() == []
    return stream


class FakeTransport(asyncio.Transport):
    """Just enough of an asyncio transport for :class:`HostProtocol`; everything written is kept."""

    def __init__(self, protocol: asyncio.Protocol) -> None:
        super().__init__()
        self._protocol = protocol
        self._loop = asyncio.get_running_loop()
        self.written = bytearray()
        self.closed = False
        self.lost = False
        self.paused = False
        self.eof_written = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.closed and not self.eof_written, "write after close or write_eof"
        self.written += data

    def write_eof(self) -> None:
        self.eof_written = True

    def can_write_eof(self) -> bool:
        return True

    def get_write_buffer_size(self) -> int:
        return 0

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._loop.call_soon(self._lose)

    def abort(self) -> None:
        self.close()

    def _lose(self) -> None:
        self.lost = True
        self._protocol.connection_lost(None)

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def is_reading(self) -> bool:
        return not self.paused

    def get_extra_info(self, name: str, default: object = None) -> object:
        return default


async def run_connection_asyncio(chunks: Sequence[bytes], *, timeout: float = 5.0) -> FakeTransport:
    """Like :func:`run_connection`, through the asyncio driver: chunks go to ``data_received``."""
    from io_backends.host._asyncio import AsyncioDriver

    loop = asyncio.get_running_loop()
    service = HttpAgentService(max_message_size=64 * 1024, keepalive_interval=None)
    service.clock = loop.time
    crashes = _Crashes()
    logger = logging.getLogger("io_backends")
    logger.addHandler(crashes)
    driver = AsyncioDriver(service)
    protocol = driver.protocol()
    transport = FakeTransport(protocol)

    async def feed() -> None:
        protocol.connection_made(transport)
        for chunk in chunks:
            while transport.paused and not transport.closed:
                await asyncio.sleep(0.001)  # the protocol stopped reading (an answer is pending)
            if transport.closed:
                break
            protocol.data_received(chunk or b"\0")
            await asyncio.sleep(0)
        while transport.paused and not transport.closed:
            await asyncio.sleep(0.001)
        if not transport.closed and not protocol.eof_received():
            transport.close()
        while not transport.lost:
            await asyncio.sleep(0.001)

    try:
        await asyncio.wait_for(feed(), timeout)
    finally:
        driver.close()
        logger.removeHandler(crashes)
    assert not crashes.records, [r.getMessage() for r in crashes.records]
    assert service.connection_count == 0 and not driver.protocols
    engine = service.engine
    assert list(engine.clients()) == [], "a connection outlived its socket"
    assert engine.agent_types() == {} and engine.subscriptions() == [] and engine.pending_calls() == []
    return transport
