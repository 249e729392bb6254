"""Hand-driven clients for fault tests: raw HTTP bytes and a bare wsproto WebSocket."""

from __future__ import annotations

import http.client
import json
import socket
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Event, Message, RejectConnection, TextMessage
from wsproto.events import Request as WSRequest


async def http_exchange(port: int, raw: bytes, timeout: float = 5.0) -> bytes:
    """Send raw bytes, return everything the host answers until it closes (or the timeout)."""
    chunks: list[bytes] = []
    with anyio.move_on_after(timeout):
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            try:
                await stream.send(raw)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass  # the host may answer (413, 431) before it has read everything
            try:
                while True:
                    chunks.append(await stream.receive())
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                pass
    return b"".join(chunks)


def closed_by_host(sock: socket.socket) -> bool:
    """Whether the host closed or reset this connection, seen without reading from it (TCP_INFO):
    TCP_CLOSE after a reset, TCP_CLOSE_WAIT after the host's FIN."""
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] in (7, 8)


def agent_types_at(port: int) -> int:
    """How many agent types the host at ``port`` has registered (its /healthz), -1 if it does not answer."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        connection.request("GET", "/healthz")
        return int(json.loads(connection.getresponse().read())["agent_types"])
    except OSError:
        return -1
    finally:
        connection.close()


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def body_of(response: bytes) -> Any:
    return json.loads(response.split(b"\r\n\r\n", 1)[1])


def rpc_request(body: bytes, *, content_type: bytes = b"application/json", extra: bytes = b"") -> bytes:
    return (
        b"POST /v1/rpc HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: "
        + content_type
        + b"\r\n"
        + extra
        + b"Content-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


@dataclass
class RawChannel:
    """A WebSocket to /v1/channel that the test drives frame by frame."""

    stream: anyio.abc.ByteStream
    ws: WSConnection
    closed_with: int | None = None
    inbox: list[Any] = field(default_factory=list)
    partial: list[str] = field(default_factory=list)  # the fragments of a message still arriving

    async def send_text(self, text: str) -> None:
        await self.stream.send(self.ws.send(Message(data=text)))

    async def send_json(self, value: object) -> None:
        await self.send_text(json.dumps(value))

    async def send_raw(self, data: bytes) -> None:
        await self.stream.send(data)

    async def next_json(self, timeout: float = 5.0) -> Any:
        with anyio.fail_after(timeout):
            while not self.inbox:
                if not await self._pump():
                    raise EOFError(f"closed with {self.closed_with}")
        return self.inbox.pop(0)

    async def wait_closed(self, timeout: float = 5.0) -> int | None:
        with anyio.fail_after(timeout):
            while await self._pump():
                pass
        return self.closed_with

    async def _pump(self) -> bool:
        try:
            data = await self.stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            if self.closed_with is None:
                self.closed_with = 1006
            return False
        self.ws.receive_data(data)
        for event in self.ws.events():
            if isinstance(event, TextMessage):
                self.partial.append(event.data)
                if event.message_finished:
                    self.inbox.append(json.loads("".join(self.partial)))
                    self.partial.clear()
            elif isinstance(event, CloseConnection):
                self.closed_with = event.code
                try:
                    await self.stream.send(self.ws.send(event.response()))
                except Exception:
                    pass
                return False
        return True

    async def aclose(self) -> None:
        await self.stream.aclose()


async def open_raw_channel(
    port: int, headers: list[tuple[bytes, bytes]] | None = None, target: str = "/v1/channel"
) -> RawChannel:
    stream = await anyio.connect_tcp("127.0.0.1", port)
    ws = WSConnection(ConnectionType.CLIENT)
    await stream.send(ws.send(WSRequest(host=f"127.0.0.1:{port}", target=target, extra_headers=headers or [])))
    with anyio.fail_after(5):
        while True:
            ws.receive_data(await stream.receive())
            event: Event
            for event in ws.events():
                if isinstance(event, AcceptConnection):
                    return RawChannel(stream, ws)
                if isinstance(event, RejectConnection):
                    await stream.aclose()
                    raise ConnectionRefusedError(event.status_code)
