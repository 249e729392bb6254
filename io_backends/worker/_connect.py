"""Opening the worker's WebSocket: connect, send the upgrade, read the host's answer.

:func:`open_asyncio_channel` returns an open :class:`~._channel.AsyncioChannel`, or raises what the
host answered instead (:class:`~._errors.HostRejectedError` with its status), or
:class:`HandshakeNotAnswered` when what came back was not HTTP at all (a TLS host asked in plain
text, or a closed connection).
"""

from __future__ import annotations

import asyncio
import ssl

from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, RejectConnection, RejectData
from wsproto.events import Request as WSRequest

from ..sansio import HostAddress
from ..sansio._limits import MAX_RESPONSE_HEAD, WORKER_MAX_BATCH
from ._channel import AsyncioChannel
from ._errors import HostRejectedError


class HandshakeNotAnswered(ConnectionError):
    """The host ended a plain connection without an HTTP answer to the upgrade: with nothing at all
    (``tls_record`` False), or with a TLS record. Either way it most likely serves TLS."""

    def __init__(self, *, tls_record: bool) -> None:
        super().__init__("the host answered with TLS" if tls_record else "the host closed the connection unanswered")
        self.tls_record = tls_record


def _looks_like_tls(data: bytes) -> bool:
    """Whether ``data`` starts like a TLS record (an alert or a handshake, version 3.x): RFC 8446 5.1."""
    return len(data) >= 2 and data[0] in (0x15, 0x16) and data[1] == 0x03


class ClientChannel(AsyncioChannel):
    """The worker's side: sends the upgrade request and waits for the host's answer first."""

    def __init__(self, ws: WSConnection, request: bytes, *, max_message_size: int, max_outbound_bytes: int) -> None:
        super().__init__(
            ws, max_message_size=max_message_size, max_outbound_bytes=max_outbound_bytes, max_batch=WORKER_MAX_BATCH
        )
        self._request = request
        self._accepted: asyncio.Future[None] = self._loop.create_future()
        self._rejection: RejectConnection | None = None
        self._rejection_body = b""
        self._head = b""  # the start of the host's handshake response
        self._answered = False  # whether any byte of an answer came
        self.response_headers: list[tuple[bytes, bytes]] = []
        """The headers of the host's ``101`` answer (wsproto's own removed)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert self._transport is not None
        self._transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        if not self._accepted.done():
            self.last_received = self._loop.time()
            if not self._answered and _looks_like_tls(data):
                self._fail_handshake(HandshakeNotAnswered(tls_record=True))
                return
            self._answered = self._answered or bool(data)
            try:
                self._handshake(data)
            except Exception as exc:  # not HTTP: h11 / wsproto refuse the answer
                self._fail_handshake(ConnectionError(f"the host's answer to the WebSocket upgrade is not HTTP: {exc}"))
            return
        super().data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._accepted.done():
            if self._answered:
                error = ConnectionError("the host closed the connection during the WebSocket handshake")
            else:
                error = HandshakeNotAnswered(tls_record=False)
            self._accepted.set_exception(error)
        super().connection_lost(exc)

    def _fail_handshake(self, error: Exception) -> None:
        self._accepted.set_exception(error)
        if self._transport is not None:
            self._transport.abort()

    def _handshake(self, data: bytes) -> None:
        ws = self._core.ws
        if self._rejection is None:
            # Give wsproto the response head only: the frames after it are the core's to parse.
            head = self._head + data
            end = head.find(b"\r\n\r\n")
            if end < 0:
                self._head = head
                if len(head) > MAX_RESPONSE_HEAD and self._transport is not None:
                    self._accepted.set_exception(ConnectionError("the host's handshake response is too large"))
                    self._transport.abort()
                return
            self._head = b""
            ws.receive_data(head[: end + 4])
            data = head[end + 4 :]
            if self._handshake_events(data):
                return
        ws.receive_data(data)
        self._handshake_events(b"")

    def _handshake_events(self, after_head: bytes) -> bool:
        """Handle the handshake's events; True once it is accepted or rejected."""
        for event in self._core.ws.events():
            if isinstance(event, AcceptConnection):
                self.response_headers = list(event.extra_headers)
                self._accepted.set_result(None)
                self._early.extend(self._core.receive_data(after_head))  # frames that came with the 101
                return True
            if isinstance(event, RejectConnection):
                self._rejection = event
                if not event.has_body:
                    self._reject()
                    return True
            elif isinstance(event, RejectData):
                self._rejection_body += bytes(event.data)
                if event.body_finished:
                    self._reject()
                    return True
        return False

    def _reject(self) -> None:
        assert self._rejection is not None
        body = self._rejection_body.decode("utf-8", "replace")
        self._accepted.set_exception(HostRejectedError(self._rejection.status_code, body))
        if self._transport is not None:
            self._transport.close()


async def open_asyncio_channel(
    address: HostAddress,
    *,
    target: str,
    headers: list[tuple[bytes, bytes]],
    ssl_context: ssl.SSLContext | None,
    max_message_size: int,
    max_outbound_bytes: int,
    connect_timeout: float,
) -> ClientChannel:
    """Connect, upgrade to a WebSocket and return the open channel."""
    ws = WSConnection(ConnectionType.CLIENT)
    request = ws.send(WSRequest(host=address.authority, target=target, extra_headers=headers))
    loop = asyncio.get_running_loop()
    context = (ssl_context or ssl.create_default_context()) if address.tls else None

    def factory() -> ClientChannel:
        return ClientChannel(ws, request, max_message_size=max_message_size, max_outbound_bytes=max_outbound_bytes)

    async def connect() -> ClientChannel:
        transport, channel = await loop.create_connection(
            factory, address.host, address.port, ssl=context, server_hostname=address.host if context else None
        )
        try:
            await channel._accepted
        except BaseException:
            transport.abort()
            raise
        return channel

    return await asyncio.wait_for(connect(), connect_timeout)


__all__ = ["ClientChannel", "HandshakeNotAnswered", "open_asyncio_channel"]
