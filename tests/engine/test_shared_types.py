"""HostEngine with shared agent types: pools, placement, mixing refused, members leaving, events
reaching one instance, twin subscriptions, limits and the stats (docs/PROTOCOL.md 7.9)."""

from __future__ import annotations

from typing import Any

import pytest

from sansio_runtime import MAX_NAME_LENGTH, ClientId, ErrorCode, HostEngine, Send
from sansio_runtime._placement import rendezvous_score

from ._harness import call_params, feed, gone, loads, note, only_send, req, sends


def register(h: HostEngine, c: ClientId, agent_type: str, *, shared: bool, id: int = 1) -> Any:
    params: dict[str, Any] = {"type": agent_type}
    if shared:
        params["shared"] = True
    return only_send(feed(h, c, req(id, "runtime.register_agent", params)), c)


def subscribe(h: HostEngine, c: ClientId, sid: str, topic: str, agent: str, id: int = 2) -> Any:
    spec = {"kind": "type", "id": sid, "topic_type": topic, "agent_type": agent}
    return only_send(feed(h, c, req(id, "runtime.add_subscription", {"subscription": spec})), c)


def call_to(h: HostEngine, caller: ClientId, key: str, id: Any = None) -> ClientId:
    """Call ``counter/<key>`` and return the client the host forwarded it to."""
    out = sends(feed(h, caller, req(id if id is not None else f"c-{key}", "agent.call", call_params("counter", key))))
    assert len(out) == 1, out
    assert loads(out[0].data)["method"] == "agent.call"
    return out[0].client


def pool(h: HostEngine, n: int) -> list[ClientId]:
    members = [h.connect(name=f"w{i}") for i in range(n)]
    for m in members:
        assert register(h, m, "counter", shared=True)["result"] is None
    return members


def expected_member(h: HostEngine, members: list[ClientId], key: str) -> ClientId:
    return max(members, key=lambda m: rendezvous_score(str(h.client_name(m)).encode(), key))


def test_keys_spread_by_rendezvous_and_stay_put() -> None:
    h = HostEngine()
    members = pool(h, 3)
    caller = h.connect()
    first = {k: call_to(h, caller, k) for k in (f"k{i}" for i in range(60))}
    assert {k: expected_member(h, members, k) for k in first} == first
    assert set(first.values()) == set(members)  # spread over every member
    for k, holder in first.items():
        assert call_to(h, caller, k, id=f"again-{k}") == holder
    assert sum(h.shared_agent_types()["counter"].values()) == 60
    assert h.stats.shared_types == {
        "counter": {f"w{i}": sum(v == m for v in first.values()) for i, m in enumerate(members)}
    }


def test_a_joining_member_never_steals_a_placed_key() -> None:
    h = HostEngine()
    members = pool(h, 2)
    caller = h.connect()
    placed = {k: call_to(h, caller, k) for k in (f"k{i}" for i in range(40))}
    newcomer = h.connect(name="w-new")
    register(h, newcomer, "counter", shared=True)
    assert {k: call_to(h, caller, k, id=f"b-{k}") for k in placed} == placed
    fresh = {k: call_to(h, caller, k) for k in (f"n{i}" for i in range(40))}
    assert newcomer in fresh.values()  # new keys do reach it
    assert {k: expected_member(h, [*members, newcomer], k) for k in fresh} == fresh


def test_a_leaving_member_fails_its_calls_and_only_its_keys_move() -> None:
    h = HostEngine()
    members = pool(h, 3)
    caller = h.connect()
    placed = {k: call_to(h, caller, k) for k in (f"k{i}" for i in range(30))}
    lost = members[0]
    in_flight = [k for k, m in placed.items() if m == lost]
    assert in_flight
    out = gone(h, lost)
    failed = [loads(s.data) for s in sends(out) if s.client == caller]
    # every call pending at the lost member (the first round was never answered) fails at once
    assert sorted(m["id"] for m in failed) == sorted(f"c-{k}" for k in in_flight)
    assert {m["error"]["code"] for m in failed} == {int(ErrorCode.TARGET_DISCONNECTED)}
    assert lost not in h.shared_agent_types()["counter"]
    for k, holder in placed.items():
        now = call_to(h, caller, k, id=f"b-{k}")
        if holder == lost:
            assert now == expected_member(h, members[1:], k)
        else:
            assert now == holder, "another member's key moved"


def test_unregistering_leaves_the_pool_and_the_last_member_ends_the_type() -> None:
    h = HostEngine()
    a, b = pool(h, 2)
    caller = h.connect()
    keys = [f"k{i}" for i in range(20)]
    held_by_b = sum(call_to(h, caller, k) == b for k in keys)
    assert only_send(feed(h, a, req(5, "runtime.unregister_agent", {"type": "counter"})), a)["result"] is None
    assert h.shared_agent_types() == {"counter": {b: held_by_b}}
    assert all(call_to(h, caller, k, id=f"b-{k}") == b for k in keys)
    other = h.connect()
    refused = only_send(feed(h, other, req(6, "runtime.unregister_agent", {"type": "counter"})), other)
    assert refused["error"]["code"] == ErrorCode.FORBIDDEN
    assert only_send(feed(h, b, req(5, "runtime.unregister_agent", {"type": "counter"})), b)["result"] is None
    assert h.shared_agent_types() == {}
    out = only_send(feed(h, caller, req("x", "agent.call", call_params("counter", "k1"))), caller)
    assert out["error"]["code"] == ErrorCode.AGENT_TYPE_NOT_FOUND
    assert register(h, other, "counter", shared=False)["result"] is None  # free again, for anyone


def test_mixing_shared_and_unshared_is_refused_saying_which_side() -> None:
    h = HostEngine()
    (member,) = pool(h, 1)
    alone = h.connect()
    refused = register(h, alone, "counter", shared=False)
    assert refused["error"]["code"] == ErrorCode.AGENT_TYPE_ALREADY_REGISTERED
    assert refused["error"]["message"].startswith("Agent type counter already registered by other workers, shared:")
    assert "shared_agent_types=True" in refused["error"]["message"]
    assert register(h, alone, "echo", shared=False)["result"] is None
    refused = register(h, member, "echo", shared=True, id=2)
    assert refused["error"]["message"].startswith("Agent type echo already registered by another worker, not shared:")
    again = register(h, member, "counter", shared=True, id=3)
    assert again["error"]["message"] == "Agent type counter already registered by this connection (shared)"
    # unshared registrations keep gRPC's wording and uniqueness
    third = h.connect()
    assert register(h, third, "echo", shared=False)["error"]["message"] == (
        "Agent type echo already registered by another worker"
    )


def test_a_publish_reaches_one_instance_per_recipient_id() -> None:
    h = HostEngine()
    members = pool(h, 3)
    for i, m in enumerate(members):  # every member announces the same subscription, under its own id
        assert subscribe(h, m, f"s{i}", "ticks", "counter")["result"] is None
    alone = h.connect()
    register(h, alone, "logger", shared=False)
    subscribe(h, alone, "s-log", "ticks", "logger")
    publisher = h.connect()
    for source in (f"k{i}" for i in range(30)):
        event = {"specversion": "1.0", "id": source, "source": source, "type": "ticks", "data": 1}
        out = [s for s in sends(feed(h, publisher, note("agent.publish", event))) if isinstance(s, Send)]
        deliveries = {s.client: loads(s.data)["params"]["recipients"] for s in out}
        holder = expected_member(h, members, source)
        if holder == alone:
            raise AssertionError("the logger's worker is no pool member")
        assert deliveries == {holder: ["counter"], alone: ["logger"]}
        assert h.holder("counter", source) == holder
    # a call to a key an event placed goes to the same member
    assert call_to(h, publisher, "k7") == h.holder("counter", "k7")


def test_an_unshared_type_on_a_member_is_delivered_with_its_shared_ones_in_one_event() -> None:
    h = HostEngine()
    (member,) = pool(h, 1)
    register(h, member, "aaa", shared=False, id=3)
    subscribe(h, member, "s1", "ticks", "counter")
    subscribe(h, member, "s2", "ticks", "aaa", id=4)
    publisher = h.connect()
    for _ in range(2):  # the second from the route cache, which must not be changed by the first
        event = {"specversion": "1.0", "id": "e", "source": "k", "type": "ticks", "data": 1}
        (delivery,) = sends(feed(h, publisher, note("agent.publish", event)))
        assert loads(delivery.data)["params"]["recipients"] == ["aaa", "counter"]
    assert h.subscribers("ticks") == {member: ["aaa"]}


def test_twin_subscriptions_outlive_any_one_member() -> None:
    h = HostEngine()
    a, b = pool(h, 2)
    assert subscribe(h, a, "sa", "ticks", "counter")["result"] is None
    assert subscribe(h, b, "sb", "ticks", "counter")["result"] is None
    refused = subscribe(h, b, "sb2", "ticks", "counter", id=3)  # a second copy from the same member
    assert refused["error"]["code"] == ErrorCode.SUBSCRIPTION_ALREADY_EXISTS
    stranger = h.connect()
    refused = subscribe(h, stranger, "sx", "ticks", "counter")  # not a member: as before
    assert refused["error"]["code"] == ErrorCode.SUBSCRIPTION_ALREADY_EXISTS
    gone(h, a)
    publisher = h.connect()
    event = {"specversion": "1.0", "id": "e", "source": "k", "type": "ticks", "data": 1}
    (delivery,) = sends(feed(h, publisher, note("agent.publish", event)))
    assert delivery.client == b
    assert [s.id for s in h.subscriptions()] == ["sb"]


@pytest.mark.parametrize("what", ["call", "publish"])
def test_keys_longer_than_the_host_keeps_are_refused(what: str) -> None:
    h = HostEngine()
    (member,) = pool(h, 1)
    subscribe(h, member, "s1", "ticks", "counter")
    caller = h.connect()
    long_key = "k" * (MAX_NAME_LENGTH + 1)
    if what == "call":
        answer = only_send(feed(h, caller, req(1, "agent.call", call_params("counter", long_key))), caller)
    else:
        event = {"specversion": "1.0", "id": "e", "source": long_key, "type": "ticks", "data": 1}
        answer = only_send(feed(h, caller, req(1, "agent.publish", event)), caller)
    assert answer["error"]["code"] == ErrorCode.INVALID_PARAMS
    assert h.shared_agent_types() == {"counter": {member: 0}}
    assert h.stats.events_published == 0


def test_shared_types_count_toward_the_per_connection_limit() -> None:
    h = HostEngine(max_agent_types_per_connection=1)
    (member,) = pool(h, 1)
    refused = register(h, member, "other", shared=False, id=2)
    assert refused["error"]["code"] == ErrorCode.TOO_MANY_AGENT_TYPES


def test_shared_must_be_a_boolean() -> None:
    h = HostEngine()
    c = h.connect()
    answer = only_send(feed(h, c, req(1, "runtime.register_agent", {"type": "t", "shared": "yes"})), c)
    assert answer["error"]["code"] == ErrorCode.INVALID_PARAMS


def test_unnamed_members_are_told_apart() -> None:
    h = HostEngine()
    members = [h.connect() for _ in range(2)]
    for m in members:
        register(h, m, "counter", shared=True)
    caller = h.connect()
    holders = {call_to(h, caller, f"k{i}") for i in range(20)}
    assert holders == set(members)
    assert set(h.stats.shared_types["counter"]) == {f"connection {m}" for m in members}
