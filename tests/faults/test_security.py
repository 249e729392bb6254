"""Bearer tokens, a pluggable authenticator, TLS with a certificate the test makes, slow consumers."""

from __future__ import annotations

import json
import ssl
import tracemalloc
from collections.abc import Iterator

import anyio
import h11
import pytest
import trustme
from autogen_core import AgentId

from io_backends import HostRejectedError, HttpAgentServer, HttpAgentService

from ._raw import http_exchange, open_raw_channel, rpc_request, status_of
from .conftest import Text, WorkerFactory

pytestmark = pytest.mark.anyio


async def test_bearer_token_is_required_on_channel_and_rpc(worker: WorkerFactory) -> None:
    server = HttpAgentServer(port=0, auth_token="s3cret")
    server.start()
    address = f"127.0.0.1:{server.port}"
    try:
        with pytest.raises(HostRejectedError) as missing:
            await worker(address)
        assert missing.value.status_code == 401
        with pytest.raises(HostRejectedError) as wrong:
            await worker(address, auth_token="guess")
        assert wrong.value.status_code == 401
        await worker(address, auth_token="s3cret", echo="echo")
        caller = await worker(address, auth_token="s3cret")
        assert await caller.send_message(Text("ok"), AgentId("echo", "k")) == Text("OK")

        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "runtime.get_subscriptions"}).encode()
        assert status_of(await http_exchange(server.port, rpc_request(body))) == 401
        authorized = rpc_request(body, extra=b"Authorization: Bearer s3cret\r\n")
        assert status_of(await http_exchange(server.port, authorized)) == 200
        # /healthz stays open for probes.
        assert (
            status_of(
                await http_exchange(server.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            )
            == 200
        )
    finally:
        await server.stop(grace=1)


async def test_pluggable_authenticator(worker: WorkerFactory) -> None:
    seen: list[bytes] = []

    async def only_team_a(request: h11.Request) -> bool:
        team = dict(request.headers).get(b"x-team", b"")
        seen.append(team)
        return team == b"a"

    server = HttpAgentServer(port=0, authenticator=only_team_a)
    server.start()
    try:
        with pytest.raises(ConnectionRefusedError) as refused:
            await open_raw_channel(server.port, [(b"x-team", b"b")])
        assert refused.value.args[0] == 401
        channel = await open_raw_channel(server.port, [(b"x-team", b"a")])
        await channel.aclose()
        assert seen == [b"b", b"a"]
    finally:
        await server.stop(grace=1)


@pytest.fixture(scope="module")
def certificate_authority() -> Iterator[trustme.CA]:
    yield trustme.CA()


async def test_tls_on_both_sides(worker: WorkerFactory, certificate_authority: trustme.CA) -> None:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate_authority.issue_cert("127.0.0.1", "localhost").configure_cert(server_context)
    client_context = ssl.create_default_context()
    certificate_authority.configure_trust(client_context)

    server = HttpAgentServer(port=0, ssl_context=server_context)
    server.start()
    try:
        await worker(f"wss://127.0.0.1:{server.port}", ssl_context=client_context, echo="echo")
        caller = await worker(f"https://127.0.0.1:{server.port}", ssl_context=client_context)
        assert await caller.send_message(Text("secret"), AgentId("echo", "k")) == Text("SECRET")
        # A client that does not trust the certificate cannot connect.
        with pytest.raises(ssl.SSLError):
            await worker(f"https://127.0.0.1:{server.port}", ssl_context=ssl.create_default_context())
        # Plain HTTP to the TLS port gets nowhere.
        with pytest.raises(OSError):
            await worker(f"http://127.0.0.1:{server.port}", connect_timeout=2)
    finally:
        await server.stop(grace=1)


async def test_a_reader_that_never_reads_is_cut_off_with_bounded_memory(worker: WorkerFactory) -> None:
    """A worker that stops reading is disconnected instead of growing the host's memory."""
    limit = 1024 * 1024
    server = HttpAgentServer(port=0, service=HttpAgentService(max_outbound_bytes=limit, keepalive_interval=None))
    server.start()
    address = f"127.0.0.1:{server.port}"
    try:
        good = await worker(address, echo="fast")
        stalled = await open_raw_channel(server.port)  # registers a type and a subscription, then never reads
        await stalled.send_json(
            {"jsonrpc": "2.0", "id": 1, "method": "runtime.register_agent", "params": {"type": "slow"}}
        )
        sub = {"id": "s", "kind": "type", "topic_type": "flood", "agent_type": "slow"}
        await stalled.send_json(
            {"jsonrpc": "2.0", "id": 2, "method": "runtime.add_subscription", "params": {"subscription": sub}}
        )
        with anyio.fail_after(5):
            while "slow" not in server.service.engine.agent_types() or not server.service.engine.subscriptions():
                await anyio.sleep(0.01)

        publisher = await worker(address)
        payload = Text("x" * 8192)
        tracemalloc.start()
        baseline, _ = tracemalloc.get_traced_memory()
        with anyio.fail_after(30):
            sent = 0
            while "slow" in server.service.engine.agent_types() and sent < 20_000:
                await publisher.publish_message(payload, topic_id=__import__("autogen_core").TopicId("flood", "src"))
                sent += 1
                if sent % 50 == 0:
                    await anyio.sleep(0)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert "slow" not in server.service.engine.agent_types(), f"still connected after {sent} events"
        # The host buffered at most about `limit` for the stalled reader (plus what the test itself holds).
        assert peak - baseline < 8 * limit, (peak - baseline, sent)
        print(
            f"slow consumer cut off after {sent} events of 8 KiB; "
            f"traced peak growth {(peak - baseline) / 2**20:.1f} MiB"
        )
        # Everyone else is unaffected.
        assert await publisher.send_message(Text("alive"), AgentId("fast", "k")) == Text("ALIVE")
        del good
        await stalled.aclose()
    finally:
        await server.stop(grace=1)
