"""h11 plumbing for the host: read one request (head and bounded body), write one response."""

from __future__ import annotations

import anyio
import anyio.abc
import h11

_READ_SIZE = 65536
_STREAM_ERRORS = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)


class BodyTooLarge(Exception):
    """The request body exceeds the limit; answer 413."""


def header(request: h11.Request, name: bytes) -> bytes | None:
    """The first value of header ``name`` (lower-case), or None."""
    for key, value in request.headers:
        if key == name:
            return bytes(value)
    return None


async def read_request(stream: anyio.abc.ByteStream, conn: h11.Connection) -> h11.Request | None:
    """The next request head, or None when the peer closed the connection between requests.

    Raises h11.RemoteProtocolError for malformed HTTP (its ``error_status_hint`` is 400, or 431
    for a head larger than the connection's ``max_incomplete_event_size``).
    """
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            try:
                data = await stream.receive(_READ_SIZE)
            except _STREAM_ERRORS:
                data = b""
            conn.receive_data(data)
            continue
        if isinstance(event, h11.Request):
            return event
        if isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
            return None
        raise h11.RemoteProtocolError(f"unexpected {type(event).__name__} before a request", 400)


async def read_body(stream: anyio.abc.ByteStream, conn: h11.Connection, limit: int) -> bytes:
    """The whole body of the current request; raises BodyTooLarge as soon as it passes ``limit``."""
    chunks: list[bytes] = []
    size = 0
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            try:
                data = await stream.receive(_READ_SIZE)
            except _STREAM_ERRORS:
                data = b""
            conn.receive_data(data)
            continue
        if isinstance(event, h11.Data):
            size += len(event.data)
            if size > limit:
                raise BodyTooLarge
            chunks.append(bytes(event.data))
            continue
        if isinstance(event, h11.EndOfMessage):
            return b"".join(chunks)
        raise h11.RemoteProtocolError("connection closed in the middle of a request body", 400)


async def send_response(
    stream: anyio.abc.ByteStream,
    conn: h11.Connection,
    status: int,
    body: bytes = b"",
    *,
    content_type: bytes = b"application/json",
    headers: list[tuple[bytes, bytes]] | None = None,
    close: bool = False,
) -> None:
    """Write one complete response; ``close`` asks the client to drop the connection afterwards."""
    all_headers = [(b"content-length", str(len(body)).encode())]
    if body:
        all_headers.append((b"content-type", content_type))
    if close:
        all_headers.append((b"connection", b"close"))
    if headers:
        all_headers.extend(headers)
    data = conn.send(h11.Response(status_code=status, headers=all_headers))
    if body:
        data += conn.send(h11.Data(data=body))
    data += conn.send(h11.EndOfMessage())
    await stream.send(data)
