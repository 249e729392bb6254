"""The CloudEvents HTTP binding (request side): requests built by the official ``cloudevents`` SDK,
pushes as Dapr and Knative send them, and malformed ones, read into ``agent.publish`` params.

The SDK (2.x) builds every binary and structured request here; it has no batch helper, so a batch
is the JSON array of the SDK's own JSON-format serializations of its events.
"""

from __future__ import annotations

import base64
import json
import string
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from cloudevents.core.bindings.http import HTTPMessage, to_binary_event, to_structured_event
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent as SdkEvent
from cloudevents.v1 import http as sdk_v1
from dateutil.parser import isoparse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from io_backends.sansio._cloudevents import (
    BATCH_CONTENT_TYPE,
    STRUCTURED_CONTENT_TYPE,
    CloudEventRefused,
    ContentMode,
    ReceivedEvents,
    content_mode,
    read_events,
)
from sansio_runtime import ClientKind, HostEngine, TypeSubscriptionSpec, WorkerEngine
from tests.wire_schema import validator

CLOUD_EVENT_SCHEMA = validator("CloudEvent")
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def headers_of(message: HTTPMessage | dict[str, str]) -> list[tuple[bytes, bytes]]:
    """Request headers as h11 and ASGI give them: (lower-case name, value) byte pairs."""
    items = message.headers.items() if isinstance(message, HTTPMessage) else message.items()
    return [(k.lower().encode(), v.encode()) for k, v in items]


def read(message: HTTPMessage, **limits: int) -> ReceivedEvents:
    return read_events(headers_of(message), message.body, **limits)


def params_of(received: ReceivedEvents) -> list[dict[str, Any]]:
    out = []
    for event in received.events:
        params = json.loads(event.params)
        CLOUD_EVENT_SCHEMA.validate(params)
        assert (params["id"], params["type"], params["source"]) == (event.id, event.type, event.source)
        assert (params["dataschema"], params["datacontenttype"]) == (event.dataschema, event.datacontenttype)
        out.append(params)
    return out


def one(received: ReceivedEvents) -> dict[str, Any]:
    (params,) = params_of(received)
    return params


def payload(params: dict[str, Any]) -> bytes:
    """The payload bytes of our params, whichever form they took."""
    assert ("data" in params) != ("data_base64" in params), params
    if "data_base64" in params:
        return base64.b64decode(params["data_base64"], validate=True)
    return json.dumps(params["data"]).encode()


def refused(headers: list[tuple[bytes, bytes]], body: bytes, **limits: int) -> CloudEventRefused:
    with pytest.raises(CloudEventRefused) as info:
        read_events(headers, body, **limits)
    return info.value


def structured(body: Any) -> tuple[list[tuple[bytes, bytes]], bytes]:
    return [(b"content-type", STRUCTURED_CONTENT_TYPE.encode())], json.dumps(body).encode()


def binary(**attributes: str) -> list[tuple[bytes, bytes]]:
    base = {"specversion": "1.0", "id": "e-1", "source": "/s", "type": "news"}
    base.update(attributes)
    return [(f"ce-{k}".encode(), v.encode()) for k, v in base.items()]


# ------------------------------------------------------------------ the official SDK as client


def test_sdk_binary_json_event() -> None:
    event = SdkEvent(
        {"type": "news", "source": "/newsroom", "datacontenttype": "application/json", "dataschema": "NewsItem"},
        {"headline": "x", "n": 1},
    )
    received = read(to_binary_event(event))
    assert received.mode is ContentMode.BINARY
    params = one(received)
    assert params["type"] == "news" and params["source"] == "/newsroom" and params["id"] == event.get_id()
    assert params["dataschema"] == "NewsItem" and params["datacontenttype"] == "application/json"
    assert params["data"] == {"headline": "x", "n": 1}
    assert isoparse(params["time"]) == event.get_time()


def test_sdk_structured_binary_data_and_extension() -> None:
    event = SdkEvent(
        {
            "type": "echo:default",
            "source": "default",
            "datacontenttype": "application/octet-stream",
            "dataschema": "bytes",
            "myext": "kept",
            "count": 7,
            "flag": True,
        },
        b"\x00\x01\xfe",
    )
    received = read(to_structured_event(event))
    assert received.mode is ContentMode.STRUCTURED
    params = one(received)
    assert params["data_base64"] == "AAH+" and "data" not in params
    assert (params["myext"], params["count"], params["flag"]) == ("kept", 7, True)
    assert params["dataschema"] == "bytes"


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the 1.x API is deprecated, and still what most users call
def test_sdk_v1_api_binary_and_structured() -> None:
    """The 1.x API (``cloudevents.v1.http``), which most existing users call, reads the same."""
    event = sdk_v1.CloudEvent(
        {"type": "orders", "source": "https://example.com/shop", "dataschema": "Order", "subject": "o-1"},
        {"order": 1},
    )
    for to_http in (sdk_v1.to_binary, sdk_v1.to_structured):
        headers, body = to_http(event)
        params = one(read_events(headers_of(headers), body))
        assert (params["type"], params["dataschema"], params["subject"]) == ("orders", "Order", "o-1")
        assert params["data"] == {"order": 1} and params["datacontenttype"] == "application/json"


def test_sdk_percent_encoded_headers_decode() -> None:
    source = 'Euro € 😀 "quoted" 100%'
    event = SdkEvent({"type": "t", "source": source, "subject": "a b", "datacontenttype": "text/plain"}, "hello")
    message = to_binary_event(event)
    assert message.headers["ce-source"] == "Euro%20%E2%82%AC%20%F0%9F%98%80%20%22quoted%22%20100%25"
    params = one(read(message))
    assert params["source"] == source and params["subject"] == "a b"
    assert params["datacontenttype"] == "text/plain" and payload(params) == b"hello"


def test_sdk_batch_of_events() -> None:
    fmt = JSONFormat()
    events = [
        SdkEvent({"type": "a", "source": "s", "dataschema": "A"}, {"i": 1}),
        SdkEvent({"type": "b", "source": "s", "datacontenttype": "text/plain"}, "two"),
        SdkEvent({"type": "c", "source": "s"}, b"\x03"),
    ]
    body = b"[" + b",".join(fmt.write(e) for e in events) + b"]"
    received = read_events([(b"content-type", BATCH_CONTENT_TYPE.encode())], body)
    assert received.mode is ContentMode.BATCH
    a, b, c = params_of(received)
    assert [p["id"] for p in (a, b, c)] == [e.get_id() for e in events]
    assert a["data"] == {"i": 1} and a["dataschema"] == "A"
    assert payload(b) == b"two" and b["datacontenttype"] == "text/plain" and b["dataschema"] == "b"
    assert payload(c) == b"\x03" and c["datacontenttype"] == "application/octet-stream"


def test_empty_batch_is_no_events() -> None:
    received = read_events([(b"content-type", b"application/cloudevents-batch+json; charset=utf-8")], b"[]")
    assert received == ReceivedEvents(ContentMode.BATCH, ())


# -------------------------------------------------------------- pushes as the platforms send them


def test_dapr_style_push() -> None:
    """Dapr delivers pub/sub messages to a subscriber as structured CloudEvents of its own envelope."""
    body = {
        "data": {"orderId": 1},
        "datacontenttype": "application/json",
        "id": "5929aaac-a5e2-4ca1-859c-edfe73f11565",
        "pubsubname": "orderpubsub",
        "source": "checkout",
        "specversion": "1.0",
        "time": "2024-03-21T10:15:31Z",
        "topic": "orders",
        "traceid": TRACEPARENT,
        "traceparent": TRACEPARENT,
        "tracestate": "",
        "type": "com.dapr.event.sent",
    }
    headers = [
        (b"host", b"127.0.0.1:9000"),
        (b"content-type", b"application/cloudevents+json"),
        (b"traceparent", TRACEPARENT.encode()),
        (b"pubsubname", b"orderpubsub"),
        (b"content-length", str(len(json.dumps(body))).encode()),
    ]
    params = one(read_events(headers, json.dumps(body).encode()))
    assert params["type"] == "com.dapr.event.sent" and params["source"] == "checkout"
    assert params["dataschema"] == "com.dapr.event.sent"  # no dataschema in Dapr's envelope: the type names it
    assert params["topic"] == "orders" and params["pubsubname"] == "orderpubsub" and params["tracestate"] == ""
    assert params["data"] == {"orderId": 1}


def test_knative_style_push() -> None:
    """A Knative broker delivers in binary mode, adding its own extension and the W3C trace headers."""
    headers = [
        (b"host", b"agents.default.svc.cluster.local"),
        (b"ce-specversion", b"1.0"),
        (b"ce-type", b"dev.knative.sources.ping"),
        (b"ce-source", b"/apis/v1/namespaces/default/pingsources/test-ping-source"),
        (b"ce-id", b"d8e09a6e-7e3a-4b6e-a1a0-1c0d0b8c2f4e"),
        (b"ce-time", b"2020-04-02T10:20:00.000371106Z"),
        (b"ce-knativearrivaltime", b"2020-04-02T10:20:00.01Z"),
        (b"content-type", b"application/json"),
        (b"traceparent", TRACEPARENT.encode()),
        (b"tracestate", b"rojo=00f067aa0ba902b7"),
        (b"content-length", b"27"),
    ]
    params = one(read_events(headers, b'{"message": "Hello world!"}'))
    assert params["type"] == "dev.knative.sources.ping"
    assert params["source"] == "/apis/v1/namespaces/default/pingsources/test-ping-source"
    assert params["dataschema"] == "dev.knative.sources.ping"
    assert params["knativearrivaltime"] == "2020-04-02T10:20:00.01Z"
    assert params["traceparent"] == TRACEPARENT and params["tracestate"] == "rojo=00f067aa0ba902b7"
    assert params["data"] == {"message": "Hello world!"}


def test_curl_style_binary_push_keeps_the_json_bytes() -> None:
    body = b'{ "content" : "hi",  "source": "user" }'
    params_bytes = read_events([*binary(dataschema="TextMessage"), (b"content-type", b"application/json")], body)
    assert body in params_bytes.events[0].params  # embedded as sent, whitespace and all


# ----------------------------------------------------------------- the mapping, case by case


def test_missing_datacontenttype() -> None:
    # structured data: JSON, said explicitly
    assert one(read_events(*structured({**_core(), "data": "x"})))["datacontenttype"] == "application/json"
    # structured bytes, binary body: octet-stream
    b64 = one(read_events(*structured({**_core(), "data_base64": "AAE="})))
    assert b64["datacontenttype"] == "application/octet-stream" and payload(b64) == b"\x00\x01"
    body = one(read_events(binary(), b"\x00raw"))
    assert body["datacontenttype"] == "application/octet-stream" and payload(body) == b"\x00raw"
    # a binary body that is JSON, as the SDKs send JSON data in binary mode, is JSON
    body = one(read_events(binary(), b'{"order": 1}'))
    assert body["datacontenttype"] == "application/json" and body["data"] == {"order": 1}


def test_events_without_data() -> None:
    for received in (read_events(*structured(_core())), read_events(binary(), b"")):
        params = one(received)
        assert params["data"] is None and params["datacontenttype"] == "application/json"
    # zero bytes of a declared non-JSON type
    params = one(read_events([*binary(), (b"content-type", b"text/plain")], b""))
    assert params["data_base64"] == "" and params["datacontenttype"] == "text/plain"
    params = one(read_events(*structured({**_core(), "datacontenttype": "text/plain"})))
    assert params["data_base64"] == ""
    # explicit null data is the JSON payload null
    assert one(read_events(*structured({**_core(), "data": None})))["data"] is None


def test_structured_string_data_of_a_non_json_type() -> None:
    params = one(read_events(*structured({**_core(), "datacontenttype": "application/xml", "data": '<a x="1"/>'})))
    assert payload(params) == b'<a x="1"/>' and params["datacontenttype"] == "application/xml"
    # JSON in CloudEvents' sense (*/json) but not ours (application/json, application/*+json): bytes
    params = one(read_events(*structured({**_core(), "datacontenttype": "text/json", "data": {"a": 1}})))
    assert json.loads(payload(params)) == {"a": 1} and "data_base64" in params
    # a +json type of ours stays embedded
    params = one(read_events(*structured({**_core(), "datacontenttype": "application/vnd.x+json", "data": [1]})))
    assert params["data"] == [1]


def test_dataschema_given_is_kept_even_as_a_uri() -> None:
    params = one(read_events(*structured({**_core(), "dataschema": "https://example.com/schemas/order.json"})))
    assert params["dataschema"] == "https://example.com/schemas/order.json"


def test_trace_headers() -> None:
    trace = [(b"traceparent", TRACEPARENT.encode())]
    assert one(read_events(binary() + trace, b""))["traceparent"] == TRACEPARENT
    own = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert one(read_events(binary(traceparent=own) + trace, b""))["traceparent"] == own  # the event's wins
    assert "traceparent" not in one(read_events([*binary(), (b"traceparent", b"garbage")], b""))
    batch_headers = [(b"content-type", BATCH_CONTENT_TYPE.encode()), *trace]
    assert all(
        p["traceparent"] == TRACEPARENT
        for p in params_of(
            read_events(batch_headers, b"[%s,%s]" % (json.dumps(_core()).encode(), json.dumps(_core(id="2")).encode()))
        )
    )


def test_quoted_header_values_of_older_senders() -> None:
    params = one(read_events(binary(source='"/a b"', subject='x "y \\"z\\""'), b""))
    assert params["source"] == "/a b" and params["subject"] == 'x y "z"'


def test_sender_attributes_and_message_kind_pass_through() -> None:
    params = one(read_events(binary(agagentsendertype="caller", agagentsenderkey="default", agmsgkind="publish"), b""))
    assert (params["agagentsendertype"], params["agagentsenderkey"], params["agmsgkind"]) == (
        "caller",
        "default",
        "publish",
    )


def test_head_check_before_the_body() -> None:
    assert content_mode([(b"content-type", b"Application/CloudEvents+JSON; charset=UTF-8")]) is ContentMode.STRUCTURED
    assert content_mode(binary()) is ContentMode.BINARY
    assert content_mode([(b"content-type", BATCH_CONTENT_TYPE.encode())]) is ContentMode.BATCH
    too_long = [(b"content-type", STRUCTURED_CONTENT_TYPE.encode()), (b"content-length", b"2000")]
    with pytest.raises(CloudEventRefused) as info:
        content_mode(too_long, max_body_size=1000)
    assert info.value.status == 413 and "1000" in info.value.reason


def test_params_go_through_the_engine_to_a_worker() -> None:
    """What read_events makes is what HostEngine accepts as agent.publish and WorkerEngine reads."""
    host, worker = HostEngine(), WorkerEngine()
    channel = host.connect(ClientKind.CHANNEL)
    worker.connection_made()
    worker.register_agent("reader")
    worker.add_subscription(TypeSubscriptionSpec("s1", "dev.knative.sources.ping", "reader"))
    for frame in worker.data_to_send():
        host.receive(channel, frame, 0.0)
    for out in host.data_to_send():
        worker.receive(out.data, 0.0)  # type: ignore[union-attr]
    received = read_events(
        [*binary(type="dev.knative.sources.ping", source="/ping"), (b"content-type", b"application/json")],
        b'{"message":"hi"}',
    )
    client = host.connect(ClientKind.ONE_SHOT)
    host.receive(
        client, b'{"jsonrpc":"2.0","id":1,"method":"agent.publish","params":%s}' % received.events[0].params, 0.0
    )
    outputs = host.data_to_send()
    to_worker = [o for o in outputs if getattr(o, "client", None) == channel and hasattr(o, "data")]
    (delivery,) = [o for o in to_worker if b"agent.event" in o.data]  # type: ignore[attr-defined]
    (incoming,) = worker.receive(delivery.data, 0.0)  # type: ignore[attr-defined]
    assert incoming.topic_type == "dev.knative.sources.ping" and incoming.topic_source == "/ping"  # type: ignore[union-attr]
    assert incoming.payload.data_type == "dev.knative.sources.ping"  # type: ignore[union-attr]
    assert incoming.payload.data_content_type == "application/json"  # type: ignore[union-attr]
    assert json.loads(incoming.payload.data) == {"message": "hi"}  # type: ignore[union-attr]
    answer = [o for o in outputs if getattr(o, "client", None) == client and hasattr(o, "data")]
    assert json.loads(answer[0].data) == {"jsonrpc": "2.0", "id": 1, "result": None}  # type: ignore[attr-defined]


# ------------------------------------------------------------------------------- refusals


def _core(**over: Any) -> dict[str, Any]:
    return {"specversion": "1.0", "id": "1", "source": "/s", "type": "news", **over}


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        (b"{not json", 400, "not one CloudEvent as a JSON object"),
        (b"[1]", 400, "JSON object"),
        (
            json.dumps({k: v for k, v in _core().items() if k != "id"}).encode(),
            400,
            "missing required attribute(s): id",
        ),
        (json.dumps(_core(source="")).encode(), 400, "'source' must not be empty"),
        (json.dumps(_core(specversion="0.3")).encode(), 400, 'specversion must be "1.0"'),
        (json.dumps(_core(id=5)).encode(), 400, "'id' must be a string"),
        (json.dumps(_core(type="a/b")).encode(), 400, "not a valid AutoGen topic type"),
        (json.dumps(_core(myExt="x")).encode(), 400, "lower-case letters and digits"),
        (json.dumps(_core(ext={"a": 1})).encode(), 400, "must be a string, integer or boolean"),
        (json.dumps(_core(ext=1.5)).encode(), 400, "must be a string, integer or boolean"),
        (json.dumps(_core(ext=2**40)).encode(), 400, "32-bit"),
        (json.dumps(_core(subject="a\nb")).encode(), 400, "control character"),
        (json.dumps(_core(time="yesterday")).encode(), 400, "RFC 3339"),
        (json.dumps(_core(agagentsendertype="caller")).encode(), 400, "together"),
        (json.dumps(_core(agagentsendertype="a b", agagentsenderkey="k")).encode(), 400, "valid AutoGen agent type"),
        (json.dumps(_core(data=1, data_base64="AA==")).encode(), 400, "both data and data_base64"),
        (json.dumps(_core(data_base64="not base64!")).encode(), 400, "not valid base64"),
        (json.dumps(_core(data_base64=5)).encode(), 400, "data_base64 must be a base64 string"),
        (json.dumps(_core(datacontenttype="application/xml", data={"a": 1})).encode(), 400, "must be a string"),
        (
            json.dumps(_core(datacontenttype="application/json", data_base64="bm90IGpzb24=")).encode(),
            400,
            "not valid JSON",
        ),
        (json.dumps(_core(datacontenttype="")).encode(), 400, "'datacontenttype' must not be empty"),
    ],
)
def test_malformed_structured(body: bytes, status: int, says: str) -> None:
    error = refused([(b"content-type", STRUCTURED_CONTENT_TYPE.encode())], body)
    assert error.status == status and says in error.reason, error


@pytest.mark.parametrize(
    ("headers", "body", "status", "says"),
    [
        ([(b"content-type", b"application/json")], b'{"a":1}', 400, "not a CloudEvent"),
        (binary()[:-1], b"", 400, "missing required attribute(s): ce-type"),
        ([*binary(), (b"content-type", b"application/json")], b"{oops", 400, "the body is not valid JSON"),
        ([*binary(), (b"ce-datacontenttype", b"text/plain")], b"x", 400, "Content-Type header carries it"),
        ([*binary(), (b"ce-id", b"again")], b"", 400, "ce-id appears more than once"),
        ([*binary(), (b"content-type", b"a/b"), (b"content-type", b"c/d")], b"", 400, "content-type appears more"),
        ([*binary(), (b"ce-my-ext", b"x")], b"", 400, "lower-case letters and digits"),
        ([*binary(), (b"ce-data", b"x")], b"", 400, "not 'data'"),
        (binary(source="%C0%A0"), b"", 400, "not valid UTF-8"),
        (binary(source='"open'), b"", 400, "quoted string is not closed"),
        ([*binary()[:2], (b"ce-source", b"\xff"), *binary()[3:]], b"", 400, "not UTF-8"),
        ([*binary(), (b"content-type", b"")], b"x", 400, "Content-Type is empty"),
        ([(b"content-type", b"application/cloudevents+avro")], b"x", 415, "not supported"),
        ([(b"content-type", b"application/cloudevents")], b"{}", 415, "not supported"),
        ([(b"content-type", b"application/cloudevents+json; charset=latin-1")], b"{}", 415, "must be UTF-8"),
    ],
)
def test_malformed_binary_and_unsupported(
    headers: list[tuple[bytes, bytes]], body: bytes, status: int, says: str
) -> None:
    error = refused(headers, body)
    assert error.status == status and says in error.reason, error


def test_size_limits() -> None:
    headers = [*binary(), (b"content-type", b"application/octet-stream")]
    error = refused(headers, b"x" * 101, max_body_size=100)
    assert error.status == 413 and "101 bytes" in error.reason
    # within the body limit, but a third larger once in base64: over the event limit
    error = refused(headers, b"x" * 900, max_body_size=1000, max_event_size=1000)
    assert error.status == 413 and "once encoded" in error.reason
    batch = json.dumps([_core(id=str(i)) for i in range(4)]).encode()
    error = refused([(b"content-type", BATCH_CONTENT_TYPE.encode())], batch, max_events=3)
    assert error.status == 413 and "4 events" in error.reason and "split it" in error.reason


def test_a_bad_event_refuses_the_whole_batch() -> None:
    batch = json.dumps([_core(id="ok"), _core(id="bad", type="")]).encode()
    error = refused([(b"content-type", BATCH_CONTENT_TYPE.encode())], batch)
    assert error.status == 400 and error.index == 1 and error.reason.startswith("event 1 of the batch:")
    assert "not a JSON array" in refused([(b"content-type", BATCH_CONTENT_TYPE.encode())], b'{"a":1}').reason
    assert "not a JSON array" in refused([(b"content-type", BATCH_CONTENT_TYPE.encode())], b"[1]").reason


# --------------------------------------------------------------------- the round-trip property

_TEXT = st.text(st.characters(exclude_categories=("Cc", "Cs")), min_size=1, max_size=24)
_TOPIC = st.text(st.characters(categories=("L", "Nd")) | st.sampled_from("_-.:="), min_size=1, max_size=24)
_RESERVED = {
    "specversion",
    "id",
    "source",
    "type",
    "datacontenttype",
    "dataschema",
    "subject",
    "time",
    "data",
    "agagentsendertype",
    "agagentsenderkey",
    "traceparent",
    "tracestate",
}
_EXT_NAME = st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=12).filter(
    lambda n: n not in _RESERVED
)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
_TIME = st.datetimes(
    min_value=datetime(1970, 1, 1),
    max_value=datetime(2200, 1, 1),
    timezones=st.sampled_from([timezone.utc, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))]),
)


def _sniffed(body: bytes) -> str:
    """A binary-mode body without Content-Type is JSON if it is valid JSON (RFC 8259), else octet-stream."""

    def no_constants(name: str) -> None:
        raise ValueError(name)

    try:
        json.loads(body.decode("utf-8"), parse_constant=no_constants)
    except ValueError:
        return "application/octet-stream"
    return "application/json"


@st.composite
def sdk_events(draw: st.DrawFn, binary_mode: bool) -> tuple[SdkEvent, str, bytes]:
    """An event the SDK can build, with the content type and payload bytes our params must carry."""
    attributes: dict[str, Any] = {"type": draw(_TOPIC), "source": draw(_TEXT), "id": draw(_TEXT)}
    for name in ("subject", "dataschema"):
        if draw(st.booleans()):
            attributes[name] = draw(_TEXT)
    attributes["time"] = draw(_TIME)
    ext_value = _TEXT if binary_mode else _TEXT | st.integers(-(2**31), 2**31 - 1) | st.booleans()
    attributes.update(draw(st.dictionaries(_EXT_NAME, ext_value, max_size=3)))
    kind = draw(st.sampled_from(["none", "json", "text", "bytes"]))
    data: Any
    if kind == "none":
        data, content_type, expected = None, "application/json", b"null"
    elif kind == "json":
        content_type = draw(
            st.sampled_from(["application/json", "application/vnd.example+json", "application/json; charset=utf-8"])
        )
        attributes["datacontenttype"] = content_type
        data = draw(st.dictionaries(st.text(max_size=6), _JSON, max_size=4))
        expected = json.dumps(data).encode()
    elif kind == "text":
        data = draw(_TEXT)
        declared = draw(st.sampled_from([None, "text/plain", "text/plain; charset=utf-8", "application/xml"]))
        if declared is not None:
            attributes["datacontenttype"] = declared
        if declared is None and not binary_mode:  # the JSON format writes it as a JSON string
            content_type, expected = "application/json", json.dumps(data).encode()
        else:
            content_type, expected = declared or _sniffed(data.encode()), data.encode()
    else:
        data = draw(st.binary(min_size=1, max_size=40))
        declared = draw(st.sampled_from([None, "application/octet-stream", "application/x-protobuf"]))
        if declared is not None:
            attributes["datacontenttype"] = declared
        content_type, expected = declared or (_sniffed(data) if binary_mode else "application/octet-stream"), data
    return SdkEvent(attributes, data), content_type, expected


def _check_round_trip(
    event: SdkEvent, content_type: str, expected: bytes, params: dict[str, Any], binary_mode: bool
) -> None:
    attributes = event.get_attributes()
    assert params["specversion"] == "1.0"
    assert (params["id"], params["source"], params["type"]) == (event.get_id(), event.get_source(), event.get_type())
    assert params["dataschema"] == attributes.get("dataschema", event.get_type())
    assert params["datacontenttype"] == content_type
    for name, value in attributes.items():
        if name in ("specversion", "id", "source", "type", "datacontenttype", "dataschema"):
            continue
        if name == "time":
            assert isoparse(params["time"]) == value
        else:
            assert params[name] == (str(value) if binary_mode else value), name
    got = payload(params)
    if "data" in params:
        assert json.loads(got) == json.loads(expected)
    else:
        assert got == expected


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_any_sdk_event_round_trips_to_our_params(data: st.DataObject) -> None:
    binary_mode = data.draw(st.booleans(), label="binary mode")
    event, content_type, expected = data.draw(sdk_events(binary_mode), label="event")
    message = to_binary_event(event) if binary_mode else to_structured_event(event)
    received = read(message)
    assert received.mode is (ContentMode.BINARY if binary_mode else ContentMode.STRUCTURED)
    _check_round_trip(event, content_type, expected, one(received), binary_mode)


@settings(max_examples=40, deadline=None)
@given(st.lists(sdk_events(False), min_size=1, max_size=5))
def test_any_sdk_batch_round_trips(drawn: list[tuple[SdkEvent, str, bytes]]) -> None:
    fmt = JSONFormat()
    body = b"[" + b",".join(fmt.write(event) for event, _, _ in drawn) + b"]"
    received = read_events([(b"content-type", BATCH_CONTENT_TYPE.encode())], body)
    for (event, content_type, expected), params in zip(drawn, params_of(received), strict=True):
        _check_round_trip(event, content_type, expected, params, False)
