"""Bad input gets a clear error and never takes the host down or disturbs other clients."""

from __future__ import annotations

import json

import pytest
from autogen_core import AgentId
from wsproto.frame_protocol import Opcode

from io_backends import HttpAgentServer

from ._raw import body_of, http_exchange, open_raw_channel, rpc_request, status_of
from .conftest import Text, WorkerFactory

pytestmark = pytest.mark.anyio


@pytest.fixture
async def bystanders(server: HttpAgentServer, worker: WorkerFactory) -> WorkerFactory:
    """An echo worker and a caller that must keep working through every test here."""
    await worker(f"127.0.0.1:{server.port}", echo="echo")
    return worker


async def still_serving(server: HttpAgentServer, worker: WorkerFactory) -> None:
    caller = await worker(f"127.0.0.1:{server.port}")
    assert await caller.send_message(Text("still here"), AgentId("echo", "k")) == Text("STILL HERE")


async def test_garbage_bytes_get_400(server: HttpAgentServer, bystanders: WorkerFactory) -> None:
    response = await http_exchange(server.port, b"\x00\x01\x02 this is not HTTP\r\n\r\n")
    assert status_of(response) == 400
    await still_serving(server, bystanders)


async def test_oversized_headers_get_431(server: HttpAgentServer, bystanders: WorkerFactory) -> None:
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n"
    response = await http_exchange(server.port, request)
    assert status_of(response) == 431
    await still_serving(server, bystanders)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", -32700),
        (b"[1, 2]", -32600),
        (b'{"jsonrpc": "2.0", "id": 1, "method": "no.such.method"}', -32601),
        (b'{"jsonrpc": "2.0", "id": 1, "method": "agent.call", "params": {"target": 5}}', -32602),
        (b'{"jsonrpc": "1.0", "id": 1, "method": "agent.call"}', -32600),
    ],
)
async def test_json_rpc_errors_over_http(
    server: HttpAgentServer, bystanders: WorkerFactory, body: bytes, code: int
) -> None:
    response = await http_exchange(server.port, rpc_request(body))
    assert status_of(response) == 200
    answer = body_of(response)
    answers = answer if isinstance(answer, list) else [answer]
    assert answers and all(a["error"]["code"] == code for a in answers), answer
    await still_serving(server, bystanders)


async def test_http_rpc_call_and_status_codes(server: HttpAgentServer, bystanders: WorkerFactory) -> None:
    call = {
        "jsonrpc": "2.0",
        "id": "c1",
        "method": "agent.call",
        "params": {
            "target": {"type": "echo", "key": "k"},
            "data_type": "Text",
            "data_content_type": "application/json",
            "data": {"text": "over http"},
        },
    }
    answer = body_of(await http_exchange(server.port, rpc_request(json.dumps(call).encode())))
    assert answer["id"] == "c1"
    assert answer["result"]["data"] == {"text": "OVER HTTP"}
    assert status_of(await http_exchange(server.port, rpc_request(b"{}", content_type=b"text/plain"))) == 415
    big = b'"' + b"x" * (5 * 1024 * 1024) + b'"'
    assert status_of(await http_exchange(server.port, rpc_request(big))) == 413
    assert (
        status_of(await http_exchange(server.port, b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
        == 404
    )
    assert (
        status_of(await http_exchange(server.port, b"HEAD /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
        == 200
    )
    assert (
        status_of(await http_exchange(server.port, b"DELETE /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
        == 405
    )
    assert status_of(await http_exchange(server.port, b"GET /v1/channel HTTP/1.1\r\nHost: x\r\n\r\n")) == 426
    notification = {"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": 1}}
    assert status_of(await http_exchange(server.port, rpc_request(json.dumps(notification).encode()))) == 204


async def test_oversized_frame_closes_with_1009(server: HttpAgentServer, bystanders: WorkerFactory) -> None:
    channel = await open_raw_channel(server.port)
    await channel.send_text('"' + "x" * (4 * 1024 * 1024 + 10) + '"')
    assert await channel.wait_closed() == 1009
    await still_serving(server, bystanders)


async def test_invalid_utf8_closes_with_1007(server: HttpAgentServer, bystanders: WorkerFactory) -> None:
    channel = await open_raw_channel(server.port)
    proto = channel.ws.connection._proto  # type: ignore[union-attr]
    frame = proto._serialize_frame(Opcode.TEXT, b'{"a": "\xff\xfe"}')
    await channel.send_raw(frame)
    assert await channel.wait_closed() == 1007
    await still_serving(server, bystanders)


async def test_channel_errors_and_frames_after_close(server: HttpAgentServer, bystanders: WorkerFactory) -> None:
    channel = await open_raw_channel(server.port)
    await channel.send_text("garbage")
    assert (await channel.next_json())["error"]["code"] == -32700
    # Answering a call that was never sent to this client is dropped, not forwarded anywhere.
    dropped = server.service.engine.stats.responses_dropped
    await channel.send_json({"jsonrpc": "2.0", "id": 1, "result": {"data_type": "Text"}})
    await channel.send_json(
        {"jsonrpc": "2.0", "id": 2, "method": "runtime.unregister_agent", "params": {"type": "echo"}}
    )
    assert (await channel.next_json())["error"]["code"] == -32011  # belongs to another worker
    # Nor can it remove another worker's subscription.
    owner = await open_raw_channel(server.port)
    sub = {"id": "owned", "kind": "type", "topic_type": "t", "agent_type": "echo"}
    await owner.send_json(
        {"jsonrpc": "2.0", "id": 1, "method": "runtime.add_subscription", "params": {"subscription": sub}}
    )
    assert (await owner.next_json())["result"] is None
    await channel.send_json(
        {"jsonrpc": "2.0", "id": 3, "method": "runtime.remove_subscription", "params": {"id": "owned"}}
    )
    assert (await channel.next_json())["error"]["code"] == -32011
    assert [s.id for s in server.service.engine.subscriptions()] == ["owned"]
    await owner.aclose()
    assert server.service.engine.stats.responses_dropped == dropped + 1
    assert "echo" in server.service.engine.agent_types()
    await channel.send_raw(channel.ws.send(__import__("wsproto").events.CloseConnection(1000)))
    try:
        await channel.send_text("after close")
    except Exception:
        pass
    assert await channel.wait_closed() == 1000
    await still_serving(server, bystanders)


async def test_a_live_client_id_cannot_be_taken_over(server: HttpAgentServer, bystanders: WorkerFactory) -> None:
    first = await open_raw_channel(server.port, [(b"x-client-id", b"worker-7")])
    with pytest.raises(ConnectionRefusedError) as refused:
        await open_raw_channel(server.port, [(b"x-client-id", b"worker-7")])
    assert refused.value.args[0] == 409
    await first.aclose()
    await still_serving(server, bystanders)


async def test_an_http_caller_that_hangs_up_cancels_its_call(server: HttpAgentServer) -> None:
    target = await open_raw_channel(server.port)
    await target.send_json({"jsonrpc": "2.0", "id": 1, "method": "runtime.register_agent", "params": {"type": "t"}})
    assert (await target.next_json())["result"] is None
    call = {
        "jsonrpc": "2.0",
        "id": 9,
        "method": "agent.call",
        "params": {
            "target": {"type": "t", "key": "k"},
            "data_type": "Text",
            "data_content_type": "application/json",
            "data": {"text": "x"},
        },
    }
    import anyio

    async with await anyio.connect_tcp("127.0.0.1", server.port) as stream:
        await stream.send(rpc_request(json.dumps(call).encode()))
        forwarded = await target.next_json()
        assert forwarded["method"] == "agent.call" and forwarded["id"] != 9
    # The HTTP client is gone: the host cancels the call at the target and forgets it.
    cancel = await target.next_json()
    assert cancel == {"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": forwarded["id"]}}
    assert server.service.engine.pending_calls() == []
    await target.aclose()


async def test_an_oversized_frame_is_refused_before_it_is_buffered_whole(server: HttpAgentServer) -> None:
    """A frame header announcing 1 GiB: the host answers 1009 after a few MiB, while the frame still arrives."""
    import os
    import struct

    import anyio

    channel = await open_raw_channel(server.port)
    mask = os.urandom(4)
    await channel.send_raw(bytes([0x81, 0x80 | 127]) + struct.pack("!Q", 1 << 30) + mask)
    chunk = bytes(1 << 20)  # masked zeros are the mask repeated: still arbitrary payload bytes
    sent = 0
    async with anyio.create_task_group() as tg:
        tg.start_soon(channel.wait_closed, 30)
        try:
            while channel.closed_with is None and sent < 256 << 20:
                await channel.send_raw(chunk)
                sent += len(chunk)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass  # the host gave up on us while we were still sending
    # The host buffered none of it: it refused the message once 4 MiB had arrived, long before the end.
    assert channel.closed_with in (1009, 1006), channel.closed_with
    assert sent < 256 << 20, "the host never refused a frame far over its limit"
