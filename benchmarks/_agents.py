"""The one message type and the two agents every runtime peer runs.

Imports nothing but ``autogen_core`` and the standard library, so it also loads in the
separate virtualenv of the ``v010`` peer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from autogen_core import (
    AgentId,
    AgentRuntime,
    MessageContext,
    MessageSerializer,
    RoutedAgent,
    TopicId,
    TypeSubscription,
    message_handler,
    try_get_known_serializers_for_type,
)

ECHO_TYPE = "bench_echo"
COUNTER_TYPE_PREFIX = "bench_counter_"
PUB_TOPIC_TYPE = "bench_events"
PUB_TOPIC = TopicId(type=PUB_TOPIC_TYPE, source="bench")
ECHO_ID = AgentId(ECHO_TYPE, "default")


@dataclass
class Payload:
    body: str


def payload_serializers() -> list[MessageSerializer[Any]]:
    """The ``DataclassJsonMessageSerializer`` for :class:`Payload` (registered on every worker)."""
    return try_get_known_serializers_for_type(Payload)


class EchoAgent(RoutedAgent):
    """Replies with the message it received."""

    def __init__(self) -> None:
        super().__init__("benchmark echo agent")

    @message_handler
    async def on_payload(self, message: Payload, ctx: MessageContext) -> Payload:
        return message


class Tally:
    """Delivered-event count shared by the counting agents of one process."""

    def __init__(self) -> None:
        self.count = 0
        self.last_monotonic = 0.0  # time.monotonic() of the latest delivery (system-wide clock)

    def record(self) -> None:
        self.count += 1
        self.last_monotonic = time.monotonic()


class CounterAgent(RoutedAgent):
    """Counts every published event it is handed."""

    def __init__(self, tally: Tally) -> None:
        super().__init__("benchmark counting subscriber")
        self._tally = tally

    @message_handler
    async def on_payload(self, message: Payload, ctx: MessageContext) -> None:
        self._tally.record()


def counter_type(index: int) -> str:
    return f"{COUNTER_TYPE_PREFIX}{index}"


async def register_echo(runtime: AgentRuntime) -> None:
    await runtime.register_factory(ECHO_TYPE, EchoAgent, expected_class=EchoAgent)


async def register_counter(runtime: AgentRuntime, index: int, tally: Tally) -> None:
    """Register counter ``index`` (its own agent type) and subscribe it to the benchmark topic."""
    agent_type = counter_type(index)

    def factory() -> CounterAgent:
        return CounterAgent(tally)

    await runtime.register_factory(agent_type, factory, expected_class=CounterAgent)
    await runtime.add_subscription(TypeSubscription(topic_type=PUB_TOPIC_TYPE, agent_type=agent_type))
