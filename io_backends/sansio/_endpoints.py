"""The host's HTTP endpoints as policy, over a request head already parsed: no framing, no I/O.

What each path answers, who may use it, and which status says no (docs/PROTOCOL.md sections 2
and 6). The host's own HTTP/1.1 front (:mod:`._http`, h11) and an ASGI server in front of the
same engine both ask these functions, so an endpoint behaves the same whoever parsed the request.
A request head is an ``h11.Request`` (an ASGI driver builds one from its scope).
"""

from __future__ import annotations

import enum
import hmac
import http
from dataclasses import dataclass

import h11
import msgspec

from sansio_runtime import CloseCode

from ._address import CHANNEL_PATH, HEALTH_PATH, MAX_MESSAGE_SIZE_HEADER, RPC_PATH

Headers = list[tuple[bytes, bytes]]

_CHANNEL, _RPC, _HEALTH = (p.encode() for p in (CHANNEL_PATH, RPC_PATH, HEALTH_PATH))


class Endpoint(enum.Enum):
    """Where a request goes."""

    CHANNEL = "channel"
    """``GET /v1/channel`` with a WebSocket upgrade: a worker's channel."""
    RPC = "rpc"
    """``POST /v1/rpc``: one JSON-RPC body, answered once."""
    HEALTH = "health"
    """``GET /healthz`` (or ``HEAD``)."""


@dataclass(frozen=True, slots=True)
class HttpError:
    """Answer with this error (a JSON body, see :func:`error_body`)."""

    status: int
    message: str
    headers: Headers | None = None
    close: bool = False
    """Close the connection after the answer."""


def header(request: h11.Request, name: bytes) -> bytes | None:
    """The first value of header ``name`` (lower-case), or None."""
    for key, value in request.headers:
        if key == name:
            return bytes(value)
    return None


def error_body(status: int, message: str) -> bytes:
    """The JSON body of an HTTP-level error (not JSON-RPC): ``{"error": {"status", "message"}}``."""
    return msgspec.json.encode({"error": {"status": status, "message": message}})


def raw_response(status: int, message: str, headers: Headers | None = None) -> bytes:
    """A complete error response with ``Connection: close``, outside any request cycle (h11 can only
    answer a request it has read): for a connection refused at once, or a request cut off midway."""
    body = error_body(status, message)
    lines = [
        f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}".encode(),
        b"content-type: application/json",
        b"content-length: " + str(len(body)).encode(),
        b"connection: close",
        *(name + b": " + value for name, value in headers or ()),
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def route(request: h11.Request) -> Endpoint | HttpError:
    """Which endpoint a request head is for, or the error that refuses it before anything else."""
    if header(request, b"transfer-encoding") is not None and header(request, b"content-length") is not None:
        # RFC 9112 section 6.1: the framing is ambiguous (request smuggling); never read on.
        return HttpError(400, "a request cannot have both Transfer-Encoding and Content-Length", close=True)
    path = request.target.split(b"?", 1)[0]
    if request.method == b"HEAD" and path != _HEALTH:
        # A HEAD response has no body; the only endpoint that answers HEAD is /healthz.
        return HttpError(405, "", headers=[(b"allow", b"GET, POST")])
    if path == _CHANNEL:
        return Endpoint.CHANNEL
    if path == _RPC:
        return Endpoint.RPC
    if path != _HEALTH:
        return HttpError(404, "no such endpoint: use /v1/channel, /v1/rpc or /healthz")
    if request.method not in (b"GET", b"HEAD"):
        return HttpError(405, "use GET", headers=[(b"allow", b"GET")])
    return Endpoint.HEALTH


def has_body(request: h11.Request) -> bool:
    """Whether the request announces a body (refused requests with one are closed after the answer)."""
    return header(request, b"transfer-encoding") is not None or (header(request, b"content-length") or b"0") != b"0"


# ------------------------------------------------------------------------------ credentials


def bearer_token_matches(request: h11.Request, token: bytes) -> bool:
    """Whether ``Authorization: Bearer <token>`` carries ``token`` (scheme case-insensitive,
    compared in constant time; an empty token never matches)."""
    value = header(request, b"authorization") or b""
    scheme, _, given = value.partition(b" ")
    given = given.strip()
    return scheme.lower() == b"bearer" and bool(given) and hmac.compare_digest(given, token)


UNAUTHORIZED = HttpError(401, "missing or wrong credentials", headers=[(b"www-authenticate", b"Bearer")], close=True)


# ------------------------------------------------------------------------------ /v1/rpc


def rpc_method_refusal(request: h11.Request) -> HttpError | None:
    """The refusal of a request to /v1/rpc that is not a POST (before its credentials are looked at)."""
    if request.method != b"POST":
        return HttpError(405, "use POST", headers=[(b"allow", b"POST")])
    return None


def rpc_body_refusal(request: h11.Request, max_message_size: int) -> HttpError | None:
    """The refusal of an authorized POST to /v1/rpc for its content type or announced length."""
    content_type = (header(request, b"content-type") or b"").split(b";", 1)[0].strip().lower()
    if content_type != b"application/json":
        return HttpError(415, "Content-Type must be application/json")
    length = header(request, b"content-length")
    if length is not None and length.isdigit() and int(length) > max_message_size:
        return body_too_large(max_message_size)
    return None


def body_too_large(max_message_size: int) -> HttpError:
    return HttpError(413, f"body exceeds {max_message_size} bytes", close=True)


_HTTP_STATUS_FOR_CLOSE = {
    CloseCode.NORMAL: 200,
    CloseCode.GOING_AWAY: 503,
    CloseCode.MESSAGE_TOO_BIG: 413,
    CloseCode.INVALID_PAYLOAD: 400,
    CloseCode.PROTOCOL_ERROR: 400,
    CloseCode.UNSUPPORTED_DATA: 415,
    CloseCode.POLICY_VIOLATION: 403,
    CloseCode.INTERNAL_ERROR: 500,
    CloseCode.SLOW_CONSUMER: 503,
    CloseCode.DUPLICATE_CLIENT: 409,
}


def http_status_for(code: CloseCode) -> int:
    """The HTTP status that answers a ``POST /v1/rpc`` request the engine closed with ``code``."""
    return _HTTP_STATUS_FOR_CLOSE.get(code, 500)


@dataclass(frozen=True, slots=True)
class RpcAnswer:
    """How the engine ended a ``/v1/rpc`` body: its close code, and the answer body if any."""

    close_code: CloseCode = CloseCode.NORMAL
    body: bytes | None = None


def rpc_response(answer: RpcAnswer) -> tuple[int, bytes]:
    """The status and body that answer a ``/v1/rpc`` request (204 with no body when nothing needed
    an answer; a JSON error body when the engine closed it with anything but NORMAL)."""
    if answer.close_code is not CloseCode.NORMAL:
        status = http_status_for(answer.close_code)
        return status, error_body(status, f"closed with {answer.close_code.name}")
    if answer.body is None:
        return 204, b""
    return 200, answer.body


# ------------------------------------------------------------------------------ /v1/channel


def channel_refusal(request: h11.Request) -> HttpError | None:
    """The refusal of a request to /v1/channel that is not a WebSocket upgrade."""
    upgrade = (header(request, b"upgrade") or b"").lower()
    if request.method != b"GET" or upgrade != b"websocket":
        return HttpError(426, "/v1/channel needs a WebSocket upgrade", headers=[(b"upgrade", b"websocket")], close=True)
    version = header(request, b"sec-websocket-version")
    if version is not None and version.strip() != b"13":
        return HttpError(  # RFC 6455 4.4: say which version we speak
            426,
            f"WebSocket version {version.decode('latin-1')!r} is not supported: use 13 (RFC 6455)",
            headers=[(b"sec-websocket-version", b"13")],
            close=True,
        )
    return None


def client_name(request: h11.Request) -> str | None:
    """The id a worker gave itself (``X-Client-Id``), if any."""
    name = header(request, b"x-client-id")
    return None if name is None else name.decode("utf-8", "replace")


DUPLICATE_CLIENT = HttpError(409, "another live connection uses this X-Client-Id", close=True)


def channel_accept_headers(max_message_size: int) -> Headers:
    """The headers of the ``101`` that opens a channel: the host's message size limit."""
    return [(MAX_MESSAGE_SIZE_HEADER, b"%d" % max_message_size)]


__all__ = [
    "DUPLICATE_CLIENT",
    "UNAUTHORIZED",
    "Endpoint",
    "Headers",
    "HttpError",
    "RpcAnswer",
    "bearer_token_matches",
    "body_too_large",
    "channel_accept_headers",
    "channel_refusal",
    "client_name",
    "error_body",
    "has_body",
    "header",
    "http_status_for",
    "raw_response",
    "route",
    "rpc_body_refusal",
    "rpc_method_refusal",
    "rpc_response",
]
