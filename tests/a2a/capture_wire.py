"""Capture what a2a-sdk's client sends and what a2a-sdk's server answers, byte for byte.

``python tests/a2a/capture_wire.py [--json]`` starts the test server (``_remote_agent.py``) in another
process, drives a2a-sdk's own client against it through an httpx transport that records every
request and response (headers and bodies as they cross the socket; SSE bodies as the raw event
stream), and prints the exchanges. ``docs/A2A.md`` section 6 is this output (ids and timestamps as
they were in one run); ``test_wire_oracle.py`` runs it again and checks the document still holds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from a2a.client import ClientConfig, ClientFactory
from a2a.types import CancelTaskRequest, GetTaskRequest, Message, Part, Role, SendMessageRequest

HERE = Path(__file__).resolve().parent
# Headers that only say which machine and client library produced the exchange.
UNINTERESTING = {"host", "user-agent", "date", "server", "accept-encoding", "connection", "content-length"}


@dataclass
class Exchange:
    name: str
    method: str
    path: str
    request_headers: dict[str, str]
    request_body: Any
    status: int = 0
    response_headers: dict[str, str] = field(default_factory=dict)
    response_body: Any = None
    raw: bytearray = field(default_factory=bytearray)


class _RecordedStream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream, exchange: Exchange) -> None:
        self.inner, self.exchange = inner, exchange

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self.inner:
            self.exchange.raw.extend(chunk)
            yield chunk

    async def aclose(self) -> None:
        await self.inner.aclose()


class RecordingTransport(httpx.AsyncBaseTransport):
    """An httpx transport that keeps every exchange it carries, labelled by the current step."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.exchanges: list[Exchange] = []
        self.step = ""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = request.content
        exchange = Exchange(
            name=self.step,
            method=request.method,
            path=request.url.raw_path.decode(),
            request_headers={k: v for k, v in request.headers.items() if k.lower() not in UNINTERESTING},
            request_body=json.loads(body) if body else None,
        )
        self.exchanges.append(exchange)
        response = await self.inner.handle_async_request(request)
        exchange.status = response.status_code
        exchange.response_headers = {k: v for k, v in response.headers.items() if k.lower() not in UNINTERESTING}
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _RecordedStream(response.stream, exchange)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def _user_message(text: str, **fields: str) -> Message:
    return Message(role=Role.ROLE_USER, message_id=f"msg-{text}", parts=[Part(text=text)], **fields)


async def capture(url: str, prefix: str = "") -> list[Exchange]:
    """Every step against the server at ``url``; ``prefix`` starts each step's name."""
    transport = RecordingTransport()
    async with httpx.AsyncClient(transport=transport, timeout=30) as http:
        transport.step = prefix + "card"
        factory = ClientFactory(ClientConfig(httpx_client=http, streaming=False))
        client = await factory.create_from_url(url)

        transport.step = prefix + "send-message"
        request = SendMessageRequest(message=_user_message("hello", context_id="ctx-1"))
        [response] = [r async for r in client.send_message(request)]

        transport.step = prefix + "send-message-task"
        request = SendMessageRequest(message=_user_message("chunks", context_id="ctx-1"))
        [response] = [r async for r in client.send_message(request)]
        task_id = response.task.id

        transport.step = prefix + "get-task"
        await client.get_task(GetTaskRequest(id=task_id, history_length=1))

        transport.step = prefix + "get-task-unknown"
        try:
            await client.get_task(GetTaskRequest(id="no-such-task"))
        except Exception as exc:  # the oracle records the error answer; the type is checked by the tests
            print(f"# get-task-unknown raised {type(exc).__name__}: {exc}", file=sys.stderr)

        transport.step = prefix + "send-message-return-immediately"
        request = SendMessageRequest(message=_user_message("slow", context_id="ctx-2"))
        request.configuration.return_immediately = True
        [response] = [r async for r in client.send_message(request)]
        slow_id = response.task.id

        transport.step = prefix + "cancel-task"
        await client.cancel_task(CancelTaskRequest(id=slow_id))

        transport.step = prefix + "cancel-task-again"
        try:
            await client.cancel_task(CancelTaskRequest(id=slow_id))
        except Exception as exc:
            print(f"# cancel-task-again raised {type(exc).__name__}: {exc}", file=sys.stderr)

        streaming = ClientFactory(ClientConfig(httpx_client=http, streaming=True)).create(client._card)  # type: ignore[attr-defined]
        transport.step = prefix + "send-streaming-message"
        request = SendMessageRequest(message=_user_message("chunks", context_id="ctx-3"))
        _ = [r async for r in streaming.send_message(request)]

        transport.step = prefix + "send-streaming-message-direct"
        request = SendMessageRequest(message=_user_message("hello", context_id="ctx-3"))
        _ = [r async for r in streaming.send_message(request)]

        transport.step = prefix + "send-streaming-message-crash"
        request = SendMessageRequest(message=_user_message("crash", context_id="ctx-3"))
        try:
            _ = [r async for r in streaming.send_message(request)]
        except Exception as exc:
            print(f"# send-streaming-message-crash raised {type(exc).__name__}: {exc}", file=sys.stderr)

        transport.step = prefix + "send-streaming-message-crash-late"
        request = SendMessageRequest(message=_user_message("crash-late", context_id="ctx-3"))
        try:
            _ = [r async for r in streaming.send_message(request)]
        except Exception as exc:
            print(f"# send-streaming-message-crash-late raised {type(exc).__name__}: {exc}", file=sys.stderr)

        transport.step = prefix + "send-streaming-message-cancelled"
        request = SendMessageRequest(message=_user_message("slow", context_id="ctx-4"))
        stream = streaming.send_message(request)
        first = await anext(stream)
        cancel = CancelTaskRequest(id=first.task.id)
        await anext(stream)  # the "working" status update: the executor is running
        transport.step = prefix + "cancel-task-while-streaming"
        await client.cancel_task(cancel)
        transport.step = prefix + "send-streaming-message-cancelled"
        _ = [r async for r in stream]

        transport.step = prefix + "send-streaming-message-failed"
        request = SendMessageRequest(message=_user_message("fail", context_id="ctx-4"))
        _ = [r async for r in streaming.send_message(request)]

    for exchange in transport.exchanges:
        content_type = exchange.response_headers.get("content-type", "")
        if exchange.raw and "json" in content_type:
            exchange.response_body = json.loads(exchange.raw)
        elif exchange.raw:
            exchange.response_body = exchange.raw.decode()
    return transport.exchanges


def start_server(*args: str) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, str(HERE / "_remote_agent.py"), *args], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("LISTENING "):
        process.kill()
        raise RuntimeError(f"the test server did not start: {line!r}")
    return process, f"http://127.0.0.1:{line.split()[1]}"


def render(exchanges: list[Exchange]) -> str:
    out: list[str] = []
    for e in exchanges:
        out.append(f"#### {e.name}: {e.method} {e.path} -> {e.status}\n")
        out.append("Request headers: `" + json.dumps(e.request_headers) + "`\n")
        if e.request_body is not None:
            out.append("```json\n" + json.dumps(e.request_body, indent=2) + "\n```\n")
        out.append("Response headers: `" + json.dumps(e.response_headers) + "`\n")
        if isinstance(e.response_body, str):
            out.append("```text\n" + e.response_body.replace("\r\n", "\n").rstrip("\n") + "\n```\n")
        elif e.response_body is not None:
            out.append("```json\n" + json.dumps(e.response_body, indent=2) + "\n```\n")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", action="store_true", help="print the exchanges as one JSON list")
    args = parser.parse_args()
    exchanges = []
    for protocol, prefix in (("1.0", ""), ("0.3", "v0.3 ")):
        process, url = start_server("--protocol", protocol)
        try:
            exchanges += asyncio.run(capture(url, prefix))
        finally:
            process.terminate()
            process.wait(10)
    if args.json:
        print(json.dumps([e.__dict__ | {"raw": None} for e in exchanges], indent=2))
    else:
        print(render(exchanges))


if __name__ == "__main__":
    main()
