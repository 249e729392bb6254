"""Model-based fuzzing of :class:`WorkerEngine`.

The machine plays both the worker runtime (issuing calls and registrations, answering incoming
calls, cancelling, advancing time, losing the connection) and a misbehaving host (answers with
right, unknown, duplicate and string ids, malformed results and errors, incoming calls, cancels,
events, garbage). A small model predicts every event ``receive``/``handle_timer``/
``connection_lost`` returns and every frame the engine queues; frames are decoded from bytes.

Checked at every step: each request of ours resolves exactly once (succeeded, failed, failed by
deadline or connection loss, or cancelled locally) and never twice; ``pending_requests``,
``incoming_calls`` and ``next_deadline`` equal the model's; garbage never raises and is answered
with the right code; ``respond`` after a cancel queues nothing; the publishing agent is never a
recipient of an :class:`IncomingEvent`.

Connections come and go mid-call: after ``connection_lost`` the host numbers its calls from the
same small set of ids again, and the handlers of the lost connection keep answering late. Such an
answer (tied to a past ``epoch``) must queue nothing and never settle the new call with that id;
every call being handled when the connection was lost ends with an :class:`IncomingCallCancelled`.
"""

from __future__ import annotations

import base64
import enum
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar

import msgspec
from hypothesis import event, note
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

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
    WorkerEvent,
)

from ._wirecheck import ANY, Canon, idkey, json_values, match_multiset, normalize_frame

MAX_MESSAGE_SIZE = 2048
LARGE = 1700  # payloads of this many bytes or more never fit in a frame (their base64 is 2268+ bytes)
AGENT_TYPES = ["a", "b", "c"]
KEYS = ["k", "src"]
HOST_CALL_IDS: list[int | str] = [1, 2, 3, "1", "x"]


class Kind(enum.Enum):
    CALL = "call"
    RUNTIME = "runtime"
    SUBSCRIPTIONS = "subscriptions"


@dataclass
class MRequest:
    kind: Kind
    deadline: float | None
    seq: int


@dataclass
class WorkerModel:
    requests: dict[int, MRequest] = field(default_factory=dict)
    issued: set[int] = field(default_factory=set)
    resolved: set[int] = field(default_factory=set)
    incoming: set[int | str] = field(default_factory=set)  # calls of the current connection to answer
    epoch: int = 0
    lost_calls: set[tuple[int, int | str]] = field(default_factory=set)  # (epoch, id) of lost connections
    now: float = 0.0
    seq: int = 0
    frames: list[tuple[Any, ...]] = field(default_factory=list)  # expected frames queued this step
    events: list[WorkerEvent] = field(default_factory=list)  # expected events of this step
    unreadable: dict[str, int] = field(default_factory=lambda: {"calls": 0, "events": 0, "results": 0})
    calls_received: int = 0  # IncomingCall events the engine returned

    def issue(self, request_id: int, kind: Kind, deadline: float | None = None) -> None:
        assert request_id not in self.issued, f"request id {request_id} issued twice"
        assert all(request_id > i for i in self.issued), "request ids must count up"
        self.issued.add(request_id)
        self.seq += 1
        self.requests[request_id] = MRequest(kind, deadline, self.seq)

    def resolve(self, request_id: int, outcome: WorkerEvent | None) -> None:
        """Request ``request_id`` settles (``outcome`` None: cancelled locally, no event)."""
        del self.requests[request_id]
        self.resolved.add(request_id)
        if outcome is not None:
            self.events.append(outcome)

    def next_deadline(self) -> float | None:
        deadlines = [r.deadline for r in self.requests.values() if r.deadline is not None]
        return min(deadlines) if deadlines else None


class ErrCode:
    """Equal to any :class:`RpcError` with this code (for errors the engine makes up itself)."""

    def __init__(self, code: int) -> None:
        self.code = code

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ErrCode):
            return self.code == other.code
        return isinstance(other, RpcError) and other.code == self.code

    def __hash__(self) -> int:
        return self.code

    def __repr__(self) -> str:
        return f"ErrCode({self.code})"


def code_is(code: int) -> Any:
    """An :class:`ErrCode`, typed to stand in for an RpcError in the expected events."""
    return ErrCode(code)


INTERNAL = code_is(ErrorCode.INTERNAL_ERROR)


def jdump(value: object) -> bytes:
    return json.dumps(value).encode()


def b64s(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


@st.composite
def json_texts(draw: st.DrawFn) -> bytes:
    value = draw(json_values)
    if draw(st.booleans()):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
    return json.dumps(value, indent=draw(st.sampled_from([None, 1]))).encode()


@st.composite
def payloads(draw: st.DrawFn) -> Payload:
    """A payload as the worker runtime hands it over: JSON, binary, JSON that is not JSON, or large."""
    kind = draw(st.sampled_from(["json"] * 4 + ["binary"] * 4 + ["bad_json", "large"]))
    data_type = draw(st.sampled_from(["str", "T", ""]))
    if kind == "json":
        ct = draw(st.sampled_from(["application/json", "application/vnd.x+json; charset=utf-8", " Application/JSON "]))
        return Payload(data_type, ct, draw(json_texts()))
    if kind == "binary":
        return Payload(
            data_type,
            draw(st.sampled_from(["application/octet-stream", "text/plain", ""])),
            draw(st.binary(max_size=16)),
        )
    if kind == "bad_json":
        return Payload(data_type, "application/json", draw(st.sampled_from([b"", b"{", b"nan", b"\xff", b"1 2"])))
    # Its base64 alone is over MAX_MESSAGE_SIZE: no frame carrying it can be queued.
    return Payload(data_type, "application/octet-stream", b"\x00" * draw(st.sampled_from([LARGE, 2000])))


def is_json(content_type: str) -> bool:
    ct = content_type.split(";", 1)[0].strip().lower()
    return ct == "application/json" or (ct.startswith("application/") and ct.endswith("+json"))


def wire_payload(p: Payload) -> dict[str, Any]:
    """The payload members a peer must see for ``p`` (JSON as JSON, everything else base64)."""
    if is_json(p.data_content_type):
        return {"data": json.loads(p.data)}
    return {"data_base64": b64s(p.data)}


def valid_json(data: bytes) -> bool:
    try:
        msgspec.json.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return False
    return True


# ================================================================================================
# Host-side frames (what a host, or a misbehaving one, sends to the worker)


@dataclass(frozen=True)
class HostFrame:
    data: bytes
    describe: str


def response_frame(id_json: bytes | None, result: bytes | None, error: bytes | None) -> bytes:
    parts = [b'"jsonrpc":"2.0"']
    if id_json is not None:
        parts.append(b'"id":' + id_json)
    if result is not None:
        parts.append(b'"result":' + result)
    if error is not None:
        parts.append(b'"error":' + error)
    return b"{" + b",".join(parts) + b"}"


class WorkerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.engine = WorkerEngine(max_message_size=MAX_MESSAGE_SIZE)
        self.model = WorkerModel()

    # -------------------------------------------------------------- plumbing

    def check_step(self, events: list[WorkerEvent]) -> None:
        """Events returned this step and frames queued this step must be what the model says."""
        expected_events, self.model.events = self.model.events, []
        expected_frames, self.model.frames = self.model.frames, []
        for e in events:
            request_id = getattr(e, "request_id", None)
            if isinstance(e, (CallSucceeded, CallFailed, RequestSucceeded, RequestFailed)):
                assert request_id in self.model.issued, f"an event for a request we never made: {e}"
            if isinstance(e, IncomingCall):
                self.model.calls_received += 1
            if isinstance(e, IncomingEvent):
                assert e.recipients, e
                if e.sender is not None:
                    assert e.sender not in e.recipients, f"the publishing agent is among the recipients: {e}"
            event(type(e).__name__)
        if not match_multiset(expected_events, events, lambda x, y: bool(x == y)):
            raise AssertionError(f"events differ from the model\nexpected: {expected_events}\nactual:   {events}")
        sent = self.engine.data_to_send()
        assert not self.engine.has_data_to_send
        actual_frames = []
        for frame in sent:
            assert len(frame) <= MAX_MESSAGE_SIZE, f"queued a frame over the limit: {len(frame)} bytes"
            kind, message = normalize_frame(frame)
            assert kind == "single", "the worker never sends batches"
            actual_frames.append(message)
            event(f"sent {message[0]} {message[2] if message[0] == 'err' else ''}".rstrip())
        if not match_multiset(expected_frames, actual_frames, lambda x, y: bool(x == y)):
            raise AssertionError(
                f"frames differ from the model\nexpected: {expected_frames}\nactual:   {actual_frames}"
            )

    def receive(self, data: bytes | str) -> None:
        note(f"host sends {data!r}")
        self.check_step(self.engine.receive(data, self.model.now))

    def pending_of(self, kind: Kind | None = None) -> list[int]:
        return sorted(i for i, r in self.model.requests.items() if kind is None or r.kind is kind)

    # -------------------------------------------------------------- our requests

    @rule(agent_type=st.sampled_from(AGENT_TYPES), which=st.sampled_from(["register", "unregister"]))
    def register(self, agent_type: str, which: str) -> None:
        method = self.engine.register_agent if which == "register" else self.engine.unregister_agent
        rid = method(agent_type)
        self.model.issue(rid, Kind.RUNTIME)
        self.model.frames.append(("request", f"runtime.{which}_agent", idkey(rid), Canon({"type": agent_type})))
        self.check_step([])

    @rule(
        prefix=st.booleans(),
        sub_id=st.sampled_from(["s1", "s2"]),
        topic=st.sampled_from(["t", "t:", ""]),
        agent_type=st.sampled_from(AGENT_TYPES),
        remove=st.booleans(),
    )
    def subscription(self, prefix: bool, sub_id: str, topic: str, agent_type: str, remove: bool) -> None:
        if remove:
            rid = self.engine.remove_subscription(sub_id)
            self.model.frames.append(("request", "runtime.remove_subscription", idkey(rid), Canon({"id": sub_id})))
        else:
            spec: TypeSubscriptionSpec | TypePrefixSubscriptionSpec
            if prefix:
                spec = TypePrefixSubscriptionSpec(sub_id, topic, agent_type)
                wire = {"kind": "type_prefix", "id": sub_id, "topic_type_prefix": topic, "agent_type": agent_type}
            else:
                spec = TypeSubscriptionSpec(sub_id, topic, agent_type)
                wire = {"kind": "type", "id": sub_id, "topic_type": topic, "agent_type": agent_type}
            rid = self.engine.add_subscription(spec)
            self.model.frames.append(("request", "runtime.add_subscription", idkey(rid), Canon({"subscription": wire})))
        self.model.issue(rid, Kind.RUNTIME)
        self.check_step([])

    @rule(roll=st.integers(0, 2))
    def get_subscriptions(self, roll: int) -> None:
        if roll:  # argument-less rules get picked far more often than the others: even it out
            return
        rid = self.engine.get_subscriptions()
        self.model.issue(rid, Kind.SUBSCRIPTIONS)
        self.model.frames.append(("request", "runtime.get_subscriptions", idkey(rid), Canon({})))
        self.check_step([])

    @rule(
        callee=st.builds(AgentRef, st.sampled_from(AGENT_TYPES), st.sampled_from(KEYS)),
        payload=payloads(),
        timeout=st.one_of(
            st.none(),
            st.sampled_from([0.001, 0.5, 1.0, 1.0, 2.0]),
            st.none(),
            st.sampled_from([0.001, 0.5, 1.0, 1.0, 2.0]),
            st.sampled_from([0.0, -1.0]),
        ),
        source=st.one_of(st.none(), st.builds(AgentRef, st.sampled_from(AGENT_TYPES), st.sampled_from(KEYS))),
        metadata=st.one_of(st.none(), st.dictionaries(st.sampled_from(["traceparent", "k"]), st.text(max_size=4))),
    )
    def call(
        self,
        callee: AgentRef,
        payload: Payload,
        timeout: float | None,
        source: AgentRef | None,
        metadata: dict[str, str] | None,
    ) -> None:
        try:
            rid = self.engine.call(
                callee, payload, now=self.model.now, source=source, metadata=metadata, timeout=timeout
            )
        except PayloadEncodingError:
            assert is_json(payload.data_content_type) and not valid_json(payload.data)
            self.check_step([])
            return
        except PayloadTooLargeError:
            assert len(payload.data) * 4 // 3 > MAX_MESSAGE_SIZE - 400
            self.check_step([])
            return
        except ValueError:
            assert timeout is not None and timeout <= 0
            self.check_step([])
            return
        assert timeout is None or timeout > 0
        assert not is_json(payload.data_content_type) or valid_json(payload.data)
        self.model.issue(rid, Kind.CALL, None if timeout is None else self.model.now + timeout)
        params: dict[str, Any] = {
            "target": {"type": callee.type, "key": callee.key},
            "data_type": payload.data_type,
            "data_content_type": payload.data_content_type,
            **wire_payload(payload),
        }
        if source is not None:
            params["source"] = {"type": source.type, "key": source.key}
        if metadata:
            params["metadata"] = metadata
        if timeout is not None:
            params["timeout_ms"] = max(1, round(timeout * 1000))
        self.model.frames.append(("call", rid, Canon(params)))
        self.check_step([])

    call_again = call  # twice the weight

    @rule(data=st.data())
    def cancel_call(self, data: st.DataObject) -> None:
        """Cancel one of our calls locally (or try to cancel a non-call request, a settled or unknown id)."""
        choices: list[st.SearchStrategy[int]] = [st.sampled_from([0, 10**6])]
        if self.model.requests:
            choices += [st.sampled_from(self.pending_of())] * 3
        if self.model.resolved:
            choices.append(st.sampled_from(sorted(self.model.resolved)))
        rid = data.draw(st.one_of(choices), label="request id")
        pending = self.model.requests.get(rid)
        expected = pending is not None and pending.kind is Kind.CALL
        assert self.engine.cancel_call(rid) is expected
        if expected:
            self.model.resolve(rid, None)
            self.model.frames.append(("cancel", rid))
        self.check_step([])

    @rule(
        topic=st.sampled_from(["t", "t:1"]),
        source=st.sampled_from(KEYS),
        payload=payloads(),
        sender=st.one_of(st.none(), st.builds(AgentRef, st.sampled_from(AGENT_TYPES), st.sampled_from(KEYS))),
        trace=st.one_of(st.none(), st.fixed_dictionaries({"traceparent": st.just("00-1")})),
    )
    def publish(
        self, topic: str, source: str, payload: Payload, sender: AgentRef | None, trace: dict[str, str] | None
    ) -> None:
        try:
            self.engine.publish(
                topic_type=topic,
                topic_source=source,
                payload=payload,
                event_id="e1",
                sender=sender,
                trace_context=trace,
            )
        except PayloadEncodingError:
            assert is_json(payload.data_content_type) and not valid_json(payload.data)
            self.check_step([])
            return
        except PayloadTooLargeError:
            self.check_step([])
            return
        cloud_event: dict[str, Any] = {
            "specversion": "1.0",
            "id": "e1",
            "source": source,
            "type": topic,
            "datacontenttype": payload.data_content_type,
            "dataschema": payload.data_type,
            "agmsgkind": "publish",
            **wire_payload(payload),
        }
        if sender is not None:
            cloud_event.update(agagentsendertype=sender.type, agagentsenderkey=sender.key)
        if trace:
            cloud_event.update(trace)
        self.model.frames.append(("request", "agent.publish", None, Canon(cloud_event)))
        self.check_step([])

    # -------------------------------------------------------------- answers from the host

    def draw_response_id(self, data: st.DataObject) -> tuple[bytes | None, int | None]:
        """The id member (JSON text, or None for no id) of a response, and the pending id it settles."""
        choices: list[st.SearchStrategy[Any]] = [st.sampled_from(["absent", "null", 0, 10**6, 10**30])]
        if self.model.requests:
            choices += [st.sampled_from(self.pending_of())] * 4
            choices.append(st.sampled_from([str(i) for i in self.pending_of()]))
        if self.model.resolved:
            choices.append(st.sampled_from(sorted(self.model.resolved)))  # duplicates and late answers
        value = data.draw(st.one_of(choices), label="response id")
        if value == "absent":
            return None, None
        if value == "null":
            return b"null", None
        id_json = jdump(value)
        settles = value if isinstance(value, int) and value in self.model.requests else None
        return id_json, settles

    @precondition(lambda self: bool(self.model.requests) or bool(self.model.resolved))
    @rule(data=st.data())
    def host_answers(self, data: st.DataObject) -> None:
        self.receive(self.draw_answer(data))

    host_answers_again = host_answers

    def draw_answer(self, data: st.DataObject) -> bytes:
        """Draw an answer frame and record in the model what it must do."""
        id_json, settles = self.draw_response_id(data)
        kind = self.model.requests[settles].kind if settles is not None else None
        form = data.draw(st.sampled_from(["result"] * 4 + ["error", "bad_error", "neither", "both"]), label="form")
        m = self.model
        if form == "error" or form == "both":
            code = data.draw(st.sampled_from([-32004, -32001, -32005, 1, 10**20]), label="code")
            message = data.draw(st.text(max_size=5), label="message")
            err_data = data.draw(st.one_of(st.none(), json_texts()), label="error data")
            error = {"code": code, "message": message}
            error_json = jdump(error)[:-1] + (b',"data":' + err_data if err_data is not None else b"") + b"}"
            rpc = RpcError(code, message, msgspec.Raw(err_data) if err_data is not None else msgspec.UNSET)
            result_json = data.draw(json_texts(), label="result") if form == "both" else None
            frame = response_frame(id_json, result_json, error_json)
            if settles is not None:
                m.resolve(settles, CallFailed(settles, rpc) if kind is Kind.CALL else RequestFailed(settles, rpc))
            elif id_json in (None, b"null"):
                m.events.append(PeerError(rpc))
            return frame
        if form == "bad_error":
            bad = data.draw(st.sampled_from([b"null", b"5", b"{}", b'{"code":"x","message":"m"}', b'{"code":1}']))
            frame = response_frame(id_json, None, bad)
            internal = INTERNAL
            if settles is not None:
                m.resolve(
                    settles, CallFailed(settles, internal) if kind is Kind.CALL else RequestFailed(settles, internal)
                )
            elif id_json in (None, b"null"):
                m.events.append(PeerError(internal))
            return frame
        if form == "neither":
            frame = response_frame(id_json, None, None)
            if settles is not None:
                bad_answer = INTERNAL
                m.resolve(
                    settles,
                    CallFailed(settles, bad_answer) if kind is Kind.CALL else RequestFailed(settles, bad_answer),
                )
            return frame
        # A result: usually shaped for the kind of request it answers, sometimes not.
        shape = data.draw(st.sampled_from(["call", "subscriptions", "junk"]), label="result shape")
        if kind is not None and data.draw(st.integers(0, 4), label="fitting shape?"):
            shape = "subscriptions" if kind is Kind.SUBSCRIPTIONS else "call"
        if shape == "call":
            result, payload, metadata, valid = self.draw_call_result(data)
        elif shape == "subscriptions":
            result, subs, valid = self.draw_subscriptions_result(data)
        else:
            result = data.draw(json_texts(), label="junk result")
            valid = False
            subs = []  # only `[]` is both junk and a valid (empty) subscription list
            if kind is Kind.SUBSCRIPTIONS and json.loads(result) == []:
                shape, valid = "subscriptions", True
        frame = response_frame(id_json, result, None)
        if settles is None:
            return frame
        if kind is Kind.RUNTIME:
            m.resolve(settles, RequestSucceeded(settles))
        elif kind is Kind.SUBSCRIPTIONS:
            if shape == "subscriptions" and valid:
                m.resolve(settles, RequestSucceeded(settles, tuple(subs)))
            else:
                m.resolve(settles, RequestFailed(settles, INTERNAL))
        elif shape == "call" and valid:
            m.resolve(settles, CallSucceeded(settles, payload, metadata))
        else:
            m.resolve(settles, CallFailed(settles, INTERNAL))
        return frame

    def draw_call_result(self, data: st.DataObject) -> tuple[bytes, Payload, dict[str, str], bool]:
        form = data.draw(
            st.sampled_from(["json"] * 3 + ["b64"] * 3 + ["both", "neither", "bad_b64", "no_type"]), label="call result"
        )
        members = [b'"data_content_type":"ct"']
        if form != "no_type":
            members.append(b'"data_type":"T"')
        raw = data.draw(json_texts(), label="result data")
        binary = data.draw(st.binary(max_size=8), label="result bytes")
        if form in ("json", "both"):
            members.append(b'"data":' + raw)
        if form in ("b64", "both"):
            members.append(b'"data_base64":' + jdump(b64s(binary)))
        if form == "bad_b64":
            members.append(b'"data_base64":' + data.draw(st.sampled_from([b'"!!"', b'"AAE"', b'"A"', b"5"])))
        metadata = data.draw(
            st.dictionaries(st.sampled_from(["k", "traceparent"]), st.text(max_size=3)), label="metadata"
        )
        if metadata:
            members.append(b'"metadata":' + jdump(metadata))
        members = data.draw(st.permutations(members), label="member order")
        result = b"{" + b",".join(members) + b"}"
        valid = form in ("json", "b64")
        payload = Payload("T", "ct", raw if form == "json" else binary)
        return result, payload, metadata, valid

    def draw_subscriptions_result(
        self, data: st.DataObject
    ) -> tuple[bytes, list[TypeSubscriptionSpec | TypePrefixSubscriptionSpec], bool]:
        n = data.draw(st.integers(0, 3), label="subscriptions")
        subs: list[TypeSubscriptionSpec | TypePrefixSubscriptionSpec] = []
        wire = []
        for i in range(n):
            if data.draw(st.booleans(), label="prefix?"):
                subs.append(TypePrefixSubscriptionSpec(f"s{i}", "t", "a"))
                wire.append({"kind": "type_prefix", "id": f"s{i}", "topic_type_prefix": "t", "agent_type": "a"})
            else:
                subs.append(TypeSubscriptionSpec(f"s{i}", "t", "b"))
                wire.append({"kind": "type", "id": f"s{i}", "topic_type": "t", "agent_type": "b"})
        if data.draw(st.integers(0, 4), label="corrupt?") == 0:
            wire.append(data.draw(st.sampled_from([{"kind": "regex", "id": "r"}, {"id": "x"}, 5, None])))
            return jdump(wire), subs, False
        return jdump(wire), subs, True

    # -------------------------------------------------------------- requests from the host

    def draw_incoming_call(self, data: st.DataObject) -> bytes:
        """An agent.call from the host (fresh, duplicate, or malformed) and what the model expects."""
        choices: list[st.SearchStrategy[Any]] = [st.sampled_from(HOST_CALL_IDS), st.sampled_from(["absent", None])]
        if self.model.incoming:
            choices.append(st.sampled_from(sorted(self.model.incoming, key=repr)))
        call_id = data.draw(st.one_of(choices), label="call id")
        form = data.draw(
            st.sampled_from(["json", "json", "b64", "b64", "bad_b64", "both", "no_target", "bad_meta", "no_params"]),
            label="params form",
        )
        raw = data.draw(json_texts(), label="data")
        binary = data.draw(st.binary(max_size=8), label="bytes")
        source = data.draw(st.sampled_from([None, "null", {"type": "a", "key": "k"}]), label="source")
        timeout_ms = data.draw(st.sampled_from([None, 1, 5000]), label="timeout_ms")
        params = [b'"data_type":"T"', b'"data_content_type":"ct"']
        if form != "no_target":
            params.append(b'"target":{"type":"a","key":"k"}')
        if form in ("json", "both"):
            params.append(b'"data":' + raw)
        if form in ("b64", "both", "no_target", "bad_meta"):
            params.append(b'"data_base64":' + jdump(b64s(binary)))
        if form == "bad_b64":
            params.append(b'"data_base64":"A=A="')
        if form == "bad_meta":
            params.append(b'"metadata":{"k":1}')
        if source is not None:
            params.append(b'"source":' + (b"null" if source == "null" else jdump(source)))
        if timeout_ms is not None:
            params.append(b'"timeout_ms":' + jdump(timeout_ms))
        parts = [b'"jsonrpc":"2.0"', b'"method":"agent.call"']
        if call_id != "absent":
            parts.append(b'"id":' + jdump(call_id))
        if form != "no_params":
            parts.append(b'"params":{' + b",".join(params) + b"}")
        frame = b"{" + b",".join(parts) + b"}"

        m = self.model
        if call_id in ("absent", None):
            m.frames.append(("err", None, ErrorCode.INVALID_REQUEST, ANY, None))
        elif form in ("no_params", "bad_b64", "both", "no_target", "bad_meta"):
            m.frames.append(("err", idkey(call_id), ErrorCode.INVALID_PARAMS, ANY, None))
        elif call_id in m.incoming:
            m.frames.append(("err", idkey(call_id), ErrorCode.INVALID_REQUEST, ANY, None))
        else:
            m.incoming.add(call_id)
            m.events.append(
                IncomingCall(
                    call_id=call_id,
                    target=AgentRef("a", "k"),
                    source=AgentRef("a", "k") if isinstance(source, dict) else None,
                    payload=Payload("T", "ct", raw if form == "json" else binary),
                    metadata={},
                    timeout_ms=timeout_ms,
                    epoch=m.epoch,
                )
            )
        return frame

    @rule(data=st.data())
    def host_calls_us(self, data: st.DataObject) -> None:
        self.receive(self.draw_incoming_call(data))

    host_calls_us_again = host_calls_us

    def draw_cancel(self, data: st.DataObject) -> bytes:
        choices: list[st.SearchStrategy[Any]] = [st.sampled_from(HOST_CALL_IDS)]
        if self.model.incoming:
            choices += [st.sampled_from(sorted(self.model.incoming, key=repr))] * 3
        target = data.draw(st.one_of(choices), label="cancelled id")
        form = data.draw(st.sampled_from(["ok", "ok", "as_request", "bad", "no_params"]), label="cancel form")
        if form == "bad":
            return b'{"jsonrpc":"2.0","method":"$/cancelRequest","params":{"id":null}}'
        if form == "no_params":
            return b'{"jsonrpc":"2.0","method":"$/cancelRequest"}'
        if target in self.model.incoming:
            self.model.incoming.discard(target)
            self.model.events.append(IncomingCallCancelled(target, self.model.epoch))
        rid = b'"id":7,' if form == "as_request" else b""
        return b'{"jsonrpc":"2.0",' + rid + b'"method":"$/cancelRequest","params":{"id":' + jdump(target) + b"}}"

    @rule(data=st.data())
    def host_cancels_a_call(self, data: st.DataObject) -> None:
        self.receive(self.draw_cancel(data))

    def draw_event(self, data: st.DataObject) -> bytes:
        recipients = data.draw(st.lists(st.sampled_from(AGENT_TYPES), max_size=3, unique=True), label="recipients")
        source = data.draw(st.sampled_from(KEYS), label="source")
        sender = data.draw(
            st.one_of(
                st.none(),
                st.tuples(st.sampled_from(AGENT_TYPES), st.sampled_from(KEYS)),
                st.tuples(st.sampled_from(AGENT_TYPES), st.none()),
            ),
            label="sender",
        )
        form = data.draw(
            st.sampled_from(
                ["json", "json", "b64", "both", "neither", "bad_b64", "no_type", "no_params", "bad_recipients"]
            ),
            label="event form",
        )
        raw = data.draw(json_texts(), label="data")
        binary = data.draw(st.binary(max_size=8), label="bytes")
        extras: dict[str, Any] = data.draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "datacontenttype": st.sampled_from(["application/json", "x/y"]),
                    "dataschema": st.just("S"),
                    "agmsgkind": st.just("publish"),
                    "traceparent": st.just("00-1"),
                    "tracestate": st.just("a=b"),
                    "myext": st.just([1]),
                },
            ),
            label="attributes",
        )
        ev = [b'"specversion":"1.0"', b'"id":"e9"', b'"source":' + jdump(source)]
        if form != "no_type":
            ev.append(b'"type":"t"')
        if form in ("json", "both"):
            ev.append(b'"data":' + raw)
        if form in ("b64", "both"):
            ev.append(b'"data_base64":' + jdump(b64s(binary)))
        if form == "bad_b64":
            ev.append(b'"data_base64":"@@"')
        if sender is not None:
            ev.append(b'"agagentsendertype":' + jdump(sender[0]))
            if sender[1] is not None:
                ev.append(b'"agagentsenderkey":' + jdump(sender[1]))
        ev += [jdump(k)[:] + b":" + jdump(v) for k, v in extras.items()]
        event_json = b"{" + b",".join(ev) + b"}"
        recipients_json = b'"a"' if form == "bad_recipients" else jdump(recipients)
        if form == "no_params":
            return b'{"jsonrpc":"2.0","method":"agent.event"}'
        frame = (
            b'{"jsonrpc":"2.0","method":"agent.event","params":{"recipients":'
            + recipients_json
            + b',"event":'
            + event_json
            + b"}}"
        )
        if form in ("neither", "bad_b64", "no_type", "bad_recipients", "both"):
            self.model.frames.append(("err", None, ErrorCode.INVALID_PARAMS, ANY, None))
            return frame
        sender_ref = AgentRef(sender[0], sender[1]) if sender is not None and sender[1] is not None else None
        kept = tuple(AgentRef(t, source) for t in recipients if sender_ref is None or sender_ref != AgentRef(t, source))
        if kept:
            trace: dict[str, str] = {k: extras[k] for k in ("traceparent", "tracestate") if k in extras}
            self.model.events.append(
                IncomingEvent(
                    event_id="e9",
                    topic_type="t",
                    topic_source=source,
                    sender=sender_ref,
                    recipients=kept,
                    payload=Payload(
                        extras.get("dataschema", ""),
                        extras.get("datacontenttype", "application/json"),
                        raw if form == "json" else binary,
                    ),
                    message_kind="publish",
                    trace_context=trace,
                )
            )
        return frame

    @rule(data=st.data())
    def host_delivers_event(self, data: st.DataObject) -> None:
        self.receive(self.draw_event(data))

    GARBAGE: ClassVar[list[tuple[bytes | str, int | None]]] = [
        (b"", ErrorCode.PARSE_ERROR),
        (b"{", ErrorCode.PARSE_ERROR),
        (b"nul", ErrorCode.PARSE_ERROR),
        (b'{"jsonrpc":"2.0","id":1,"result":"\xff"}', ErrorCode.PARSE_ERROR),
        ('{"jsonrpc":"2.0","id":1,"result":"\ud800"}', ErrorCode.PARSE_ERROR),
        (b'"\\ud800"', ErrorCode.PARSE_ERROR),
        (b"NaN", ErrorCode.PARSE_ERROR),
        (b"5", ErrorCode.INVALID_REQUEST),
        (b'"x"', ErrorCode.INVALID_REQUEST),
        (b"null", ErrorCode.INVALID_REQUEST),
        (b'{"id":1.5}', ErrorCode.INVALID_REQUEST),
        (b'{"method":5}', ErrorCode.INVALID_REQUEST),
        (b"[]", None),
        (b'{"jsonrpc":"2.0","method":"nope","params":{}}', None),
        (b'{"jsonrpc":"2.0","id":null,"method":"nope"}', None),
        (b'{"jsonrpc":"2.0","id":null,"result":1}', None),
        (b'{"jsonrpc":"2.0","result":1}', None),
    ]

    @rule(garbage=st.sampled_from(GARBAGE), as_text=st.booleans())
    def host_sends_garbage(self, garbage: tuple[bytes | str, int | None], as_text: bool) -> None:
        data, code = garbage
        if as_text and isinstance(data, bytes):
            try:
                data = data.decode()
            except UnicodeDecodeError:
                pass
        if code is not None:
            self.model.frames.append(("err", None, code, ANY, None))
        self.receive(data)

    @rule(
        method=st.sampled_from(["nope", "runtime.register_agent", "agent.publish", "x" * 3000]),
        call_id=st.sampled_from([1, "z"]),
    )
    def host_sends_unknown_method(self, method: str, call_id: int | str) -> None:
        frame = b'{"jsonrpc":"2.0","id":' + jdump(call_id) + b',"method":' + jdump(method) + b',"params":{}}'
        self.model.frames.append(("err", idkey(call_id), ErrorCode.METHOD_NOT_FOUND, ANY, None))
        self.receive(frame)

    @rule(data=st.data())
    def host_sends_batch(self, data: st.DataObject) -> None:
        n = data.draw(st.integers(1, 4), label="batch size")
        items = []
        for _ in range(n):
            kind = data.draw(st.sampled_from(["answer", "call", "cancel", "event", "junk"]), label="kind")
            if kind == "answer":
                items.append(self.draw_answer(data))
            elif kind == "call":
                items.append(self.draw_incoming_call(data))
            elif kind == "cancel":
                items.append(self.draw_cancel(data))
            elif kind == "event":
                items.append(self.draw_event(data))
            else:
                items.append(data.draw(st.sampled_from([b"5", b"null", b'"s"', b"[1]", b'{"id":true}'])))
                self.model.frames.append(("err", None, ErrorCode.INVALID_REQUEST, ANY, None))
        self.receive(b"[" + b",".join(items) + b"]")

    # -------------------------------------------------------------- answering incoming calls

    def draw_call_id(self, data: st.DataObject) -> int | str:
        choices: list[st.SearchStrategy[Any]] = [st.sampled_from(HOST_CALL_IDS)]
        if self.model.incoming:
            choices += [st.sampled_from(sorted(self.model.incoming, key=repr))] * 3
        call_id: int | str = data.draw(st.one_of(choices), label="call id")
        return call_id

    @rule(
        data=st.data(),
        payload=payloads(),
        metadata=st.one_of(st.none(), st.dictionaries(st.sampled_from(["k"]), st.text(max_size=3))),
    )
    def respond(self, data: st.DataObject, payload: Payload, metadata: dict[str, str] | None) -> None:
        call_id = self.draw_call_id(data)
        active = call_id in self.model.incoming
        assert self.engine.respond(call_id, payload, epoch=self.model.epoch, metadata=metadata) is active
        if active:  # after a cancel (or a second answer) nothing is queued
            self.model.incoming.discard(call_id)
            if is_json(payload.data_content_type) and not valid_json(payload.data):
                self.model.frames.append(("err", idkey(call_id), ErrorCode.INTERNAL_ERROR, ANY, None))
            elif len(payload.data) >= LARGE:
                self.model.frames.append(("err", idkey(call_id), ErrorCode.PAYLOAD_TOO_LARGE, ANY, None))
            else:
                result = {
                    "data_type": payload.data_type,
                    "data_content_type": payload.data_content_type,
                    **wire_payload(payload),
                }
                if metadata:
                    result["metadata"] = metadata
                self.model.frames.append(("ok", idkey(call_id), Canon(result)))
        self.check_step([])

    respond_again = respond

    @rule(
        data=st.data(),
        kind=st.sampled_from(["handler", "agent", "cancelled", "invalid"]),
        message=st.text(max_size=5),
        exception_type=st.sampled_from(["", "ValueError"]),
        huge=st.booleans(),
    )
    def respond_error(self, data: st.DataObject, kind: str, message: str, exception_type: str, huge: bool) -> None:
        call_id = self.draw_call_id(data)
        if huge and kind != "cancelled":
            message = message + "m" * 2000
        active = call_id in self.model.incoming
        epoch = self.model.epoch
        if kind == "handler":
            queued = self.engine.respond_handler_error(call_id, exception_type, message, epoch=epoch)
        elif kind == "agent":
            queued = self.engine.respond_agent_not_found(call_id, message, epoch=epoch)
        elif kind == "invalid":
            queued = self.engine.respond_invalid_call(call_id, message, epoch=epoch)
        else:
            queued = self.engine.respond_cancelled(call_id, epoch=epoch)
        assert queued is active
        if active:
            self.model.incoming.discard(call_id)
            if huge and kind != "cancelled":
                self.model.frames.append(("err", idkey(call_id), ErrorCode.PAYLOAD_TOO_LARGE, ANY, None))
            elif kind == "handler":  # -32004 always carries its data, "Exception" when no type is given
                err_data = Canon({"exception_type": exception_type or "Exception", "message": message})
                self.model.frames.append(("err", idkey(call_id), ErrorCode.HANDLER_ERROR, message, err_data))
            elif kind == "agent":
                self.model.frames.append(("err", idkey(call_id), ErrorCode.AGENT_NOT_FOUND, message, None))
            elif kind == "invalid":
                self.model.frames.append(("err", idkey(call_id), ErrorCode.INVALID_PARAMS, message, None))
            else:
                cancelled = "the handler was cancelled"
                self.model.frames.append(("err", idkey(call_id), ErrorCode.CANCELLED, cancelled, None))
        self.check_step([])

    @precondition(lambda self: bool(self.model.lost_calls))
    @rule(data=st.data(), payload=payloads(), as_error=st.booleans())
    def lost_handler_answers_late(self, data: st.DataObject, payload: Payload, as_error: bool) -> None:
        """A handler of a lost connection finishes now, maybe while a new call has the same host id."""
        epoch, call_id = data.draw(st.sampled_from(sorted(self.model.lost_calls, key=repr)), label="lost call")
        if call_id in self.model.incoming:
            event("late answer while a new call has the same id")
        if as_error:
            queued = self.engine.respond_handler_error(call_id, "ValueError", "late", epoch=epoch)
        else:
            queued = self.engine.respond(call_id, payload, epoch=epoch)
        assert queued is False, "an answer from a lost connection was queued"
        self.check_step([])  # nothing queued: the new call with that id still waits for its own answer

    # -------------------------------------------------------------- time and the connection

    def expire(self) -> None:
        expired = sorted(
            (r.deadline, r.seq, i)
            for i, r in self.model.requests.items()
            if r.deadline is not None and r.deadline <= self.model.now
        )
        for _, _, rid in expired:
            self.model.resolve(rid, CallFailed(rid, code_is(ErrorCode.DEADLINE_EXCEEDED)))
            self.model.frames.append(("cancel", rid))

    @rule(dt=st.sampled_from([0.0, 0.001, 0.5, 1.0, 2.5]))
    def advance_time(self, dt: float) -> None:
        self.model.now += dt
        self.expire()
        self.check_step(self.engine.handle_timer(self.model.now))

    @precondition(lambda self: self.model.next_deadline() is not None)
    @rule()
    def fire_next_deadline(self) -> None:
        deadline = self.engine.next_deadline()
        assert deadline is not None
        self.model.now = max(self.model.now, deadline)
        self.expire()
        self.check_step(self.engine.handle_timer(self.model.now))

    @rule(
        queue_first=st.booleans(),
        roll=st.integers(0, 3),
        close_code=st.sampled_from([None, 1000, 1001, 1006, 1009, 1011, 4008]),
    )
    def connection_lost(self, queue_first: bool, roll: int, close_code: int | None) -> None:
        if roll:  # not too often: it settles everything at once
            return
        if queue_first:  # something still queued is dropped with the connection
            rid = self.engine.register_agent("a")
            self.model.issue(rid, Kind.RUNTIME)
        # a close for an oversized message is PAYLOAD_TOO_LARGE; any other end, CONNECTION_LOST
        lost = code_is(ErrorCode.PAYLOAD_TOO_LARGE if close_code == 1009 else ErrorCode.CONNECTION_LOST)
        for rid in self.pending_of():
            kind = self.model.requests[rid].kind
            self.model.resolve(rid, CallFailed(rid, lost) if kind is Kind.CALL else RequestFailed(rid, lost))
        m = self.model
        m.events.extend(IncomingCallCancelled(call_id, m.epoch) for call_id in m.incoming)
        m.lost_calls |= {(m.epoch, call_id) for call_id in m.incoming}
        m.incoming.clear()
        m.epoch += 1
        self.check_step(self.engine.connection_lost(close_code))

    # -------------------------------------------------------------- payloads nobody here can read

    @rule(data=st.data(), data_type=st.sampled_from(["T", "Secret"]), content_type=st.sampled_from(["ct", "a/b"]))
    def respond_unreadable(self, data: st.DataObject, data_type: str, content_type: str) -> None:
        call_id = self.draw_call_id(data)
        active = call_id in self.model.incoming
        if active:
            self.model.incoming.discard(call_id)
            self.model.unreadable["calls"] += 1
            names = Canon({"data_type": data_type, "data_content_type": content_type})
            self.model.frames.append(("err", idkey(call_id), ErrorCode.UNREADABLE_PAYLOAD, "no serializer", names))
        payload = Payload(data_type, content_type, b"")
        assert self.engine.respond_unreadable(call_id, payload, "no serializer", epoch=self.model.epoch) is active
        self.check_step([])

    @rule(event_id=st.sampled_from(["e1", "e2"]), data_type=st.sampled_from(["T", "Secret"]))
    def event_unreadable(self, event_id: str, data_type: str) -> None:
        delivered = IncomingEvent(
            event_id=event_id,
            topic_type="t",
            topic_source="k",
            sender=None,
            recipients=(AgentRef("a", "k"),),
            payload=Payload(data_type, "application/json", b"1"),
            message_kind="publish",
            trace_context={},
        )
        self.engine.event_unreadable(delivered, "cannot read it")
        self.model.unreadable["events"] += 1
        names = Canon({"data_type": data_type, "data_content_type": "application/json", "event_id": event_id})
        self.model.frames.append(("err", None, ErrorCode.UNREADABLE_PAYLOAD, "cannot read it", names))
        self.check_step([])

    @rule(data_type=st.sampled_from(["T", "Answer"]))
    def result_unreadable(self, data_type: str) -> None:
        error = self.engine.result_unreadable(Payload(data_type, "application/json", b"{}"), "unreadable answer")
        assert (error.code, error.message) == (ErrorCode.UNREADABLE_PAYLOAD, "unreadable answer")
        self.model.unreadable["results"] += 1
        self.check_step([])

    # -------------------------------------------------------------- invariants

    @invariant()
    def pending_requests_agree(self) -> None:
        assert self.engine.pending_requests == len(self.model.requests)
        assert not (set(self.model.requests) & self.model.resolved)

    @invariant()
    def incoming_calls_agree(self) -> None:
        assert self.engine.incoming_calls == frozenset(self.model.incoming)
        assert self.engine.epoch == self.model.epoch

    @invariant()
    def next_deadline_agrees(self) -> None:
        assert self.engine.next_deadline() == self.model.next_deadline()

    @invariant()
    def stats_agree(self) -> None:
        stats = self.engine.stats
        assert stats.calls_received == self.model.calls_received
        assert (stats.calls_unreadable, stats.events_unreadable, stats.results_unreadable) == (
            self.model.unreadable["calls"],
            self.model.unreadable["events"],
            self.model.unreadable["results"],
        )


TestWorkerStateMachine = WorkerMachine.TestCase
