"""A worker that breaks the WebSocket protocol is gone at once, with both host drivers.

The host closes it (1009, 1002 or 1007) and, at that moment, fails the calls waiting on it and
releases its agent types; the socket is dropped after the closing handshake's timeout even if the
peer never answers the close frame.
"""

from __future__ import annotations

import asyncio
import os
import time

import anyio
import pytest
from autogen_core import AgentId
from wsproto.events import Message

from io_backends import TargetDisconnectedError

from ._host_process import host_process
from ._raw import agent_types_at, open_raw_channel
from .conftest import Text, WorkerFactory

pytestmark = pytest.mark.anyio


def violation(kind: str, ws: object) -> bytes:
    mask = os.urandom(4)

    def masked(payload: bytes) -> bytes:
        return bytes(b ^ mask[i % 4] for i, b in enumerate(payload))

    if kind == "1009":  # a 5 MiB text message (the limit is 4 MiB)
        return ws.send(Message(data="x" * (5 * 1024 * 1024)))  # type: ignore[attr-defined,no-any-return]
    if kind == "1002":  # reserved bits set, no extension negotiated
        return bytes([0xC1, 0x80 | 2]) + mask + masked(b"{}")
    payload = b'"\xff\xfe"'  # 1007: a text frame that is not UTF-8
    return bytes([0x81, 0x80 | len(payload)]) + mask + masked(payload)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize("kind", ["1009", "1002", "1007"])
async def test_a_worker_that_breaks_the_protocol_is_released_at_once(
    worker: WorkerFactory, backend: str, kind: str
) -> None:
    with host_process(backend=backend) as host:
        victim = await open_raw_channel(host.port)
        await victim.send_json({"jsonrpc": "2.0", "id": 1, "method": "runtime.register_agent", "params": {"type": "v"}})
        assert (await victim.next_json())["result"] is None
        caller = await worker(f"127.0.0.1:{host.port}", keepalive_interval=None)
        pending = asyncio.ensure_future(caller.send_message(Text("hi"), AgentId("v", "k")))
        assert (await victim.next_json())["method"] == "agent.call"  # the call waits on the victim

        started = time.monotonic()
        try:
            await victim.send_raw(violation(kind, victim.ws))
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass  # the host gave up on us before the whole message was sent
        with pytest.raises(TargetDisconnectedError):
            await asyncio.wait_for(pending, timeout=12)
        failed_after = time.monotonic() - started
        assert await anyio.to_thread.run_sync(agent_types_at, host.port) == 0  # its type is released

        # The victim never answers the close frame: the host drops the socket anyway.
        received = b""
        with anyio.fail_after(12):
            try:
                while True:
                    received += await victim.stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                pass
        dropped_after = time.monotonic() - started
        victim.ws.receive_data(received)
        codes = [getattr(e, "code", None) for e in victim.ws.events()]
        await victim.aclose()
    print(
        f"{backend} {kind}: the pending call failed after {failed_after:.2f}s, "
        f"the socket was dropped after {dropped_after:.2f}s"
    )
    assert int(kind) in codes, codes
    assert failed_after < 1.5, failed_after
    assert dropped_after < 6, dropped_after  # the close handshake's timeout (2 s), plus a lingering close
