"""One HTTP request's exchange with the host, whoever frames it: what to read, ask and answer.

Every endpoint but ``/v1/channel`` is a short exchange: perhaps check the credentials, perhaps
read the body, perhaps ask the hub, then answer once. :func:`exchange` writes that sequence once,
as a generator over a parsed request head, so the host's own HTTP/1.1 front (:mod:`._http`, on
h11) and the ASGI adapter (:mod:`io_backends.host._asgi`) run the same steps and answer with the
same statuses. It yields, and is sent the reply to each::

    ReadBody(limit)     -> the whole body (bytes); the framing answers 413 itself past ``limit``
    Authorize(request)  -> the verdict on its credentials (bool)
    RpcCall(request, body)   -> the engine's RpcAnswer for a /v1/rpc body
    Publish(events)     -> None once every event is published, or the HttpError that stopped it
    View(endpoint, request)  -> the Response of a read-only endpoint (health, status, metrics, page)
    Respond(...)        -> (the last) answer this; nothing is sent back

A :class:`Respond` with ``unread_body`` set refuses a request without reading its body: the
HTTP/1.1 front then closes the connection after it if the request has one.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Union

import h11

from ._cloudevents import CloudEventRefused, content_mode, read_events
from ._endpoints import (
    UNAUTHORIZED,
    Endpoint,
    Headers,
    HttpError,
    RpcAnswer,
    error_body,
    events_method_refusal,
    rpc_body_refusal,
    rpc_method_refusal,
    rpc_response,
    view_method_refusal,
)
from ._limits import SMALL_BODY_LIMIT

PUBLISH_ENVELOPE = b'{"jsonrpc":"2.0","id":0,"method":"agent.publish","params":'
"""What wraps one event's params into the ``agent.publish`` request the hub hands the engine."""


@dataclass(frozen=True, slots=True)
class ReadBody:
    """Read the request's whole body (at most ``limit`` bytes, else the framing answers 413)."""

    limit: int


@dataclass(frozen=True, slots=True)
class Authorize:
    """Decide whether ``request`` may proceed; reply with a bool."""

    request: h11.Request


@dataclass(frozen=True, slots=True)
class RpcCall:
    """A ``POST /v1/rpc`` body is ready; reply with an :class:`RpcAnswer`."""

    request: h11.Request
    body: bytes


@dataclass(frozen=True, slots=True)
class Publish:
    """Publish each of ``events`` (``agent.publish`` params) through the engine, in order; reply
    None, or the :class:`HttpError` that stopped it."""

    events: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class View:
    """Reply with the :class:`Response` of ``endpoint`` (health, status, metrics or page)."""

    endpoint: Endpoint
    request: h11.Request


@dataclass(frozen=True, slots=True)
class Response:
    """A complete answer: status, body, and headers (lower-case names; a content type among them
    when there is a body)."""

    status: int
    body: bytes = b""
    headers: Headers | None = None


def json_response(status: int, body: bytes) -> Response:
    return Response(status, body, [(b"content-type", b"application/json")])


@dataclass(frozen=True, slots=True)
class Respond:
    """Answer with ``response``; the exchange is over."""

    response: Response
    close: bool = False
    """Close the connection after it."""
    unread_body: bool = False
    """The body was not read (a refusal): an HTTP/1.1 connection that has one is closed after."""


def error(refusal: HttpError, *, unread_body: bool = False) -> Respond:
    """The answer that carries ``refusal`` (a JSON error body, unless it has no message)."""
    headers = list(refusal.headers or ())
    if refusal.message:
        headers.append((b"content-type", b"application/json"))
        body = error_body(refusal.status, refusal.message)
    else:
        body = b""
    return Respond(Response(refusal.status, body, headers), close=refusal.close, unread_body=unread_body)


@dataclass(frozen=True, slots=True)
class ExchangeLimits:
    """The limits an exchange checks requests against (the engine's)."""

    max_message_size: int
    max_batch_length: int


Step = Union[ReadBody, Authorize, RpcCall, Publish, View, Respond]
StepReply = Union[None, bool, bytes, RpcAnswer, HttpError, Response]


def exchange(request: h11.Request, endpoint: Endpoint, limits: ExchangeLimits) -> Generator[Step, StepReply, None]:
    """The steps that answer ``request`` to ``endpoint`` (anything but the channel; see the module docs)."""
    if endpoint is Endpoint.RPC:
        yield from _rpc(request, limits)
    elif endpoint is Endpoint.EVENTS:
        yield from _events(request, limits)
    else:
        yield from _view(request, endpoint)


def _admitted(request: h11.Request, method_refusal: HttpError | None) -> Generator[Step, StepReply, bool]:
    """Refuse the request for its method, then for its credentials; True if it may go on."""
    if method_refusal is not None:
        yield error(method_refusal, unread_body=True)
        return False
    if not (yield Authorize(request)):
        yield error(UNAUTHORIZED, unread_body=True)
        return False
    return True


def _rpc(request: h11.Request, limits: ExchangeLimits) -> Generator[Step, StepReply, None]:
    if not (yield from _admitted(request, rpc_method_refusal(request))):
        return
    refusal = rpc_body_refusal(request, limits.max_message_size)
    if refusal is not None:
        yield error(refusal, unread_body=True)
        return
    body = yield ReadBody(limits.max_message_size)
    assert isinstance(body, bytes)
    answer = yield RpcCall(request, body)
    assert isinstance(answer, RpcAnswer)
    status, payload = rpc_response(answer)
    yield Respond(json_response(status, payload) if payload else Response(status))


def _events(request: h11.Request, limits: ExchangeLimits) -> Generator[Step, StepReply, None]:
    if not (yield from _admitted(request, events_method_refusal(request))):
        return
    headers = request.headers
    try:
        content_mode(headers, max_body_size=limits.max_message_size)
    except CloudEventRefused as refused:
        yield error(HttpError(refused.status, refused.reason, close=refused.status == 413), unread_body=True)
        return
    body = yield ReadBody(limits.max_message_size)
    assert isinstance(body, bytes)
    try:
        received = read_events(
            headers,
            body,
            max_body_size=limits.max_message_size,
            max_event_size=limits.max_message_size - len(PUBLISH_ENVELOPE) - 1,
            max_events=limits.max_batch_length,
        )
    except CloudEventRefused as refused:
        yield error(HttpError(refused.status, refused.reason))
        return
    stopped = yield Publish(tuple(event.params for event in received.events))
    if isinstance(stopped, HttpError):
        yield error(stopped)
        return
    yield Respond(Response(204))


def _view(request: h11.Request, endpoint: Endpoint) -> Generator[Step, StepReply, None]:
    refusal = view_method_refusal(request, endpoint)
    if endpoint is Endpoint.HEALTH:  # (never authenticated: a probe)
        if refusal is not None:
            yield error(refusal, unread_body=True)
            return
    elif not (yield from _admitted(request, refusal)):
        return
    yield ReadBody(SMALL_BODY_LIMIT)  # (a GET has none; this reads to the end of the message)
    response = yield View(endpoint, request)
    assert isinstance(response, Response)
    if request.method == b"HEAD":
        response = Response(response.status, b"", response.headers)
    yield Respond(response)


__all__ = [
    "PUBLISH_ENVELOPE",
    "Authorize",
    "ExchangeLimits",
    "Publish",
    "ReadBody",
    "Respond",
    "Response",
    "RpcCall",
    "Step",
    "StepReply",
    "View",
    "error",
    "exchange",
    "json_response",
]
