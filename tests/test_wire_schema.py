"""docs/protocol.schema.json: a valid JSON Schema that names every method and every error with
data, agrees with the walk-through of docs/PROTOCOL.md, and a checker (tests/wire_schema.py,
run on every engine frame of the suite) that can fail."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema

from sansio_runtime import ErrorCode
from sansio_runtime import _wire as wire

from .wire_schema import HOST_TO_WORKER, SCHEMA, WORKER_TO_HOST, Produced, problems

ROOT = Path(__file__).resolve().parents[1]


def test_the_schema_is_a_valid_draft_2020_12_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


def test_every_method_is_in_the_schema() -> None:
    methods = {value for name, value in vars(wire).items() if name.isupper() and isinstance(value, str)}
    methods = {m for m in methods if m.startswith(("runtime.", "agent.", "$/"))}
    worker = set(SCHEMA["$defs"]["WorkerRequest"]["properties"]["method"]["enum"])
    host = set(SCHEMA["$defs"]["HostRequest"]["properties"]["method"]["enum"])
    assert methods == worker | host
    assert worker == methods - {wire.AGENT_EVENT} and host == {wire.AGENT_CALL, wire.AGENT_EVENT, wire.CANCEL_REQUEST}


def test_errors_with_data_are_checked() -> None:
    conditions = [c["if"]["properties"]["code"]["const"] for c in SCHEMA["$defs"]["ErrorObject"]["allOf"]]
    assert sorted(conditions) == sorted([ErrorCode.HANDLER_ERROR, ErrorCode.UNREADABLE_PAYLOAD])
    bare = {"jsonrpc": "2.0", "id": 1, "error": {"code": ErrorCode.UNREADABLE_PAYLOAD, "message": "m"}}
    assert not HOST_TO_WORKER.is_valid(bare)
    bare["error"]["data"] = {"data_type": "T", "data_content_type": "application/json"}  # type: ignore[index]
    assert HOST_TO_WORKER.is_valid(bare)


def test_the_protocol_walk_through_matches_the_schema() -> None:
    """Section 8 of PROTOCOL.md, whose lines say their direction: "W1 →" to the host, "W1 ←" from it."""
    text = (ROOT / "docs" / "PROTOCOL.md").read_text()
    walk = text[text.index("## 8. Walk-through") : text.index("## 9. Failure semantics")]
    lines = re.findall(r"^W\d ([→←]) (\{.*\})$", walk, re.MULTILINE)
    assert len(lines) >= 15
    for arrow, frame in lines:
        check = WORKER_TO_HOST if arrow == "→" else HOST_TO_WORKER
        errors = [e.message for e in check.iter_errors(json.loads(frame))]
        assert not errors, (arrow, frame, errors)


def test_the_checker_reports_a_frame_that_breaks_the_schema() -> None:
    no_data = b'{"jsonrpc":"2.0","id":"1","error":{"code":-32004,"message":"boom"}}'
    [problem] = problems([Produced(False, no_data, None)])
    assert "WorkerEngine produced a frame that does not match" in problem and "'data' is a required property" in problem
    unsolicited_batch = b'[{"jsonrpc":"2.0","method":"agent.event","params":{"recipients":["a"],"event":{}}}]'
    assert len(list(problems([Produced(True, unsolicited_batch, None)]))) == 1
    null_metadata = (
        b'{"jsonrpc":"2.0","id":2,"method":"agent.call","params":{"target":{"type":"t","key":"k"},'
        b'"data_type":"s","data_content_type":"application/json","data":1,"metadata":null}}'
    )
    assert len(list(problems([Produced(False, null_metadata, None)]))) == 1


def test_the_checker_lets_a_relay_of_invalid_input_through_but_not_the_hosts_own_errors() -> None:
    bad_answer = b'{"jsonrpc":"2.0","id":7,"result":"not a CallResult"}'
    relayed = b'{"jsonrpc":"2.0","id":1,"result":"not a CallResult"}'
    assert list(problems([Produced(True, relayed, bad_answer)])) == []
    assert len(list(problems([Produced(True, relayed, None)]))) == 1  # nothing to blame: reported
    garbage = b'{"jsonrpc":"2.0","id":1,"method":"agent.call","params":{"target":5}}'
    own_error_without_message = b'{"jsonrpc":"2.0","id":1,"error":{"code":-32602}}'
    assert len(list(problems([Produced(True, own_error_without_message, garbage)]))) == 1
