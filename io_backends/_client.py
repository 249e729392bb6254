"""The worker's end of the connection: TCP (or TLS), the WebSocket handshake, then a pump."""

from __future__ import annotations

import ssl

import anyio
import anyio.abc
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, RejectConnection, RejectData
from wsproto.events import Request as WSRequest

from ._address import HostAddress
from ._errors import HostRejectedError
from ._websocket import WebSocketPump

CHANNEL_PATH = "/v1/channel"


async def open_channel(
    address: HostAddress,
    *,
    ssl_context: ssl.SSLContext | None,
    auth_token: str | None,
    client_id: str | None,
    max_message_size: int,
    max_outbound_bytes: int,
    connect_timeout: float,
) -> WebSocketPump:
    """Connect to the host's ``/v1/channel`` and return the open WebSocket.

    Raises OSError (or TimeoutError) when the host cannot be reached and :class:`HostRejectedError`
    when it answers the upgrade with an HTTP error (401 for a wrong token, for example).
    """
    with anyio.fail_after(connect_timeout):
        if address.tls:
            context = ssl_context or ssl.create_default_context()
            stream: anyio.abc.ByteStream = await anyio.connect_tcp(
                address.host, address.port, ssl_context=context, tls_standard_compatible=False
            )
        else:
            stream = await anyio.connect_tcp(address.host, address.port)
        try:
            ws = WSConnection(ConnectionType.CLIENT)
            headers: list[tuple[bytes, bytes]] = []
            if auth_token is not None:
                headers.append((b"authorization", b"Bearer " + auth_token.encode()))
            if client_id is not None:
                headers.append((b"x-client-id", client_id.encode()))
            await stream.send(ws.send(WSRequest(host=address.authority, target=CHANNEL_PATH, extra_headers=headers)))
            rejection: RejectConnection | None = None
            body = b""
            while True:
                try:
                    data = await stream.receive(65536)
                except (anyio.EndOfStream, anyio.BrokenResourceError) as exc:
                    raise ConnectionError(
                        f"the host at {address.authority} closed the connection during the WebSocket handshake"
                    ) from exc
                ws.receive_data(data)
                for event in ws.events():
                    if isinstance(event, AcceptConnection):
                        return WebSocketPump(
                            stream, ws, max_message_size=max_message_size, max_outbound_bytes=max_outbound_bytes
                        )
                    if isinstance(event, RejectConnection):
                        rejection = event
                        if not event.has_body:
                            raise HostRejectedError(event.status_code, "")
                    elif isinstance(event, RejectData):
                        body += bytes(event.data)
                        if event.body_finished and rejection is not None:
                            raise HostRejectedError(rejection.status_code, body.decode("utf-8", "replace"))
        except BaseException:
            with anyio.CancelScope(shield=True):
                await stream.aclose()
            raise
