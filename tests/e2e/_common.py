"""Messages, agents and helpers shared by the end-to-end tests."""

from __future__ import annotations

import asyncio
import http.client
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from autogen_core import (
    AgentId,
    MessageContext,
    MessageSerializer,
    RoutedAgent,
    message_handler,
    try_get_known_serializers_for_type,
)


@dataclass
class Ask:
    text: str


@dataclass
class Answer:
    text: str


@dataclass
class Fail:
    """Ask the agent to raise ``exception_type(message)``."""

    exception_type: str
    message: str


@dataclass
class Note:
    """A published event."""

    text: str
    seq: int = 0


@dataclass
class Block:
    """Ask the agent to wait until its call is cancelled (or ``limit`` seconds pass)."""

    tag: str
    limit: float = 10.0


@dataclass
class Blob:
    body: str


class StringSerializer(MessageSerializer[str]):
    """The seed's README serializer: lets agents exchange raw ``str`` messages."""

    @property
    def data_content_type(self) -> str:
        return "application/json"

    @property
    def type_name(self) -> str:
        return "str"

    def deserialize(self, payload: bytes) -> str:
        return json.loads(payload.decode("utf-8"))  # type: ignore[no-any-return]

    def serialize(self, message: str) -> bytes:
        return json.dumps(message).encode("utf-8")


def all_serializers() -> list[MessageSerializer[Any]]:
    out: list[MessageSerializer[Any]] = []
    for cls in (Ask, Answer, Fail, Note, Block, Blob):
        out.extend(try_get_known_serializers_for_type(cls))
    return out


class DomainError(Exception):
    """An application exception with no built-in counterpart."""


class EchoAgent(RoutedAgent):
    """Answers ``Ask`` with ``<key>:<text reversed>``; raises on ``Fail``; records events."""

    def __init__(self, description: str = "echo") -> None:
        super().__init__(description)
        self.asks: list[str] = []
        self.senders: list[AgentId | None] = []
        self.notes: list[Note] = []
        self.note_contexts: list[MessageContext] = []

    @message_handler
    async def on_ask(self, message: Ask, ctx: MessageContext) -> Answer:
        self.asks.append(message.text)
        self.senders.append(ctx.sender)
        return Answer(f"{self.id.key}:{message.text[::-1]}")

    @message_handler
    async def on_fail(self, message: Fail, ctx: MessageContext) -> Answer:
        if message.exception_type == "DomainError":
            raise DomainError(message.message)
        import builtins

        raise getattr(builtins, message.exception_type)(message.message)

    @message_handler
    async def on_note(self, message: Note, ctx: MessageContext) -> None:
        self.notes.append(message)
        self.note_contexts.append(ctx)


class RelayAgent(RoutedAgent):
    """On ``Ask``: asks ``target`` (another agent, anywhere) and returns both answers combined."""

    def __init__(self, target: AgentId) -> None:
        super().__init__("relay")
        self.target = target

    @message_handler
    async def on_ask(self, message: Ask, ctx: MessageContext) -> Answer:
        inner = await self.send_message(Ask(message.text), self.target, cancellation_token=ctx.cancellation_token)
        assert isinstance(inner, Answer)
        return Answer(f"relay({self.id.key})[{inner.text}]")


@dataclass
class Probe:
    """What a :class:`BlockingAgent` saw of one call."""

    started: asyncio.Event = field(default_factory=asyncio.Event)
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    callback_fired: asyncio.Event = field(default_factory=asyncio.Event)
    finished_normally: bool = False


class BlockingAgent(RoutedAgent):
    """On ``Block``: waits (polling its cancellation token) until the call is cancelled."""

    def __init__(self, probes: dict[str, Probe]) -> None:
        super().__init__("blocker")
        self.probes = probes

    @message_handler
    async def on_block(self, message: Block, ctx: MessageContext) -> Answer:
        probe = self.probes.setdefault(message.tag, Probe())
        ctx.cancellation_token.add_callback(probe.callback_fired.set)
        probe.started.set()
        deadline = time.monotonic() + message.limit
        while time.monotonic() < deadline:
            if ctx.cancellation_token.is_cancelled():
                probe.cancelled.set()
                return Answer("cancelled")
            await asyncio.sleep(0.01)
        probe.finished_normally = True
        return Answer("finished")


async def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.01) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` seconds pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return predicate()
        await asyncio.sleep(interval)
    return True


def http_request(port: int, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """One blocking HTTP/1.1 request (run it in a thread); returns the status and the decoded JSON."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers = {} if body is None else {"Content-Type": "application/json"}
        connection.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
        response = connection.getresponse()
        data = response.read()
        return response.status, json.loads(data) if data else None
    finally:
        connection.close()


async def http_call(port: int, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    return await asyncio.wait_for(asyncio.to_thread(http_request, port, method, path, body), 15)
