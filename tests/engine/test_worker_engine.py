"""WorkerEngine: request numbering, answers to events, incoming calls and events, deadlines,
cancellation, limits, bad input from the host, and connection loss."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sansio_runtime import (
    AgentRef,
    CallFailed,
    CallSucceeded,
    ErrorCode,
    IncomingCall,
    IncomingCallCancelled,
    IncomingEvent,
    Payload,
    PayloadEncodingError,
    PayloadTooLargeError,
    PeerError,
    RequestFailed,
    RequestSucceeded,
    RpcError,
    TypePrefixSubscriptionSpec,
    TypeSubscriptionSpec,
    WorkerEngine,
    decode_error_data,
)

from ._harness import Network

JSON = "application/json"
BIN = "application/octet-stream"


def frames(w: WorkerEngine) -> list[Any]:
    return [json.loads(f) for f in w.data_to_send()]


def incoming_call(w: WorkerEngine, call_id: Any = 17, **params: Any) -> IncomingCall:
    p = {"target": {"type": "echo", "key": "k"}, "data_type": "str", "data_content_type": JSON, "data": "hi", **params}
    [ev] = w.receive(json.dumps({"jsonrpc": "2.0", "id": call_id, "method": "agent.call", "params": p}), 0)
    assert isinstance(ev, IncomingCall)
    return ev


def event_frame(recipients: list[str], **event: Any) -> bytes:
    ev = {"specversion": "1.0", "id": "e1", "source": "src", "type": "news", "data": {"n": 1}, **event}
    return json.dumps(
        {"jsonrpc": "2.0", "method": "agent.event", "params": {"recipients": recipients, "event": ev}}
    ).encode()


# ====================================================================================== outgoing requests


def test_requests_are_numbered_from_one_with_exact_frames() -> None:
    w = WorkerEngine()
    assert not w.has_data_to_send
    assert w.register_agent("echo") == 1
    assert w.add_subscription(TypeSubscriptionSpec("s1", "news", "echo")) == 2
    assert w.add_subscription(TypePrefixSubscriptionSpec("s2", "ne", "echo")) == 3
    assert w.remove_subscription("s1") == 4
    assert w.unregister_agent("echo") == 5
    assert w.get_subscriptions() == 6
    assert w.call(AgentRef("x", "y"), Payload("M", JSON, b"1"), now=0) == 7
    assert w.has_data_to_send
    assert w.pending_requests == 7
    assert w.data_to_send() == [
        b'{"jsonrpc":"2.0","id":1,"method":"runtime.register_agent","params":{"type":"echo"}}',
        b'{"jsonrpc":"2.0","id":2,"method":"runtime.add_subscription","params":{"subscription":'
        b'{"kind":"type","id":"s1","topic_type":"news","agent_type":"echo"}}}',
        b'{"jsonrpc":"2.0","id":3,"method":"runtime.add_subscription","params":{"subscription":'
        b'{"kind":"type_prefix","id":"s2","topic_type_prefix":"ne","agent_type":"echo"}}}',
        b'{"jsonrpc":"2.0","id":4,"method":"runtime.remove_subscription","params":{"id":"s1"}}',
        b'{"jsonrpc":"2.0","id":5,"method":"runtime.unregister_agent","params":{"type":"echo"}}',
        b'{"jsonrpc":"2.0","id":6,"method":"runtime.get_subscriptions","params":{}}',
        b'{"jsonrpc":"2.0","id":7,"method":"agent.call","params":{"target":{"type":"x","key":"y"},'
        b'"data_type":"M","data_content_type":"application/json","data":1}}',
    ]
    assert w.data_to_send() == [] and not w.has_data_to_send


def test_call_frame_with_all_options() -> None:
    w = WorkerEngine()
    rid = w.call(
        AgentRef("x", "y"),
        Payload("M", JSON, b'{ "a" : 1 }'),
        now=5.0,
        source=AgentRef("a", "b"),
        metadata={"m": "v"},
        timeout=1.5,
    )
    assert w.data_to_send() == [
        b'{"jsonrpc":"2.0","id":1,"method":"agent.call","params":{"target":{"type":"x","key":"y"},'
        b'"data_type":"M","data_content_type":"application/json","data":{ "a" : 1 },'
        b'"source":{"type":"a","key":"b"},"metadata":{"m":"v"},"timeout_ms":1500}}'
    ]
    assert rid == 1 and w.next_deadline() == 6.5


def test_call_timeout_rounds_to_at_least_one_ms() -> None:
    w = WorkerEngine()
    w.call(AgentRef("x", "y"), Payload("M", JSON, b"1"), now=0, timeout=0.0001)
    assert json.loads(w.data_to_send()[0])["params"]["timeout_ms"] == 1
    with pytest.raises(ValueError):
        w.call(AgentRef("x", "y"), Payload("M", JSON, b"1"), now=0, timeout=0)
    assert w.data_to_send() == []


def test_binary_call_goes_base64() -> None:
    w = WorkerEngine()
    w.call(AgentRef("x", "y"), Payload("B", BIN, b"\x00\xff"), now=0)
    params = json.loads(w.data_to_send()[0])["params"]
    assert params["data_base64"] == "AP8=" and "data" not in params


def test_publish_frames() -> None:
    w = WorkerEngine()
    w.publish(
        topic_type="t",
        topic_source="s",
        payload=Payload("M", JSON, b'{"a": 1}'),
        event_id="e",
        sender=AgentRef("a", "k"),
        trace_context={"traceparent": "tp", "tracestate": "ts", "other": "x"},
    )
    w.publish(
        topic_type="t", topic_source="s", payload=Payload("M", "text/plain", b"hi"), event_id="e2", message_kind="rpc"
    )
    assert w.data_to_send() == [
        b'{"jsonrpc":"2.0","method":"agent.publish","params":{"specversion":"1.0","id":"e","source":"s","type":"t",'
        b'"datacontenttype":"application/json","dataschema":"M","data":{"a": 1},"agagentsendertype":"a",'
        b'"agagentsenderkey":"k","agmsgkind":"publish","traceparent":"tp","tracestate":"ts"}}',
        b'{"jsonrpc":"2.0","method":"agent.publish","params":{"specversion":"1.0","id":"e2","source":"s","type":"t",'
        b'"datacontenttype":"text/plain","dataschema":"M","data_base64":"aGk=","agmsgkind":"rpc"}}',
    ]
    assert w.pending_requests == 0  # a publish is a notification


def test_invalid_json_payload_is_refused_locally() -> None:
    w = WorkerEngine()
    for bad in [b"{", b'"\xff"']:
        with pytest.raises(PayloadEncodingError):
            w.call(AgentRef("x", "y"), Payload("M", JSON, bad), now=0)
        with pytest.raises(PayloadEncodingError):
            w.publish(topic_type="t", topic_source="s", payload=Payload("M", JSON, bad), event_id="e")
    assert w.data_to_send() == [] and w.pending_requests == 0


def test_oversized_call_raises_and_queues_nothing() -> None:
    w = WorkerEngine(max_message_size=200)
    w.call(AgentRef("x", "y"), Payload("M", BIN, b"ok"), now=0)
    w.data_to_send()
    with pytest.raises(PayloadTooLargeError):
        w.call(AgentRef("x", "y"), Payload("M", BIN, b"x" * 200), now=0, timeout=1)
    assert w.data_to_send() == []
    assert w.pending_requests == 1
    assert w.next_deadline() is None  # no deadline left behind for the refused call
    with pytest.raises(PayloadTooLargeError):
        w.publish(topic_type="t", topic_source="s", payload=Payload("M", BIN, b"x" * 200), event_id="e")
    assert w.data_to_send() == []


# ====================================================================================== answers


def test_runtime_results() -> None:
    w = WorkerEngine()
    r1, r2 = w.register_agent("a"), w.add_subscription(TypeSubscriptionSpec("s", "t", "a"))
    assert w.receive(b'{"jsonrpc":"2.0","id":1,"result":null}', 0) == [RequestSucceeded(r1)]
    evs = w.receive(b'{"jsonrpc":"2.0","id":2,"error":{"code":-32009,"message":"dup"}}', 0)
    assert evs == [RequestFailed(r2, RpcError(-32009, "dup"))]
    assert w.pending_requests == 0
    # a repeated answer is ignored
    assert w.receive(b'{"jsonrpc":"2.0","id":1,"result":null}', 0) == []
    assert w.data_to_send()[2:] == []


def test_get_subscriptions_decodes_specs() -> None:
    w = WorkerEngine()
    rid = w.get_subscriptions()
    evs = w.receive(
        b'{"jsonrpc":"2.0","id":1,"result":[{"kind":"type","id":"a","topic_type":"t","agent_type":"x"},'
        b'{"kind":"type_prefix","id":"b","topic_type_prefix":"p","agent_type":"y"}]}',
        0,
    )
    assert evs == [
        RequestSucceeded(rid, (TypeSubscriptionSpec("a", "t", "x"), TypePrefixSubscriptionSpec("b", "p", "y")))
    ]


def test_get_subscriptions_malformed_result() -> None:
    w = WorkerEngine()
    rid = w.get_subscriptions()
    [ev] = w.receive(b'{"jsonrpc":"2.0","id":1,"result":[{"kind":"bogus"}]}', 0)
    assert isinstance(ev, RequestFailed) and ev.request_id == rid and ev.error.code == ErrorCode.INTERNAL_ERROR


def test_call_succeeded_json_payload_intact() -> None:
    w = WorkerEngine()
    rid = w.call(AgentRef("x", "y"), Payload("M", JSON, b"1"), now=0)
    evs = w.receive(
        b'{"jsonrpc":"2.0","id":1,"result":{"data_type":"R","data_content_type":"application/json",'
        b'"data":{ "z" : [1, 2.0] },"metadata":{"k":"v"}}}',
        0,
    )
    assert evs == [CallSucceeded(rid, Payload("R", JSON, b'{ "z" : [1, 2.0] }'), {"k": "v"})]


def test_call_succeeded_binary_payload_intact() -> None:
    w = WorkerEngine()
    rid = w.call(AgentRef("x", "y"), Payload("M", JSON, b"1"), now=0)
    evs = w.receive(
        b'{"jsonrpc":"2.0","id":1,"result":{"data_type":"R","data_content_type":"application/octet-stream",'
        b'"data_base64":"AAH/"}}',
        0,
    )
    assert evs == [CallSucceeded(rid, Payload("R", BIN, b"\x00\x01\xff"), {})]


@pytest.mark.parametrize(
    "result",
    [
        b'{"data_type":"R","data_content_type":"x"}',  # no payload
        b'{"data_type":"R","data_content_type":"x","data":1,"data_base64":"AA=="}',  # both
        b'{"data_type":"R","data_content_type":"x","data_base64":"!!"}',  # bad base64
        b'"just a string"',
    ],
)
def test_malformed_call_result(result: bytes) -> None:
    w = WorkerEngine()
    rid = w.call(AgentRef("x", "y"), Payload("M", JSON, b"1"), now=0)
    [ev] = w.receive(b'{"jsonrpc":"2.0","id":1,"result":' + result + b"}", 0)
    assert isinstance(ev, CallFailed) and ev.request_id == rid and ev.error.code == ErrorCode.INTERNAL_ERROR


def test_response_with_neither_result_nor_error() -> None:
    w = WorkerEngine()
    rid = w.call(AgentRef("x", "y"), Payload("M", JSON, b"1"), now=0)
    [ev] = w.receive(b'{"jsonrpc":"2.0","id":1}', 0)
    assert ev == CallFailed(rid, RpcError(ErrorCode.INTERNAL_ERROR, "the host answered with neither result nor error"))


def test_call_failed_with_handler_error_data() -> None:
    w = WorkerEngine()
    rid = w.call(AgentRef("x", "y"), Payload("M", JSON, b"1"), now=0)
    [ev] = w.receive(
        b'{"jsonrpc":"2.0","id":1,"error":{"code":-32004,"message":"boom",'
        b'"data":{"exception_type":"KeyError","message":"boom"}}}',
        0,
    )
    assert isinstance(ev, CallFailed) and ev.request_id == rid
    assert (ev.error.code, ev.error.message) == (ErrorCode.HANDLER_ERROR, "boom")
    assert decode_error_data(ev.error) == {"exception_type": "KeyError", "message": "boom"}


def test_call_failed_with_malformed_error_object() -> None:
    w = WorkerEngine()
    rid = w.call(AgentRef("x", "y"), Payload("M", JSON, b"1"), now=0)
    [ev] = w.receive(b'{"jsonrpc":"2.0","id":1,"error":{"message":"no code"}}', 0)
    assert ev == CallFailed(rid, RpcError(ErrorCode.INTERNAL_ERROR, "the peer sent a malformed error object"))


def test_handler_error_end_to_end() -> None:
    net = Network(2)
    w0, w1 = net.workers
    w1.register_agent("echo")
    net.pump()
    rid = w0.call(AgentRef("echo", "k"), Payload("M", JSON, b"1"), now=0)
    [call] = net.pump()[1]
    assert isinstance(call, IncomingCall)
    w1.respond_handler_error(call.call_id, "ValueError", "bad input", epoch=call.epoch)
    [ev] = net.pump()[0]
    assert isinstance(ev, CallFailed) and ev.request_id == rid and ev.error.code == -32004
    assert ev.error.message == "bad input"
    assert decode_error_data(ev.error) == {"exception_type": "ValueError", "message": "bad input"}


def test_answers_for_unknown_ids_are_ignored() -> None:
    w = WorkerEngine()
    assert w.receive(b'{"jsonrpc":"2.0","id":99,"result":null}', 0) == []
    assert w.receive(b'{"jsonrpc":"2.0","id":"1","result":null}', 0) == []
    assert w.data_to_send() == []


def test_error_with_null_id_is_peer_error() -> None:
    w = WorkerEngine()
    w.register_agent("a")
    w.data_to_send()
    evs = w.receive(b'{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"bad"}}', 0)
    assert evs == [PeerError(RpcError(-32700, "bad"))]
    assert w.pending_requests == 1
    assert w.data_to_send() == []


# ====================================================================================== incoming calls


def test_incoming_call_event() -> None:
    w = WorkerEngine()
    ev = incoming_call(w, 17, source={"type": "s", "key": "sk"}, metadata={"m": "v"}, timeout_ms=250, data={"a": [1]})
    assert ev == IncomingCall(
        call_id=17,
        target=AgentRef("echo", "k"),
        source=AgentRef("s", "sk"),
        payload=Payload("str", JSON, b'{"a": [1]}'),
        metadata={"m": "v"},
        timeout_ms=250,
        epoch=0,
    )
    assert w.incoming_calls == frozenset({17})


def test_incoming_call_defaults_and_base64() -> None:
    w = WorkerEngine()
    [ev] = w.receive(
        b'{"jsonrpc":"2.0","id":"c","method":"agent.call","params":{"target":{"type":"t","key":"k"},'
        b'"data_type":"B","data_content_type":"application/octet-stream","data_base64":"AP8="}}',
        0,
    )
    assert ev == IncomingCall("c", AgentRef("t", "k"), None, Payload("B", BIN, b"\x00\xff"), {}, None, 0)


def test_respond_exact_frames() -> None:
    w = WorkerEngine()
    incoming_call(w, 17)
    incoming_call(w, 18)
    w.respond(17, Payload("R", JSON, b'{ "ok" : true }'), epoch=0, metadata={"k": "v"})
    w.respond(18, Payload("R", BIN, b"\x00"), epoch=0)
    assert w.data_to_send() == [
        b'{"jsonrpc":"2.0","id":17,"result":{"data_type":"R","data_content_type":"application/json",'
        b'"data":{ "ok" : true },"metadata":{"k":"v"}}}',
        b'{"jsonrpc":"2.0","id":18,"result":{"data_type":"R","data_content_type":"application/octet-stream",'
        b'"data_base64":"AA=="}}',
    ]
    assert w.incoming_calls == frozenset()
    w.respond(17, Payload("R", JSON, b"1"), epoch=0)  # already answered: nothing
    assert w.data_to_send() == []


def test_respond_error_frames() -> None:
    w = WorkerEngine()
    incoming_call(w, 1)
    incoming_call(w, 2)
    w.respond_handler_error(1, "ValueError", "boom", epoch=0)
    w.respond_agent_not_found(2, "no agent", epoch=0)
    assert w.data_to_send() == [
        b'{"jsonrpc":"2.0","id":1,"error":{"code":-32004,"message":"boom",'
        b'"data":{"exception_type":"ValueError","message":"boom"}}}',
        b'{"jsonrpc":"2.0","id":2,"error":{"code":-32014,"message":"no agent"}}',
    ]


def test_respond_after_cancel_queues_nothing() -> None:
    w = WorkerEngine()
    incoming_call(w, 5)
    assert w.receive(b'{"jsonrpc":"2.0","method":"$/cancelRequest","params":{"id":5}}', 0) == [
        IncomingCallCancelled(5, 0)
    ]
    assert w.incoming_calls == frozenset()
    w.respond(5, Payload("R", JSON, b"1"), epoch=0)
    w.respond_handler_error(5, "", "x", epoch=0)
    assert w.data_to_send() == []
    # a second cancel, or one for an unknown call, yields nothing
    assert w.receive(b'{"jsonrpc":"2.0","method":"$/cancelRequest","params":{"id":5}}', 0) == []
    assert w.receive(b'{"jsonrpc":"2.0","method":"$/cancelRequest","params":{"bad":1}}', 0) == []
    assert w.receive(b'{"jsonrpc":"2.0","method":"$/cancelRequest"}', 0) == []
    assert w.data_to_send() == []


def test_respond_oversized_result_becomes_payload_too_large_error() -> None:
    w = WorkerEngine(max_message_size=300)
    incoming_call(w, 9)
    w.respond(9, Payload("R", BIN, b"x" * 300), epoch=0)
    [frame] = w.data_to_send()
    msg = json.loads(frame)
    assert msg["id"] == 9 and msg["error"]["code"] == ErrorCode.PAYLOAD_TOO_LARGE == -32008
    assert "300" in msg["error"]["message"]
    assert w.incoming_calls == frozenset()


def test_respond_with_invalid_json_becomes_internal_error() -> None:
    w = WorkerEngine()
    incoming_call(w, 1)
    incoming_call(w, 2)
    w.respond(1, Payload("R", JSON, b"{nope"), epoch=0)
    w.respond(2, Payload("R", JSON, b'"\xff"'), epoch=0)  # not UTF-8: must still be answered, not raise
    msgs = frames(w)
    assert [(m["id"], m["error"]["code"]) for m in msgs] == [
        (1, ErrorCode.INTERNAL_ERROR),
        (2, ErrorCode.INTERNAL_ERROR),
    ]
    assert w.incoming_calls == frozenset()


def test_duplicate_incoming_call_id_refused() -> None:
    w = WorkerEngine()
    incoming_call(w, 3)
    p = {"target": {"type": "echo", "key": "k"}, "data_type": "str", "data_content_type": JSON, "data": 1}
    assert w.receive(json.dumps({"jsonrpc": "2.0", "id": 3, "method": "agent.call", "params": p}), 0) == []
    [m] = frames(w)
    assert m["id"] == 3 and m["error"]["code"] == ErrorCode.INVALID_REQUEST
    assert w.incoming_calls == frozenset({3})


@pytest.mark.parametrize(
    ("frame", "code", "id"),
    [
        (b'{"jsonrpc":"2.0","id":4,"method":"agent.call"}', ErrorCode.INVALID_PARAMS, 4),
        (b'{"jsonrpc":"2.0","id":4,"method":"agent.call","params":{"target":1}}', ErrorCode.INVALID_PARAMS, 4),
        (
            b'{"jsonrpc":"2.0","id":4,"method":"agent.call","params":{"target":{"type":"t","key":"k"},'
            b'"data_type":"d","data_content_type":"x"}}',
            ErrorCode.INVALID_PARAMS,
            4,
        ),
        (b'{"jsonrpc":"2.0","method":"agent.call","params":{}}', ErrorCode.INVALID_REQUEST, None),
        (b'{"jsonrpc":"2.0","id":null,"method":"agent.call","params":{}}', ErrorCode.INVALID_REQUEST, None),
        (b'{"jsonrpc":"2.0","id":4,"method":"no.such.method"}', ErrorCode.METHOD_NOT_FOUND, 4),
        (b'{"jsonrpc":"2.0","method":"agent.event","params":{"recipients":"x"}}', ErrorCode.INVALID_PARAMS, None),
        (
            b'{"jsonrpc":"2.0","method":"agent.event","params":{"recipients":[],"event":'
            b'{"specversion":"1.0","id":"e","source":"s","type":"t"}}}',
            ErrorCode.INVALID_PARAMS,
            None,
        ),
    ],
)
def test_bad_requests_from_host_are_answered(frame: bytes, code: int, id: Any) -> None:
    w = WorkerEngine()
    assert w.receive(frame, 0) == []
    [m] = frames(w)
    assert m["id"] == id and m["error"]["code"] == code
    assert w.incoming_calls == frozenset()


def test_unknown_notification_is_ignored() -> None:
    w = WorkerEngine()
    assert w.receive(b'{"jsonrpc":"2.0","method":"no.such.method","params":{}}', 0) == []
    assert w.data_to_send() == []


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (b"{", ErrorCode.PARSE_ERROR),
        (b"", ErrorCode.PARSE_ERROR),
        (b"\xff\xfe", ErrorCode.PARSE_ERROR),
        ('{"jsonrpc":"2.0","id":1,"method":"\ud800"}', ErrorCode.PARSE_ERROR),
        (
            b'{"jsonrpc":"2.0","method":"agent.event","params":{"recipients":["a"],"event":{"id":"\xff"}}}',
            ErrorCode.PARSE_ERROR,
        ),
        (b'{"jsonrpc":"2.0","id":1,"result":{"data_type":"\xc3("}}', ErrorCode.PARSE_ERROR),
        (b"42", ErrorCode.INVALID_REQUEST),
        (b"null", ErrorCode.INVALID_REQUEST),
        (b'{"id":1.5}', ErrorCode.INVALID_REQUEST),
    ],
)
def test_garbage_from_host_never_raises(frame: Any, code: int) -> None:
    w = WorkerEngine()
    w.call(AgentRef("x", "y"), Payload("M", JSON, b"1"), now=0)
    w.data_to_send()
    assert w.receive(frame, 0) == []
    [m] = frames(w)
    assert m["id"] is None and m["error"]["code"] == code
    assert w.pending_requests == 1


def test_batch_from_host() -> None:
    w = WorkerEngine()
    r = w.register_agent("a")
    w.data_to_send()
    evs = w.receive(
        b'[{"jsonrpc":"2.0","id":1,"result":null}, 7,{"jsonrpc":"2.0","method":"$/cancelRequest","params":{"id":99}}]',
        0,
    )
    assert evs == [RequestSucceeded(r)]
    [m] = frames(w)
    assert m["id"] is None and m["error"]["code"] == ErrorCode.INVALID_REQUEST


# ====================================================================================== incoming events


def test_incoming_event_recipients_keyed_by_topic_source() -> None:
    w = WorkerEngine()
    evs = w.receive(
        event_frame(
            ["a", "b"],
            source="room-7",
            type="chat",
            dataschema="Msg",
            datacontenttype=JSON,
            agagentsendertype="other",
            agagentsenderkey="z",
            agmsgkind="rpc",
            traceparent="00-t-p-01",
            tracestate="k=v",
        ),
        0,
    )
    assert evs == [
        IncomingEvent(
            event_id="e1",
            topic_type="chat",
            topic_source="room-7",
            sender=AgentRef("other", "z"),
            recipients=(AgentRef("a", "room-7"), AgentRef("b", "room-7")),
            payload=Payload("Msg", JSON, b'{"n": 1}'),
            message_kind="rpc",
            trace_context={"traceparent": "00-t-p-01", "tracestate": "k=v"},
        )
    ]
    assert w.data_to_send() == []


def test_incoming_event_skips_the_sender_agent_only() -> None:
    w = WorkerEngine()
    [ev] = w.receive(event_frame(["a", "b"], agagentsendertype="a", agagentsenderkey="src"), 0)
    assert isinstance(ev, IncomingEvent) and ev.recipients == (AgentRef("b", "src"),)
    # same type, other key: not the sender, delivered
    [ev] = w.receive(event_frame(["a"], agagentsendertype="a", agagentsenderkey="elsewhere"), 0)
    assert isinstance(ev, IncomingEvent) and ev.recipients == (AgentRef("a", "src"),)
    # the sender is the only recipient: no event at all
    assert w.receive(event_frame(["a"], agagentsendertype="a", agagentsenderkey="src"), 0) == []
    assert w.data_to_send() == []


def test_incoming_event_defaults() -> None:
    w = WorkerEngine()
    [ev] = w.receive(event_frame(["a"]), 0)
    assert isinstance(ev, IncomingEvent)
    assert ev.sender is None
    assert ev.payload == Payload("", JSON, b'{"n": 1}')
    assert ev.message_kind == "publish"
    assert ev.trace_context == {}


def test_incoming_event_base64_payload() -> None:
    w = WorkerEngine()
    frame = event_frame(["a"], datacontenttype=BIN, dataschema="B", data_base64="AP8=")
    frame = frame.replace(b'"data": {"n": 1}, ', b"")
    [ev] = w.receive(frame, 0)
    assert isinstance(ev, IncomingEvent) and ev.payload == Payload("B", BIN, b"\x00\xff")


def test_event_end_to_end_with_trace_context() -> None:
    net = Network(2)
    w0, w1 = net.workers
    w1.register_agent("log")
    w1.add_subscription(TypeSubscriptionSpec("s", "news", "log"))
    net.pump()
    w0.publish(
        topic_type="news",
        topic_source="k1",
        payload=Payload("N", BIN, b"\x01\x02"),
        event_id="ev1",
        sender=AgentRef("pub", "k1"),
        trace_context={"traceparent": "00-aa-bb-01"},
    )
    [ev] = net.pump()[1]
    assert ev == IncomingEvent(
        event_id="ev1",
        topic_type="news",
        topic_source="k1",
        sender=AgentRef("pub", "k1"),
        recipients=(AgentRef("log", "k1"),),
        payload=Payload("N", BIN, b"\x01\x02"),
        message_kind="publish",
        trace_context={"traceparent": "00-aa-bb-01"},
    )


# ====================================================================================== deadlines and cancel


def test_timeout_fails_call_and_cancels_at_host() -> None:
    w = WorkerEngine()
    rid = w.call(AgentRef("x", "y"), Payload("M", JSON, b"1"), now=10.0, timeout=2.0)
    w.data_to_send()
    assert w.next_deadline() == 12.0
    assert w.handle_timer(11.999) == []
    evs = w.handle_timer(12.0)
    assert evs == [CallFailed(rid, RpcError(ErrorCode.DEADLINE_EXCEEDED, "the call's timeout ran out"))]
    assert w.data_to_send() == [b'{"jsonrpc":"2.0","method":"$/cancelRequest","params":{"id":1}}']
    assert w.next_deadline() is None and w.pending_requests == 0
    # the late answer is ignored
    assert (
        w.receive(b'{"jsonrpc":"2.0","id":1,"result":{"data_type":"R","data_content_type":"x","data_base64":""}}', 0)
        == []
    )
    assert w.handle_timer(100.0) == []


def test_answer_clears_deadline() -> None:
    w = WorkerEngine()
    w.call(AgentRef("x", "y"), Payload("M", JSON, b"1"), now=0, timeout=1)
    w.receive(b'{"jsonrpc":"2.0","id":1,"result":{"data_type":"R","data_content_type":"x","data_base64":""}}', 0)
    assert w.next_deadline() is None
    assert w.handle_timer(5) == []


def test_cancel_call() -> None:
    w = WorkerEngine()
    reg = w.register_agent("a")
    rid = w.call(AgentRef("x", "y"), Payload("M", JSON, b"1"), now=0, timeout=1)
    w.data_to_send()
    assert w.cancel_call(rid) is True
    assert w.data_to_send() == [b'{"jsonrpc":"2.0","method":"$/cancelRequest","params":{"id":2}}']
    assert w.next_deadline() is None
    assert w.cancel_call(rid) is False  # no longer pending
    assert w.cancel_call(reg) is False  # not a call
    assert w.cancel_call(12345) is False
    assert w.data_to_send() == []
    # the host's CANCELLED reply (or a late result) produces no event
    assert w.receive(b'{"jsonrpc":"2.0","id":2,"error":{"code":-32005,"message":"cancelled"}}', 0) == []
    assert w.handle_timer(5) == []
    assert w.pending_requests == 1


# ====================================================================================== connection loss


def test_connection_lost_fails_everything() -> None:
    w = WorkerEngine()
    reg = w.register_agent("a")
    c1 = w.call(AgentRef("x", "y"), Payload("M", JSON, b"1"), now=0, timeout=5)
    sub = w.get_subscriptions()
    incoming_call(w, 99)
    w.data_to_send()
    w.publish(topic_type="t", topic_source="s", payload=Payload("M", JSON, b"1"), event_id="e")  # unsent
    evs = w.connection_lost()
    lost = RpcError(ErrorCode.CONNECTION_LOST, "the connection to the host was lost")
    assert evs == [
        RequestFailed(reg, lost),
        CallFailed(c1, lost),
        RequestFailed(sub, lost),
        IncomingCallCancelled(99, 0),
    ]
    assert lost.code == -32013
    assert w.epoch == 1
    assert w.pending_requests == 0
    assert w.incoming_calls == frozenset()
    assert w.next_deadline() is None
    assert w.handle_timer(100) == []
    assert w.data_to_send() == []
    w.respond(99, Payload("R", JSON, b"1"), epoch=0)  # the dropped incoming call can no longer be answered
    assert w.data_to_send() == []
    # reusable: ids keep counting up
    assert w.register_agent("a") == 4
    assert w.connection_lost() == [RequestFailed(4, lost)]


def test_connection_lost_through_network() -> None:
    net = Network(2)
    w0, w1 = net.workers
    w1.register_agent("echo")
    net.pump()
    rid = w0.call(AgentRef("echo", "k"), Payload("M", JSON, b"1"), now=0)
    [call] = net.pump()[1]
    assert isinstance(call, IncomingCall)
    got = net.disconnect(1)
    assert [type(e) for e in got[0]] == [CallFailed]
    assert got[0][0].request_id == rid and got[0][0].error.code == ErrorCode.TARGET_DISCONNECTED  # type: ignore[union-attr]
    assert got[1] == [IncomingCallCancelled(call.call_id, 0)]  # the call it was handling is over


def test_an_answer_from_a_lost_connection_never_settles_a_new_call_with_the_same_id() -> None:
    """A restarted host numbers its calls from 1 again: answers are tied to the connection's epoch."""
    w = WorkerEngine()
    incoming_call(w, 1)
    incoming_call(w, 2)
    assert w.connection_lost() == [IncomingCallCancelled(1, 0), IncomingCallCancelled(2, 0)]
    new = incoming_call(w, 1)  # the new host's call 1: not "already in use"
    assert isinstance(new, IncomingCall) and new.epoch == w.epoch == 1
    assert w.respond(1, Payload("R", JSON, b'"old"'), epoch=0) is False  # the old handler finishes late
    assert w.respond_handler_error(2, "Exception", "late", epoch=0) is False
    assert w.data_to_send() == []
    assert w.incoming_calls == frozenset({1})
    assert w.respond(1, Payload("R", JSON, b'"new"'), epoch=1) is True
    [m] = frames(w)
    assert m["id"] == 1 and m["result"]["data"] == "new"
    assert w.respond(1, Payload("R", JSON, b'"again"'), epoch=1) is False


def test_respond_error_oversized_still_answers() -> None:
    """An error answer too large to send (a huge exception message) must still answer the call."""
    w = WorkerEngine(max_message_size=300)
    incoming_call(w, 4)
    w.respond_handler_error(4, "ValueError", "x" * 400, epoch=0)
    [m] = frames(w)
    assert m["id"] == 4 and m["error"]["code"] == ErrorCode.PAYLOAD_TOO_LARGE
    assert "data" not in m["error"]
    assert w.incoming_calls == frozenset()


def test_incoming_call_with_null_source_and_bad_base64() -> None:
    w = WorkerEngine()
    ev = incoming_call(w, 1, source=None)
    assert ev.source is None
    assert (
        w.receive(
            b'{"jsonrpc":"2.0","id":2,"method":"agent.call","params":{"target":{"type":"t","key":"k"},'
            b'"data_type":"B","data_content_type":"application/octet-stream","data_base64":"@@@"}}',
            0,
        )
        == []
    )
    [m] = frames(w)
    assert m["id"] == 2 and m["error"]["code"] == ErrorCode.INVALID_PARAMS
    assert w.incoming_calls == frozenset({1})


def test_incoming_event_without_payload_is_reported_not_raised() -> None:
    w = WorkerEngine()
    frame = event_frame(["a"]).replace(b', "data": {"n": 1}', b"")
    assert w.receive(frame, 0) == []
    [m] = frames(w)
    assert m["id"] is None and m["error"]["code"] == ErrorCode.INVALID_PARAMS


# ====================================================================================== unreadable payloads


def test_respond_unreadable_answers_the_call_with_the_payload_names() -> None:
    w = WorkerEngine()
    call = incoming_call(w, 5, data_type="Secret", data_content_type="application/json; charset=utf-8")
    w.respond_unreadable(call.call_id, call.payload, "no serializer for 'Secret'", epoch=call.epoch)
    assert w.data_to_send() == [
        b'{"jsonrpc":"2.0","id":5,"error":{"code":-32015,"message":"no serializer for \'Secret\'",'
        b'"data":{"data_type":"Secret","data_content_type":"application/json; charset=utf-8"}}}'
    ]
    assert w.incoming_calls == frozenset()
    assert (w.stats.calls_received, w.stats.calls_unreadable) == (1, 1)
    w.respond_unreadable(call.call_id, call.payload, "again", epoch=call.epoch)  # settled: nothing more
    assert w.data_to_send() == [] and w.stats.calls_unreadable == 1


def test_event_unreadable_is_counted_and_reported_to_the_host() -> None:
    w = WorkerEngine()
    [event] = w.receive(event_frame(["echo"], dataschema="Secret", datacontenttype=JSON), 0)
    assert isinstance(event, IncomingEvent)
    w.event_unreadable(event, "no serializer")
    assert frames(w) == [
        {
            "jsonrpc": "2.0",
            "id": None,
            "error": {
                "code": ErrorCode.UNREADABLE_PAYLOAD,
                "message": "no serializer",
                "data": {"data_type": "Secret", "data_content_type": JSON, "event_id": "e1"},
            },
        }
    ]
    assert (w.stats.events_received, w.stats.events_unreadable, w.stats.events_dropped) == (1, 1, 0)
    w.receive(b'{"jsonrpc":"2.0","method":"agent.event","params":{"recipients":["echo"]}}', 0)
    assert (w.stats.events_received, w.stats.events_dropped) == (2, 1)


def test_result_unreadable_is_an_error_for_the_caller() -> None:
    w = WorkerEngine()
    error = w.result_unreadable(Payload("Answer", JSON, b"{}"), "cannot read it")
    assert (error.code, error.message) == (ErrorCode.UNREADABLE_PAYLOAD, "cannot read it")
    assert decode_error_data(error) == {"data_type": "Answer", "data_content_type": JSON}
    assert w.stats.results_unreadable == 1 and w.data_to_send() == []


# ====================================================================================== how a connection ends


@pytest.mark.parametrize(
    ("close_code", "code", "words"),
    [
        (None, ErrorCode.CONNECTION_LOST, "connection to the host was lost"),
        (1006, ErrorCode.CONNECTION_LOST, "connection to the host was lost"),
        (1001, ErrorCode.CONNECTION_LOST, "the host shut down (close 1001)"),
        (1009, ErrorCode.PAYLOAD_TOO_LARGE, "max_message_size="),
        (4008, ErrorCode.CONNECTION_LOST, "stopped reading"),
    ],
)
def test_connection_lost_says_how_the_connection_ended(close_code: int | None, code: int, words: str) -> None:
    w = WorkerEngine()
    call = w.call(AgentRef("x", "y"), Payload("M", JSON, b"1"), now=0)
    request = w.register_agent("t")
    events = w.connection_lost(close_code)
    assert [type(e) for e in events] == [CallFailed, RequestFailed]
    for event in events:
        assert isinstance(event, (CallFailed, RequestFailed))
        assert event.error.code == code and words in event.error.message, event
    assert {e.request_id for e in events if isinstance(e, (CallFailed, RequestFailed))} == {call, request}


def test_connection_made_applies_the_hosts_lower_limit() -> None:
    w = WorkerEngine(max_message_size=1000)
    w.connection_made(host_max_message_size=300)
    assert (w.max_message_size, w.configured_max_message_size) == (300, 1000)
    with pytest.raises(PayloadTooLargeError):
        w.call(AgentRef("x", "y"), Payload("M", JSON, b'"' + b"a" * 300 + b'"'), now=0)
    w.connection_made(host_max_message_size=5000)  # a higher limit never raises ours
    assert w.max_message_size == 1000
    w.connection_made()
    assert w.max_message_size == 1000


def test_handler_error_always_carries_its_data() -> None:
    """-32004's data is part of the contract: without an exception type it names "Exception"
    (found by the wire schema check over the worker state machine)."""
    w = WorkerEngine()
    call = incoming_call(w, 3)
    w.respond_handler_error(call.call_id, "", "boom", epoch=call.epoch)
    [frame] = frames(w)
    assert frame["error"] == {
        "code": ErrorCode.HANDLER_ERROR,
        "message": "boom",
        "data": {"exception_type": "Exception", "message": "boom"},
    }
