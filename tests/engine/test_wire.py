"""The wire module: exact JSON-RPC 2.0 bytes, raw JSON payload splicing, base64 for the rest."""

from __future__ import annotations

import base64
import json

import msgspec
import pytest
from msgspec import UNSET, Raw

from sansio_runtime import (
    AgentRef,
    PayloadEncodingError,
    RpcError,
    TypePrefixSubscriptionSpec,
    TypeSubscriptionSpec,
    decode_error_data,
    is_json_content_type,
)
from sansio_runtime import _wire as wire

# ---------------------------------------------------------------------------------- encoders


def test_request_bytes_exact() -> None:
    assert wire.request(1, "m", Raw(b'{"a":1}')) == b'{"jsonrpc":"2.0","id":1,"method":"m","params":{"a":1}}'
    assert wire.request("x", "m", Raw(b"[]")) == b'{"jsonrpc":"2.0","id":"x","method":"m","params":[]}'


def test_request_with_struct_params() -> None:
    assert (
        wire.request(7, wire.REGISTER_AGENT, wire.RegisterAgentParams("echo"))
        == b'{"jsonrpc":"2.0","id":7,"method":"runtime.register_agent","params":{"type":"echo"}}'
    )
    assert (
        wire.request(8, wire.REMOVE_SUBSCRIPTION, wire.RemoveSubscriptionParams("s1"))
        == b'{"jsonrpc":"2.0","id":8,"method":"runtime.remove_subscription","params":{"id":"s1"}}'
    )


def test_notification_bytes_exact() -> None:
    assert (
        wire.notification(wire.CANCEL_REQUEST, wire.CancelParams(5))
        == b'{"jsonrpc":"2.0","method":"$/cancelRequest","params":{"id":5}}'
    )


def test_response_bytes_exact() -> None:
    assert wire.response(3, None) == b'{"jsonrpc":"2.0","id":3,"result":null}'
    assert wire.response("a", Raw(b'{"x":[1,2]}')) == b'{"jsonrpc":"2.0","id":"a","result":{"x":[1,2]}}'
    assert wire.response(None, None) == b'{"jsonrpc":"2.0","id":null,"result":null}'


def test_error_response_bytes_exact() -> None:
    assert (
        wire.error_response(None, -32700, "bad")
        == b'{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"bad"}}'
    )
    assert (
        wire.error_response(4, -32004, "boom", Raw(b'{"k":1}'))
        == b'{"jsonrpc":"2.0","id":4,"error":{"code":-32004,"message":"boom","data":{"k":1}}}'
    )


def test_forwarded_error_keeps_data_raw() -> None:
    err = wire.RPC_ERROR_DECODER.decode(b'{"code":-32004,"message":"m","data": {"z" : 1}}')
    assert (
        wire.forwarded_error(9, err)
        == b'{"jsonrpc":"2.0","id":9,"error":{"code":-32004,"message":"m","data":{"z" : 1}}}'
    )


def test_handler_error_data_roundtrip() -> None:
    data = wire.handler_error_data("ValueError", "nope")
    assert bytes(data) == b'{"exception_type":"ValueError","message":"nope"}'
    assert decode_error_data(RpcError(-32004, "nope", data)) == {"exception_type": "ValueError", "message": "nope"}
    assert decode_error_data(RpcError(-32004, "nope")) is None


def test_subscription_specs_are_tagged_by_kind() -> None:
    assert msgspec.json.encode(TypeSubscriptionSpec("s", "t", "a")) == (
        b'{"kind":"type","id":"s","topic_type":"t","agent_type":"a"}'
    )
    assert msgspec.json.encode(TypePrefixSubscriptionSpec("s", "t", "a")) == (
        b'{"kind":"type_prefix","id":"s","topic_type_prefix":"t","agent_type":"a"}'
    )
    decoded = wire.SUBSCRIPTION_LIST_DECODER.decode(
        b'[{"kind":"type_prefix","id":"p","topic_type_prefix":"n","agent_type":"x"},'
        b'{"kind":"type","id":"e","topic_type":"news","agent_type":"y"}]'
    )
    assert decoded == [TypePrefixSubscriptionSpec("p", "n", "x"), TypeSubscriptionSpec("e", "news", "y")]


def test_call_params_omit_unset_members() -> None:
    params = wire.CallParams(
        target=AgentRef("a", "k"), data_type="t", data_content_type="application/json", data=Raw(b"1")
    )
    assert wire.request(1, wire.AGENT_CALL, params) == (
        b'{"jsonrpc":"2.0","id":1,"method":"agent.call","params":'
        b'{"target":{"type":"a","key":"k"},"data_type":"t","data_content_type":"application/json","data":1}}'
    )


# ---------------------------------------------------------------------------------- payloads


@pytest.mark.parametrize(
    "payload",
    [b'{ "x" : [1, 2.50, "\\u00e9"] }', b"  42  ", b'"s"', b"null", b"[\n]", '{"é":"✓"}'.encode()],
)
def test_json_payload_is_spliced_byte_identical(payload: bytes) -> None:
    data, data_base64 = wire.pack_payload(payload, "application/json")
    assert data_base64 is UNSET
    assert isinstance(data, Raw) and bytes(data) == payload
    params = wire.CallParams(target=AgentRef("a", "k"), data_type="t", data_content_type="application/json", data=data)
    frame = wire.request(1, wire.AGENT_CALL, params)
    assert b'"data":' + payload + b"}}" in frame
    # and the frame is valid JSON that decodes back to the same raw bytes
    back = wire.CALL_PARAMS_DECODER.decode(wire.MESSAGE_DECODER.decode(frame).params)
    assert (
        wire.unpack_payload(back.data, back.data_base64) == payload.strip()
    )  # JSON whitespace around a value is not kept


@pytest.mark.parametrize("ct", ["application/octet-stream", "text/plain", "application/x-protobuf", "text/json"])
def test_non_json_payload_goes_base64(ct: str) -> None:
    payload = b"\x00\x01\xff not json {"
    data, data_base64 = wire.pack_payload(payload, ct)
    assert data is UNSET
    assert data_base64 == base64.b64encode(payload).decode("ascii")
    assert wire.unpack_payload(data, data_base64) == payload


def test_json_looking_bytes_with_non_json_type_still_base64() -> None:
    data, data_base64 = wire.pack_payload(b'{"a":1}', "text/plain")
    assert data is UNSET and data_base64 == "eyJhIjoxfQ=="


@pytest.mark.parametrize("bad", [b"", b"{", b"not json", b"1 2", b"{'a':1}", b"NaN", b'"\xff"', b'{"a":"\xc3"}'])
def test_pack_payload_rejects_invalid_json(bad: bytes) -> None:
    with pytest.raises(PayloadEncodingError):
        wire.pack_payload(bad, "application/json")


def test_pack_payload_rejects_invalid_json_for_plus_json_types() -> None:
    with pytest.raises(PayloadEncodingError, match="application/cloudevents\\+json"):
        wire.pack_payload(b"{", "application/cloudevents+json")


def test_unpack_payload_errors() -> None:
    with pytest.raises(PayloadEncodingError, match="both"):
        wire.unpack_payload(Raw(b"1"), "AA==")
    with pytest.raises(PayloadEncodingError, match="neither"):
        wire.unpack_payload(UNSET, UNSET)
    with pytest.raises(PayloadEncodingError, match="base64"):
        wire.unpack_payload(UNSET, "***")
    with pytest.raises(PayloadEncodingError, match="base64"):
        wire.unpack_payload(UNSET, "AAA")  # bad padding


def test_unpack_payload_success() -> None:
    assert wire.unpack_payload(Raw(b'{"a":1}'), UNSET) == b'{"a":1}'
    assert wire.unpack_payload(UNSET, "AAH/") == b"\x00\x01\xff"
    assert wire.unpack_payload(UNSET, "") == b""


def test_has_exactly_one_payload() -> None:
    assert wire.has_exactly_one_payload(Raw(b"1"), UNSET) is True
    assert wire.has_exactly_one_payload(UNSET, "") is True
    assert wire.has_exactly_one_payload(UNSET, UNSET) is False
    assert wire.has_exactly_one_payload(Raw(b"1"), "") is False


@pytest.mark.parametrize(
    ("ct", "expected"),
    [
        ("application/json", True),
        ("application/cloudevents+json", True),
        ("application/json; charset=utf-8", True),
        ("Application/JSON ; charset=UTF-8", True),
        ("application/vnd.api+json", True),
        ("application/cloudevents+json;charset=utf-8", True),
        ("text/plain", False),
        ("text/plain; charset=utf-8", False),
        ("application/octet-stream", False),
        ("application/jsonx", False),
        ("text/json", False),
        ("json", False),
        ("", False),
    ],
)
def test_is_json_content_type(ct: str, expected: bool) -> None:
    assert is_json_content_type(ct) is expected


# ---------------------------------------------------------------------------------- decoders


def test_frame_decoder_shapes() -> None:
    m = wire.FRAME_DECODER.decode(b'{"jsonrpc":"2.0","id":1,"method":"m","params":{"a": 1}}')
    assert isinstance(m, wire.IncomingMessage)
    assert (m.jsonrpc, m.id, m.method) == ("2.0", 1, "m")
    assert isinstance(m.params, Raw) and bytes(m.params) == b'{"a": 1}'
    assert m.result is UNSET and m.error is UNSET
    batch = wire.FRAME_DECODER.decode(b'[{"a":1}, 2]')
    assert isinstance(batch, list) and [bytes(x) for x in batch] == [b'{"a":1}', b"2"]
    with pytest.raises(msgspec.ValidationError):
        wire.FRAME_DECODER.decode(b"42")
    with pytest.raises(msgspec.DecodeError):
        wire.FRAME_DECODER.decode(b"{")


def test_cloud_event_keeps_unknown_extension_bytes_when_forwarded() -> None:
    raw = b'{"specversion":"1.0","id":"e","source":"s","type":"t","myext":"v","data":{"k": 1}}'
    routing = wire.EVENT_ROUTING_DECODER.decode(raw)
    assert (routing.id, routing.source, routing.type) == ("e", "s", "t")
    delivery = wire.notification(wire.AGENT_EVENT, wire.EventDelivery(["a"], Raw(raw)))
    assert delivery == b'{"jsonrpc":"2.0","method":"agent.event","params":{"recipients":["a"],"event":' + raw + b"}}"
    assert json.loads(delivery)["params"]["event"]["myext"] == "v"
