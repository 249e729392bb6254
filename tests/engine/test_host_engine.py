"""HostEngine: registration, subscriptions, call routing, cancellation, deadlines, publish,
JSON-RPC error handling, limits, one-shot clients, shutdown and the client state table."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sansio_runtime import (
    CLIENT_TRANSITIONS,
    AgentRef,
    CallFailed,
    CallSucceeded,
    ClientId,
    ClientKind,
    ClientNameInUse,
    ClientState,
    Close,
    CloseCode,
    ErrorCode,
    HostEngine,
    IncomingCall,
    IncomingCallCancelled,
    IncomingEvent,
    LocalProtocolError,
    Payload,
    RequestFailed,
    RequestSucceeded,
    Send,
    TypePrefixSubscriptionSpec,
    TypeSubscriptionSpec,
)
from sansio_runtime._clients import Client as _Client

from ._harness import Network, call_params, closes, feed, gone, loads, note, only_send, req, sends, shutdown, tick

JSON = "application/json"


def register(h: HostEngine, c: ClientId, agent_type: str, id: int = 1) -> Any:
    return only_send(feed(h, c, req(id, "runtime.register_agent", {"type": agent_type}), 0), c)


def subscribe(
    h: HostEngine, c: ClientId, sid: str, topic: str, agent: str, *, prefix: bool = False, id: int = 1
) -> Any:
    spec: dict[str, Any] = {"kind": "type_prefix" if prefix else "type", "id": sid, "agent_type": agent}
    spec["topic_type_prefix" if prefix else "topic_type"] = topic
    return only_send(feed(h, c, req(id, "runtime.add_subscription", {"subscription": spec}), 0), c)


def error_code(msg: Any) -> int:
    assert "error" in msg, msg
    return int(msg["error"]["code"])


@pytest.fixture
def host() -> HostEngine:
    return HostEngine()


# ====================================================================================== registration


def test_register_agent(host: HostEngine) -> None:
    a = host.connect()
    assert register(host, a, "echo", id=5) == {"jsonrpc": "2.0", "id": 5, "result": None}
    assert host.agent_types() == {"echo": a}


def test_register_is_unique_across_clients(host: HostEngine) -> None:
    a, b = host.connect(), host.connect()
    register(host, a, "echo")
    reply = register(host, b, "echo", id=2)
    assert reply["id"] == 2 and error_code(reply) == ErrorCode.AGENT_TYPE_ALREADY_REGISTERED == -32002
    assert "another worker" in reply["error"]["message"]
    again = register(host, a, "echo", id=3)
    assert error_code(again) == -32002 and "this connection" in again["error"]["message"]
    assert host.agent_types() == {"echo": a}


def test_register_empty_type_is_invalid_params(host: HostEngine) -> None:
    a = host.connect()
    assert error_code(register(host, a, "")) == ErrorCode.INVALID_PARAMS
    assert host.agent_types() == {}


def test_registration_freed_on_disconnect(host: HostEngine) -> None:
    a, b = host.connect(), host.connect()
    register(host, a, "echo")
    register(host, a, "other")
    assert gone(host, a, 0) == []
    assert host.agent_types() == {}
    assert register(host, b, "echo")["result"] is None
    assert host.agent_types() == {"echo": b}


def test_unregister_by_owner_only(host: HostEngine) -> None:
    a, b = host.connect(), host.connect()
    register(host, a, "echo")
    reply = only_send(feed(host, b, req(9, "runtime.unregister_agent", {"type": "echo"}), 0), b)
    assert reply["id"] == 9 and error_code(reply) == ErrorCode.FORBIDDEN == -32011
    assert host.agent_types() == {"echo": a}
    ok = only_send(feed(host, a, req(10, "runtime.unregister_agent", {"type": "echo"}), 0), a)
    assert ok == {"jsonrpc": "2.0", "id": 10, "result": None}
    assert host.agent_types() == {}
    unknown = only_send(feed(host, a, req(11, "runtime.unregister_agent", {"type": "echo"}), 0), a)
    assert error_code(unknown) == ErrorCode.AGENT_TYPE_NOT_FOUND
    # and after unregistering, another client may take it
    assert register(host, b, "echo")["result"] is None


def test_register_as_notification_sends_nothing(host: HostEngine) -> None:
    a = host.connect()
    assert feed(host, a, note("runtime.register_agent", {"type": "echo"}), 0) == []
    assert host.agent_types() == {"echo": a}


# ====================================================================================== subscriptions


def test_add_get_remove_subscription(host: HostEngine) -> None:
    a = host.connect()
    assert subscribe(host, a, "s1", "news", "echo", id=3) == {"jsonrpc": "2.0", "id": 3, "result": None}
    subscribe(host, a, "s2", "ne", "echo", prefix=True)
    assert host.subscriptions() == [
        TypeSubscriptionSpec("s1", "news", "echo"),
        TypePrefixSubscriptionSpec("s2", "ne", "echo"),
    ]
    assert host.subscription_owner("s1") == a
    got = only_send(feed(host, a, req(4, "runtime.get_subscriptions"), 0), a)
    assert got == {
        "jsonrpc": "2.0",
        "id": 4,
        "result": [
            {"kind": "type", "id": "s1", "topic_type": "news", "agent_type": "echo"},
            {"kind": "type_prefix", "id": "s2", "topic_type_prefix": "ne", "agent_type": "echo"},
        ],
    }
    removed = only_send(feed(host, a, req(5, "runtime.remove_subscription", {"id": "s1"}), 0), a)
    assert removed == {"jsonrpc": "2.0", "id": 5, "result": None}
    assert host.subscriptions() == [TypePrefixSubscriptionSpec("s2", "ne", "echo")]
    assert host.subscription_owner("s1") is None


def test_duplicate_subscription_rejected(host: HostEngine) -> None:
    a, b = host.connect(), host.connect()
    subscribe(host, a, "s1", "news", "echo")
    assert error_code(subscribe(host, b, "s1", "other", "x")) == ErrorCode.SUBSCRIPTION_ALREADY_EXISTS == -32009
    assert error_code(subscribe(host, b, "s9", "news", "echo")) == -32009  # same content, new id
    assert subscribe(host, b, "s9", "news", "echo", prefix=True)["result"] is None  # prefix kind is different
    assert len(host.subscriptions()) == 2


def test_remove_unknown_and_foreign_subscription(host: HostEngine) -> None:
    a, b = host.connect(), host.connect()
    subscribe(host, a, "s1", "news", "echo")
    r = only_send(feed(host, b, req(1, "runtime.remove_subscription", {"id": "nope"}), 0), b)
    assert error_code(r) == ErrorCode.SUBSCRIPTION_NOT_FOUND == -32010
    r = only_send(feed(host, b, req(2, "runtime.remove_subscription", {"id": "s1"}), 0), b)
    assert error_code(r) == ErrorCode.FORBIDDEN == -32011
    assert host.subscription_owner("s1") == a


def test_subscription_with_empty_id_is_invalid(host: HostEngine) -> None:
    a = host.connect()
    assert error_code(subscribe(host, a, "", "news", "echo")) == ErrorCode.INVALID_PARAMS
    assert error_code(subscribe(host, a, "s", "news", "")) == ErrorCode.INVALID_PARAMS
    assert host.subscriptions() == []


def test_subscriptions_removed_on_disconnect(host: HostEngine) -> None:
    a, b = host.connect(), host.connect()
    subscribe(host, a, "s1", "news", "echo")
    subscribe(host, b, "s2", "news", "other")
    gone(host, a, 0)
    assert host.subscriptions() == [TypeSubscriptionSpec("s2", "news", "other")]
    assert subscribe(host, b, "s1", "news", "echo")["result"] is None  # the id is free again


# ====================================================================================== calls


def setup_echo(host: HostEngine) -> tuple[ClientId, ClientId]:
    caller, target = host.connect(), host.connect()
    register(host, target, "echo")
    return caller, target


def test_call_forwarded_with_host_assigned_id(host: HostEngine) -> None:
    caller, target = setup_echo(host)
    params = (
        b'{"target":{"type":"echo","key":"k"},"data_type":"str",'
        b'"data_content_type":"application/json","data":{ "x" : 1 },"zz":1}'
    )
    frame = b'{"jsonrpc":"2.0","id":77,"method":"agent.call","params":' + params + b"}"
    out = feed(host, caller, frame, 0)
    [send] = sends(out)
    assert send.client == target
    fwd = json.loads(send.data)
    assert fwd["method"] == "agent.call" and isinstance(fwd["id"], int) and fwd["id"] != 77
    assert send.data == b'{"jsonrpc":"2.0","id":%d,"method":"agent.call","params":' % fwd["id"] + params + b"}"
    [pending] = host.pending_calls()
    assert (pending.host_id, pending.caller, pending.caller_request_id, pending.target) == (
        fwd["id"],
        caller,
        77,
        target,
    )
    # the answer goes back under the caller's id, with the result bytes unchanged
    back = feed(host, target, b'{"jsonrpc":"2.0","id":%d,"result":{"data" :  [1,2]}}' % fwd["id"], 0)
    assert back == [Send(caller, b'{"jsonrpc":"2.0","id":77,"result":{"data" :  [1,2]}}')]
    assert host.pending_calls() == []
    assert host.stats.calls_forwarded == 1


def test_two_callers_with_the_same_id_get_their_own_replies(host: HostEngine) -> None:
    net = Network(3)
    h, (wa, wb, wt) = net.host, net.workers
    wt.register_agent("echo")
    net.pump()
    ra = wa.call(AgentRef("echo", "a"), Payload("str", JSON, b'"from a"'), now=0)
    rb = wb.call(AgentRef("echo", "b"), Payload("str", JSON, b'"from b"'), now=0)
    assert ra == rb == 1  # both number their requests from 1
    got = net.pump()
    calls = [e for e in got[2] if isinstance(e, IncomingCall)]
    assert len(calls) == 2 and calls[0].call_id != calls[1].call_id
    # answer in the opposite order, echoing the key back
    for c in reversed(calls):
        wt.respond(c.call_id, Payload("str", JSON, json.dumps(c.target.key).encode()), epoch=c.epoch)
    got = net.pump()
    assert got[0] == [CallSucceeded(1, Payload("str", JSON, b'"a"'), {})]
    assert got[1] == [CallSucceeded(1, Payload("str", JSON, b'"b"'), {})]
    assert h.pending_calls() == []


def test_reusing_an_in_flight_id_is_rejected(host: HostEngine) -> None:
    caller, target = setup_echo(host)
    out = feed(host, caller, req(1, "agent.call", call_params()), 0)
    host_id = loads(sends(out)[0].data)["id"]
    dup = only_send(feed(host, caller, req(1, "agent.call", call_params()), 0), caller)
    assert dup["id"] == 1 and error_code(dup) == ErrorCode.INVALID_REQUEST == -32600
    assert len(host.pending_calls()) == 1
    # the first call is still intact and can complete; then the id is free again
    assert only_send(feed(host, target, b'{"jsonrpc":"2.0","id":%d,"result":1}' % host_id, 0), caller) == {
        "jsonrpc": "2.0",
        "id": 1,
        "result": 1,
    }
    again = feed(host, caller, req(1, "agent.call", call_params()), 0)
    assert [s.client for s in sends(again)] == [target]


def test_string_and_int_ids_are_distinct(host: HostEngine) -> None:
    caller, target = setup_echo(host)
    feed(host, caller, req(1, "agent.call", call_params()), 0)
    out = feed(host, caller, req("1", "agent.call", call_params()), 0)
    assert [s.client for s in sends(out)] == [target]
    assert sorted(map(repr, (p.caller_request_id for p in host.pending_calls()))) == ["'1'", "1"]


def test_unknown_type_fails_at_once(host: HostEngine) -> None:
    caller, _target = setup_echo(host)
    out = feed(host, caller, req(4, "agent.call", call_params("nope")), 0)
    reply = only_send(out, caller)
    assert reply["id"] == 4 and error_code(reply) == ErrorCode.AGENT_TYPE_NOT_FOUND == -32001
    assert host.pending_calls() == []


def test_too_many_pending_calls() -> None:
    host = HostEngine(max_pending_calls=2)
    caller, target = setup_echo(host)
    feed(host, caller, req(1, "agent.call", call_params()), 0)
    feed(host, caller, req(2, "agent.call", call_params()), 0)
    reply = only_send(feed(host, caller, req(3, "agent.call", call_params()), 0), caller)
    assert reply["id"] == 3 and error_code(reply) == ErrorCode.TOO_MANY_PENDING_CALLS == -32012
    # the limit is per caller: another client may still call
    other = host.connect()
    assert [s.client for s in sends(feed(host, other, req(1, "agent.call", call_params()), 0))] == [target]
    # once one finishes, the caller may call again
    first = next(p for p in host.pending_calls() if p.caller == caller)
    feed(host, target, b'{"jsonrpc":"2.0","id":%d,"result":null}' % first.host_id, 0)
    assert [s.client for s in sends(feed(host, caller, req(3, "agent.call", call_params()), 0))] == [target]


def test_invalid_call_params(host: HostEngine) -> None:
    caller, _ = setup_echo(host)
    both = call_params(data_base64="AA==")
    neither = call_params()
    del neither["data"]
    for i, params in enumerate([both, neither, call_params(timeout_ms=0), call_params(timeout_ms=-5), {"target": 1}]):
        reply = only_send(feed(host, caller, req(i, "agent.call", params), 0), caller)
        assert reply["id"] == i and error_code(reply) == ErrorCode.INVALID_PARAMS, params
    assert host.pending_calls() == []


def test_call_as_notification_is_invalid_request(host: HostEngine) -> None:
    caller, _ = setup_echo(host)
    reply = only_send(feed(host, caller, note("agent.call", call_params()), 0), caller)
    assert reply["id"] is None and error_code(reply) == ErrorCode.INVALID_REQUEST
    assert host.pending_calls() == []


def test_base64_call_forwarded(host: HostEngine) -> None:
    net = Network(2)
    net.workers[1].register_agent("bin")
    net.pump()
    rid = net.workers[0].call(
        AgentRef("bin", "k"), Payload("bytes", "application/octet-stream", b"\x00\xff\x10"), now=0
    )
    [call] = net.pump()[1]
    assert isinstance(call, IncomingCall) and call.payload == Payload(
        "bytes", "application/octet-stream", b"\x00\xff\x10"
    )
    net.workers[1].respond(call.call_id, Payload("bytes", "application/octet-stream", b"\xfe\x00"), epoch=call.epoch)
    assert net.pump()[0] == [CallSucceeded(rid, Payload("bytes", "application/octet-stream", b"\xfe\x00"), {})]


def test_target_disconnect_fails_pending_calls_immediately(host: HostEngine) -> None:
    caller, target = setup_echo(host)
    other = host.connect()
    feed(host, caller, req(1, "agent.call", call_params()), 0)
    feed(host, caller, req(2, "agent.call", call_params(timeout_ms=1000)), 0)
    feed(host, other, req("x", "agent.call", call_params()), 0)
    out = gone(host, target, 0)
    replies = {(s.client, loads(s.data)["id"]): error_code(loads(s.data)) for s in sends(out)}
    assert replies == {
        (caller, 1): ErrorCode.TARGET_DISCONNECTED,
        (caller, 2): ErrorCode.TARGET_DISCONNECTED,
        (other, "x"): ErrorCode.TARGET_DISCONNECTED,
    }
    assert closes(out) == []
    assert host.pending_calls() == []
    assert host.next_deadline() is None
    assert host.agent_types() == {}
    assert host.client_state(target) is None


def test_caller_disconnect_cancels_at_target(host: HostEngine) -> None:
    caller, target = setup_echo(host)
    fwd = loads(sends(feed(host, caller, req(1, "agent.call", call_params(timeout_ms=500)), 0))[0].data)
    out = gone(host, caller, 0)
    assert out == [Send(target, b'{"jsonrpc":"2.0","method":"$/cancelRequest","params":{"id":%d}}' % fwd["id"])]
    assert host.pending_calls() == []
    assert host.next_deadline() is None
    # the target's late answer is dropped
    assert feed(host, target, b'{"jsonrpc":"2.0","id":%d,"result":1}' % fwd["id"], 0) == []
    assert host.stats.responses_dropped == 1


def test_disconnect_is_idempotent_and_unknown_client_raises(host: HostEngine) -> None:
    a = host.connect()
    assert gone(host, a, 0) == []
    assert gone(host, a, 0) == []
    assert list(host.clients()) == []
    with pytest.raises(LocalProtocolError):
        feed(host, a, req(1, "runtime.get_subscriptions"), 0)


def test_response_from_wrong_client_or_unknown_id_is_dropped(host: HostEngine) -> None:
    caller, target = setup_echo(host)
    intruder = host.connect()
    fwd = loads(sends(feed(host, caller, req(1, "agent.call", call_params()), 0))[0].data)
    hid = fwd["id"]
    assert feed(host, intruder, b'{"jsonrpc":"2.0","id":%d,"result":"forged"}' % hid, 0) == []
    assert feed(host, caller, b'{"jsonrpc":"2.0","id":%d,"result":"forged"}' % hid, 0) == []
    assert feed(host, target, b'{"jsonrpc":"2.0","id":999999,"result":1}', 0) == []
    assert feed(host, target, b'{"jsonrpc":"2.0","id":"%d","result":1}' % hid, 0) == []  # string, not the int id
    assert feed(host, target, b'{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"x"}}', 0) == []
    assert host.stats.responses_dropped == 5
    assert len(host.pending_calls()) == 1
    # the real target still answers it
    assert feed(host, target, b'{"jsonrpc":"2.0","id":%d,"result":"real"}' % hid, 0) == [
        Send(caller, b'{"jsonrpc":"2.0","id":1,"result":"real"}')
    ]
    # a second answer to the same call is dropped too
    assert feed(host, target, b'{"jsonrpc":"2.0","id":%d,"result":"again"}' % hid, 0) == []
    assert host.stats.responses_dropped == 6


def test_error_answer_forwarded_with_data(host: HostEngine) -> None:
    caller, target = setup_echo(host)
    hid = loads(sends(feed(host, caller, req("q", "agent.call", call_params()), 0))[0].data)["id"]
    err = b'{"code":-32004,"message":"boom","data":{"exception_type":"ValueError","message":"boom"}}'
    out = feed(host, target, b'{"jsonrpc":"2.0","id":%d,"error":%s}' % (hid, err), 0)
    assert out == [Send(caller, b'{"jsonrpc":"2.0","id":"q","error":' + err + b"}")]


def test_malformed_error_answer_becomes_internal_error(host: HostEngine) -> None:
    caller, target = setup_echo(host)
    hid = loads(sends(feed(host, caller, req(1, "agent.call", call_params()), 0))[0].data)["id"]
    reply = only_send(feed(host, target, b'{"jsonrpc":"2.0","id":%d,"error":"oops"}' % hid, 0), caller)
    assert reply["id"] == 1 and error_code(reply) == ErrorCode.INTERNAL_ERROR


def test_self_call_and_disconnect(host: HostEngine) -> None:
    a = host.connect()
    register(host, a, "echo")
    out = feed(host, a, req(1, "agent.call", call_params()), 0)
    assert [s.client for s in sends(out)] == [a]
    assert gone(host, a, 0) == []  # nothing to tell anyone
    assert host.pending_calls() == []


# ====================================================================================== cancel


def test_cancel_request(host: HostEngine) -> None:
    caller, target = setup_echo(host)
    hid = loads(sends(feed(host, caller, req(3, "agent.call", call_params(timeout_ms=100)), 0))[0].data)["id"]
    out = feed(host, caller, note("$/cancelRequest", {"id": 3}), 0)
    assert out == [
        Send(target, b'{"jsonrpc":"2.0","method":"$/cancelRequest","params":{"id":%d}}' % hid),
        Send(caller, b'{"jsonrpc":"2.0","id":3,"error":{"code":-32005,"message":"cancelled by the caller"}}'),
    ]
    assert host.pending_calls() == []
    assert host.next_deadline() is None
    assert feed(host, target, b'{"jsonrpc":"2.0","id":%d,"result":1}' % hid, 0) == []
    assert host.stats.responses_dropped == 1


def test_cancel_as_request_and_unknown_id(host: HostEngine) -> None:
    caller, _target = setup_echo(host)
    out = feed(host, caller, req(8, "$/cancelRequest", {"id": 42}), 0)
    assert out == [Send(caller, b'{"jsonrpc":"2.0","id":8,"result":null}')]
    assert feed(host, caller, note("$/cancelRequest", {"id": 42}), 0) == []


def test_cancel_only_cancels_own_calls(host: HostEngine) -> None:
    caller, _target = setup_echo(host)
    other = host.connect()
    feed(host, caller, req(1, "agent.call", call_params()), 0)
    assert feed(host, other, note("$/cancelRequest", {"id": 1}), 0) == []
    assert len(host.pending_calls()) == 1


def test_cancel_through_workers() -> None:
    net = Network(2)
    w0, w1 = net.workers
    w1.register_agent("echo")
    net.pump()
    rid = w0.call(AgentRef("echo", "k"), Payload("str", JSON, b"1"), now=0)
    [call] = net.pump()[1]
    assert isinstance(call, IncomingCall)
    assert w0.cancel_call(rid) is True
    got = net.pump()
    assert got == [[], [IncomingCallCancelled(call.call_id, call.epoch)]]  # caller hears nothing more
    w1.respond(call.call_id, Payload("str", JSON, b"2"), epoch=call.epoch)
    assert w1.data_to_send() == []


# ====================================================================================== deadlines


def test_deadline_exceeded(host: HostEngine) -> None:
    caller, target = setup_echo(host)
    assert host.next_deadline() is None
    hid = loads(sends(feed(host, caller, req(1, "agent.call", call_params(timeout_ms=1500)), 10.0))[0].data)["id"]
    assert host.next_deadline() == 11.5
    assert tick(host, 11.49) == []
    out = tick(host, 11.5)
    assert out == [
        Send(target, b'{"jsonrpc":"2.0","method":"$/cancelRequest","params":{"id":%d}}' % hid),
        Send(caller, b'{"jsonrpc":"2.0","id":1,"error":{"code":-32006,"message":"the call\'s timeout_ms ran out"}}'),
    ]
    assert host.next_deadline() is None
    assert host.pending_calls() == []
    assert tick(host, 100) == []
    # the id is free again
    assert [s.client for s in sends(feed(host, caller, req(1, "agent.call", call_params()), 12))] == [target]


def test_answer_before_deadline_clears_it(host: HostEngine) -> None:
    caller, target = setup_echo(host)
    hid = loads(sends(feed(host, caller, req(1, "agent.call", call_params(timeout_ms=10)), 0))[0].data)["id"]
    feed(host, caller, req(2, "agent.call", call_params(timeout_ms=20)), 0)
    assert host.next_deadline() == 0.01
    feed(host, target, b'{"jsonrpc":"2.0","id":%d,"result":1}' % hid, 0)
    assert host.next_deadline() == 0.02
    out = tick(host, 1.0)
    assert [loads(s.data).get("id") for s in sends(out) if s.client == caller] == [2]


def test_deadline_through_workers() -> None:
    net = Network(2)
    w0, w1 = net.workers
    w1.register_agent("echo")
    net.pump()
    rid = w0.call(AgentRef("echo", "k"), Payload("str", JSON, b"1"), now=0, timeout=0.25)
    [call] = net.pump()[1]
    assert isinstance(call, IncomingCall) and call.timeout_ms == 250
    assert net.host.next_deadline() == 0.25 and w0.next_deadline() == 0.25
    got = net.timer(0.25)
    assert got[0] == [CallFailed(rid, got[0][0].error)] and got[0][0].error.code == ErrorCode.DEADLINE_EXCEEDED  # type: ignore[union-attr]
    assert got[1] == [IncomingCallCancelled(call.call_id, call.epoch)]
    assert net.host.pending_calls() == [] and w0.pending_requests == 0 and w1.incoming_calls == frozenset()


# ====================================================================================== publish


def publish_frame(topic: str, source: str = "src", event_id: str = "e1", extra: bytes = b"") -> tuple[bytes, bytes]:
    event = (
        b'{"specversion":"1.0","id":"%s","source":"%s","type":"%s","datacontenttype":"application/json",'
        b'"data": { "n" : [1, 2] }%s}' % (event_id.encode(), source.encode(), topic.encode(), extra)
    )
    return b'{"jsonrpc":"2.0","method":"agent.publish","params":' + event + b"}", event


def test_publish_delivers_event_bytes_unchanged(host: HostEngine) -> None:
    pub, sub = host.connect(), host.connect()
    register(host, sub, "reader")
    subscribe(host, sub, "s1", "news", "reader")
    frame, event = publish_frame("news", extra=b',"myext":"keep me","traceparent":"00-abc-def-01"')
    out = feed(host, pub, frame, 0)
    assert out == [
        Send(sub, b'{"jsonrpc":"2.0","method":"agent.event","params":{"recipients":["reader"],"event":' + event + b"}}")
    ]
    assert host.stats.events_published == 1 and host.stats.event_deliveries == 1


def test_publish_exact_and_prefix_match_dedupe(host: HostEngine) -> None:
    pub, sub = host.connect(), host.connect()
    register(host, sub, "reader")
    subscribe(host, sub, "s1", "news", "reader")
    subscribe(host, sub, "s2", "ne", "reader", prefix=True)
    subscribe(host, sub, "s3", "", "reader", prefix=True)
    out = feed(host, pub, publish_frame("news")[0], 0)
    [send] = sends(out)  # three subscriptions match, one event goes out
    assert send.client == sub and loads(send.data)["params"]["recipients"] == ["reader"]
    # Each kind of match on its own: "nexus" only by the two prefixes, "weather" only by the empty one.
    for topic in ("nexus", "weather"):
        [send] = sends(feed(host, pub, publish_frame(topic)[0], 0))
        assert send.client == sub and loads(send.data)["params"]["recipients"] == ["reader"], topic
    host.receive(sub, req(9, "runtime.remove_subscription", {"id": "s3"}), 0)
    host.data_to_send()
    assert sends(feed(host, pub, publish_frame("weather")[0], 0)) == []  # the empty prefix was what matched
    [send] = sends(feed(host, pub, publish_frame("nexus")[0], 0))  # the "ne" prefix still does
    assert send.client == sub


def test_publish_groups_recipients_per_worker_and_includes_publisher(host: HostEngine) -> None:
    w1, w2, w3 = host.connect(), host.connect(), host.connect()
    for t in ["b_agent", "a_agent"]:
        register(host, w1, t)
        subscribe(host, w1, f"s-{t}", "news", t)
    register(host, w2, "c_agent")
    subscribe(host, w2, "s-c", "n", "c_agent", prefix=True)
    register(host, w3, "d_agent")
    subscribe(host, w3, "s-d", "sports", "d_agent")  # does not match
    subscribe(host, w3, "s-ghost", "news", "ghost")  # subscribed type nobody hosts
    frame, event = publish_frame("news")
    out = feed(host, w2, frame, 0)  # the publisher hosts a subscribed type too
    got = {s.client: loads(s.data)["params"]["recipients"] for s in sends(out)}
    assert got == {w1: ["a_agent", "b_agent"], w2: ["c_agent"]}
    assert all(s.data.endswith(b'"event":' + event + b"}}") for s in sends(out))
    assert host.subscribers("news") == {w1: ["a_agent", "b_agent"], w2: ["c_agent"]}
    assert host.stats.event_deliveries == 2


def test_publish_routes_follow_registration_changes(host: HostEngine) -> None:
    pub, sub = host.connect(), host.connect()
    subscribe(host, sub, "s1", "news", "reader")
    assert sends(feed(host, pub, publish_frame("news")[0], 0)) == []
    register(host, sub, "reader")  # the cached route must be refreshed
    assert [s.client for s in sends(feed(host, pub, publish_frame("news")[0], 0))] == [sub]
    only_send(feed(host, sub, req(2, "runtime.remove_subscription", {"id": "s1"}), 0))
    assert sends(feed(host, pub, publish_frame("news")[0], 0)) == []


def test_publish_as_request_is_answered(host: HostEngine) -> None:
    pub = host.connect()
    event = b'{"specversion":"1.0","id":"e","source":"s","type":"t","data":1}'
    out = feed(host, pub, b'{"jsonrpc":"2.0","id":"p1","method":"agent.publish","params":' + event + b"}", 0)
    assert out == [Send(pub, b'{"jsonrpc":"2.0","id":"p1","result":null}')]


def test_publish_with_bad_specversion_or_shape(host: HostEngine) -> None:
    pub = host.connect()
    bad = req(1, "agent.publish", {"specversion": "0.3", "id": "e", "source": "s", "type": "t"})
    assert error_code(only_send(feed(host, pub, bad, 0))) == ErrorCode.INVALID_PARAMS
    missing = req(2, "agent.publish", {"specversion": "1.0", "id": "e", "source": "s"})
    assert error_code(only_send(feed(host, pub, missing, 0))) == ErrorCode.INVALID_PARAMS
    assert host.stats.events_published == 0


def test_publish_through_workers_skips_sender_and_keeps_payload() -> None:
    net = Network(2)
    w0, w1 = net.workers
    w0.register_agent("chat")
    w0.add_subscription(TypeSubscriptionSpec("s0", "room", "chat"))
    w1.register_agent("log")
    w1.add_subscription(TypePrefixSubscriptionSpec("s1", "ro", "log"))
    net.pump()
    w0.publish(
        topic_type="room",
        topic_source="r1",
        payload=Payload("Msg", JSON, b'{"t": "hi"}'),
        event_id="ev",
        sender=AgentRef("chat", "r1"),
    )
    got = net.pump()
    assert got[0] == []  # the only recipient on w0 is the sender itself
    [ev] = got[1]
    assert isinstance(ev, IncomingEvent)
    assert ev.recipients == (AgentRef("log", "r1"),)
    assert ev.payload == Payload("Msg", JSON, b'{"t": "hi"}')


# ====================================================================================== JSON-RPC errors


@pytest.mark.parametrize("frame", [b"{", b"not json", b"", b'{"jsonrpc":"2.0",}', b"\xff\xfe"])
def test_parse_error(host: HostEngine, frame: bytes) -> None:
    a = host.connect()
    reply = only_send(feed(host, a, frame, 0), a)
    assert reply["id"] is None and error_code(reply) == ErrorCode.PARSE_ERROR == -32700


@pytest.mark.parametrize("frame", [b"42", b'"str"', b"null", b"true", b'{"jsonrpc":"2.0","id":1.5,"method":"x"}'])
def test_non_object_json_is_invalid_request(host: HostEngine, frame: bytes) -> None:
    a = host.connect()
    reply = only_send(feed(host, a, frame, 0), a)
    assert reply["id"] is None and error_code(reply) == ErrorCode.INVALID_REQUEST == -32600


def test_invalid_utf8_inside_params_is_refused_and_never_forwarded(host: HostEngine) -> None:
    """Bytes msgspec would skip unread (inside params) must not reach another client's text frame."""
    caller, target = setup_echo(host)
    pub_sub = host.connect()
    register(host, pub_sub, "reader")
    subscribe(host, pub_sub, "s", "t", "reader")
    bad_call = (
        b'{"jsonrpc":"2.0","id":1,"method":"agent.call","params":{"target":{"type":"echo","key":"k"},'
        b'"data_type":"s","data_content_type":"application/json","data":"\xff"}}'
    )
    bad_event = (
        b'{"jsonrpc":"2.0","method":"agent.publish","params":{"specversion":"1.0","id":"e","source":"s",'
        b'"type":"t","data":"\xc3("}}'
    )
    bad_name = b'{"jsonrpc":"2.0","id":2,"method":"runtime.register_agent","params":{"type":"\xe2\x82"}}'
    bad_batch = b'[{"jsonrpc":"2.0","id":3,"method":"runtime.register_agent","params":{"type":"\xff"}}]'
    for frame in [bad_call, bad_event, bad_name, bad_batch]:
        reply = only_send(feed(host, caller, frame, 0), caller)
        assert reply["id"] is None and error_code(reply) == ErrorCode.PARSE_ERROR
    assert host.pending_calls() == [] and host.stats.events_published == 0
    assert host.agent_types() == {"echo": target, "reader": pub_sub}


def test_valid_non_ascii_frames_are_accepted(host: HostEngine) -> None:
    caller, target = setup_echo(host)
    frame = req(1, "agent.call", call_params(data="héllo ✓"))
    assert frame.isascii()  # json.dumps escapes; make a raw UTF-8 one too
    raw = frame.replace(b"h\\u00e9llo \\u2713", "héllo ✓".encode())
    assert not raw.isascii()
    [send] = sends(feed(host, caller, raw, 0))
    assert send.client == target and "héllo ✓".encode() in send.data
    as_str = raw.decode().replace('"id": 1', '"id": 2')
    [send] = sends(feed(host, caller, as_str, 0))
    assert send.client == target


def test_str_frame_with_lone_surrogate_is_parse_error(host: HostEngine) -> None:
    a = host.connect()
    reply = only_send(feed(host, a, '{"jsonrpc":"2.0","id":1,"method":"\ud800"}', 0), a)
    assert error_code(reply) == ErrorCode.PARSE_ERROR


@pytest.mark.parametrize("version", ['"1.0"', "2.0", None])
def test_wrong_jsonrpc_version(host: HostEngine, version: str | None) -> None:
    a = host.connect()
    member = "" if version is None else f'"jsonrpc":{version},'
    reply = only_send(feed(host, a, ("{" + member + '"id":7,"method":"runtime.get_subscriptions"}').encode(), 0), a)
    assert error_code(reply) == ErrorCode.INVALID_REQUEST
    assert "jsonrpc" in reply["error"]["message"]
    # a string version is read with the rest of the message, so the id is echoed; a number fails the envelope
    assert reply["id"] == (None if version == "2.0" else 7)


def test_unknown_method(host: HostEngine) -> None:
    a = host.connect()
    reply = only_send(feed(host, a, req("m", "runtime.nope", {}), 0), a)
    assert reply["id"] == "m" and error_code(reply) == ErrorCode.METHOD_NOT_FOUND == -32601
    # host-to-worker methods are not methods of the host
    reply = only_send(feed(host, a, req(2, "agent.event", {}), 0), a)
    assert error_code(reply) == ErrorCode.METHOD_NOT_FOUND


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("runtime.register_agent", {"typo": "x"}),
        ("runtime.register_agent", ["x"]),
        ("runtime.register_agent", {"type": 5}),
        ("runtime.register_agent", None),  # missing
        ("runtime.add_subscription", {"subscription": {"kind": "nope", "id": "s"}}),
        ("runtime.remove_subscription", {}),
        ("$/cancelRequest", {"id": [1]}),
        ("agent.publish", "x"),
    ],
)
def test_bad_params(host: HostEngine, method: str, params: Any) -> None:
    a = host.connect()
    reply = only_send(feed(host, a, req(11, method, params), 0), a)
    assert reply["id"] == 11 and error_code(reply) == ErrorCode.INVALID_PARAMS == -32602
    assert host.agent_types() == {} and host.subscriptions() == []


def test_request_id_null(host: HostEngine) -> None:
    a = host.connect()
    reply = only_send(
        feed(host, a, b'{"jsonrpc":"2.0","id":null,"method":"runtime.register_agent","params":{"type":"x"}}', 0), a
    )
    assert reply["id"] is None and error_code(reply) == ErrorCode.INVALID_REQUEST
    assert host.agent_types() == {}


def test_request_carrying_result_is_invalid(host: HostEngine) -> None:
    a = host.connect()
    reply = only_send(feed(host, a, b'{"jsonrpc":"2.0","id":1,"method":"runtime.get_subscriptions","result":1}', 0), a)
    assert reply["id"] == 1 and error_code(reply) == ErrorCode.INVALID_REQUEST


def test_empty_batch(host: HostEngine) -> None:
    a = host.connect()
    out = feed(host, a, b"[]", 0)
    [send] = sends(out)
    reply = loads(send.data)
    assert isinstance(reply, dict)  # a single error object, not an array
    assert reply["id"] is None and error_code(reply) == ErrorCode.INVALID_REQUEST


def test_batch_with_mixed_items_is_answered_as_one_array(host: HostEngine) -> None:
    a = host.connect()
    batch = (
        b"["
        + b",".join(
            [
                req(1, "runtime.register_agent", {"type": "x"}),
                b"42",
                note("runtime.register_agent", {"type": "y"}),  # notification: no reply
                req(2, "runtime.nope"),
                req(3, "runtime.register_agent", {"type": "x"}),
                b'{"jsonrpc":"2.0","id":9,"result":1}',  # a stray response: dropped, no reply
            ]
        )
        + b"]"
    )
    out = feed(host, a, batch, 0)
    [send] = sends(out)
    replies = loads(send.data)
    assert isinstance(replies, list)
    assert [(r["id"], r.get("result", "-") if "result" in r else error_code(r)) for r in replies] == [
        (1, None),
        (None, ErrorCode.INVALID_REQUEST),
        (2, ErrorCode.METHOD_NOT_FOUND),
        (3, ErrorCode.AGENT_TYPE_ALREADY_REGISTERED),
    ]
    assert host.agent_types() == {"x": a, "y": a}
    assert host.stats.responses_dropped == 1


def test_batch_of_notifications_sends_nothing(host: HostEngine) -> None:
    a = host.connect()
    batch = (
        b"["
        + note("runtime.register_agent", {"type": "x"})
        + b","
        + note("runtime.register_agent", {"type": "y"})
        + b"]"
    )
    assert feed(host, a, batch, 0) == []
    assert set(host.agent_types()) == {"x", "y"}


def test_batch_calls_forwarded_and_answered_separately(host: HostEngine) -> None:
    """Each call of a batch goes on as a call of its own, and comes back as an answer of its own, under
    its own id, when its target answers it; one failing (here: at once, or by its handler) fails no other."""
    caller, target = setup_echo(host)
    batch = (
        b"["
        + req("a", "agent.call", call_params(key="k1", data="one"))
        + b","
        + req("b", "agent.call", call_params("nobody"))  # fails at once: no such agent type
        + b","
        + req(3, "agent.call", call_params(key="k2", data="two"))
        + b","
        + req(4, "agent.call", call_params(key="k3", data="three"))
        + b"]"
    )
    out = feed(host, caller, batch, 0)
    [at_once] = [s for s in sends(out) if s.client == caller]
    assert [(r["id"], error_code(r)) for r in loads(at_once.data)] == [("b", ErrorCode.AGENT_TYPE_NOT_FOUND)]
    forwarded = [loads(s.data) for s in sends(out) if s.client == target]
    assert [(f["method"], f["params"]["target"]["key"], f["params"]["data"]) for f in forwarded] == [
        ("agent.call", "k1", "one"),
        ("agent.call", "k2", "two"),
        ("agent.call", "k3", "three"),
    ]
    host_ids = [f["id"] for f in forwarded]
    assert len(set(host_ids)) == 3
    assert sorted(repr(p.caller_request_id) for p in host.pending_calls()) == ["'a'", "3", "4"]
    # The target answers in another order, one of them with its handler's error.
    k1, k2, k3 = host_ids
    handler_error = b'{"code":-32004,"message":"ValueError: no","data":{"exception_type":"ValueError"}}'
    answers = [
        (k2, b'{"jsonrpc":"2.0","id":%d,"result":{"data":"TWO"}}' % k2, 3, {"data": "TWO"}),
        (k1, b'{"jsonrpc":"2.0","id":%d,"error":%s}' % (k1, handler_error), "a", None),
        (k3, b'{"jsonrpc":"2.0","id":%d,"result":{"data":"THREE"}}' % k3, 4, {"data": "THREE"}),
    ]
    for _host_id, answer, caller_id, result in answers:
        reply = only_send(feed(host, target, answer, 0), caller)  # one answer, on its own (not a batch)
        assert reply["id"] == caller_id
        if result is None:
            assert reply["error"] == json.loads(handler_error)
        else:
            assert reply == {"jsonrpc": "2.0", "id": caller_id, "result": result}
    assert host.pending_calls() == []


@pytest.mark.parametrize(
    "frame",
    [
        b'{"jsonrpc":"2.0","result":1}',  # no id
        b'{"jsonrpc":"2.0","id":1}',  # neither result nor error
        b'{"jsonrpc":"2.0","id":1,"result":1,"error":{"code":1,"message":"m"}}',  # both
    ],
)
def test_malformed_responses(host: HostEngine, frame: bytes) -> None:
    a = host.connect()
    reply = only_send(feed(host, a, frame, 0), a)
    assert error_code(reply) == ErrorCode.INVALID_REQUEST


def test_stats_count_frames_and_errors(host: HostEngine) -> None:
    a = host.connect()
    feed(host, a, b"{", 0)
    feed(host, a, req(1, "runtime.register_agent", {"type": "x"}), 0)
    feed(host, a, req(2, "runtime.nope"), 0)
    assert host.stats.frames_received == 3
    assert host.stats.errors_sent == 2


# ====================================================================================== limits


def test_max_message_size_closes_and_releases() -> None:
    host = HostEngine(max_message_size=200)
    _caller, target = setup_echo(host)
    other = host.connect()
    subscribe(host, target, "s1", "news", "echo")
    feed(host, other, req(1, "agent.call", call_params()), 0)  # other waits on target
    fwd = loads(sends(feed(host, target, req(5, "agent.call", call_params()), 0))[0].data)  # target calls itself
    big = req(2, "runtime.register_agent", {"type": "x" * 200})
    assert len(big) > 200
    out = feed(host, target, big, 0)
    assert out[-1] == Close(target, CloseCode.MESSAGE_TOO_BIG, out[-1].reason)  # type: ignore[union-attr]
    reply = [loads(s.data) for s in sends(out)]
    assert [(r["id"], error_code(r)) for r in reply] == [(1, ErrorCode.TARGET_DISCONNECTED)]
    assert fwd["id"] not in {p.host_id for p in host.pending_calls()}
    assert host.client_state(target) is ClientState.CLOSING
    assert host.agent_types() == {} and host.subscriptions() == [] and host.pending_calls() == []
    # further input is ignored, and the backend's later disconnect has nothing left to do
    assert feed(host, target, req(3, "runtime.get_subscriptions"), 0) == []
    assert gone(host, target, 0) == []
    assert host.client_state(target) is None


def test_max_message_size_boundary() -> None:
    frame = req(1, "runtime.register_agent", {"type": "x"})
    host = HostEngine(max_message_size=len(frame))
    a = host.connect()
    assert only_send(feed(host, a, frame, 0), a)["result"] is None
    out = feed(host, a, frame + b" ", 0)
    assert closes(out) == [Close(a, CloseCode.MESSAGE_TOO_BIG, closes(out)[0].reason)]


def test_max_message_size_counts_utf8_bytes_of_str_frames() -> None:
    host = HostEngine(max_message_size=140)
    a = host.connect()
    frame = '{"jsonrpc":"2.0","id":1,"method":"runtime.register_agent","params":{"type":"' + "é" * 40 + '"}}'
    assert len(frame) <= 140 < len(frame.encode())
    out = feed(host, a, frame, 0)
    assert [type(o) for o in out] == [Close] and out[0].code == CloseCode.MESSAGE_TOO_BIG  # type: ignore[union-attr]
    b = host.connect()
    ok = '{"jsonrpc":"2.0","id":1,"method":"runtime.register_agent","params":{"type":"' + "é" * 10 + '"}}'
    assert only_send(feed(host, b, ok, 0), b)["result"] is None
    assert host.agent_types() == {"é" * 10: b}


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError):
        HostEngine(max_message_size=0)
    with pytest.raises(ValueError):
        HostEngine(max_pending_calls=0)


# ====================================================================================== one-shot clients


def test_one_shot_batch_of_two_calls_answered_as_one_array(host: HostEngine) -> None:
    _, target = setup_echo(host)
    client = host.connect(ClientKind.ONE_SHOT)
    batch = b"[" + req("a", "agent.call", call_params()) + b"," + req("b", "agent.call", call_params()) + b"]"
    out = feed(host, client, batch, 0)
    fwd = [loads(s.data)["id"] for s in sends(out)]
    assert [s.client for s in sends(out)] == [target, target] and closes(out) == []
    assert host.client_state(client) is ClientState.ANSWERING
    with pytest.raises(LocalProtocolError):
        feed(host, client, req(1, "runtime.get_subscriptions"), 0)
    assert feed(host, target, b'{"jsonrpc":"2.0","id":%d,"result":"B"}' % fwd[1], 0) == []
    out = feed(host, target, b'{"jsonrpc":"2.0","id":%d,"result":"A"}' % fwd[0], 0)
    assert out == [
        Send(client, b'[{"jsonrpc":"2.0","id":"b","result":"B"},{"jsonrpc":"2.0","id":"a","result":"A"}]'),
        Close(client, CloseCode.NORMAL, "answered"),
    ]
    assert host.client_state(client) is ClientState.CLOSING
    assert gone(host, client, 0) == []


def test_one_shot_single_call_answered_as_object(host: HostEngine) -> None:
    _, target = setup_echo(host)
    client = host.connect(ClientKind.ONE_SHOT)
    hid = loads(sends(feed(host, client, req(1, "agent.call", call_params()), 0))[0].data)["id"]
    out = feed(host, target, b'{"jsonrpc":"2.0","id":%d,"result":"x"}' % hid, 0)
    assert out == [Send(client, b'{"jsonrpc":"2.0","id":1,"result":"x"}'), Close(client, CloseCode.NORMAL, "answered")]


def test_one_shot_immediate_answers(host: HostEngine) -> None:
    client = host.connect(ClientKind.ONE_SHOT)
    out = feed(host, client, req(1, "agent.call", call_params("nope")), 0)
    assert len(out) == 2 and isinstance(out[0], Send) and out[1] == Close(client, CloseCode.NORMAL, "answered")
    assert error_code(loads(out[0].data)) == ErrorCode.AGENT_TYPE_NOT_FOUND


def test_one_shot_notification_only_closes_without_send(host: HostEngine) -> None:
    pub, sub = host.connect(ClientKind.ONE_SHOT), host.connect()
    register(host, sub, "reader")
    subscribe(host, sub, "s", "news", "reader")
    frame, _ = publish_frame("news")
    out = feed(host, pub, frame, 0)
    assert [type(o) for o in out] == [Send, Close]
    assert out[0].client == sub  # the event delivery, nothing back to the publisher
    assert out[1] == Close(pub, CloseCode.NORMAL, "answered")


def test_one_shot_channel_only_methods_refused(host: HostEngine) -> None:
    for method, params in [
        ("runtime.register_agent", {"type": "x"}),
        ("runtime.unregister_agent", {"type": "x"}),
        (
            "runtime.add_subscription",
            {"subscription": {"kind": "type", "id": "s", "topic_type": "t", "agent_type": "a"}},
        ),
        ("runtime.remove_subscription", {"id": "s"}),
    ]:
        client = host.connect(ClientKind.ONE_SHOT)
        out = feed(host, client, req(1, method, params), 0)
        assert len(out) == 2 and out[1] == Close(client, CloseCode.NORMAL, "answered")
        reply = loads(out[0].data)  # type: ignore[union-attr]
        assert reply["id"] == 1 and error_code(reply) == ErrorCode.METHOD_NOT_FOUND, method
    assert host.agent_types() == {} and host.subscriptions() == []


def test_one_shot_get_subscriptions_allowed(host: HostEngine) -> None:
    ch = host.connect()
    subscribe(host, ch, "s", "t", "a")
    client = host.connect(ClientKind.ONE_SHOT)
    out = feed(host, client, req(1, "runtime.get_subscriptions"), 0)
    assert loads(out[0].data)["result"] == [{"kind": "type", "id": "s", "topic_type": "t", "agent_type": "a"}]  # type: ignore[union-attr]


def test_one_shot_parse_error_answered_then_closed(host: HostEngine) -> None:
    client = host.connect(ClientKind.ONE_SHOT)
    out = feed(host, client, b"{", 0)
    assert [type(o) for o in out] == [Send, Close]
    assert error_code(loads(out[0].data)) == ErrorCode.PARSE_ERROR  # type: ignore[union-attr]


def test_one_shot_target_disconnect_and_deadline(host: HostEngine) -> None:
    _, target = setup_echo(host)
    client = host.connect(ClientKind.ONE_SHOT)
    batch = b"[" + req(1, "agent.call", call_params(timeout_ms=100)) + b"," + req(2, "agent.call", call_params()) + b"]"
    feed(host, client, batch, 0)
    assert tick(host, 0.05) == []
    out = tick(host, 0.1)
    assert [type(o) for o in out] == [Send]  # only the cancel to the target; the body is not complete yet
    out = gone(host, target, 0.2)
    assert [type(o) for o in out] == [Send, Close]
    body = loads(out[0].data)  # type: ignore[union-attr]
    assert [(r["id"], error_code(r)) for r in body] == [
        (1, ErrorCode.DEADLINE_EXCEEDED),
        (2, ErrorCode.TARGET_DISCONNECTED),
    ]


def test_one_shot_call_then_cancel_in_same_batch(host: HostEngine) -> None:
    _, target = setup_echo(host)
    client = host.connect(ClientKind.ONE_SHOT)
    batch = b"[" + req(1, "agent.call", call_params()) + b"," + note("$/cancelRequest", {"id": 1}) + b"]"
    out = feed(host, client, batch, 0)
    assert [(type(o), o.client) for o in out] == [(Send, target), (Send, target), (Send, client), (Close, client)]
    assert loads(out[1].data)["method"] == "$/cancelRequest"  # type: ignore[union-attr]
    assert [error_code(r) for r in loads(out[2].data)] == [ErrorCode.CANCELLED]  # type: ignore[union-attr]
    assert host.pending_calls() == []


def test_one_shot_disconnect_while_answering_cancels_at_target(host: HostEngine) -> None:
    _, target = setup_echo(host)
    client = host.connect(ClientKind.ONE_SHOT)
    hid = loads(sends(feed(host, client, req(1, "agent.call", call_params()), 0))[0].data)["id"]
    out = gone(host, client, 0)
    assert out == [Send(target, b'{"jsonrpc":"2.0","method":"$/cancelRequest","params":{"id":%d}}' % hid)]
    assert host.pending_calls() == []


def test_one_shot_oversized_body_closed_1009() -> None:
    host = HostEngine(max_message_size=10)
    client = host.connect(ClientKind.ONE_SHOT)
    out = feed(host, client, b"[" + b" " * 20 + b"]", 0)
    assert [type(o) for o in out] == [Close] and out[0].code == CloseCode.MESSAGE_TOO_BIG  # type: ignore[union-attr]


# ====================================================================================== shutdown, state, names


def test_close_all(host: HostEngine) -> None:
    caller, target = setup_echo(host)
    subscribe(host, target, "s", "t", "echo")
    feed(host, caller, req(1, "agent.call", call_params(timeout_ms=100)), 0)
    done = host.connect(ClientKind.ONE_SHOT)
    feed(host, done, b"{", 0)  # already answered and CLOSING
    out = shutdown(host)
    assert sorted((c.client, c.code) for c in closes(out)) == [
        (caller, CloseCode.GOING_AWAY),
        (target, CloseCode.GOING_AWAY),
    ]
    assert all(c.reason == "host shutting down" for c in closes(out))
    # no error replies to callers that are closing anyway
    assert all(loads(s.data).get("method") == "$/cancelRequest" for s in sends(out))
    assert {host.client_state(c) for c in (caller, target, done)} == {ClientState.CLOSING}
    assert host.agent_types() == {} and host.subscriptions() == [] and host.pending_calls() == []
    assert host.next_deadline() is None
    assert shutdown(host) == []
    out = shutdown(host, CloseCode.INTERNAL_ERROR, "x")
    assert out == []


def test_close_all_answers_no_caller_with_target_disconnected(host: HostEngine) -> None:
    """Whatever order the clients connected in, a shutdown ends every client with its close:
    no caller hears -32003 for a target that closes with it (a worker reports its pending calls as
    CONNECTION_LOST, a /v1/rpc client gets 503)."""
    target = host.connect()
    register(host, target, "echo")
    caller = host.connect()
    one_shot = host.connect(ClientKind.ONE_SHOT)
    feed(host, caller, req(1, "agent.call", call_params()), 0)
    feed(host, one_shot, req(1, "agent.call", call_params()), 0)
    out = shutdown(host)
    assert sends(out) == []
    assert [(c.client, c.code) for c in closes(out)] == [
        (target, CloseCode.GOING_AWAY),
        (caller, CloseCode.GOING_AWAY),
        (one_shot, CloseCode.GOING_AWAY),
    ]
    assert host.pending_calls() == []


def test_unreadable_event_reports_are_counted(host: HostEngine) -> None:
    worker = host.connect()
    report = (
        b'{"jsonrpc":"2.0","id":null,"error":{"code":-32015,"message":"no serializer",'
        b'"data":{"data_type":"Secret","data_content_type":"application/json","event_id":"e1"}}}'
    )
    assert feed(host, worker, report, 0) == []
    assert feed(host, worker, b'{"jsonrpc":"2.0","id":null,"error":{"code":-32602,"message":"bad event"}}', 0) == []
    assert feed(host, worker, b'{"jsonrpc":"2.0","id":null,"error":{"code":"x"}}', 0) == []
    assert host.stats.events_unreadable == 1
    assert host.stats.responses_dropped == 3


def test_close_all_custom_code(host: HostEngine) -> None:
    a = host.connect()
    assert shutdown(host, CloseCode.INTERNAL_ERROR, "bug") == [Close(a, CloseCode.INTERNAL_ERROR, "bug")]


def test_client_transitions_table_is_what_the_engine_does(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every move the engine makes, in the lives a client can have, is an edge of CLIENT_TRANSITIONS,
    and every edge of the table is a move the engine makes (a table no code follows is no spec)."""
    moves: set[tuple[ClientKind, ClientState, ClientState]] = set()
    move_to = _Client.move_to

    def spy(self: _Client, new: ClientState) -> None:
        moves.add((self.kind, self.state, new))
        move_to(self, new)

    monkeypatch.setattr(_Client, "move_to", spy)
    host = HostEngine(max_message_size=200)
    _, target = setup_echo(host)
    too_big = req(1, "runtime.register_agent", {"type": "x" * 200})
    channel = host.connect(ClientKind.CHANNEL)
    feed(host, channel, too_big)  # a channel closed by the engine
    answered_at_once = host.connect(ClientKind.ONE_SHOT)
    feed(host, answered_at_once, req(1, "runtime.get_subscriptions"))
    refused = host.connect(ClientKind.ONE_SHOT)
    feed(host, refused, too_big)  # a body closed before it is read
    waiting = host.connect(ClientKind.ONE_SHOT)
    feed(host, waiting, req(1, "agent.call", call_params()))  # waits for its call
    assert host.client_state(waiting) is ClientState.ANSWERING
    peer = host.add_peer("host p")  # another host of a cluster (tests/engine/test_cluster_peers.py)
    shutdown(host)  # the waiting one-shot, the channels and the peer, closed by the host
    assert {host.client_state(c) for c in (target, channel, answered_at_once, refused, waiting, peer)} == {
        ClientState.CLOSING
    }
    table = {(kind, old, new) for (kind, old), targets in CLIENT_TRANSITIONS.items() for new in targets}
    assert moves == table
    # Every state of each kind has a row (CLOSING: the end, with no way out).
    assert {state for kind, state in CLIENT_TRANSITIONS if kind is ClientKind.CHANNEL} == {
        ClientState.OPEN,
        ClientState.CLOSING,
    }
    assert {state for kind, state in CLIENT_TRANSITIONS if kind is ClientKind.ONE_SHOT} == set(ClientState)
    assert {state for kind, state in CLIENT_TRANSITIONS if kind is ClientKind.PEER} == {
        ClientState.OPEN,
        ClientState.CLOSING,
    }
    assert all(not CLIENT_TRANSITIONS[(kind, ClientState.CLOSING)] for kind in ClientKind)


@pytest.mark.parametrize(
    ("kind", "path", "ok"),
    [
        (ClientKind.CHANNEL, [ClientState.CLOSING], True),
        (ClientKind.CHANNEL, [ClientState.ANSWERING], False),
        (ClientKind.CHANNEL, [ClientState.CLOSING, ClientState.OPEN], False),
        (ClientKind.ONE_SHOT, [ClientState.ANSWERING, ClientState.CLOSING], True),
        (ClientKind.ONE_SHOT, [ClientState.CLOSING], True),
        (ClientKind.ONE_SHOT, [ClientState.ANSWERING, ClientState.OPEN], False),
        (ClientKind.ONE_SHOT, [ClientState.CLOSING, ClientState.CLOSING], False),
    ],
)
def test_client_move_to_follows_table(kind: ClientKind, path: list[ClientState], ok: bool) -> None:
    c = _Client(ClientId(1), kind)
    assert c.state is ClientState.OPEN
    if ok:
        for s in path:
            c.move_to(s)
        assert c.state is path[-1]
    else:
        with pytest.raises(LocalProtocolError):
            for s in path:
                c.move_to(s)


def test_client_names(host: HostEngine) -> None:
    a = host.connect(name="w1")
    assert host.client_name(a) == "w1"
    with pytest.raises(ClientNameInUse):
        host.connect(name="w1")
    shutdown(host)
    with pytest.raises(ClientNameInUse):  # still held until the backend disconnects it
        host.connect(name="w1")
    gone(host, a, 0)
    b = host.connect(name="w1")
    assert b != a and host.client_name(b) == "w1"
    assert host.client_name(a) is None
    anon = host.connect()
    assert host.client_name(anon) is None


def test_harness_register_and_subscription_results() -> None:
    net = Network(2)
    w0, w1 = net.workers
    r1 = w0.register_agent("x")
    r2 = w1.register_agent("x")
    got = net.pump()
    assert got[0] == [RequestSucceeded(r1)]
    [failed] = got[1]
    assert isinstance(failed, RequestFailed) and failed.request_id == r2
    assert failed.error.code == ErrorCode.AGENT_TYPE_ALREADY_REGISTERED


# ================================================================ more semantics (docs/PROTOCOL.md)


def test_unregister_keeps_forwarded_calls_and_dormant_subscriptions(host: HostEngine) -> None:
    caller, target = setup_echo(host)
    subscribe(host, target, "s", "news", "echo")
    hid = loads(sends(feed(host, caller, req(1, "agent.call", call_params()), 0))[0].data)["id"]
    only_send(feed(host, target, req(2, "runtime.unregister_agent", {"type": "echo"}), 0), target)
    # new calls fail at once, the forwarded one may still be answered
    assert (
        error_code(only_send(feed(host, caller, req(2, "agent.call", call_params()), 0)))
        == ErrorCode.AGENT_TYPE_NOT_FOUND
    )
    assert feed(host, target, b'{"jsonrpc":"2.0","id":%d,"result":"late but fine"}' % hid, 0) == [
        Send(caller, b'{"jsonrpc":"2.0","id":1,"result":"late but fine"}')
    ]
    # the subscription stays, dormant, and applies again to whoever registers the type
    assert host.subscriptions() == [TypeSubscriptionSpec("s", "news", "echo")]
    assert sends(feed(host, caller, publish_frame("news")[0], 0)) == []
    newcomer = host.connect()
    register(host, newcomer, "echo")
    assert [s.client for s in sends(feed(host, caller, publish_frame("news")[0], 0))] == [newcomer]


def test_subscription_follows_its_adder_not_the_type_host(host: HostEngine) -> None:
    x, y, pub = host.connect(), host.connect(), host.connect()
    register(host, y, "A")
    subscribe(host, x, "sx", "news", "A")  # X subscribes Y's type
    assert [s.client for s in sends(feed(host, pub, publish_frame("news")[0], 0))] == [y]
    gone(host, x, 0)
    assert host.subscriptions() == []
    assert sends(feed(host, pub, publish_frame("news")[0], 0)) == []
    assert host.agent_types() == {"A": y}


def test_get_subscriptions_in_insertion_order(host: HostEngine) -> None:
    a = host.connect()
    for sid in ["c", "a", "b"]:
        subscribe(host, a, sid, f"t-{sid}", "x")
    only_send(feed(host, a, req(9, "runtime.remove_subscription", {"id": "a"}), 0))
    subscribe(host, a, "a", "t-a", "x")
    got = only_send(feed(host, a, req(10, "runtime.get_subscriptions", {}), 0))
    assert [s["id"] for s in got["result"]] == ["c", "b", "a"]


def test_null_data_is_a_present_json_payload() -> None:
    net = Network(2)
    w0, w1 = net.workers
    w1.register_agent("echo")
    w1.add_subscription(TypeSubscriptionSpec("s", "t", "echo"))
    net.pump()
    rid = w0.call(AgentRef("echo", "k"), Payload("NoneType", JSON, b"null"), now=0)
    [call] = net.pump()[1]
    assert isinstance(call, IncomingCall) and call.payload == Payload("NoneType", JSON, b"null")
    w1.respond(call.call_id, Payload("NoneType", JSON, b"null"), epoch=call.epoch)
    assert net.pump()[0] == [CallSucceeded(rid, Payload("NoneType", JSON, b"null"), {})]
    w0.publish(topic_type="t", topic_source="s", payload=Payload("NoneType", JSON, b"null"), event_id="e")
    [ev] = net.pump()[1]
    assert isinstance(ev, IncomingEvent) and ev.payload.data == b"null"


def test_publish_needs_exactly_one_payload_member(host: HostEngine) -> None:
    pub, sub = host.connect(), host.connect()
    register(host, sub, "r")
    subscribe(host, sub, "s", "t", "r")
    base = {"specversion": "1.0", "id": "e", "source": "s", "type": "t"}
    for i, extra in enumerate([{}, {"data": 1, "data_base64": "AA=="}]):
        reply = only_send(feed(host, pub, req(i, "agent.publish", {**base, **extra}), 0), pub)
        assert reply["id"] == i and error_code(reply) == ErrorCode.INVALID_PARAMS
    reply = only_send(feed(host, pub, note("agent.publish", base), 0), pub)  # a failing notification: id null
    assert reply["id"] is None and error_code(reply) == ErrorCode.INVALID_PARAMS
    assert host.stats.events_published == 0 and host.stats.event_deliveries == 0
    out = feed(host, pub, note("agent.publish", {**base, "data": None}), 0)
    assert [s.client for s in sends(out)] == [sub]


@pytest.mark.parametrize("bad_id", [b"true", b"1.0", b"1e3", b"[1]", b"{}"])
def test_invalid_id_types(host: HostEngine, bad_id: bytes) -> None:
    a = host.connect()
    reply = only_send(feed(host, a, b'{"jsonrpc":"2.0","id":%s,"method":"runtime.get_subscriptions"}' % bad_id, 0), a)
    assert reply["id"] is None and error_code(reply) == ErrorCode.INVALID_REQUEST


def test_id_echoed_with_its_json_type(host: HostEngine) -> None:
    a = host.connect()
    assert feed(host, a, b'{"jsonrpc":"2.0","id":"5","method":"runtime.get_subscriptions"}', 0) == [
        Send(a, b'{"jsonrpc":"2.0","id":"5","result":[]}')
    ]
    assert feed(host, a, b'{"jsonrpc":"2.0","id":5,"method":"runtime.get_subscriptions"}', 0) == [
        Send(a, b'{"jsonrpc":"2.0","id":5,"result":[]}')
    ]


def test_failing_notifications_reported_with_null_id(host: HostEngine) -> None:
    a, b = host.connect(), host.connect()
    register(host, a, "echo")
    cases = [
        (b'{"jsonrpc":"1.0","method":"agent.publish","params":{}}', ErrorCode.INVALID_REQUEST),
        (note("agent.frobnicate", {}), ErrorCode.METHOD_NOT_FOUND),
        (note("runtime.register_agent", {"type": "echo"}), ErrorCode.AGENT_TYPE_ALREADY_REGISTERED),
        (note("runtime.remove_subscription", {"id": "nope"}), ErrorCode.SUBSCRIPTION_NOT_FOUND),
    ]
    for frame, code in cases:
        reply = only_send(feed(host, b, frame, 0), b)
        assert reply["id"] is None and error_code(reply) == code, frame


def test_one_shot_cancel_as_request_in_same_body(host: HostEngine) -> None:
    _, _target = setup_echo(host)
    client = host.connect(ClientKind.ONE_SHOT)
    batch = b"[" + req(1, "agent.call", call_params()) + b"," + req(2, "$/cancelRequest", {"id": 1}) + b"]"
    out = feed(host, client, batch, 0)
    body = next(s for s in sends(out) if s.client == client)
    assert sorted((r["id"], r.get("result", "-") if "result" in r else error_code(r)) for r in loads(body.data)) == [
        (1, ErrorCode.CANCELLED),
        (2, None),
    ]
    assert out[-1] == Close(client, CloseCode.NORMAL, "answered")
