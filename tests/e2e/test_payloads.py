"""Large payloads, the size limit, protobuf payloads and a custom serializer, over real sockets."""

from __future__ import annotations

import anyio
import pytest
from autogen_core import (
    PROTOBUF_DATA_CONTENT_TYPE,
    AgentId,
    MessageContext,
    RoutedAgent,
    TopicId,
    TypeSubscription,
    message_handler,
    try_get_known_serializers_for_type,
)
from google.protobuf.wrappers_pb2 import Int64Value, StringValue

from io_backends import PayloadTooLargeError

from ._common import Answer, Ask, Blob, EchoAgent, StringSerializer, wait_until
from .conftest import WorkerFactory

pytestmark = pytest.mark.anyio

MiB = 1024 * 1024


class BlobAgent(RoutedAgent):
    """Returns a Blob of ``len(body) * factor`` characters (ASCII, with a few non-ASCII ones)."""

    def __init__(self) -> None:
        super().__init__("blob")

    @message_handler
    async def on_blob(self, message: Blob, ctx: MessageContext) -> Blob:
        if message.body.startswith("grow:"):
            return Blob("g" * int(message.body[5:]))
        return Blob(message.body[::-1])

    @message_handler
    async def on_ask(self, message: Ask, ctx: MessageContext) -> Answer:
        return Answer(f"ok:{message.text}")


class ProtoAgent(RoutedAgent):
    def __init__(self) -> None:
        super().__init__("proto")
        self.events: list[object] = []

    @message_handler
    async def on_string(self, message: StringValue, ctx: MessageContext) -> StringValue | None:
        if ctx.topic_id is not None:
            self.events.append(message)
            return None
        return StringValue(value=message.value.upper())

    @message_handler
    async def on_int(self, message: Int64Value, ctx: MessageContext) -> Int64Value:
        return Int64Value(value=message.value * 2)


class StrAgent(RoutedAgent):
    def __init__(self) -> None:
        super().__init__("str")
        self.events: list[str] = []

    @message_handler
    async def on_str(self, message: str, ctx: MessageContext) -> str | None:
        if ctx.topic_id is not None:
            self.events.append(message)
            return None
        return message.upper()


async def test_payloads_of_several_megabytes_round_trip(make_worker: WorkerFactory) -> None:
    with anyio.fail_after(30):
        callee = await make_worker()
        caller = await make_worker()
        await callee.register_factory("blob", BlobAgent)
        body = ("0123456789abcdef" * (3 * MiB // 16 - 1)) + "héllo wörld ✓"
        assert len(body) > 3 * MiB - 100
        answer = await caller.send_message(Blob(body), AgentId("blob", "big"))
        assert isinstance(answer, Blob) and answer.body == body[::-1]
        # A large answer to a small request.
        grown = await caller.send_message(Blob(f"grow:{3 * MiB}"), AgentId("blob", "big"))
        assert grown == Blob("g" * 3 * MiB)


async def test_payload_over_the_limit_fails_at_the_caller_and_the_channel_survives(make_worker: WorkerFactory) -> None:
    with anyio.fail_after(30):
        callee = await make_worker()
        caller = await make_worker()
        await callee.register_factory("blob", BlobAgent)
        await callee.add_subscription(TypeSubscription("blobs", "blob"))
        target = AgentId("blob", "big")
        too_big = Blob("x" * (4 * MiB + 1))

        with pytest.raises(PayloadTooLargeError) as info:
            await caller.send_message(too_big, target)
        assert isinstance(info.value, ValueError)
        with pytest.raises(PayloadTooLargeError):
            await caller.publish_message(too_big, TopicId("blobs", "s"))
        # An answer over the limit: the callee reports it instead of answering.
        with pytest.raises(PayloadTooLargeError):
            await caller.send_message(Blob(f"grow:{4 * MiB + 10}"), target)

        # Nothing broke: both connections still carry calls both ways.
        assert caller.connected and callee.connected
        assert await caller.send_message(Ask("fine"), target) == Answer("ok:fine")
        await caller.register_factory("echo", EchoAgent)
        assert await callee.send_message(Ask("back"), AgentId("echo", "e")) == Answer("e:kcab")
        assert await caller.send_message(Blob("small"), target) == Blob("llams")


async def test_protobuf_payload_format(make_worker: WorkerFactory) -> None:
    with anyio.fail_after(20):
        proto_serializers = try_get_known_serializers_for_type(StringValue) + try_get_known_serializers_for_type(
            Int64Value
        )
        assert {s.data_content_type for s in proto_serializers} == {PROTOBUF_DATA_CONTENT_TYPE}
        callee = await make_worker(payload_serialization_format=PROTOBUF_DATA_CONTENT_TYPE)
        caller = await make_worker(payload_serialization_format=PROTOBUF_DATA_CONTENT_TYPE)
        for worker in (callee, caller):
            worker.add_message_serializer(proto_serializers)
        await callee.register_factory("proto", ProtoAgent)
        await callee.add_subscription(TypeSubscription("proto-news", "proto"))

        answer = await caller.send_message(StringValue(value="binary ✓ \x00 payload"), AgentId("proto", "p"))
        assert isinstance(answer, StringValue) and answer.value == "BINARY ✓ \x00 PAYLOAD"
        doubled = await caller.send_message(Int64Value(value=21), AgentId("proto", "p"))
        assert isinstance(doubled, Int64Value) and doubled.value == 42

        await caller.publish_message(StringValue(value="event"), TopicId("proto-news", "p"))
        agent = await callee.try_get_underlying_agent_instance(AgentId("proto", "p"), ProtoAgent)
        assert await wait_until(lambda: len(agent.events) == 1, 10)
        assert agent.events == [StringValue(value="event")]


async def test_string_serializer_from_the_seed_readme(make_worker: WorkerFactory) -> None:
    with anyio.fail_after(20):
        callee = await make_worker()
        caller = await make_worker()
        for worker in (callee, caller):
            worker.add_message_serializer(StringSerializer())
        await callee.register_factory("str", StrAgent)
        await callee.add_subscription(TypeSubscription("words", "str"))

        assert await caller.send_message('raw string, with "quotes" and ünïcode', AgentId("str", "s")) == (
            'RAW STRING, WITH "QUOTES" AND ÜNÏCODE'
        )
        await caller.publish_message("published str", TopicId("words", "s"))
        agent = await callee.try_get_underlying_agent_instance(AgentId("str", "s"), StrAgent)
        assert await wait_until(lambda: agent.events == ["published str"], 10), agent.events


async def test_mixed_payload_formats_interoperate(make_worker: WorkerFactory) -> None:
    """As with gRPC (whose RPC payloads are always JSON), a protobuf-format worker still exchanges
    dataclasses, and a JSON-format worker protobuf messages, whatever serializers they have."""
    with anyio.fail_after(20):
        proto_serializers = try_get_known_serializers_for_type(StringValue)
        proto_worker = await make_worker(payload_serialization_format=PROTOBUF_DATA_CONTENT_TYPE)
        json_worker = await make_worker()
        for worker in (proto_worker, json_worker):
            worker.add_message_serializer(proto_serializers)
        await proto_worker.register_factory("echo", EchoAgent)
        await proto_worker.register_factory("proto", ProtoAgent)
        await json_worker.register_factory("echo2", EchoAgent)
        await json_worker.register_factory("proto2", ProtoAgent)

        assert await proto_worker.send_message(Ask("dc"), AgentId("echo2", "a")) == Answer("a:cd")
        assert await json_worker.send_message(Ask("dc"), AgentId("echo", "b")) == Answer("b:cd")
        assert await json_worker.send_message(StringValue(value="pb"), AgentId("proto", "c")) == StringValue(value="PB")
        assert await proto_worker.send_message(StringValue(value="pb"), AgentId("proto2", "d")) == StringValue(
            value="PB"
        )
