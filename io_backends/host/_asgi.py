"""The host as an ASGI 3 application: one more thin driver of the same hub, for FastAPI, Starlette,
uvicorn or hypercorn (asyncio).

``HttpAgentService.asgi_app()`` returns an :class:`AsgiHost`; mount it
(``app.mount("/agents", service.asgi_app())``) and workers connect to
``http://host:port/agents``. Every endpoint is served: ``/v1/channel`` as an ASGI WebSocket,
``/v1/rpc``, ``/v1/events``, ``/v1/status``, ``/metrics``, ``/ui`` and ``/healthz``, with the same
routing, credentials, limits and answers as the host's own server, because the same sans-IO layers
decide them: :func:`~io_backends.sansio._endpoints.route_path`, the request
:func:`~io_backends.sansio._exchange.exchange`, and the :class:`~io_backends.sansio.HostHub` with its
engine (a channel here is a :class:`~io_backends.sansio._mounted.MountedPeer`). This module only
moves ASGI messages.

What the ASGI server does instead of the host: HTTP and WebSocket framing, and WebSocket pings
(uvicorn's ``--ws-ping-interval``; the host's ``keepalive_interval`` does not apply); its own
limits come first (uvicorn's ``--ws-max-size`` is 16 MiB). The application needs no package of
its own (plain ASGI 3 messages); it runs on the server's asyncio loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

import h11

from sansio_runtime import ClientKind, CloseCode

from ..sansio._address import peer_name
from ..sansio._endpoints import (
    UNAUTHORIZED,
    Endpoint,
    HttpError,
    body_too_large,
    channel_accept_headers,
    channel_refusal,
    route_path,
)
from ..sansio._exchange import (
    Authorize,
    ExchangeLimits,
    Publish,
    ReadBody,
    Respond,
    Response,
    RpcCall,
    StepReply,
    View,
    error,
    exchange,
)
from ..sansio._limits import CLOSE_TIMEOUT
from ..sansio._mounted import MountedPeer
from ._asyncio import AsyncioDriver

if TYPE_CHECKING:
    from ._service import HttpAgentService

logger = logging.getLogger("io_backends.host")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_WS_RESPONSE_EXTENSION = "websocket.http.response"


class _BodyTooLarge(Exception):
    pass


class _Disconnected(Exception):
    pass


def request_of(scope: Scope, path: str) -> h11.Request:
    """The request head an ASGI scope describes, as the endpoint policy reads it (``path`` below the mount)."""
    headers = [(bytes(k).lower(), bytes(v)) for k, v in scope.get("headers", ())]
    if not any(name == b"host" for name, _ in headers):
        server = scope.get("server")
        headers.append((b"host", (peer_name(server) or "localhost").encode() if server else b"localhost"))
    target = path.encode("utf-8", "surrogateescape") or b"/"
    query = scope.get("query_string", b"")
    if query:
        target += b"?" + bytes(query)
    method = b"GET" if scope["type"] == "websocket" else str(scope["method"]).encode()
    return h11.Request(method=method, target=target, headers=headers)


class AsgiHost:
    """An ASGI 3 application serving an :class:`~io_backends.host.HttpAgentService` (module docs)."""

    def __init__(self, service: HttpAgentService) -> None:
        self.service = service
        self.hub = service.hub
        engine = service.engine
        self._limits = ExchangeLimits(engine.max_message_size, engine.max_batch_length)
        self._driver: AsyncioDriver | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        if kind not in ("http", "websocket"):
            raise ValueError(f"the agent host serves http and websocket scopes, not {kind!r}")
        self._bind_loop()
        path = _path_below_mount(scope)
        try:
            request = request_of(scope, path)
        except h11.LocalProtocolError as exc:  # (a path h11 would not send, say): not one of ours
            if kind == "http":
                await self._respond(send, error(HttpError(400, f"malformed request: {exc}")).response)
            else:
                await receive()
                await send({"type": "websocket.close", "code": int(CloseCode.PROTOCOL_ERROR)})
            return
        endpoint = route_path(request.target.split(b"?", 1)[0], request.method, self.hub.settings.endpoints)
        if kind == "websocket":
            await self._websocket(scope, receive, send, request, endpoint)
        elif endpoint is Endpoint.CHANNEL:
            refusal = channel_refusal(request)
            assert refusal is not None  # (a plain HTTP request is no upgrade)
            await self._respond(send, error(refusal).response)
        elif isinstance(endpoint, HttpError):
            await self._respond(send, error(endpoint).response)
        else:
            await self._http(receive, send, request, endpoint)

    # ------------------------------------------------------------------ the clock and the hub's deadlines

    def _bind_loop(self) -> None:
        """On the first request: the server's loop is the hub's clock, and keeps its one timer
        (the asyncio driver's, which here has no sockets of its own to write)."""
        if self._driver is None:
            self._driver = AsyncioDriver(self.service)
            self.service.clock = self._driver.loop.time

    def _now(self) -> float:
        assert self._driver is not None
        return self._driver.loop.time()

    def _arm_timer(self) -> None:
        """Follow the hub's next deadline (calls' timeouts)."""
        assert self._driver is not None
        self._driver.flush()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        """Served on its own (not mounted): start and stop with the server."""
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._bind_loop()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def close(self) -> None:
        """Close every channel (a shutdown): pending calls fail at once."""
        if self._driver is not None:
            self.hub.close_all(self._now())
            self._driver.close()

    # ------------------------------------------------------------------ HTTP

    async def _http(self, receive: Receive, send: Send, request: h11.Request, endpoint: Endpoint) -> None:
        hub = self.hub
        steps = exchange(request, endpoint, self._limits)
        reply: StepReply = None
        peer: MountedPeer | None = None
        try:
            while True:
                step = steps.send(reply)
                reply = None
                if isinstance(step, Respond):
                    await self._respond(send, step.response)
                    return
                if isinstance(step, ReadBody):
                    try:
                        reply = await _read_body(receive, step.limit)
                    except _BodyTooLarge:
                        await self._respond(send, error(body_too_large(step.limit)).response)
                        return
                elif isinstance(step, Authorize):
                    reply = await self._authorize(step.request)
                elif isinstance(step, RpcCall):
                    answered = asyncio.Event()
                    peer = MountedPeer(
                        ClientKind.ONE_SHOT, self._now(), max_outbound_bytes=hub.max_outbound_bytes, wake=answered.set
                    )
                    hub.mount_rpc(peer, step.body, self._now())
                    self._arm_timer()
                    await answered.wait()
                    reply = peer.answer
                elif isinstance(step, Publish):
                    reply = hub.publish(step.events, self._now())
                    self._arm_timer()
                else:
                    assert isinstance(step, View)
                    reply = hub.view(step.endpoint, step.request, self._now())
        except _Disconnected:
            return
        finally:
            steps.close()
            if peer is not None:
                hub.mounted_gone(peer, self._now())  # (a caller that hung up: its calls are cancelled)
                self._arm_timer()

    async def _authorize(self, request: h11.Request) -> bool:
        verdict = self.hub.authorize(request)
        if isinstance(verdict, bool):
            return verdict
        try:
            return bool(await verdict)
        except Exception:
            logger.exception("the authenticator failed")
            return False

    @staticmethod
    async def _respond(send: Send, response: Response, prefix: str = "http") -> None:
        headers = list(response.headers or ())
        if not any(name == b"content-length" for name, _ in headers):
            headers.append((b"content-length", b"%d" % len(response.body)))
        await send({"type": f"{prefix}.response.start", "status": response.status, "headers": headers})
        await send({"type": f"{prefix}.response.body", "body": response.body})

    # ------------------------------------------------------------------ WebSocket

    async def _websocket(
        self, scope: Scope, receive: Receive, send: Send, request: h11.Request, endpoint: Endpoint | HttpError
    ) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        if endpoint is not Endpoint.CHANNEL:
            refusal = endpoint if isinstance(endpoint, HttpError) else HttpError(400, "only /v1/channel is a WebSocket")
            await self._refuse_websocket(scope, send, refusal)
            return
        if not await self._authorize(request):
            await self._refuse_websocket(scope, send, UNAUTHORIZED)
            return
        hub = self.hub
        wake = asyncio.Event()
        peer = MountedPeer(
            ClientKind.CHANNEL,
            self._now(),
            max_outbound_bytes=hub.max_outbound_bytes,
            wake=wake.set,
            peer=peer_name(scope.get("client")),
        )
        taken = hub.mount_channel(peer, request, self._now())
        if taken is not None:
            await self._refuse_websocket(scope, send, taken)
            return
        try:
            await send({"type": "websocket.accept", "headers": channel_accept_headers(hub.engine.max_message_size)})
            writer = asyncio.ensure_future(self._write(peer, send, wake))
            try:
                await self._read(peer, receive)
                if peer.close_code is not None:  # closed by the host: its close (and what precedes it) goes out
                    await asyncio.wait_for(asyncio.shield(writer), CLOSE_TIMEOUT)
            except (asyncio.TimeoutError, OSError):
                pass  # the peer does not take its close, or is gone
            finally:
                writer.cancel()
                try:
                    await writer
                except (asyncio.CancelledError, OSError):
                    pass  # (uvicorn's ClientDisconnected is an OSError)
        finally:
            hub.mounted_gone(peer, self._now())
            self._arm_timer()

    async def _read(self, peer: MountedPeer, receive: Receive) -> None:
        hub = self.hub
        while peer.close_code is None:
            message = await receive()
            kind = message["type"]
            if kind == "websocket.disconnect":
                return
            if kind != "websocket.receive":
                continue
            data = message.get("bytes")
            if data is None:
                data = message.get("text") or ""
            hub.mounted_message(peer, data, self._now())
            self._arm_timer()

    @staticmethod
    async def _write(peer: MountedPeer, send: Send, wake: asyncio.Event) -> None:
        """Send what the engine queued for ``peer``, then its close once it is closed."""
        while True:
            await wake.wait()
            wake.clear()
            for data in peer.take_messages():
                await send(
                    {"type": "websocket.send", "text": data.decode("utf-8")}
                )  # text frames, as the contract says
            if peer.close_code is not None:
                await send({"type": "websocket.close", "code": int(peer.close_code), "reason": peer.close_reason})
                return

    async def _refuse_websocket(self, scope: Scope, send: Send, refusal: HttpError) -> None:
        """Answer an upgrade with an HTTP error where the server can (the ``websocket.http.response``
        extension), else close it before accepting (the server answers 403)."""
        if _WS_RESPONSE_EXTENSION in scope.get("extensions", {}):
            await self._respond(send, error(refusal).response, prefix="websocket.http")
        else:
            await send({"type": "websocket.close", "code": int(CloseCode.POLICY_VIOLATION), "reason": refusal.message})


def _path_below_mount(scope: Scope) -> str:
    """The request's path below where the application is mounted (Starlette keeps the full path in
    ``path`` and the mount in ``root_path``)."""
    path = str(scope.get("path", "/"))
    root = str(scope.get("root_path", ""))
    if root and path.startswith(root):
        path = path[len(root) :]
    return path or "/"


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _BodyTooLarge
        if chunk:
            chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


__all__ = ["AsgiHost", "request_of"]
