"""Model-based fuzzing of :class:`HostEngine`.

Several simulated clients (WebSocket channels and one-shot ``/v1/rpc`` bodies) send raw JSON
frames, exactly as real clients would. A small, obviously-correct model (plain dicts) predicts,
for every step, the complete set of frames and closes the host must emit; the host's actual
outputs are decoded from bytes and must match it exactly (as a multiset). Invariants then compare
the host's read-only views (registry, subscriptions and owners, pending calls, client states,
routes, next deadline) with the model after every step.

Alphabets are tiny on purpose: agent types, topics, subscription ids and request ids collide all
the time, so two callers reuse the same request ids, subscriptions clash, and so on.

What is checked, at every step:

* the host's outputs equal the model's exactly: each call gets exactly one answer (result, relayed
  error, or -32001/-32003/-32005/-32006/-32012/-32600/-32602/-32603), only to its caller, under the
  caller's own id; nobody else ever sees it; forwarded params, results, error data and events are
  byte for byte what was sent; calls to unknown types fail at once with -32001; cancel, caller
  disconnect and deadline send ``$/cancelRequest`` (host id) to the target; a publish reaches
  exactly the clients owning an agent type some subscription matches (brute force: type = equality,
  type_prefix = startswith), once each, with sorted recipients; garbage gets one error with the
  right code (-32700 not JSON, -32600 not a JSON-RPC message, -32601 unknown method, -32602 bad
  params); one-shot clients get one body, then Close(1000); oversized frames get Close(1009);
* every frame is UTF-8 JSON and well-formed JSON-RPC, and no client gets a frame after its Close;
* ``agent_types()``, ``subscriptions()`` (in order), ``subscription_owner()``, ``pending_calls()``,
  ``clients()``/``client_state()`` and ``subscribers(topic)`` equal the model; no pending call
  involves a gone or closing client, so after a disconnect nothing of that client remains;
* ``next_deadline()`` equals the earliest deadline of a pending call (never later, never stale).

Shared agent types (``"shared": true``): clients join and leave a type's pool (registering,
unregistering, disconnecting, being closed); the model places each ``AgentId(type, key)`` of a call,
and each recipient of an event (key = the event's source), from the definition (rendezvous: the
live member whose name scores highest by BLAKE2b, never moved while its holder lives), so a call
or event sent to any other member than that one fails the step. After every step, every placed
key is on a live pool member and on one only (``holder()`` agrees with the model for every key),
and ``shared_agent_types()`` gives the model's members and their key counts.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Union

from hypothesis import event, note
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from sansio_runtime import (
    MAX_NAME_LENGTH,
    ClientId,
    ClientKind,
    ClientNameInUse,
    ClientState,
    Close,
    CloseCode,
    ErrorCode,
    HostEngine,
    HostOutput,
    Send,
    TypePrefixSubscriptionSpec,
    TypeSubscriptionSpec,
)

from ._wirecheck import ANY, Canon, frame_eq, idkey, json_values, match_multiset, normalize_frame

MAX_MESSAGE_SIZE = 4096
MAX_PENDING_CALLS = 2
MAX_BATCH_LENGTH = 4
MAX_TYPES_PER_CONNECTION = 2
MAX_SUBS_PER_CONNECTION = 2
LONG_NAME = "n" * (MAX_NAME_LENGTH + 1)

AGENT_TYPES = ["a", "b", "ab", "c"]
TOPICS = ["a", "ab", "abc", "b", "", "x:1", "c"]
PREFIXES = ["", "a", "ab", "b", "x:"]
SUB_IDS = ["s1", "s2", "s3", "s4"]
REQUEST_IDS: list[int | str] = [1, 2, 3, "1", "a"]
TIMEOUTS_MS = [1, 10, 500, 1000, 2000]
NAMES = ["w1", "w2"]

NOTIF: Any = type("_Notif", (), {"__repr__": lambda self: "NOTIF"})()
"""Sentinel: the message has no ``id`` member (a notification)."""


def jdump(value: object) -> bytes:
    return json.dumps(value).encode()


# ================================================================================================
# What a client sends. Each kind knows its bytes; the model knows what it means.


@dataclass(frozen=True)
class BadParams:
    """Params that do not match the method's schema (or are missing): -32602."""


@dataclass(frozen=True)
class Register:
    agent_type: str
    shared: bool = False


@dataclass(frozen=True)
class Unregister:
    agent_type: str


@dataclass(frozen=True)
class AddSub:
    prefix: bool
    sub_id: str
    topic: str
    agent_type: str


@dataclass(frozen=True)
class RemoveSub:
    sub_id: str


@dataclass(frozen=True)
class GetSubs:
    pass


@dataclass(frozen=True)
class Call:
    target_type: str
    payload: str  # "data", "b64", "both", "none"
    timeout_ms: int | None
    key: str = "k"


@dataclass(frozen=True)
class Publish:
    topic: str
    specversion: str
    payload: str  # "data", "b64", "both", "none"
    source: str = "src"


@dataclass(frozen=True)
class Cancel:
    target_id: int | str


Meaning = Union[BadParams, Register, Unregister, AddSub, RemoveSub, GetSubs, Call, Publish, Cancel, None]


@dataclass(frozen=True)
class Req:
    """A request (or, with ``id=NOTIF``, a notification) from a client."""

    method: str
    params: bytes | None  # raw JSON text of params; None: no params member
    meaning: Meaning
    id: Any = NOTIF  # NOTIF, None (JSON null), int or str
    jsonrpc: str | None = "2.0"  # None: no jsonrpc member
    stray_result: bool = False  # carries a "result" member too (invalid for a request)

    def render(self) -> bytes:
        parts = []
        if self.jsonrpc is not None:
            parts.append(b'"jsonrpc":' + jdump(self.jsonrpc))
        if self.id is not NOTIF:
            parts.append(b'"id":' + jdump(self.id))
        parts.append(b'"method":' + jdump(self.method))
        if self.params is not None:
            parts.append(b'"params":' + self.params)
        if self.stray_result:
            parts.append(b'"result":null')
        return b"{" + b",".join(parts) + b"}"


@dataclass(frozen=True)
class ErrorObject:
    """A well-formed error object a target answers with: the host relays code, message, data."""

    code: int
    message: str
    data: bytes | None
    extra_member: bool

    def render(self) -> bytes:
        parts = [b'"code":' + jdump(self.code), b'"message":' + jdump(self.message)]
        if self.data is not None:
            parts.append(b'"data":' + self.data)
        if self.extra_member:
            parts.append(b'"zz":[1,{"y":2}]')
        return b"{" + b",".join(parts) + b"}"


@dataclass(frozen=True)
class Resp:
    """A response from a client (normally a target answering a call it was sent)."""

    id: Any  # NOTIF (no id member), None, int or str
    result: bytes | None
    error: ErrorObject | bytes | None  # bytes: a malformed error object (raw JSON)
    jsonrpc: str | None = "2.0"

    def render(self) -> bytes:
        parts = []
        if self.jsonrpc is not None:
            parts.append(b'"jsonrpc":' + jdump(self.jsonrpc))
        if self.id is not NOTIF:
            parts.append(b'"id":' + jdump(self.id))
        if self.result is not None:
            parts.append(b'"result":' + self.result)
        if isinstance(self.error, ErrorObject):
            parts.append(b'"error":' + self.error.render())
        elif self.error is not None:
            parts.append(b'"error":' + self.error)
        return b"{" + b",".join(parts) + b"}"


@dataclass(frozen=True)
class Junk:
    """A batch entry that is valid JSON but not a JSON-RPC message object: -32600, id null."""

    raw: bytes

    def render(self) -> bytes:
        return self.raw


Item = Union[Req, Resp, Junk]


@dataclass(frozen=True)
class Garbage:
    """A whole frame that is not a message at all; answered with one error (id null) of ``code``."""

    data: bytes | str
    code: int


# ================================================================================================
# Strategies for the pieces of frames


@st.composite
def json_texts(draw: st.DrawFn) -> bytes:
    """Any JSON value, in one of several spellings (the host must forward the bytes unchanged)."""
    value = draw(json_values)
    style = draw(st.sampled_from(["compact", "spaced", "indented", "ascii"]))
    if style == "compact":
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
    if style == "spaced":
        return json.dumps(value, separators=(" , ", " : "), ensure_ascii=False).encode()
    if style == "indented":
        return json.dumps(value, indent=1, ensure_ascii=False).encode()
    return json.dumps(value).encode()


def b64(raw: bytes) -> bytes:
    return jdump(base64.b64encode(raw).decode())


KEYS = ["k", "", "k/2", "q", "r7"]
SOURCES = ["src", "k", "q"]


@st.composite
def call_params(draw: st.DrawFn, target_type: str, payload: str, timeout_ms: int | None, key: str = "k") -> bytes:
    parts = [
        b'"target":{"type":' + jdump(target_type) + b',"key":' + jdump(key) + b"}",
        b'"data_type":"T"',
    ]
    json_payload = payload == "data" or (payload in ("both", "none") and draw(st.booleans()))
    parts.append(b'"data_content_type":' + (b'"application/json"' if json_payload else b'"application/octet-stream"'))
    if payload in ("data", "both"):
        parts.append(b'"data":' + draw(json_texts()))
    if payload in ("b64", "both"):
        parts.append(b'"data_base64":' + b64(draw(st.binary(max_size=12))))
    if timeout_ms is not None:
        parts.append(b'"timeout_ms":' + str(timeout_ms).encode())
    if draw(st.booleans()):  # members the host does not read travel unchanged
        parts.append(
            draw(
                st.sampled_from(
                    [
                        b'"source":null',
                        b'"source":{"type":"x","key":"y"}',
                        b'"metadata":{"traceparent":"00-ab"}',
                        b'"zz":[1,2,{"q":null}]',
                    ]
                )
            )
        )
    order = draw(st.permutations(range(len(parts))))
    return b"{" + b",".join(parts[i] for i in order) + b"}"


@st.composite
def event_params(draw: st.DrawFn, topic: str, specversion: str, payload: str, source: str = "src") -> bytes:
    parts = [
        b'"specversion":' + jdump(specversion),
        b'"id":' + jdump(draw(st.sampled_from(["e1", "e2"]))),
        b'"source":' + jdump(source),
        b'"type":' + jdump(topic),
        b'"datacontenttype":"application/json"',
    ]
    if payload in ("data", "both"):
        parts.append(b'"data":' + draw(json_texts()))
    if payload in ("b64", "both"):
        parts.append(b'"data_base64":' + b64(draw(st.binary(max_size=12))))
    if draw(st.booleans()):
        parts.append(b'"agagentsendertype":"a","agagentsenderkey":"src","myext":{"kept":[1," x "]}')
    order = draw(st.permutations(range(len(parts))))
    return b"{" + b",".join(parts[i] for i in order) + b"}"


request_ids = st.sampled_from(REQUEST_IDS)
maybe_ids = st.one_of(st.just(NOTIF), request_ids)  # a request or a notification

BAD_PARAMS: dict[str, list[bytes | None]] = {
    "runtime.register_agent": [None, b"{}", b'{"type":5}', b"[]", b'"a"', b'{"type":"a","shared":null}'],
    "runtime.unregister_agent": [None, b"{}", b'{"type":null}'],
    "runtime.add_subscription": [
        None,
        b"{}",
        b'{"subscription":{"kind":"regex","id":"s9","agent_type":"a"}}',
        b'{"subscription":{"kind":"type","id":"s9","agent_type":"a"}}',
        b'{"subscription":{"id":"s9","topic_type":"a","agent_type":"a"}}',
    ],
    "runtime.remove_subscription": [None, b"{}", b'{"id":1}'],
    "agent.call": [
        None,
        b"{}",
        b'{"target":{"type":"a"},"data_type":"T","data_content_type":"application/json","data":1}',
        b'{"target":{"type":"a","key":"k"},"data_type":5,"data_content_type":"application/json","data":1}',
        b'{"target":{"type":"a","key":"k"},"data_type":"T","data_content_type":"application/json","data":1,'
        b'"timeout_ms":1.5}',
        b'{"target":{"type":"a","key":"k"},"data_type":"T","data_content_type":"application/json","data":1,'
        b'"timeout_ms":true}',
        b'{"target":"a","data_type":"T","data_content_type":"application/json","data":1}',
    ],
    "agent.publish": [
        None,
        b"{}",
        b'{"specversion":"1.0","id":"e","source":"s","type":5,"data":1}',
        b'{"specversion":1,"id":"e","source":"s","type":"a","data":1}',
    ],
    "$/cancelRequest": [None, b"{}", b'{"id":null}', b'{"id":1.5}', b'{"id":true}', b'{"id":[1]}'],
}


def bad_params_req() -> st.SearchStrategy[Req]:
    return st.sampled_from(sorted(BAD_PARAMS)).flatmap(
        lambda method: st.builds(
            Req,
            st.just(method),
            st.sampled_from(BAD_PARAMS[method]),
            st.just(BadParams()),
            st.just(1) if method == "agent.call" else maybe_ids,
        )
    )


def register_req() -> st.SearchStrategy[Req]:
    """A register, unshared (no ``shared`` member, or ``false``) or shared (``"shared":true``)."""
    spellings = {"absent": b"", "false": b',"shared":false', "true": b',"shared":true'}

    def build(t: str, shared: str, i: Any) -> Req:
        params = b'{"type":' + jdump(t) + spellings[shared] + b"}"
        return Req("runtime.register_agent", params, Register(t, shared == "true"), i)

    return st.builds(
        build,
        st.sampled_from([*AGENT_TYPES, "", LONG_NAME]),
        st.sampled_from(["absent", "absent", "false", "true", "true"]),
        maybe_ids,
    )


def unregister_req() -> st.SearchStrategy[Req]:
    return st.builds(
        lambda t, i: Req("runtime.unregister_agent", b'{"type":' + jdump(t) + b"}", Unregister(t), i),
        st.sampled_from([*AGENT_TYPES, ""]),
        maybe_ids,
    )


def add_sub_req(registered: tuple[str, ...] = ()) -> st.SearchStrategy[Req]:
    """An add_subscription; with ``registered`` agent types given, usually for one of them."""
    agent_types = st.sampled_from([*AGENT_TYPES, ""])
    if registered:
        agent_types = st.one_of(agent_types, st.sampled_from(registered), st.sampled_from(registered))

    def build(prefix: bool, sub_id: str, topic: str, agent_type: str, i: Any) -> Req:
        if prefix:
            spec = {"kind": "type_prefix", "id": sub_id, "topic_type_prefix": topic, "agent_type": agent_type}
        else:
            spec = {"kind": "type", "id": sub_id, "topic_type": topic, "agent_type": agent_type}
        return Req(
            "runtime.add_subscription",
            b'{"subscription":' + jdump(spec) + b"}",
            AddSub(prefix, sub_id, topic, agent_type),
            i,
        )

    return st.booleans().flatmap(
        lambda prefix: st.builds(
            build,
            st.just(prefix),
            st.sampled_from([*SUB_IDS, "", LONG_NAME]),
            st.sampled_from([*PREFIXES, LONG_NAME] if prefix else [*TOPICS, LONG_NAME]),
            agent_types,
            maybe_ids,
        )
    )


def remove_sub_req() -> st.SearchStrategy[Req]:
    return st.builds(
        lambda s, i: Req("runtime.remove_subscription", b'{"id":' + jdump(s) + b"}", RemoveSub(s), i),
        st.sampled_from([*SUB_IDS, "zz"]),
        maybe_ids,
    )


def get_subs_req() -> st.SearchStrategy[Req]:
    return st.builds(
        lambda p, i: Req("runtime.get_subscriptions", p, GetSubs(), i),
        st.sampled_from([None, b"{}", b"[1]", b"null"]),
        maybe_ids,
    )


@st.composite
def call_req(draw: st.DrawFn, registered: tuple[str, ...] = (), in_flight: tuple[Any, ...] = ()) -> Req:
    """An agent.call; with ``registered`` types given, it usually targets one of them, and with the
    caller's ids ``in_flight`` given, it usually uses another id (so calls pile up to the limit)."""
    usual = draw(st.integers(0, 3)) > 0
    if registered and usual:
        target = draw(st.sampled_from(registered))
    else:
        target = draw(st.sampled_from([*AGENT_TYPES, "zzz"]))
    payload = draw(st.sampled_from(["data"] * 6 + ["b64"] * 5 + ["both", "none"]))
    timeout = draw(st.one_of(st.none(), st.sampled_from(TIMEOUTS_MS)))
    if draw(st.integers(0, 9)) == 0:  # now and then an invalid one
        timeout = draw(st.sampled_from([0, -5, 10**400]))
    fresh = [i for i in REQUEST_IDS if i not in in_flight]
    prefer_fresh = draw(st.booleans())
    rid = draw(st.sampled_from(fresh) if fresh and in_flight and prefer_fresh else request_ids)
    key = draw(st.sampled_from([*KEYS, LONG_NAME] if draw(st.integers(0, 19)) == 0 else KEYS))
    params = draw(call_params(target, payload, timeout, key))
    return Req("agent.call", params, Call(target, payload, timeout, key), rid)


@st.composite
def publish_req(draw: st.DrawFn, subscribed: tuple[str, ...] = ()) -> Req:
    """An agent.publish; with ``subscribed`` topics given, it usually goes to one of them."""
    usual = draw(st.integers(0, 3)) > 0
    if subscribed and usual:
        topic = draw(st.sampled_from(subscribed))
    else:
        topic = draw(st.sampled_from([*TOPICS, "abcd", "x:"]))
    sv = draw(st.sampled_from(["1.0", "1.0", "1.0", "0.3"]))
    payload = draw(st.sampled_from(["data", "data", "b64", "both", "none"]))
    source = draw(st.sampled_from([*SOURCES, LONG_NAME] if draw(st.integers(0, 19)) == 0 else SOURCES))
    params = draw(event_params(topic, sv, payload, source))
    return Req("agent.publish", params, Publish(topic, sv, payload, source), draw(maybe_ids))


@st.composite
def cancel_req(draw: st.DrawFn, in_flight: tuple[Any, ...] = ()) -> Req:
    """A $/cancelRequest; with the caller's ids ``in_flight`` given, it usually names one of them."""
    usual = draw(st.integers(0, 3)) > 0
    if in_flight and usual:
        target_id = draw(st.sampled_from(in_flight))
    else:
        target_id = draw(st.sampled_from([*REQUEST_IDS, 99]))
    return Req("$/cancelRequest", b'{"id":' + jdump(target_id) + b"}", Cancel(target_id), draw(maybe_ids))


def envelope_junk_req() -> st.SearchStrategy[Req]:
    """Messages that are objects of the right shape but wrong as JSON-RPC (checked by the model)."""
    return st.one_of(
        st.builds(
            lambda j, i: Req("runtime.get_subscriptions", b"{}", GetSubs(), i, jsonrpc=j),
            st.sampled_from(["1.0", "", None]),
            maybe_ids,
        ),
        st.builds(
            lambda m, i: Req(m, b"{}", None, i),
            st.sampled_from(["agent.frobnicate", "runtime.", "", "agent.event"]),
            maybe_ids,
        ),
        st.builds(lambda m: Req(m, b'{"type":"a"}', None, None), st.sampled_from(["runtime.register_agent", "nope"])),
        st.builds(lambda i: Req("runtime.get_subscriptions", b"{}", GetSubs(), i, stray_result=True), maybe_ids),
    )


JUNK_OBJECTS = [  # objects whose members have the wrong JSON types for a JSON-RPC message
    b'{"jsonrpc":2}',
    b'{"id":1.5,"jsonrpc":"2.0","method":"nope"}',
    b'{"method":5}',
    b'{"jsonrpc":"2.0","id":1e3}',
    b'{"id":true,"jsonrpc":"2.0","method":"nope"}',
    b'{"params":1,"id":[1]}',
    b'{"jsonrpc":null,"method":"x"}',
]
junk_entries = st.sampled_from([b"7", b'"x"', b"null", b"true", b"[]", b"[1]", *JUNK_OBJECTS]).map(Junk)


@st.composite
def garbage_frames(draw: st.DrawFn) -> Garbage:
    kind = draw(
        st.sampled_from(["truncated", "not_json", "bad_utf8", "surrogate", "scalar", "junk_object", "empty_batch"])
    )
    if kind == "truncated":
        frame = draw(st.one_of(register_req(), call_req(), publish_req(), get_subs_req())).render()
        cut = draw(st.integers(0, len(frame) - 1))
        return Garbage(frame[:cut], ErrorCode.PARSE_ERROR)
    if kind == "not_json":
        not_json = [
            b"hello",
            b"{'a':1}",
            b"NaN",
            b"[1,]",
            b"",
            b" ",
            b"{}x",
            b"\xef\xbb\xbf{}",
            b'{"jsonrpc":"2.0",}',
            b"01",
            b'"\\ud800"',
            b'{"a":"\\x"}',
            b"0:",
            b'{"id":1.5,',
            b"[7 8]",
        ]
        return Garbage(draw(st.sampled_from(not_json)), ErrorCode.PARSE_ERROR)
    if kind == "bad_utf8":
        frame = draw(get_subs_req()).render()
        i = draw(st.integers(0, len(frame)))
        return Garbage(
            frame[:i] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80"])) + frame[i:],
            ErrorCode.PARSE_ERROR,
        )
    if kind == "surrogate":  # a str frame holding a lone surrogate cannot be UTF-8
        return Garbage(
            '{"jsonrpc":"2.0","id":1,"method":"runtime.get_subscriptions","params":"\ud800"}', ErrorCode.PARSE_ERROR
        )
    if kind == "scalar":
        value = draw(
            st.one_of(
                st.integers(),
                st.text(max_size=5),
                st.booleans(),
                st.none(),
                st.floats(allow_nan=False, allow_infinity=False),
            )
        )
        return Garbage(jdump(value), ErrorCode.INVALID_REQUEST)
    if kind == "junk_object":
        return Garbage(draw(st.sampled_from(JUNK_OBJECTS)), ErrorCode.INVALID_REQUEST)
    return Garbage(draw(st.sampled_from([b"[]", b" [ ] "])), ErrorCode.INVALID_REQUEST)


# ================================================================================================
# The model


def err(id_value: Any, code: int, message: Any = ANY, data: bytes | None = None) -> tuple[Any, ...]:
    return ("err", idkey(id_value), int(code), message, data)


def ok(id_value: Any, result: bytes | Canon) -> tuple[Any, ...]:
    return ("ok", idkey(id_value), result)


@dataclass
class MClient:
    kind: ClientKind
    name: str | None
    state: ClientState = ClientState.OPEN
    outgoing: dict[Any, int] = field(default_factory=dict)  # caller's id -> host id
    replies: list[tuple[Any, ...]] = field(default_factory=list)  # one-shot: gathered replies
    awaiting: int = 0
    batch: bool = False


@dataclass
class MPending:
    caller: ClientId
    caller_id: Any
    target: ClientId
    deadline: float | None


class _Rejected(Exception):
    def __init__(self, code: int) -> None:
        self.code = code


class HostModel:
    """What the host must do, written the obvious way (brute force everywhere)."""

    def __init__(self) -> None:
        self.events_unreadable = 0  # workers' id-null -32015 reports of events they could not read
        self.clients: dict[ClientId, MClient] = {}
        self.types: dict[str, ClientId] = {}
        self.pools: dict[str, list[ClientId]] = {}  # shared type -> its members, in join order
        self.placed: dict[tuple[str, str], ClientId] = {}  # (shared type, key) -> its holder
        self.subs: dict[str, tuple[TypeSubscriptionSpec | TypePrefixSubscriptionSpec, ClientId]] = {}
        self.pending: dict[int, MPending] = {}
        self.next_host_id = 1
        self.now = 0.0
        self.out: list[tuple[Any, ...]] = []  # expected outputs of the current step
        self.answered: dict[int, int] = {}  # host id -> number of answers the caller got

    # -------------------------------------------------------------- queries

    def matched(self, topic: str) -> set[str]:
        matched = set()
        for spec, _ in self.subs.values():
            if isinstance(spec, TypePrefixSubscriptionSpec):
                if topic.startswith(spec.topic_type_prefix):
                    matched.add(spec.agent_type)
            elif topic == spec.topic_type:
                matched.add(spec.agent_type)
        return matched

    def routes(self, topic: str) -> dict[ClientId, list[str]]:
        """The clients a publish reaches for the types they host alone (shared ones: :meth:`place`)."""
        by_client: dict[ClientId, list[str]] = {}
        for agent_type in sorted(self.matched(topic)):
            owner = self.types.get(agent_type)
            if owner is not None:
                by_client.setdefault(owner, []).append(agent_type)
        return by_client

    def member_name(self, client: ClientId) -> str:
        name = self.clients[client].name
        return name if name is not None else f"\0{client}"

    def place(self, agent_type: str, key: str) -> ClientId:
        """The holder of a shared type's instance: as placed, or by the rendezvous definition."""
        holder = self.placed.get((agent_type, key))
        if holder is None:
            holder = max(self.pools[agent_type], key=lambda m: rendezvous(self.member_name(m), key))
            self.placed[(agent_type, key)] = holder
        return holder

    def leave_pool(self, agent_type: str, client: ClientId) -> None:
        members = self.pools[agent_type]
        members.remove(client)
        if not members:
            del self.pools[agent_type]
        for placed in [p for p, holder in self.placed.items() if p[0] == agent_type and holder == client]:
            del self.placed[placed]

    def types_of(self, client: ClientId) -> int:
        return sum(owner == client for owner in self.types.values()) + sum(
            client in members for members in self.pools.values()
        )

    def next_deadline(self) -> float | None:
        deadlines = [p.deadline for p in self.pending.values() if p.deadline is not None]
        return min(deadlines) if deadlines else None

    # -------------------------------------------------------------- outputs

    def send(self, client: ClientId, message: tuple[Any, ...]) -> None:
        self.out.append(("send", client, ("single", message)))

    def reply_to(self, caller: ClientId, message: tuple[Any, ...]) -> None:
        c = self.clients[caller]
        if c.state is ClientState.CLOSING:
            return
        if c.kind is ClientKind.CHANNEL:
            self.send(caller, message)
            return
        c.replies.append(message)
        c.awaiting -= 1
        self.finish_one_shot(caller)

    def finish_one_shot(self, client: ClientId) -> None:
        c = self.clients[client]
        if c.state is not ClientState.ANSWERING or c.awaiting:
            return
        if c.replies:
            if c.batch:
                self.out.append(("send", client, ("batch", c.replies)))
            else:
                assert len(c.replies) == 1, "model: a single message has at most one answer"
                self.send(client, c.replies[0])
        c.replies = []
        c.state = ClientState.CLOSING
        self.out.append(("close", client, CloseCode.NORMAL))

    # -------------------------------------------------------------- lifecycle

    def connect(self, client: ClientId, kind: ClientKind, name: str | None) -> None:
        assert client not in self.clients
        self.clients[client] = MClient(kind, name)

    def names(self) -> set[str]:
        return {c.name for c in self.clients.values() if c.name is not None}

    def settle(self, host_id: int) -> MPending:
        p = self.pending.pop(host_id)
        del self.clients[p.caller].outgoing[p.caller_id]
        return p

    def cancel_at_target(self, target: ClientId, host_id: int) -> None:
        t = self.clients.get(target)
        if t is not None and t.state is ClientState.OPEN:
            self.send(target, ("cancel", host_id))

    def release(self, client: ClientId) -> None:
        c = self.clients[client]
        for agent_type in [t for t, owner in self.types.items() if owner == client]:
            del self.types[agent_type]
        for agent_type in [t for t, members in self.pools.items() if client in members]:
            self.leave_pool(agent_type, client)
        for sub_id in [s for s, (_, owner) in self.subs.items() if owner == client]:
            del self.subs[sub_id]
        for host_id in list(c.outgoing.values()):
            p = self.pending.pop(host_id)
            if p.target != client:
                self.cancel_at_target(p.target, host_id)
        c.outgoing.clear()
        for host_id in [h for h, p in self.pending.items() if p.target == client]:
            p = self.settle(host_id)
            self.note_answer(host_id)
            self.reply_to(p.caller, err(p.caller_id, ErrorCode.TARGET_DISCONNECTED))

    def note_answer(self, host_id: int) -> None:
        self.answered[host_id] = self.answered.get(host_id, 0) + 1
        assert self.answered[host_id] == 1, f"model answered call {host_id} twice"

    def close(self, client: ClientId, code: CloseCode) -> None:
        self.release(client)
        self.clients[client].state = ClientState.CLOSING
        self.out.append(("close", client, code))

    def disconnect(self, client: ClientId) -> None:
        c = self.clients.get(client)
        if c is None:
            return
        if c.state is not ClientState.CLOSING:
            self.release(client)
        del self.clients[client]

    def close_all(self) -> None:
        """Every client is closing before any is released: no caller hears TARGET_DISCONNECTED."""
        closing = [client for client, c in self.clients.items() if c.state is not ClientState.CLOSING]
        for client in closing:
            self.clients[client].state = ClientState.CLOSING
        for client in closing:
            self.release(client)
            self.out.append(("close", client, CloseCode.GOING_AWAY))

    def handle_timer(self) -> None:
        expired = [h for h, p in self.pending.items() if p.deadline is not None and p.deadline <= self.now]
        for host_id in expired:
            p = self.settle(host_id)
            self.cancel_at_target(p.target, host_id)
            self.note_answer(host_id)
            self.reply_to(p.caller, err(p.caller_id, ErrorCode.DEADLINE_EXCEEDED))

    # -------------------------------------------------------------- frames

    def receive(self, client: ClientId, single: Item | None, batch: list[Item] | None, garbage: Garbage | None) -> None:
        c = self.clients[client]
        if c.state is ClientState.CLOSING:
            return
        assert c.state is ClientState.OPEN, "the test never sends a second body on a one-shot client"
        replies: list[tuple[Any, ...]] = []
        is_batch = False
        if garbage is not None:
            replies.append(err(None, garbage.code))
        elif batch is not None and len(batch) > MAX_BATCH_LENGTH:
            replies.append(err(None, ErrorCode.BATCH_TOO_LARGE))  # refused whole: nothing in it is done
        elif batch is not None:
            is_batch = True
            for item in batch:
                if isinstance(item, Junk):
                    replies.append(err(None, ErrorCode.INVALID_REQUEST))
                    continue
                reply = self.dispatch(client, item)
                if reply is not None:
                    replies.append(reply)
        else:
            assert single is not None
            reply = self.dispatch(client, single)
            if reply is not None:
                replies.append(reply)
        if c.kind is ClientKind.ONE_SHOT:
            c.state = ClientState.ANSWERING
            c.batch = is_batch
            c.replies.extend(replies)
            self.finish_one_shot(client)
        elif replies:
            if is_batch:
                self.out.append(("send", client, ("batch", replies)))
            else:
                for r in replies:
                    self.send(client, r)

    def oversized(self, client: ClientId) -> None:
        c = self.clients[client]
        if c.state is ClientState.CLOSING:
            return
        self.close(client, CloseCode.MESSAGE_TOO_BIG)

    def dispatch(self, client: ClientId, item: Item) -> tuple[Any, ...] | None:
        msg_id = item.id  # type: ignore[union-attr]
        reply_id = None if msg_id is NOTIF else msg_id
        if item.jsonrpc != "2.0":  # type: ignore[union-attr]
            return err(reply_id, ErrorCode.INVALID_REQUEST)
        if isinstance(item, Resp):
            if (item.result is None) == (item.error is None) or msg_id is NOTIF:
                return err(reply_id, ErrorCode.INVALID_REQUEST)
            self.on_response(client, item)
            return None
        assert isinstance(item, Req)
        if item.stray_result:
            return err(reply_id, ErrorCode.INVALID_REQUEST)
        if msg_id is None:
            return err(None, ErrorCode.INVALID_REQUEST)
        methods: dict[str, Callable[[ClientId, Req], tuple[Any, ...] | None]] = {
            "agent.call": self.m_call,
            "agent.publish": self.m_publish,
            "$/cancelRequest": self.m_cancel,
            "runtime.register_agent": self.m_register,
            "runtime.unregister_agent": self.m_unregister,
            "runtime.add_subscription": self.m_add_sub,
            "runtime.remove_subscription": self.m_remove_sub,
            "runtime.get_subscriptions": self.m_get_subs,
        }
        handler = methods.get(item.method)
        if handler is None:
            return err(reply_id, ErrorCode.METHOD_NOT_FOUND)
        if (
            self.clients[client].kind is ClientKind.ONE_SHOT
            and item.method.startswith("runtime.")
            and (item.method != "runtime.get_subscriptions")
        ):
            return err(reply_id, ErrorCode.METHOD_NOT_FOUND)
        try:
            return handler(client, item)
        except _Rejected as rej:
            return err(reply_id, rej.code)

    @staticmethod
    def done(req: Req, result: bytes | Canon = b"null") -> tuple[Any, ...] | None:
        return None if req.id is NOTIF else ok(req.id, result)

    @staticmethod
    def params_ok(req: Req) -> None:
        if isinstance(req.meaning, BadParams):
            raise _Rejected(ErrorCode.INVALID_PARAMS)

    def on_response(self, client: ClientId, resp: Resp) -> None:
        host_id = resp.id
        p = self.pending.get(host_id) if isinstance(host_id, int) else None
        if p is None or p.target != client:
            if host_id is None and isinstance(resp.error, ErrorObject) and resp.error.code == -32015:
                self.events_unreadable += 1  # counted, then dropped like any id-null response
            return  # dropped: not a call pending at this client
        self.settle(host_id)
        self.note_answer(host_id)
        if resp.result is not None:
            message = ok(p.caller_id, resp.result)
        elif isinstance(resp.error, ErrorObject):
            message = err(p.caller_id, resp.error.code, resp.error.message, resp.error.data)
        else:
            message = err(p.caller_id, ErrorCode.INTERNAL_ERROR)
        self.reply_to(p.caller, message)

    def m_call(self, client: ClientId, req: Req) -> tuple[Any, ...] | None:
        if req.id is NOTIF:
            raise _Rejected(ErrorCode.INVALID_REQUEST)
        self.params_ok(req)
        call = req.meaning
        assert isinstance(call, Call)
        if call.payload not in ("data", "b64"):
            raise _Rejected(ErrorCode.INVALID_PARAMS)
        deadline = None
        if call.timeout_ms is not None:
            if call.timeout_ms <= 0:
                raise _Rejected(ErrorCode.INVALID_PARAMS)
            try:
                deadline = self.now + call.timeout_ms / 1000.0
            except OverflowError:  # a timeout no clock can represent is not a valid timeout
                raise _Rejected(ErrorCode.INVALID_PARAMS) from None
        c = self.clients[client]
        if req.id in c.outgoing:
            raise _Rejected(ErrorCode.INVALID_REQUEST)
        if len(c.outgoing) >= MAX_PENDING_CALLS:
            raise _Rejected(ErrorCode.TOO_MANY_PENDING_CALLS)
        target = self.types.get(call.target_type)
        if target is None and call.target_type in self.pools:
            if len(call.key) > MAX_NAME_LENGTH:
                raise _Rejected(ErrorCode.INVALID_PARAMS)
            target = self.place(call.target_type, call.key)
        if target is None:
            raise _Rejected(ErrorCode.AGENT_TYPE_NOT_FOUND)
        host_id = self.next_host_id
        self.next_host_id += 1
        self.pending[host_id] = MPending(client, req.id, target, deadline)
        c.outgoing[req.id] = host_id
        assert req.params is not None
        self.send(target, ("call", host_id, req.params))
        if c.kind is ClientKind.ONE_SHOT:
            c.awaiting += 1
        return None

    def m_publish(self, client: ClientId, req: Req) -> tuple[Any, ...] | None:
        self.params_ok(req)
        pub = req.meaning
        assert isinstance(pub, Publish)
        if pub.specversion != "1.0" or pub.payload not in ("data", "b64"):
            raise _Rejected(ErrorCode.INVALID_PARAMS)
        assert req.params is not None
        routes = self.routes(pub.topic)
        shared = sorted(t for t in self.matched(pub.topic) if t in self.pools)
        if shared and len(pub.source) > MAX_NAME_LENGTH:
            raise _Rejected(ErrorCode.INVALID_PARAMS)
        for agent_type in shared:  # one instance each: AgentId(type, source), on its holder only
            routes.setdefault(self.place(agent_type, pub.source), []).append(agent_type)
        for recipients in routes.values():
            recipients.sort()
        for owner, recipients in routes.items():
            if self.clients[owner].state is ClientState.OPEN:
                self.send(owner, ("event", tuple(recipients), req.params))
        return self.done(req)

    def m_cancel(self, client: ClientId, req: Req) -> tuple[Any, ...] | None:
        self.params_ok(req)
        cancel = req.meaning
        assert isinstance(cancel, Cancel)
        host_id = self.clients[client].outgoing.get(cancel.target_id)
        if host_id is not None:
            p = self.settle(host_id)
            self.cancel_at_target(p.target, host_id)
            self.note_answer(host_id)
            self.reply_to(client, err(cancel.target_id, ErrorCode.CANCELLED))
        return self.done(req)

    def m_register(self, client: ClientId, req: Req) -> tuple[Any, ...] | None:
        self.params_ok(req)
        reg = req.meaning
        assert isinstance(reg, Register)
        if not reg.agent_type or len(reg.agent_type) > MAX_NAME_LENGTH:
            raise _Rejected(ErrorCode.INVALID_PARAMS)
        if reg.agent_type in self.types:  # hosted by one client: nobody else, shared or not
            raise _Rejected(ErrorCode.AGENT_TYPE_ALREADY_REGISTERED)
        members = self.pools.get(reg.agent_type, [])
        if members and (client in members or not reg.shared):  # shared: only more members
            raise _Rejected(ErrorCode.AGENT_TYPE_ALREADY_REGISTERED)
        if self.types_of(client) >= MAX_TYPES_PER_CONNECTION:
            raise _Rejected(ErrorCode.TOO_MANY_AGENT_TYPES)
        if reg.shared:
            self.pools.setdefault(reg.agent_type, []).append(client)
        else:
            self.types[reg.agent_type] = client
        return self.done(req)

    def m_unregister(self, client: ClientId, req: Req) -> tuple[Any, ...] | None:
        self.params_ok(req)
        unreg = req.meaning
        assert isinstance(unreg, Unregister)
        if unreg.agent_type in self.pools:
            if client not in self.pools[unreg.agent_type]:
                raise _Rejected(ErrorCode.FORBIDDEN)
            self.leave_pool(unreg.agent_type, client)
            return self.done(req)
        owner = self.types.get(unreg.agent_type)
        if owner is None:
            raise _Rejected(ErrorCode.AGENT_TYPE_NOT_FOUND)
        if owner != client:
            raise _Rejected(ErrorCode.FORBIDDEN)
        del self.types[unreg.agent_type]
        return self.done(req)

    def m_add_sub(self, client: ClientId, req: Req) -> tuple[Any, ...] | None:
        self.params_ok(req)
        add = req.meaning
        assert isinstance(add, AddSub)
        if not add.sub_id or not add.agent_type:
            raise _Rejected(ErrorCode.INVALID_PARAMS)
        if max(len(add.sub_id), len(add.agent_type), len(add.topic)) > MAX_NAME_LENGTH:
            raise _Rejected(ErrorCode.INVALID_PARAMS)
        spec: TypeSubscriptionSpec | TypePrefixSubscriptionSpec
        if add.prefix:
            spec = TypePrefixSubscriptionSpec(add.sub_id, add.topic, add.agent_type)
        else:
            spec = TypeSubscriptionSpec(add.sub_id, add.topic, add.agent_type)
        same = [o for s, o in self.subs.values() if type(s) is type(spec) and _content(s) == _content(spec)]
        # A member of a shared type's pool keeps its own copy of an existing subscription (a twin).
        twin = client in self.pools.get(add.agent_type, []) and client not in same
        if add.sub_id in self.subs or (same and not twin):
            raise _Rejected(ErrorCode.SUBSCRIPTION_ALREADY_EXISTS)
        if sum(owner == client for _, owner in self.subs.values()) >= MAX_SUBS_PER_CONNECTION:
            raise _Rejected(ErrorCode.TOO_MANY_SUBSCRIPTIONS)
        self.subs[add.sub_id] = (spec, client)
        return self.done(req)

    def m_remove_sub(self, client: ClientId, req: Req) -> tuple[Any, ...] | None:
        self.params_ok(req)
        rem = req.meaning
        assert isinstance(rem, RemoveSub)
        entry = self.subs.get(rem.sub_id)
        if entry is None:
            raise _Rejected(ErrorCode.SUBSCRIPTION_NOT_FOUND)
        if entry[1] != client:
            raise _Rejected(ErrorCode.FORBIDDEN)
        del self.subs[rem.sub_id]
        return self.done(req)

    def m_get_subs(self, client: ClientId, req: Req) -> tuple[Any, ...] | None:
        listing = [_spec_json(spec) for spec, _ in self.subs.values()]
        return self.done(req, Canon(listing))


def rendezvous(name: str, key: str) -> int:
    """The placement score of docs/PROTOCOL.md 7.9: BLAKE2b-64 of the key, keyed with the member's name."""
    h = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8, key=name.encode()[:64])
    return int.from_bytes(h.digest(), "big")


def _content(spec: TypeSubscriptionSpec | TypePrefixSubscriptionSpec) -> tuple[str, str]:
    if isinstance(spec, TypePrefixSubscriptionSpec):
        return (spec.topic_type_prefix, spec.agent_type)
    return (spec.topic_type, spec.agent_type)


def _spec_json(spec: TypeSubscriptionSpec | TypePrefixSubscriptionSpec) -> dict[str, str]:
    if isinstance(spec, TypePrefixSubscriptionSpec):
        return {
            "kind": "type_prefix",
            "id": spec.id,
            "topic_type_prefix": spec.topic_type_prefix,
            "agent_type": spec.agent_type,
        }
    return {"kind": "type", "id": spec.id, "topic_type": spec.topic_type, "agent_type": spec.agent_type}


# ================================================================================================
# The state machine


def normalize_outputs(outputs: list[HostOutput]) -> list[tuple[Any, ...]]:
    """Decode the host's outputs from bytes; also check no client gets a frame after its Close."""
    closed: set[ClientId] = set()
    result: list[tuple[Any, ...]] = []
    for o in outputs:
        if isinstance(o, Send):
            assert o.client not in closed, f"Send to client {o.client} after its Close"
            assert isinstance(o.data, bytes)
            result.append(("send", o.client, normalize_frame(o.data)))
        else:
            assert isinstance(o, Close)
            assert o.client not in closed, f"client {o.client} closed twice"
            closed.add(o.client)
            result.append(("close", o.client, o.code))
    return result


def output_eq(expected: tuple[Any, ...], actual: tuple[Any, ...]) -> bool:
    if expected[0] != actual[0] or expected[1] != actual[1]:
        return False
    if expected[0] == "close":
        return bool(expected[2] == actual[2])
    return frame_eq(expected[2], actual[2])


class HostMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.host = HostEngine(
            max_message_size=MAX_MESSAGE_SIZE,
            max_pending_calls=MAX_PENDING_CALLS,
            max_batch_length=MAX_BATCH_LENGTH,
            max_agent_types_per_connection=MAX_TYPES_PER_CONNECTION,
            max_subscriptions_per_connection=MAX_SUBS_PER_CONNECTION,
        )
        self.model = HostModel()
        self.ever: set[ClientId] = set()
        self.gone: set[ClientId] = set()
        self.steps = 0

    # -------------------------------------------------------------- plumbing

    def teardown(self) -> None:
        event(f"steps: {self.steps // 10 * 10}+")

    def expect(self, outputs: list[HostOutput]) -> None:
        """The host's outputs of this step must be exactly what the model predicted."""
        self.steps += 1
        actual = normalize_outputs(outputs)
        expected = self.model.out
        self.model.out = []
        for a in actual:
            assert a[1] not in self.gone, f"output for disconnected client {a[1]}: {a}"
        if not match_multiset(expected, actual, output_eq):
            raise AssertionError(f"host outputs differ from the model\nexpected: {expected}\nactual:   {actual}")
        for a in actual:  # what the run exercised, for --hypothesis-show-statistics
            if a[0] == "close":
                event(f"close {int(a[2])}")
            else:
                kind, body = a[2]
                for m in body if kind == "batch" else [body]:
                    event(f"{kind} {m[0]} {m[2] if m[0] == 'err' else ''}".rstrip())

    def live(self, data: st.DataObject, *, sendable: bool = False) -> ClientId:
        """Draw a connected client; ``sendable``: one that may still send a frame."""
        ok_states = {ClientState.OPEN, ClientState.CLOSING} if sendable else set(ClientState)
        candidates = sorted(c for c, m in self.model.clients.items() if m.state in ok_states)
        return data.draw(st.sampled_from(candidates), label="client")

    def has_sendable(self) -> bool:
        return any(m.state is not ClientState.ANSWERING for m in self.model.clients.values())

    def frame(self, client: ClientId, data: bytes | str) -> None:
        note(f"client {client} sends {data!r}")
        self.host.receive(client, data, self.model.now)
        self.expect(self.host.data_to_send())

    def send_item(self, client: ClientId, item: Item, as_text: bool) -> None:
        raw = item.render()
        if len(raw) > MAX_MESSAGE_SIZE:  # long names can make any message oversized
            self.model.oversized(client)
        else:
            self.model.receive(client, item, None, None)
        self.frame(client, raw.decode() if as_text else raw)

    # -------------------------------------------------------------- connections

    @initialize(one_shot=st.booleans(), setup=st.booleans(), pool=st.booleans())
    def start(self, one_shot: bool, setup: bool, pool: bool) -> None:
        """Two channel clients (and maybe a one-shot one) so that most rules apply from step one;
        usually with an agent type each and a subscription or two, so calls and events flow early."""
        self.connect(False, None)
        self.connect(False, "w1")
        if one_shot:
            self.connect(True, None)
        if setup:
            first, second = sorted(self.model.clients)[:2]
            self.send_item(first, Req("runtime.register_agent", b'{"type":"a"}', Register("a"), 1), False)
            self.send_item(second, Req("runtime.register_agent", b'{"type":"b"}', Register("b"), 1), False)
            sub = b'{"subscription":{"kind":"type_prefix","id":"s1","topic_type_prefix":"a","agent_type":"b"}}'
            self.send_item(first, Req("runtime.add_subscription", sub, AddSub(True, "s1", "a", "b"), 2), False)
        if pool:  # both channels share "c", each with its own copy of one subscription for it
            first, second = sorted(self.model.clients)[:2]
            for client, sub_id in ((first, "s3"), (second, "s4")):
                reg = Req("runtime.register_agent", b'{"type":"c","shared":true}', Register("c", True), 3)
                self.send_item(client, reg, False)
                sub = jdump({"subscription": {"kind": "type", "id": sub_id, "topic_type": "c", "agent_type": "c"}})
                self.send_item(client, Req("runtime.add_subscription", sub, AddSub(False, sub_id, "c", "c"), 4), False)

    @rule(one_shot=st.booleans(), name=st.one_of(st.none(), st.sampled_from(NAMES)))
    def connect(self, one_shot: bool, name: str | None) -> None:
        if len(self.model.clients) >= 6:
            return
        kind = ClientKind.ONE_SHOT if one_shot else ClientKind.CHANNEL
        if name is not None and name in self.model.names():
            try:
                self.host.connect(kind, name)
            except ClientNameInUse:
                return
            raise AssertionError(f"a second live client got the name {name!r}")
        client = self.host.connect(kind, name)
        assert client not in self.ever, f"client id {client} reused"
        self.ever.add(client)
        self.model.connect(client, kind, name)
        assert self.host.client_name(client) == name

    @precondition(lambda self: bool(self.model.clients))
    @rule(data=st.data(), twice=st.booleans())
    def disconnect(self, data: st.DataObject, twice: bool) -> None:
        busy = sorted({c for p in self.model.pending.values() for c in (p.caller, p.target)})
        pick_busy = data.draw(st.booleans(), label="a client with calls in flight?")
        if busy and pick_busy:
            client = data.draw(st.sampled_from(busy), label="client")
        else:
            client = self.live(data)
        self.model.disconnect(client)
        self.host.disconnect(client, self.model.now)
        self.expect(self.host.data_to_send())
        self.gone.add(client)
        if twice:  # idempotent
            self.host.disconnect(client, self.model.now)
            self.expect(self.host.data_to_send())

    @precondition(lambda self: any(m.state is ClientState.CLOSING for m in self.model.clients.values()))
    @rule()
    def backend_disconnects_closed_clients(self) -> None:
        for client in [c for c, m in self.model.clients.items() if m.state is ClientState.CLOSING]:
            self.model.disconnect(client)
            self.host.disconnect(client, self.model.now)
            self.expect(self.host.data_to_send())
            self.gone.add(client)

    @rule(roll=st.integers(0, 9))
    def close_all(self, roll: int) -> None:
        if roll:  # rarely: a host shutdown ends everything, which would make the rest of a run dull
            return
        self.model.close_all()
        self.host.close_all()
        self.expect(self.host.data_to_send())

    # -------------------------------------------------------------- one message per frame

    @precondition(lambda self: self.has_sendable())
    @rule(data=st.data(), req=register_req(), as_text=st.booleans())
    def register(self, data: st.DataObject, req: Req, as_text: bool) -> None:
        self.send_item(self.live(data, sendable=True), req, as_text)

    @precondition(lambda self: self.has_sendable())
    @rule(data=st.data(), req=unregister_req())
    def unregister(self, data: st.DataObject, req: Req) -> None:
        self.send_item(self.live(data, sendable=True), req, False)

    def registered(self) -> tuple[str, ...]:
        return tuple(sorted({*self.model.types, *self.model.pools}))

    def subscribed(self) -> tuple[str, ...]:
        """Topics some subscription matches (a prefix subscription's prefix, plus one more character)."""
        topics = set()
        for spec, _ in self.model.subs.values():
            if isinstance(spec, TypePrefixSubscriptionSpec):
                topics.add(spec.topic_type_prefix + "b")
            else:
                topics.add(spec.topic_type)
        return tuple(sorted(topics))

    @precondition(lambda self: self.has_sendable())
    @rule(data=st.data())
    def add_subscription(self, data: st.DataObject) -> None:
        client = self.live(data, sendable=True)
        self.send_item(client, data.draw(add_sub_req(self.registered()), label="add_subscription"), False)

    @precondition(lambda self: self.has_sendable())
    @rule(data=st.data(), req=remove_sub_req())
    def remove_subscription(self, data: st.DataObject, req: Req) -> None:
        self.send_item(self.live(data, sendable=True), req, False)

    @precondition(lambda self: self.has_sendable())
    @rule(data=st.data(), req=get_subs_req())
    def get_subscriptions(self, data: st.DataObject, req: Req) -> None:
        self.send_item(self.live(data, sendable=True), req, False)

    @precondition(lambda self: self.has_sendable())
    @rule(data=st.data(), as_text=st.booleans())
    def call(self, data: st.DataObject, as_text: bool) -> None:
        callers = sorted(c for c, m in self.model.clients.items() if m.outgoing and m.state is ClientState.OPEN)
        pick_busy = data.draw(st.booleans(), label="a caller with calls in flight?")
        if callers and pick_busy:
            client = data.draw(st.sampled_from(callers), label="client")
        else:
            client = self.live(data, sendable=True)
        req = data.draw(call_req(self.registered(), self.in_flight(client)), label="call")
        self.send_item(client, req, as_text)

    call_again = call  # twice the weight: calls are what most invariants are about

    def in_flight(self, client: ClientId) -> tuple[Any, ...]:
        return tuple(sorted(self.model.clients[client].outgoing, key=repr))

    @precondition(lambda self: self.has_sendable())
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        client = self.live(data, sendable=True)
        self.send_item(client, data.draw(cancel_req(self.in_flight(client)), label="cancel"), False)

    @precondition(lambda self: self.has_sendable())
    @rule(data=st.data(), as_text=st.booleans())
    def publish(self, data: st.DataObject, as_text: bool) -> None:
        client = self.live(data, sendable=True)
        self.send_item(client, data.draw(publish_req(self.subscribed()), label="publish"), as_text)

    @precondition(lambda self: self.has_sendable())
    @rule(data=st.data(), req=st.one_of(bad_params_req(), envelope_junk_req()))
    def invalid_message(self, data: st.DataObject, req: Req) -> None:
        self.send_item(self.live(data, sendable=True), req, False)

    def draw_response(self, data: st.DataObject, responder: ClientId) -> Resp:
        """A response as ``responder`` would send it: usually to a call pending at it."""
        mine = sorted(h for h, p in self.model.pending.items() if p.target == responder)
        others = sorted(self.model.pending)
        choices: list[st.SearchStrategy[Any]] = [st.sampled_from([0, 999, "1", None, NOTIF])]
        if mine:
            choices += [st.sampled_from(mine)] * 4 + [st.sampled_from([str(h) for h in mine])]
        if others:
            choices.append(st.sampled_from(others))
        host_id = data.draw(st.one_of(choices), label="response id")
        form = data.draw(
            st.sampled_from(["result", "result", "error", "bad_error", "both", "neither", "v1"]), label="form"
        )
        result = data.draw(
            st.one_of(
                json_texts(),
                st.just(b'{"data_type":"T","data_content_type":"application/octet-stream","data_base64":"AAE="}'),
            )
        )
        error = ErrorObject(
            data.draw(st.sampled_from([-32004, -32014, -32015, -32603, 7, 10**20])),
            data.draw(st.text(max_size=5)),
            data.draw(st.one_of(st.none(), json_texts())),
            data.draw(st.booleans()),
        )
        bad_error = data.draw(
            st.sampled_from(
                [
                    b"null",
                    b"5",
                    b'"x"',
                    b"{}",
                    b'{"code":"x","message":"m"}',
                    b'{"code":1}',
                    b'{"code":1.5,"message":"m"}',
                    b"[1]",
                ]
            )
        )
        if form == "result":
            return Resp(host_id, result, None)
        if form == "error":
            return Resp(host_id, None, error)
        if form == "bad_error":
            return Resp(host_id, None, bad_error)
        if form == "both":
            return Resp(host_id, result, error)
        if form == "neither":
            return Resp(host_id, None, None)
        return Resp(host_id, result, None, jsonrpc="1.0")

    @precondition(lambda self: self.has_sendable())
    @rule(data=st.data())
    def answer(self, data: st.DataObject) -> None:
        """Some client answers a call: usually its target, sometimes a wrong client or a bogus id."""
        targets = sorted(
            {p.target for p in self.model.pending.values() if self.model.clients[p.target].state is ClientState.OPEN}
        )
        if targets and data.draw(st.integers(0, 4), label="right target?") > 0:
            responder = data.draw(st.sampled_from(targets), label="responder")
        else:
            responder = self.live(data, sendable=True)
        self.send_item(responder, self.draw_response(data, responder), data.draw(st.booleans(), label="as text"))

    answer_again = answer

    @precondition(lambda self: self.has_sendable())
    @rule(data=st.data(), code=st.sampled_from([-32015, -32602]))
    def report_unreadable_event(self, data: st.DataObject, code: int) -> None:
        """A worker reports an event it could not read (-32015, id null): counted, never answered."""
        names = b'{"data_type":"T","data_content_type":"application/json","event_id":"e1"}'
        report = Resp(None, None, ErrorObject(code, "no serializer", names, False))
        self.send_item(self.live(data, sendable=True), report, False)

    @precondition(lambda self: self.has_sendable())
    @rule(data=st.data())
    def batch(self, data: st.DataObject) -> None:
        client = self.live(data, sendable=True)
        n = data.draw(st.integers(1, MAX_BATCH_LENGTH + 2), label="batch size")
        items: list[Item] = []
        for _ in range(n):
            kind = data.draw(
                st.sampled_from(
                    [
                        "call",
                        "call",
                        "answer",
                        "cancel",
                        "register",
                        "add",
                        "remove",
                        "get",
                        "publish",
                        "invalid",
                        "junk",
                        "unregister",
                    ]
                ),
                label="kind",
            )
            strategy: st.SearchStrategy[Any] = {
                "call": call_req(self.registered(), self.in_flight(client)),
                "cancel": cancel_req(self.in_flight(client)),
                "register": register_req(),
                "add": add_sub_req(self.registered()),
                "remove": remove_sub_req(),
                "get": get_subs_req(),
                "publish": publish_req(self.subscribed()),
                "invalid": st.one_of(bad_params_req(), envelope_junk_req()),
                "junk": junk_entries,
                "unregister": unregister_req(),
            }.get(kind, st.nothing())
            items.append(self.draw_response(data, client) if kind == "answer" else data.draw(strategy, label=kind))
        raw = b"[" + b",".join(i.render() for i in items) + b"]"
        if len(raw) > MAX_MESSAGE_SIZE:  # long names can make a batch oversized
            self.model.oversized(client)
        else:
            self.model.receive(client, None, items, None)
        self.frame(client, raw)

    @precondition(lambda self: self.has_sendable())
    @rule(data=st.data(), garbage=garbage_frames())
    def garbage(self, data: st.DataObject, garbage: Garbage) -> None:
        client = self.live(data, sendable=True)
        self.model.receive(client, None, None, garbage)
        self.frame(client, garbage.data)

    @precondition(lambda self: self.has_sendable())
    @rule(
        data=st.data(),
        size=st.sampled_from([MAX_MESSAGE_SIZE, MAX_MESSAGE_SIZE + 1, 3 * MAX_MESSAGE_SIZE]),
        as_text=st.booleans(),
    )
    def big_frame(self, data: st.DataObject, size: int, as_text: bool) -> None:
        """A frame at or over the size limit (counted in UTF-8 bytes, also for str frames)."""
        if data.draw(st.integers(0, 3), label="roll"):  # not too often: it closes the client
            return
        client = self.live(data, sendable=True)
        head = b'{"jsonrpc":"2.0","method":"agent.publish","params":{"pad":"'
        tail = b'"}}'
        room = size - len(head) - len(tail)
        frame: bytes | str
        if as_text:  # two-byte characters: the str is shorter than its UTF-8 form
            text = (head + "é".encode() * (room // 2) + b"x" * (room % 2) + tail).decode()
            assert len(text.encode()) == size and len(text) < size
            frame = text
        else:
            frame = head + b"x" * room + tail
        if size > MAX_MESSAGE_SIZE:
            self.model.oversized(client)
        else:  # within the limit: a publish notification with bad params
            self.model.receive(client, Req("agent.publish", b"{}", BadParams()), None, None)
        self.frame(client, frame)

    # -------------------------------------------------------------- time

    @rule(dt=st.sampled_from([0.0, 0.001, 0.01, 0.25, 0.5, 1.0, 2.0]), roll=st.integers(0, 1))
    def advance_time(self, dt: float, roll: int) -> None:
        if roll:  # this rule gets picked more than its share
            return
        self.model.now += dt
        self.model.handle_timer()
        self.host.handle_timer(self.model.now)
        self.expect(self.host.data_to_send())

    @precondition(lambda self: self.model.next_deadline() is not None)
    @rule()
    def fire_next_deadline(self) -> None:
        deadline = self.host.next_deadline()
        assert deadline is not None
        self.model.now = max(self.model.now, deadline)
        self.model.handle_timer()
        self.host.handle_timer(self.model.now)
        self.expect(self.host.data_to_send())

    # -------------------------------------------------------------- invariants

    @invariant()
    def clients_agree(self) -> None:
        assert set(self.host.clients()) == set(self.model.clients)
        for client, m in self.model.clients.items():
            assert self.host.client_state(client) is m.state, (client, m)
        for client in self.gone - set(self.model.clients):
            assert self.host.client_state(client) is None

    @invariant()
    def stats_agree(self) -> None:
        assert self.host.stats.events_unreadable == self.model.events_unreadable

    @invariant()
    def registry_agrees(self) -> None:
        assert self.host.agent_types() == self.model.types

    @invariant()
    def subscriptions_agree(self) -> None:
        expected = [spec for spec, _ in self.model.subs.values()]
        assert self.host.subscriptions() == expected  # same specs, in the order they were added
        for sub_id, (_, owner) in self.model.subs.items():
            assert self.host.subscription_owner(sub_id) == owner
        for sub_id in SUB_IDS:
            if sub_id not in self.model.subs:
                assert self.host.subscription_owner(sub_id) is None

    @invariant()
    def pending_calls_agree(self) -> None:
        actual = {(p.host_id, p.caller, idkey(p.caller_request_id), p.target) for p in self.host.pending_calls()}
        expected = {(h, p.caller, idkey(p.caller_id), p.target) for h, p in self.model.pending.items()}
        assert actual == expected
        live = {c for c, m in self.model.clients.items() if m.state is not ClientState.CLOSING}
        for p in self.host.pending_calls():
            assert p.caller in live and p.target in live, f"a pending call involves a gone or closing client: {p}"

    @invariant()
    def owners_are_live_channels(self) -> None:
        for owner in self.host.agent_types().values():
            m = self.model.clients.get(owner)
            assert m is not None and m.kind is ClientKind.CHANNEL and m.state is ClientState.OPEN

    @invariant()
    def pools_agree(self) -> None:
        """Every placed key is on a live member of its type's pool, on one only, as the model says."""
        expected = {
            t: {m: sum(holder == m for (pt, _), holder in self.model.placed.items() if pt == t) for m in members}
            for t, members in self.model.pools.items()
        }
        actual = self.host.shared_agent_types()
        assert actual == expected
        assert {t: list(c) for t, c in actual.items()} == self.model.pools  # members in join order
        for agent_type in AGENT_TYPES:
            for key in [*KEYS, *SOURCES]:
                holder = self.host.holder(agent_type, key)
                assert holder == self.model.placed.get((agent_type, key)), (agent_type, key)
                if holder is not None:
                    m = self.model.clients[holder]
                    assert m.kind is ClientKind.CHANNEL and m.state is ClientState.OPEN
                    assert holder in self.model.pools[agent_type]
        assert not set(actual) & set(self.host.agent_types()), "a type both shared and owned"

    @invariant()
    def routes_agree(self) -> None:
        for topic in [*TOPICS, "abcd", "x:"]:
            assert self.host.subscribers(topic) == self.model.routes(topic), topic

    @invariant()
    def next_deadline_agrees(self) -> None:
        expected = self.model.next_deadline()
        actual = self.host.next_deadline()
        if expected is None:
            assert actual is None
        else:
            assert actual is not None and actual <= expected
            assert actual == expected, "next_deadline() is earlier than any pending call's deadline"


TestHostStateMachine = HostMachine.TestCase
