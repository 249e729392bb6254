"""The ``rawsocket`` peer: asyncio TCP ping-pong over 127.0.0.1, the floor under any networked design.

Frames are ``>QI`` (request id, body length) followed by the body bytes. One client connection
carries all callers, multiplexed by request id, like a worker's single channel to its host.
It is one direct round trip (client <-> echo server); the runtimes relay through a host, i.e.
two round trips of network hops per call. RPC workloads only.
"""

from __future__ import annotations

import asyncio
import itertools
import struct
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from _config import Mode
from _endpoints import Peer, RoleSpec, RpcClient
from _net import LOOPBACK
from _roles import RoleChannel, RoleProcess

HEADER = struct.Struct(">QI")


async def _echo_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            header = await reader.readexactly(HEADER.size)
            _, length = HEADER.unpack(header)
            body = await reader.readexactly(length)
            writer.write(header + body)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


@asynccontextmanager
async def echo_server() -> AsyncIterator[int]:
    """An echo server on an ephemeral loopback port; yields the port."""
    server = await asyncio.start_server(_echo_connection, LOOPBACK, 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()


class RawSocketClient:
    """Multiplexes concurrent calls over one connection; a reader task resolves them by id."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[bytes]] = {}
        self._read_task = asyncio.ensure_future(self._read_loop())

    @classmethod
    async def connect(cls, port: int) -> RawSocketClient:
        reader, writer = await asyncio.open_connection(LOOPBACK, port)
        return cls(reader, writer)

    async def _read_loop(self) -> None:
        try:
            while True:
                request_id, length = HEADER.unpack(await self._reader.readexactly(HEADER.size))
                body = await self._reader.readexactly(length)
                future = self._pending.pop(request_id, None)
                if future is not None and not future.done():
                    future.set_result(body)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(ConnectionError(f"connection closed: {exc}"))

    async def call(self, body: str) -> str:
        request_id = next(self._ids)
        data = body.encode()
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            self._writer.write(HEADER.pack(request_id, len(data)) + data)
            await self._writer.drain()
            return (await future).decode()
        finally:
            self._pending.pop(request_id, None)

    async def close(self) -> None:
        self._read_task.cancel()
        self._writer.close()
        try:
            await self._writer.wait_closed()
        except (ConnectionError, asyncio.CancelledError):
            pass


class RawSocketPeer(Peer):
    name = "rawsocket"
    supports_pubsub = False

    @asynccontextmanager
    async def rpc_topology(self, mode: Mode) -> AsyncIterator[RpcClient]:
        async with AsyncExitStack() as stack:
            if mode == "oneproc":
                port = await stack.enter_async_context(echo_server())
            else:
                helper = await stack.enter_async_context(RoleProcess.spawn(RoleSpec("host", self.name)))
                port = int(helper.info["port"])
            client = await RawSocketClient.connect(port)
            stack.push_async_callback(client.close)
            yield client

    async def run_role(self, spec: RoleSpec) -> None:
        channel = await RoleChannel.open()
        async with echo_server() as port:
            channel.send("READY", port=port)
            await channel.serve()
