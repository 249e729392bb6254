"""The hub with peers another server parsed (the host mounted in ASGI), with no I/O: channels get
the engine's messages, are cut off with 4008 when they do not take them, release what they owned;
a /v1/rpc body is answered; status counts them."""

from __future__ import annotations

import json

import h11

from io_backends.sansio import HostHub, HubSettings
from io_backends.sansio._mounted import MountedPeer
from sansio_runtime import ClientKind, CloseCode, HostEngine


def hub(**settings: int) -> HostHub:
    return HostHub(HostEngine(), HubSettings(**settings), lambda: b"{}")  # type: ignore[arg-type]


def request(client_id: str | None = None) -> h11.Request:
    headers = [(b"host", b"x")] + ([(b"x-client-id", client_id.encode())] if client_id else [])
    return h11.Request(method=b"GET", target=b"/v1/channel", headers=headers)


def channel(h: HostHub, name: str | None = None, limit: int = 1 << 20) -> tuple[MountedPeer, list[int]]:
    woken: list[int] = []
    peer = MountedPeer(ClientKind.CHANNEL, 0.0, max_outbound_bytes=limit, wake=lambda: woken.append(1))
    assert h.mount_channel(peer, request(name), 0.0) is None
    return peer, woken


def send(h: HostHub, peer: MountedPeer, message: object) -> None:
    h.mounted_message(peer, json.dumps(message), 0.0)


REGISTER = {"jsonrpc": "2.0", "id": 0, "method": "runtime.register_agent", "params": {"type": "a"}}
SUBSCRIBE = {"jsonrpc": "2.0", "id": 1, "method": "runtime.add_subscription",
             "params": {"subscription": {"id": "s", "kind": "type", "topic_type": "t", "agent_type": "a"}}}  # fmt: skip
PUBLISH = {"jsonrpc": "2.0", "method": "agent.publish", "params": {
    "specversion": "1.0", "id": "e", "source": "k", "type": "t", "datacontenttype": "application/json",
    "dataschema": "N", "data": "x" * 200}}  # fmt: skip


def test_a_mounted_channel_gets_its_answers_and_deliveries() -> None:
    h = hub()
    subscriber, woken = channel(h, "sub")
    send(h, subscriber, REGISTER)
    send(h, subscriber, SUBSCRIBE)
    assert woken and [json.loads(m)["result"] for m in subscriber.take_messages()] == [None, None]
    publisher, _ = channel(h)
    send(h, publisher, PUBLISH)
    (delivery,) = subscriber.take_messages()
    assert json.loads(delivery)["method"] == "agent.event"
    snapshot = h.snapshot(1.0, 1000.0)
    assert sorted(w.name or "" for w in snapshot.workers) == ["", "sub"]
    (sub,) = [w for w in snapshot.workers if w.name == "sub"]
    assert sub.subscriptions == 1 and sub.agent_types == ["a"] and sub.messages_in == 2 and sub.messages_out == 3
    assert h.mounted_count == 2
    h.mounted_gone(subscriber, 1.0)
    assert h.engine.subscriptions() == [] and h.mounted_count == 1


def test_a_channel_that_does_not_take_its_messages_is_cut_off_with_4008() -> None:
    h = hub(max_outbound_bytes=1000)
    subscriber, _ = channel(h, limit=1000)
    send(h, subscriber, REGISTER)
    send(h, subscriber, SUBSCRIBE)
    publisher, _ = channel(h)
    for _ in range(10):  # ~300 bytes each, never taken
        send(h, publisher, PUBLISH)
    assert subscriber.close_code is CloseCode.SLOW_CONSUMER
    assert subscriber.client is None and h.engine.subscriptions() == []  # released at once
    assert h.engine.agent_types() == {}
    assert subscriber.queued_bytes <= 1000
    send(h, subscriber, PUBLISH)  # what still arrives is dropped
    h.mounted_gone(subscriber, 0.0)  # idempotent after the cut
    assert h.mounted_count == 1


def test_a_duplicate_name_is_refused_and_an_rpc_body_is_answered() -> None:
    h = hub()
    channel(h, "w")
    taken = MountedPeer(ClientKind.CHANNEL, 0.0, max_outbound_bytes=1 << 20)
    refusal = h.mount_channel(taken, request("w"), 0.0)
    assert refusal is not None and refusal.status == 409
    answered: list[int] = []
    rpc = MountedPeer(ClientKind.ONE_SHOT, 0.0, max_outbound_bytes=1 << 20, wake=lambda: answered.append(1))
    h.mount_rpc(rpc, b'{"jsonrpc":"2.0","id":7,"method":"runtime.get_subscriptions"}', 0.0)
    assert answered and rpc.answer is not None and rpc.answer.close_code is CloseCode.NORMAL
    assert json.loads(rpc.answer.body or b"") == {"jsonrpc": "2.0", "id": 7, "result": []}
    assert rpc.client is None and h.mounted_count == 1
