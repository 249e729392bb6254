"""Publish/subscribe through a real host: subscription kinds, removal, duplicates, self-skip, bursts.

A negative check ("X did not receive E") publishes a sentinel that X does receive right after E,
from the same publisher: frames on one connection are routed and delivered in order, so once the
sentinel arrived, E would have arrived before it.
"""

from __future__ import annotations

from dataclasses import dataclass

import anyio
import pytest
from autogen_core import (
    AgentId,
    DefaultTopicId,
    MessageContext,
    RoutedAgent,
    TopicId,
    TypePrefixSubscription,
    TypeSubscription,
    default_subscription,
    message_handler,
)

from io_backends import HttpAgentServer, HttpWorkerAgentRuntime, SubscriptionError

from ._common import Answer, Ask, Note, http_call, wait_until
from .conftest import WorkerFactory

pytestmark = pytest.mark.anyio


@dataclass(frozen=True)
class Delivery:
    agent: AgentId
    text: str
    seq: int
    topic: TopicId | None
    sender: AgentId | None
    message_id: str
    is_rpc: bool


class Sink(RoutedAgent):
    """Records every Note it receives into a list shared with the test."""

    def __init__(self, log: list[Delivery]) -> None:
        super().__init__("sink")
        self.log = log

    @message_handler
    async def on_note(self, message: Note, ctx: MessageContext) -> None:
        self.log.append(
            Delivery(self.id, message.text, message.seq, ctx.topic_id, ctx.sender, ctx.message_id, ctx.is_rpc)
        )


@default_subscription
class DefaultSink(Sink):
    pass


class Announcer(Sink):
    """A sink that, asked to, publishes a Note to a topic whose source is ``Ask.text``."""

    @message_handler
    async def on_ask(self, message: Ask, ctx: MessageContext) -> Answer:
        await self.publish_message(Note(f"from {self.id}"), TopicId("room", message.text))
        return Answer("published")


def texts(log: list[Delivery], agent: AgentId | None = None) -> list[str]:
    return [d.text for d in log if agent is None or d.agent == agent]


async def delivered(log: list[Delivery], text: str, timeout: float = 10.0) -> None:
    assert await wait_until(lambda: text in texts(log), timeout), f"{text!r} never arrived; got {texts(log)}"


async def test_type_subscription(make_worker: WorkerFactory) -> None:
    with anyio.fail_after(20):
        log: list[Delivery] = []
        subscriber = await make_worker()
        publisher = await make_worker()
        await subscriber.register_factory("sink", lambda: Sink(log))
        await subscriber.add_subscription(TypeSubscription("news", "sink"))

        await publisher.publish_message(Note("n1"), TopicId("news", "src1"), message_id="m-1")
        await delivered(log, "n1")
        [first] = log
        assert first.agent == AgentId("sink", "src1")  # the recipient's key is the topic source
        assert first.topic == TopicId("news", "src1")
        assert first.sender is None and first.message_id == "m-1" and first.is_rpc is False

        await publisher.publish_message(Note("ignored"), TopicId("sports", "src1"))
        await publisher.publish_message(Note("n2"), TopicId("news", "src2"), sender=AgentId("someone", "s"))
        await delivered(log, "n2")
        assert texts(log) == ["n1", "n2"]
        assert log[1].agent == AgentId("sink", "src2") and log[1].sender == AgentId("someone", "s")


async def test_type_prefix_subscription(make_worker: WorkerFactory) -> None:
    with anyio.fail_after(20):
        log: list[Delivery] = []
        subscriber = await make_worker()
        publisher = await make_worker()
        await subscriber.register_factory("sink", lambda: Sink(log))
        await subscriber.add_subscription(TypePrefixSubscription("alerts.", "sink"))
        for topic_type in ("alerts.fire", "alert", "alerts.", "other.alerts.x", "alerts.flood"):
            await publisher.publish_message(Note(topic_type), TopicId(topic_type, "here"))
        await delivered(log, "alerts.flood")
        assert texts(log) == ["alerts.fire", "alerts.", "alerts.flood"]
        assert {d.topic for d in log} == {
            TopicId("alerts.fire", "here"),
            TopicId("alerts.", "here"),
            TopicId("alerts.flood", "here"),
        }


async def test_default_subscription_via_register(make_worker: WorkerFactory) -> None:
    with anyio.fail_after(20):
        log: list[Delivery] = []
        subscriber = await make_worker(serializers=False)  # register() adds the agent's own serializers
        publisher = await make_worker()
        agent_type = await DefaultSink.register(subscriber, "dsink", lambda: DefaultSink(log))
        assert agent_type.type == "dsink"
        subscriptions = await publisher.get_subscriptions()
        assert any(
            isinstance(s, TypeSubscription) and (s.topic_type, s.agent_type) == ("default", "dsink")
            for s in subscriptions
        )
        assert any(
            isinstance(s, TypePrefixSubscription) and (s.topic_type_prefix, s.agent_type) == ("dsink:", "dsink")
            for s in subscriptions
        )

        await publisher.publish_message(Note("to everyone"), DefaultTopicId())
        await delivered(log, "to everyone")
        assert log[0].agent == AgentId("dsink", "default") and log[0].topic == TopicId("default", "default")
        # The direct-message prefix subscription that register() adds reaches one agent by key.
        await publisher.publish_message(Note("direct"), TopicId("dsink:", "k7"))
        await delivered(log, "direct")
        assert log[1].agent == AgentId("dsink", "k7")


async def test_remove_subscription_stops_delivery(make_worker: WorkerFactory) -> None:
    with anyio.fail_after(20):
        log: list[Delivery] = []
        subscriber = await make_worker()
        publisher = await make_worker()
        await subscriber.register_factory("sink", lambda: Sink(log))
        temporary = TypeSubscription("temp", "sink")
        await subscriber.add_subscription(temporary)
        await subscriber.add_subscription(TypeSubscription("sentinel", "sink"))

        await publisher.publish_message(Note("before"), TopicId("temp", "s"))
        await delivered(log, "before")
        await subscriber.remove_subscription(temporary.id)
        assert temporary.id not in {s.id for s in await publisher.get_subscriptions()}
        await publisher.publish_message(Note("after"), TopicId("temp", "s"))
        await publisher.publish_message(Note("sentinel"), TopicId("sentinel", "s"))
        await delivered(log, "sentinel")
        assert texts(log) == ["before", "sentinel"]

        with pytest.raises(ValueError):  # gone already
            await subscriber.remove_subscription(temporary.id)
        # Removing another worker's subscription is refused, and it keeps working.
        other = TypeSubscription("kept", "sink")
        await subscriber.add_subscription(other)
        with pytest.raises(PermissionError):
            await publisher.remove_subscription(other.id)
        await publisher.publish_message(Note("kept"), TopicId("kept", "s"))
        await delivered(log, "kept")


async def test_duplicate_subscription_is_rejected(make_worker: WorkerFactory) -> None:
    with anyio.fail_after(20):
        log: list[Delivery] = []
        subscriber = await make_worker()
        other = await make_worker()
        await subscriber.register_factory("sink", lambda: Sink(log))
        subscription = TypeSubscription("dup", "sink")
        await subscriber.add_subscription(subscription)

        with pytest.raises(ValueError):  # the same subscription (same id) again
            await subscriber.add_subscription(subscription)
        with pytest.raises(ValueError) as equal:  # an equal one under another id
            await subscriber.add_subscription(TypeSubscription("dup", "sink"))
        assert isinstance(equal.value, SubscriptionError)
        with pytest.raises(SubscriptionError):  # ... from another worker too
            await other.add_subscription(TypeSubscription("dup", "sink"))
        with pytest.raises(SubscriptionError):
            await other.add_subscription(TypePrefixSubscription("x", "sink", id=subscription.id))

        # Still exactly one subscription, and one delivery per event.
        matching = [
            s for s in await other.get_subscriptions() if isinstance(s, TypeSubscription) and s.topic_type == "dup"
        ]
        assert [s.id for s in matching] == [subscription.id]
        await other.publish_message(Note("once"), TopicId("dup", "s"))
        await other.publish_message(Note("twice?"), TopicId("dup", "s"))
        await delivered(log, "twice?")
        assert texts(log) == ["once", "twice?"]


async def test_publisher_worker_included_and_publishing_agent_skipped(make_worker: WorkerFactory) -> None:
    """X (type A, key = topic source) publishes with sender=X; A and B on X's worker subscribe."""
    with anyio.fail_after(20):
        log: list[Delivery] = []
        home = await make_worker()
        remote = await make_worker()
        outsider = await make_worker()
        await home.register_factory("A", lambda: Announcer(log))
        await home.register_factory("B", lambda: Sink(log))
        await remote.register_factory("C", lambda: Sink(log))
        for agent_type in ("A", "B", "C"):
            await home.add_subscription(TypeSubscription("room", agent_type))

        x = AgentId("A", "lobby")
        assert await outsider.send_message(Ask("lobby"), x) == Answer("published")
        expected = f"from {x}"
        assert await wait_until(lambda: len([d for d in log if d.text == expected]) >= 2, 10), log
        # Sentinel from the same worker as X's publish, for X itself: once X has it, X has seen all before it.
        await home.publish_message(Note("sentinel"), TopicId("room", "lobby"))
        assert await wait_until(lambda: texts(log, x) == ["sentinel"], 10), log
        got = {d.agent for d in log if d.text == expected}
        assert got == {AgentId("B", "lobby"), AgentId("C", "lobby")}  # own worker included, X skipped
        assert all(d.sender == x for d in log if d.text == expected)

        # Only the exact publishing agent is skipped: A/other receives what A/lobby publishes to "other".
        await outsider.send_message(Ask("other"), x)
        assert await wait_until(lambda: len([d for d in log if d.topic == TopicId("room", "other")]) == 3, 10), log
        assert {d.agent for d in log if d.topic == TopicId("room", "other")} == {
            AgentId("A", "other"),
            AgentId("B", "other"),
            AgentId("C", "other"),
        }


async def test_burst_of_events_arrives_complete_and_in_order(make_worker: WorkerFactory) -> None:
    count = 5000
    with anyio.fail_after(40):
        log: list[Delivery] = []
        subscriber = await make_worker()
        publisher: HttpWorkerAgentRuntime = await make_worker()
        await subscriber.register_factory("sink", lambda: Sink(log))
        await subscriber.add_subscription(TypeSubscription("burst", "sink"))
        for i in range(count):
            await publisher.publish_message(Note("b", seq=i), TopicId("burst", "one"))
        assert await wait_until(lambda: len(log) >= count, 30, interval=0.05), f"{len(log)} of {count} arrived"
        assert [d.seq for d in log] == list(range(count))
        assert {d.agent for d in log} == {AgentId("sink", "one")}


async def test_events_a_worker_cannot_read_are_dropped_and_the_worker_carries_on(
    make_worker: WorkerFactory, server: HttpAgentServer
) -> None:
    """From a client in another language, say: a sender that is no AutoGen agent id, a payload
    that does not fit the type. The subscriber logs and drops each, stays connected, and takes
    the next good event."""
    with anyio.fail_after(20):
        log: list[Delivery] = []
        subscriber = await make_worker()
        await subscriber.register_factory("sink", lambda: Sink(log))
        await subscriber.add_subscription(TypeSubscription("news", "sink"))

        def publish(event_id: str, data: object, **extra: str) -> dict[str, object]:
            params = {"specversion": "1.0", "id": event_id, "source": "s", "type": "news"}
            params.update(datacontenttype="application/json", dataschema="Note", data=data, **extra)
            return {"jsonrpc": "2.0", "id": event_id, "method": "agent.publish", "params": params}

        bad_sender = publish("e1", {"text": "bad sender"}, agagentsendertype="not an id!", agagentsenderkey="k")
        bad_payload = publish("e2", {"no such field": 1})
        for request in (bad_sender, bad_payload, publish("e3", {"text": "good", "seq": 3})):
            status, answer = await http_call(server.port, "POST", "/v1/rpc", request)
            assert status == 200 and answer["result"] is None, answer
        await delivered(log, "good")
        assert texts(log) == ["good"]
        assert subscriber.connected
        assert len(list(server.service.engine.clients())) == 1  # never reconnected
