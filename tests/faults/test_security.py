"""Bearer tokens, a pluggable authenticator, TLS with a certificate the test makes, slow consumers."""

from __future__ import annotations

import json
import pathlib
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


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
async def test_tls_handshakes_keep_to_the_head_timeout(
    worker: WorkerFactory, certificate_authority: trustme.CA, tmp_path: pathlib.Path, backend: str
) -> None:
    """Both drivers give a TLS handshake no more than the request head timeout."""
    from ._host_process import host_process

    cert = certificate_authority.issue_cert("127.0.0.1", "localhost")
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    client_context = ssl.create_default_context()
    certificate_authority.configure_trust(client_context)
    tls = ("--certfile", str(tmp_path / "cert.pem"), "--keyfile", str(tmp_path / "key.pem"))
    with host_process(*tls, "--request-head-timeout", "1", backend=backend) as host:
        address = f"wss://127.0.0.1:{host.port}"
        await worker(address, ssl_context=client_context, echo="echo", keepalive_interval=None)
        caller = await worker(address, ssl_context=client_context, keepalive_interval=None)
        # A client that opens a socket and never starts the handshake is dropped after the head timeout.
        async with await anyio.connect_tcp("127.0.0.1", host.port) as silent:
            with anyio.fail_after(5):
                with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                    await silent.receive()
        assert await caller.send_message(Text("secret"), AgentId("echo", "k")) == Text("SECRET")


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


# ------------------------------------------------------------------ HTTP and auth edge cases


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
async def test_transfer_encoding_with_content_length_is_refused_and_nothing_more_is_read(backend: str) -> None:
    """RFC 9112 section 6.1: the classic request-smuggling shape. One 400, then the connection is closed."""
    from ._host_process import host_process

    smuggled = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    raw = (
        b"POST /v1/rpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(5 + len(smuggled)).encode() + b"\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\n" + smuggled
    )
    with host_process(backend=backend) as host:
        response = await http_exchange(host.port, raw, timeout=5)
    assert status_of(response) == 400
    assert b"Transfer-Encoding and Content-Length" in response
    assert response.count(b"HTTP/1.1 ") == 1, response  # the smuggled request was never served


async def test_an_empty_token_is_refused_at_construction() -> None:
    import subprocess
    import sys

    from io_backends import HttpWorkerAgentRuntime

    for make in (
        lambda: HttpAgentService(auth_token=""),
        lambda: HttpAgentServer(port=0, auth_token=" "),
        lambda: HttpWorkerAgentRuntime("127.0.0.1:1", auth_token=""),
    ):
        with pytest.raises(ValueError, match="auth_token must not be empty"):
            make()
    cli = subprocess.run(
        [sys.executable, "-m", "io_backends", "--port", "0", "--auth-token", ""],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert cli.returncode == 2 and "auth_token must not be empty" in cli.stderr, cli.stderr


async def test_a_bearer_header_with_an_empty_token_never_authenticates() -> None:
    server = HttpAgentServer(port=0, auth_token="s3cret")
    server.start()
    try:
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "runtime.get_subscriptions"}).encode()
        for value in (b"Bearer", b"Bearer ", b"Bearer    ", b"bearer\t", b"Basic s3cret", b"Bearer s3cret2"):
            request = rpc_request(body, extra=b"Authorization: " + value + b"\r\n")
            assert status_of(await http_exchange(server.port, request)) == 401, value
        channel = b"GET /v1/channel HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        channel += b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        assert status_of(await http_exchange(server.port, channel + b"Authorization: Bearer \r\n\r\n")) == 401
        padded = rpc_request(body, extra=b"Authorization: Bearer  s3cret \r\n")
        assert status_of(await http_exchange(server.port, padded)) == 200
    finally:
        await server.stop(grace=1)


async def test_a_token_without_tls_off_loopback_is_warned_about_at_start_up(
    caplog: pytest.LogCaptureFixture, certificate_authority: trustme.CA
) -> None:
    """192.0.2.1 (TEST-NET-1) is no address of this machine: the warning comes, then the bind fails."""
    import logging

    caplog.set_level(logging.WARNING, logger="io_backends.server")
    with pytest.raises(OSError):
        HttpAgentServer("192.0.2.1", port=0, auth_token="s3cret").start()
    [warning] = [r for r in caplog.records if "clear text" in r.getMessage()]
    assert warning.levelno == logging.WARNING and "192.0.2.1" in warning.getMessage()
    caplog.clear()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate_authority.issue_cert("localhost").configure_cert(context)
    with pytest.raises(OSError):  # with TLS: no warning
        HttpAgentServer("192.0.2.1", port=0, auth_token="s3cret", ssl_context=context).start()
    loopback = HttpAgentServer("127.0.0.1", port=0, auth_token="s3cret")  # on loopback: no warning
    loopback.start()
    await loopback.stop(grace=1)
    assert not [r for r in caplog.records if "clear text" in r.getMessage()]
