"""Byte-level fuzzing of the host's input path: HTTP (h11), WebSocket (wsproto) and the engine.

Whatever bytes arrive, in whatever chunks: no exception escapes a connection, nothing hangs,
nothing the connection owned outlives it, and the host still serves the next client.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ._byte_harness import client_frames, run_connection, run_connection_asyncio, upgrade_request

_LONG = os.environ.get("HYPOTHESIS_PROFILE") == "long"
_FAST = settings(
    max_examples=2000 if _LONG else 60, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)

chunks = st.lists(st.binary(max_size=300), max_size=6)

json_rpc_texts = st.one_of(
    st.text(max_size=200),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
        max_leaves=20,
    ).map(json.dumps),
    st.fixed_dictionaries(
        {
            "jsonrpc": st.sampled_from(["2.0", "1.0"]),
            "id": st.one_of(st.integers(), st.text(max_size=5), st.none()),
            "method": st.sampled_from(
                [
                    "agent.call",
                    "agent.publish",
                    "runtime.register_agent",
                    "runtime.add_subscription",
                    "runtime.remove_subscription",
                    "runtime.get_subscriptions",
                    "$/cancelRequest",
                    "nope",
                ]
            ),
            "params": st.dictionaries(
                st.sampled_from(["type", "id", "target", "subscription", "data"]),
                st.one_of(st.text(max_size=8), st.integers(), st.none()),
                max_size=3,
            ),
        }
    ).map(json.dumps),
)


def _serve(data: list[bytes]) -> bytes:
    return bytes(anyio.run(run_connection, data).written)


@_FAST
@given(chunks)
def test_arbitrary_bytes(data: list[bytes]) -> None:
    _serve(data)


@_FAST
@given(
    st.sampled_from([b"GET", b"POST", b"HEAD", b"PUT"]),
    st.sampled_from(
        [b"/healthz", b"/v1/rpc", b"/v1/channel", b"/v1/events", b"/v1/status", b"/metrics", b"/ui", b"/x"]
    ),
    chunks,
)
def test_http_request_heads_with_garbage(method: bytes, path: bytes, tail: list[bytes]) -> None:
    written = _serve([method + b" " + path + b" HTTP/1.1\r\nHost: f\r\n", *tail])
    assert written == b"" or written.startswith(b"HTTP/1.1 ")


def _serve_asyncio(data: list[bytes]) -> bytes:
    return bytes(asyncio.run(run_connection_asyncio(data)).written)


DRIVERS = pytest.mark.parametrize("serve", [_serve, _serve_asyncio], ids=["anyio", "asyncio"])


@DRIVERS
@_FAST
@given(st.lists(json_rpc_texts, max_size=8), chunks)
def test_websocket_messages_then_garbage(
    serve: Callable[[list[bytes]], bytes], texts: list[str], tail: list[bytes]
) -> None:
    written = serve([upgrade_request(), client_frames(texts), *tail])
    assert written.startswith(b"HTTP/1.1 101 ")


@DRIVERS
@_FAST
@given(st.lists(json_rpc_texts, min_size=1, max_size=4), st.data())
def test_mutated_websocket_frames(serve: Callable[[list[bytes]], bytes], texts: list[str], data: st.DataObject) -> None:
    frames = bytearray(client_frames(texts))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(frames) - 1))
        frames[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(frames)))
    serve([upgrade_request(), bytes(frames[:cut]), bytes(frames[cut:])])


@_FAST
@given(json_rpc_texts)
def test_rpc_bodies(body: str) -> None:
    raw = body.encode()
    request = (
        b"POST /v1/rpc HTTP/1.1\r\nHost: f\r\nContent-Type: application/json\r\nContent-Length: "
        + str(len(raw)).encode()
        + b"\r\n\r\n"
        + raw
    )
    written = _serve([request])
    assert written.startswith((b"HTTP/1.1 200 ", b"HTTP/1.1 204 ")), written[:80]


_EVENT_TYPES = st.sampled_from(
    [b"application/cloudevents+json", b"application/cloudevents-batch+json", b"application/json", b"text/plain"]
)


@_FAST
@given(_EVENT_TYPES, st.one_of(json_rpc_texts.map(str.encode), st.binary(max_size=200)), st.booleans())
def test_event_bodies(content_type: bytes, body: bytes, binary_mode: bool) -> None:
    """Whatever a POST /v1/events carries, it is answered with the binding's statuses, by both drivers alike."""
    head = b"ce-specversion: 1.0\r\nce-id: 1\r\nce-source: s\r\nce-type: t\r\n" if binary_mode else b""
    request = (
        b"POST /v1/events HTTP/1.1\r\nHost: f\r\nContent-Type: " + content_type + b"\r\n" + head
        + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )  # fmt: skip
    written = _serve([request])
    assert written.startswith((b"HTTP/1.1 204 ", b"HTTP/1.1 400 ", b"HTTP/1.1 413 ", b"HTTP/1.1 415 ")), written[:80]
    assert written == _serve_asyncio([request])


# ---------------------------------------------------------------------- the asyncio driver
# The same inputs through HostProtocol (what HttpAgentServer runs on asyncio), fed to
# data_received; its answers must be the anyio driver's, byte for byte, up to the WebSocket
# upgrade (after it, the engine's answers carry connection-specific ids).


def _http_part(written: bytes) -> bytes:
    cut = written.find(b"\r\n\r\n", written.find(b"HTTP/1.1 101 ")) if b"HTTP/1.1 101 " in written else -1
    return written if cut < 0 else written[: cut + 4]


@_FAST
@given(chunks)
def test_asyncio_arbitrary_bytes(data: list[bytes]) -> None:
    assert _http_part(_serve_asyncio(data)) == _http_part(_serve(data))


@_FAST
@given(
    st.sampled_from([b"GET", b"POST", b"HEAD", b"PUT"]),
    st.sampled_from([b"/healthz", b"/v1/rpc", b"/v1/channel", b"/v1/events", b"/ui", b"/x"]),  # (not timed docs)
    chunks,
)
def test_asyncio_http_request_heads_with_garbage(method: bytes, path: bytes, tail: list[bytes]) -> None:
    data = [method + b" " + path + b" HTTP/1.1\r\nHost: f\r\n", *tail]
    assert _http_part(_serve_asyncio(data)) == _http_part(_serve(data))


@_FAST
@given(json_rpc_texts, st.integers(0, 400))
def test_asyncio_rpc_bodies(body: str, cut: int) -> None:
    raw = body.encode()
    request = (
        b"POST /v1/rpc HTTP/1.1\r\nHost: f\r\nContent-Type: application/json\r\nContent-Length: "
        + str(len(raw)).encode()
        + b"\r\n\r\n"
        + raw
    )
    written = _serve_asyncio([c for c in (request[:cut], request[cut:]) if c])
    assert written.startswith((b"HTTP/1.1 200 ", b"HTTP/1.1 204 ")), written[:80]
    assert written == _serve([request])
