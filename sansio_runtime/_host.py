"""HostEngine: the router of the protocol, as a pure state machine.

The backend tells the engine that a client connected, sent a frame, went away, or that time
passed; the engine answers with :class:`Send` and :class:`Close` instructions. It keeps:

* agent type -> the one client that hosts it;
* subscriptions, indexed so that routing a publish does not depend on unrelated subscriptions;
* calls in flight under ids the host assigns itself, so two callers that both number their
  requests from 1 can never receive each other's replies;
* per-call deadlines, driven by :meth:`HostEngine.handle_timer`.

It never reads a clock, never touches a socket and never decodes an agent payload.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

import msgspec
from msgspec import Raw, UnsetType

from . import _wire as wire
from ._deadlines import DeadlineHeap
from ._errors import CloseCode, ErrorCode, LocalProtocolError
from ._events import ClientId, Close, HostOutput, Send
from ._subscriptions import SubscriptionIndex
from ._wire import RequestId, SubscriptionSpec

DEFAULT_MAX_MESSAGE_SIZE = 4 * 1024 * 1024
DEFAULT_MAX_PENDING_CALLS = 10_000
DEFAULT_MAX_BATCH_LENGTH = 1_000
DEFAULT_MAX_AGENT_TYPES_PER_CONNECTION = 10_000
DEFAULT_MAX_SUBSCRIPTIONS_PER_CONNECTION = 50_000
MAX_NAME_LENGTH = 1024
"""Most characters in a name the host keeps: an agent type, a subscription id, a topic type or prefix."""
_ROUTE_CACHE_SIZE = 4096
_T = TypeVar("_T")


class ClientKind(enum.Enum):
    """How a client is attached."""

    CHANNEL = "channel"
    """A WebSocket at ``/v1/channel``: long-lived, may host agents, receives calls and events."""
    ONE_SHOT = "one_shot"
    """One ``POST /v1/rpc`` body: answered once (after every call in it finished), then closed."""


class ClientState(enum.Enum):
    """Where a client is in its life. Allowed moves are in :data:`CLIENT_TRANSITIONS`."""

    OPEN = "open"
    """Frames are accepted."""
    ANSWERING = "answering"
    """(One-shot only) its one body was received; waiting for the calls in it to finish."""
    CLOSING = "closing"
    """The engine emitted :class:`Close`; the client owns nothing any more and input is ignored."""


CLIENT_TRANSITIONS: dict[tuple[ClientKind, ClientState], frozenset[ClientState]] = {
    (ClientKind.CHANNEL, ClientState.OPEN): frozenset({ClientState.CLOSING}),
    (ClientKind.CHANNEL, ClientState.CLOSING): frozenset(),
    (ClientKind.ONE_SHOT, ClientState.OPEN): frozenset({ClientState.ANSWERING, ClientState.CLOSING}),
    (ClientKind.ONE_SHOT, ClientState.ANSWERING): frozenset({ClientState.CLOSING}),
    (ClientKind.ONE_SHOT, ClientState.CLOSING): frozenset(),
}
"""The client state table. ``disconnect`` may happen in any state and simply forgets the client."""

_CHANNEL_ONLY_METHODS = frozenset(
    {wire.REGISTER_AGENT, wire.UNREGISTER_AGENT, wire.ADD_SUBSCRIPTION, wire.REMOVE_SUBSCRIPTION}
)


@dataclass(frozen=True, slots=True)
class PendingCall:
    """A call the host forwarded and is waiting on."""

    host_id: int
    caller: ClientId
    caller_request_id: RequestId
    target: ClientId


@dataclass(slots=True)
class HostStats:
    """Counters for metrics and tests."""

    frames_received: int = 0
    calls_forwarded: int = 0
    events_published: int = 0
    event_deliveries: int = 0
    responses_dropped: int = 0
    """Responses that answered no call pending on the sender (late, foreign or bogus ids)."""
    errors_sent: int = 0
    events_unreadable: int = 0
    """Event deliveries a worker reported it could not read (UNREADABLE_PAYLOAD with id null)."""


@dataclass(slots=True, eq=False)
class _Client:
    id: ClientId
    kind: ClientKind
    name: str | None = None
    state: ClientState = ClientState.OPEN
    agent_types: set[str] = field(default_factory=set)
    subscriptions: set[str] = field(default_factory=set)
    outgoing: dict[RequestId, int] = field(default_factory=dict)  # caller's id -> host id
    incoming: set[int] = field(default_factory=set)  # host ids of calls this client must answer
    # One-shot clients only: replies gathered for the HTTP response (and their bytes), and calls still out.
    replies: list[bytes] = field(default_factory=list)
    reply_bytes: int = 0
    awaiting: int = 0
    batch: bool = False

    def move_to(self, new: ClientState) -> None:
        if new not in CLIENT_TRANSITIONS[(self.kind, self.state)]:
            raise LocalProtocolError(f"client {self.id}: {self.kind.value} cannot go {self.state.value} -> {new.value}")
        self.state = new


class ClientNameInUse(Exception):
    """Another live client already uses this name (``HostEngine.connect``)."""


class _Reject(Exception):
    """Raised inside a method handler: answer the request with this error."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


_Handler = Callable[["_Client", "RequestId | UnsetType", "Raw | UnsetType", float, "list[HostOutput]"], "bytes | None"]


class HostEngine:
    """The host's protocol engine. One instance serves every connection of one host.

    Drive it with :meth:`connect`, :meth:`receive`, :meth:`disconnect` and :meth:`handle_timer`;
    carry out the :class:`Send` / :class:`Close` instructions they return, in order. Call
    :meth:`handle_timer` when the clock reaches :meth:`next_deadline`.
    """

    def __init__(
        self,
        *,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        max_pending_calls: int = DEFAULT_MAX_PENDING_CALLS,
        max_batch_length: int = DEFAULT_MAX_BATCH_LENGTH,
        max_agent_types_per_connection: int = DEFAULT_MAX_AGENT_TYPES_PER_CONNECTION,
        max_subscriptions_per_connection: int = DEFAULT_MAX_SUBSCRIPTIONS_PER_CONNECTION,
    ) -> None:
        limits = (
            max_message_size,
            max_pending_calls,
            max_batch_length,
            max_agent_types_per_connection,
            max_subscriptions_per_connection,
        )
        if min(limits) <= 0:
            raise ValueError("limits must be positive")
        self.max_message_size = max_message_size
        """Largest frame accepted, in bytes; larger ones close the connection with 1009. Also the
        most the answer to one frame (or one ``/v1/rpc`` body) may take: answers that would not
        fit are replaced by PAYLOAD_TOO_LARGE errors."""
        self.max_pending_calls = max_pending_calls
        """Most calls one client may have in flight; more are refused with TOO_MANY_PENDING_CALLS."""
        self.max_batch_length = max_batch_length
        """Most entries in one batch; a longer batch is refused whole with BATCH_TOO_LARGE."""
        self.max_agent_types_per_connection = max_agent_types_per_connection
        """Most agent types one connection may register; more are refused with TOO_MANY_AGENT_TYPES."""
        self.max_subscriptions_per_connection = max_subscriptions_per_connection
        """Most subscriptions one connection may add; more are refused with TOO_MANY_SUBSCRIPTIONS."""
        self.stats = HostStats()
        self._clients: dict[ClientId, _Client] = {}
        self._names: dict[str, ClientId] = {}
        self._client_ids = itertools.count(1)
        self._call_ids = itertools.count(1)
        self._agent_types: dict[str, ClientId] = {}
        self._subscriptions = SubscriptionIndex()
        self._subscription_owner: dict[str, ClientId] = {}
        self._pending: dict[int, PendingCall] = {}
        self._deadlines: DeadlineHeap[int] = DeadlineHeap()
        self._routes: dict[str, list[tuple[ClientId, list[str]]]] = {}
        self._methods: dict[str, _Handler] = {
            wire.AGENT_CALL: self._agent_call,
            wire.AGENT_PUBLISH: self._agent_publish,
            wire.CANCEL_REQUEST: self._cancel_request,
            wire.REGISTER_AGENT: self._register_agent,
            wire.UNREGISTER_AGENT: self._unregister_agent,
            wire.ADD_SUBSCRIPTION: self._add_subscription,
            wire.REMOVE_SUBSCRIPTION: self._remove_subscription,
            wire.GET_SUBSCRIPTIONS: self._get_subscriptions,
        }

    # ------------------------------------------------------------------ driving the engine

    def connect(self, kind: ClientKind = ClientKind.CHANNEL, name: str | None = None) -> ClientId:
        """A client attached; returns its handle for the other calls.

        ``name`` is the id a worker chose for itself (the ``X-Client-Id`` header). While a client
        with that name is connected, no other may take it: :class:`ClientNameInUse` is raised and
        the backend refuses the connection (HTTP 409).
        """
        if name is not None and name in self._names:
            raise ClientNameInUse(name)
        client = ClientId(next(self._client_ids))
        self._clients[client] = _Client(client, kind, name=name)
        if name is not None:
            self._names[name] = client
        return client

    def client_name(self, client: ClientId) -> str | None:
        c = self._clients.get(client)
        return None if c is None else c.name

    def receive(self, client: ClientId, data: bytes | str, now: float) -> list[HostOutput]:
        """One frame (a JSON-RPC message or batch) arrived from ``client`` at time ``now``."""
        c = self._clients.get(client)
        if c is None:
            raise LocalProtocolError(f"client {client} is not connected")
        if c.state is ClientState.CLOSING:
            return []
        if c.state is ClientState.ANSWERING:
            raise LocalProtocolError(f"one-shot client {client} already sent its request")
        self.stats.frames_received += 1
        out: list[HostOutput] = []
        # The limit is in bytes: a str frame counts its UTF-8 length (O(1) check when it is ASCII).
        size = len(data) if not isinstance(data, str) or data.isascii() else len(data.encode("utf-8", "surrogatepass"))
        if size > self.max_message_size:
            self._close(c, CloseCode.MESSAGE_TOO_BIG, f"message of {size} bytes exceeds {self.max_message_size}", out)
            return out
        replies: list[bytes] = []
        try:
            if not isinstance(data, str) and not data.isascii():
                # msgspec does not check UTF-8 inside the Raw parts the host forwards unread, so check
                # the frame here: bad bytes must not reach (and break) another client's text frames.
                data.decode("utf-8")
            frame = wire.FRAME_DECODER.decode(data)
        except msgspec.ValidationError as exc:
            syntax = wire.json_syntax_error(data)  # a type mismatch may come before a syntax error
            if syntax is None:
                replies.append(self._error(None, ErrorCode.INVALID_REQUEST, f"not a JSON-RPC 2.0 message: {exc}"))
            else:
                replies.append(self._error(None, ErrorCode.PARSE_ERROR, f"invalid JSON: {syntax}"))
            is_batch = False
        # UnicodeError: bad UTF-8, or lone surrogates in a str; RecursionError: nested too deeply to parse
        except (msgspec.DecodeError, UnicodeError, RecursionError) as exc:
            replies.append(self._error(None, ErrorCode.PARSE_ERROR, f"invalid JSON: {exc}"))
            is_batch = False
        else:
            is_batch = isinstance(frame, list)
            if isinstance(frame, list):
                if not frame:
                    replies.append(self._error(None, ErrorCode.INVALID_REQUEST, "empty batch"))
                    is_batch = False
                elif len(frame) > self.max_batch_length:
                    refusal = (
                        f"a batch of {len(frame)} messages is over the limit of {self.max_batch_length}: "
                        "nothing in it was processed; send smaller batches"
                    )
                    replies.append(self._error(None, ErrorCode.BATCH_TOO_LARGE, refusal))
                    is_batch = False
                    frame = []
                used = 2  # the answer's brackets
                for item in frame:
                    try:
                        message = wire.MESSAGE_DECODER.decode(item)
                    except msgspec.ValidationError as exc:
                        answer: bytes | None = self._error(
                            None, ErrorCode.INVALID_REQUEST, f"not a JSON-RPC 2.0 message: {exc}"
                        )
                        answer_id: RequestId | UnsetType | None = None
                    else:
                        answer = self._dispatch(c, message, now, out)
                        answer_id = message.id
                    if answer is None:
                        continue
                    reply = self._fit(answer, answer_id, used)
                    used += len(reply) + 1
                    replies.append(reply)
            else:
                single = self._dispatch(c, frame, now, out)
                if single is not None:
                    replies.append(self._fit(single, frame.id, 0))
        if c.kind is ClientKind.ONE_SHOT:
            if c.state is ClientState.OPEN:
                c.move_to(ClientState.ANSWERING)
                c.batch = is_batch
                c.replies.extend(replies)
                c.reply_bytes = sum(len(r) + 1 for r in replies)
                self._finish_one_shot_if_done(c, out)
        elif replies:
            if is_batch:
                out.append(Send(client, b"[" + b",".join(replies) + b"]"))
            else:
                out.extend(Send(client, r) for r in replies)
        return out

    def disconnect(self, client: ClientId, now: float) -> list[HostOutput]:
        """``client`` went away (closed, crashed, or closed by us). Idempotent.

        Calls it was waiting on are cancelled at their targets; calls it was answering fail at
        their callers with TARGET_DISCONNECTED; its agent types and subscriptions are removed.
        """
        out: list[HostOutput] = []
        c = self._clients.get(client)
        if c is None:
            return out
        if c.state is not ClientState.CLOSING:
            self._release(c, out)
        del self._clients[client]
        if c.name is not None:
            del self._names[c.name]
        return out

    def handle_timer(self, now: float) -> list[HostOutput]:
        """Time is now ``now``: calls past their deadline fail with DEADLINE_EXCEEDED."""
        out: list[HostOutput] = []
        for host_id in self._deadlines.expire(now):
            pending = self._pending.pop(host_id)
            caller = self._clients[pending.caller]
            del caller.outgoing[pending.caller_request_id]
            self._clients[pending.target].incoming.discard(host_id)
            self._send_cancel(pending.target, host_id, out)
            self._reply_to(
                caller,
                pending.caller_request_id,
                self._error(pending.caller_request_id, ErrorCode.DEADLINE_EXCEEDED, "the call's timeout_ms ran out"),
                out,
            )
        return out

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timer` next has work, or None."""
        return self._deadlines.next_deadline()

    def close_all(self, code: CloseCode = CloseCode.GOING_AWAY, reason: str = "host shutting down") -> list[HostOutput]:
        """Close every client (for a host shutdown). Nothing stays registered.

        Every client is closing before anything is released, so no caller is answered
        TARGET_DISCONNECTED for a target that goes with it: each client's own pending calls
        end with the close (a worker fails them locally as CONNECTION_LOST; ``/v1/rpc`` 503).
        """
        out: list[HostOutput] = []
        closing = [c for c in self._clients.values() if c.state is not ClientState.CLOSING]
        for c in closing:
            c.move_to(ClientState.CLOSING)
        for c in closing:
            self._release(c, out)
            out.append(Close(c.id, code, reason))
        return out

    # ------------------------------------------------------------------ read-only views

    def clients(self) -> Iterator[ClientId]:
        return iter(self._clients)

    def client_state(self, client: ClientId) -> ClientState | None:
        c = self._clients.get(client)
        return None if c is None else c.state

    def agent_types(self) -> dict[str, ClientId]:
        """Every registered agent type and the client hosting it."""
        return dict(self._agent_types)

    def subscriptions(self) -> list[SubscriptionSpec]:
        return list(self._subscriptions)

    def subscription_owner(self, subscription_id: str) -> ClientId | None:
        return self._subscription_owner.get(subscription_id)

    def pending_calls(self) -> list[PendingCall]:
        return list(self._pending.values())

    def subscribers(self, topic_type: str) -> dict[ClientId, list[str]]:
        """Which clients a publish on ``topic_type`` reaches, and for which of their agent types."""
        return dict(self._routes_for(topic_type))

    # ------------------------------------------------------------------ dispatch

    def _dispatch(self, c: _Client, m: wire.IncomingMessage, now: float, out: list[HostOutput]) -> bytes | None:
        msg_id = m.id
        if msg_id is not None and not isinstance(msg_id, UnsetType):
            reply_id: RequestId | None = msg_id
        else:
            reply_id = None
        if m.jsonrpc != wire.JSONRPC_VERSION:
            return self._error(reply_id, ErrorCode.INVALID_REQUEST, 'member "jsonrpc" must be "2.0"')
        if isinstance(m.method, UnsetType):
            if isinstance(m.result, UnsetType) == isinstance(m.error, UnsetType) or isinstance(msg_id, UnsetType):
                return self._error(
                    reply_id, ErrorCode.INVALID_REQUEST, "a response needs an id and exactly one of result, error"
                )
            self._on_response(c, msg_id, m.result, m.error, out)
            return None
        if not isinstance(m.result, UnsetType) or not isinstance(m.error, UnsetType):
            return self._error(reply_id, ErrorCode.INVALID_REQUEST, "a request cannot carry result or error")
        if msg_id is None:
            return self._error(None, ErrorCode.INVALID_REQUEST, "a request id must be a string or a number, not null")
        handler = self._methods.get(m.method)
        if handler is None:
            return self._error(reply_id, ErrorCode.METHOD_NOT_FOUND, f"unknown method {m.method!r}")
        if c.kind is ClientKind.ONE_SHOT and m.method in _CHANNEL_ONLY_METHODS:
            return self._error(reply_id, ErrorCode.METHOD_NOT_FOUND, f"{m.method} needs a /v1/channel connection")
        try:
            return handler(c, msg_id, m.params, now, out)
        except _Reject as rej:
            return self._error(reply_id, rej.code, rej.message)

    def _on_response(
        self,
        c: _Client,
        host_id: RequestId | None,
        result: Raw | UnsetType,
        error: Raw | UnsetType,
        out: list[HostOutput],
    ) -> None:
        pending = self._pending.get(host_id) if isinstance(host_id, int) else None
        if pending is None or pending.target != c.id:
            self.stats.responses_dropped += 1
            if host_id is None and not isinstance(error, UnsetType) and _is_unreadable_report(error):
                self.stats.events_unreadable += 1
            return
        del self._pending[pending.host_id]
        self._deadlines.discard(pending.host_id)
        c.incoming.discard(pending.host_id)
        caller = self._clients[pending.caller]
        del caller.outgoing[pending.caller_request_id]
        if not isinstance(result, UnsetType):
            frame = wire.response(pending.caller_request_id, result)
        else:
            assert not isinstance(error, UnsetType)
            try:
                frame = wire.forwarded_error(pending.caller_request_id, wire.RPC_ERROR_DECODER.decode(error))
            except (msgspec.ValidationError, RecursionError):  # the call is settled already: always answer
                frame = self._error(
                    pending.caller_request_id,
                    ErrorCode.INTERNAL_ERROR,
                    "the target answered with a malformed error object",
                )
        self._reply_to(caller, pending.caller_request_id, frame, out)

    # ------------------------------------------------------------------ methods

    def _agent_call(
        self, c: _Client, msg_id: RequestId | UnsetType, params: Raw | UnsetType, now: float, out: list[HostOutput]
    ) -> bytes | None:
        if isinstance(msg_id, UnsetType):
            raise _Reject(ErrorCode.INVALID_REQUEST, "agent.call must be a request (with an id), not a notification")
        call = _decode(wire.CALL_ROUTING_DECODER, params)
        if not wire.has_exactly_one_payload(call.data, call.data_base64):
            raise _Reject(ErrorCode.INVALID_PARAMS, "exactly one of data, data_base64 is required")
        if not isinstance(call.timeout_ms, UnsetType) and call.timeout_ms <= 0:
            raise _Reject(ErrorCode.INVALID_PARAMS, "timeout_ms must be a positive integer")
        deadline: float | None = None
        if not isinstance(call.timeout_ms, UnsetType):
            try:  # before any state changes: an int too large for a float must not leave a half-made call
                deadline = now + call.timeout_ms / 1000.0
            except OverflowError:
                raise _Reject(ErrorCode.INVALID_PARAMS, "timeout_ms is too large") from None
        if msg_id in c.outgoing:
            raise _Reject(ErrorCode.INVALID_REQUEST, f"request id {msg_id!r} is already used by a call in flight")
        if len(c.outgoing) >= self.max_pending_calls:
            raise _Reject(ErrorCode.TOO_MANY_PENDING_CALLS, f"more than {self.max_pending_calls} calls in flight")
        target_id = self._agent_types.get(call.target.type)
        if target_id is None:
            raise _Reject(ErrorCode.AGENT_TYPE_NOT_FOUND, f"no connected worker hosts agent type {call.target.type!r}")
        host_id = next(self._call_ids)
        self._pending[host_id] = PendingCall(host_id, c.id, msg_id, target_id)
        c.outgoing[msg_id] = host_id
        self._clients[target_id].incoming.add(host_id)
        if deadline is not None:
            self._deadlines.set(host_id, deadline)
        assert not isinstance(params, UnsetType)
        out.append(Send(target_id, wire.request(host_id, wire.AGENT_CALL, params)))
        self.stats.calls_forwarded += 1
        if c.kind is ClientKind.ONE_SHOT:
            c.awaiting += 1
        return None

    def _agent_publish(
        self, c: _Client, msg_id: RequestId | UnsetType, params: Raw | UnsetType, now: float, out: list[HostOutput]
    ) -> bytes | None:
        event = _decode(wire.EVENT_ROUTING_DECODER, params)
        if event.specversion != wire.CLOUDEVENTS_SPEC_VERSION:
            raise _Reject(ErrorCode.INVALID_PARAMS, f'specversion must be "1.0", not {event.specversion!r}')
        if not wire.has_exactly_one_payload(event.data, event.data_base64):
            raise _Reject(ErrorCode.INVALID_PARAMS, "exactly one of data, data_base64 is required")
        assert not isinstance(params, UnsetType)
        self.stats.events_published += 1
        clients = self._clients
        for client_id, recipients in self._routes_for(event.type):
            if clients[client_id].state is ClientState.OPEN:
                out.append(Send(client_id, wire.notification(wire.AGENT_EVENT, wire.EventDelivery(recipients, params))))
                self.stats.event_deliveries += 1
        return None if isinstance(msg_id, UnsetType) else wire.response(msg_id, None)

    def _cancel_request(
        self, c: _Client, msg_id: RequestId | UnsetType, params: Raw | UnsetType, now: float, out: list[HostOutput]
    ) -> bytes | None:
        cancel = _decode(wire.CANCEL_DECODER, params)
        host_id = c.outgoing.pop(cancel.id, None)
        if host_id is not None:
            pending = self._pending.pop(host_id)
            self._deadlines.discard(host_id)
            self._clients[pending.target].incoming.discard(host_id)
            self._send_cancel(pending.target, host_id, out)
            self._reply_to(c, cancel.id, self._error(cancel.id, ErrorCode.CANCELLED, "cancelled by the caller"), out)
        return None if isinstance(msg_id, UnsetType) else wire.response(msg_id, None)

    def _register_agent(
        self, c: _Client, msg_id: RequestId | UnsetType, params: Raw | UnsetType, now: float, out: list[HostOutput]
    ) -> bytes | None:
        agent_type = _decode(wire.REGISTER_AGENT_DECODER, params).type
        if not agent_type:
            raise _Reject(ErrorCode.INVALID_PARAMS, "type must be a non-empty string")
        _check_name_lengths(agent_type)
        owner = self._agent_types.get(agent_type)
        if owner is not None:
            whose = "this connection" if owner == c.id else "another worker"
            raise _Reject(  # (the gRPC host's wording: code and tests match "Agent type X already registered")
                ErrorCode.AGENT_TYPE_ALREADY_REGISTERED, f"Agent type {agent_type} already registered by {whose}"
            )
        if len(c.agent_types) >= self.max_agent_types_per_connection:
            raise _Reject(
                ErrorCode.TOO_MANY_AGENT_TYPES,
                f"this connection already has {len(c.agent_types)} agent types, the most one connection may "
                "register: unregister some, or raise the host's max_agent_types_per_connection",
            )
        self._agent_types[agent_type] = c.id
        c.agent_types.add(agent_type)
        self._routes.clear()
        return None if isinstance(msg_id, UnsetType) else wire.response(msg_id, None)

    def _unregister_agent(
        self, c: _Client, msg_id: RequestId | UnsetType, params: Raw | UnsetType, now: float, out: list[HostOutput]
    ) -> bytes | None:
        agent_type = _decode(wire.REGISTER_AGENT_DECODER, params).type
        owner = self._agent_types.get(agent_type)
        if owner is None:
            raise _Reject(ErrorCode.AGENT_TYPE_NOT_FOUND, f"agent type {agent_type!r} is not registered")
        if owner != c.id:
            raise _Reject(ErrorCode.FORBIDDEN, f"agent type {agent_type!r} belongs to another worker")
        del self._agent_types[agent_type]
        c.agent_types.discard(agent_type)
        self._routes.clear()
        return None if isinstance(msg_id, UnsetType) else wire.response(msg_id, None)

    def _add_subscription(
        self, c: _Client, msg_id: RequestId | UnsetType, params: Raw | UnsetType, now: float, out: list[HostOutput]
    ) -> bytes | None:
        spec = _decode(wire.ADD_SUBSCRIPTION_DECODER, params).subscription
        if not spec.id or not spec.agent_type:
            raise _Reject(ErrorCode.INVALID_PARAMS, "subscription id and agent_type must be non-empty")
        topic = spec.topic_type if isinstance(spec, wire.TypeSubscriptionSpec) else spec.topic_type_prefix
        _check_name_lengths(spec.id, spec.agent_type, topic)
        existing = self._subscriptions.find_equal(spec)
        if existing is not None:
            raise _Reject(ErrorCode.SUBSCRIPTION_ALREADY_EXISTS, f"subscription {existing!r} already exists")
        if len(c.subscriptions) >= self.max_subscriptions_per_connection:
            raise _Reject(
                ErrorCode.TOO_MANY_SUBSCRIPTIONS,
                f"this connection already has {len(c.subscriptions)} subscriptions, the most one connection may "
                "add: remove some, or raise the host's max_subscriptions_per_connection",
            )
        self._subscriptions.add(spec)
        self._subscription_owner[spec.id] = c.id
        c.subscriptions.add(spec.id)
        self._routes.clear()
        return None if isinstance(msg_id, UnsetType) else wire.response(msg_id, None)

    def _remove_subscription(
        self, c: _Client, msg_id: RequestId | UnsetType, params: Raw | UnsetType, now: float, out: list[HostOutput]
    ) -> bytes | None:
        subscription_id = _decode(wire.REMOVE_SUBSCRIPTION_DECODER, params).id
        owner = self._subscription_owner.get(subscription_id)
        if owner is None:
            raise _Reject(ErrorCode.SUBSCRIPTION_NOT_FOUND, f"no subscription has id {subscription_id!r}")
        if owner != c.id:
            raise _Reject(ErrorCode.FORBIDDEN, f"subscription {subscription_id!r} belongs to another worker")
        self._drop_subscription(c, subscription_id)
        self._routes.clear()
        return None if isinstance(msg_id, UnsetType) else wire.response(msg_id, None)

    def _get_subscriptions(
        self, c: _Client, msg_id: RequestId | UnsetType, params: Raw | UnsetType, now: float, out: list[HostOutput]
    ) -> bytes | None:
        return None if isinstance(msg_id, UnsetType) else wire.response(msg_id, list(self._subscriptions))

    # ------------------------------------------------------------------ helpers

    def _routes_for(self, topic_type: str) -> list[tuple[ClientId, list[str]]]:
        routes = self._routes.get(topic_type)
        if routes is None:
            by_client: dict[ClientId, list[str]] = {}
            for agent_type in sorted(self._subscriptions.match(topic_type)):
                owner = self._agent_types.get(agent_type)
                if owner is not None:
                    by_client.setdefault(owner, []).append(agent_type)
            routes = list(by_client.items())
            if len(self._routes) >= _ROUTE_CACHE_SIZE:
                self._routes.clear()
            self._routes[topic_type] = routes
        return routes

    def _drop_subscription(self, c: _Client, subscription_id: str) -> None:
        self._subscriptions.remove(subscription_id)
        del self._subscription_owner[subscription_id]
        c.subscriptions.discard(subscription_id)

    def _error(self, msg_id: RequestId | None, code: ErrorCode, message: str) -> bytes:
        self.stats.errors_sent += 1
        return wire.error_response(msg_id, int(code), message)

    def _send_cancel(self, target: ClientId, host_id: int, out: list[HostOutput]) -> None:
        t = self._clients.get(target)
        if t is not None and t.state is ClientState.OPEN:
            out.append(Send(target, wire.notification(wire.CANCEL_REQUEST, wire.CancelParams(host_id))))

    def _reply_to(self, caller: _Client, request_id: RequestId, frame: bytes, out: list[HostOutput]) -> None:
        """Deliver the reply to call ``request_id`` of ``caller`` (a one-shot client gathers them,
        within ``max_message_size`` for the whole HTTP answer)."""
        if caller.state is ClientState.CLOSING:
            return
        if caller.kind is ClientKind.CHANNEL:
            out.append(Send(caller.id, frame))
            return
        frame = self._fit(frame, request_id, caller.reply_bytes)
        caller.replies.append(frame)
        caller.reply_bytes += len(frame) + 1
        caller.awaiting -= 1
        self._finish_one_shot_if_done(caller, out)

    def _fit(self, reply: bytes, request_id: RequestId | UnsetType | None, used: int) -> bytes:
        """``reply``, or a short PAYLOAD_TOO_LARGE error in its place if the answer it goes into
        (``used`` bytes so far) would pass ``max_message_size`` with it."""
        if used + len(reply) <= self.max_message_size:
            return reply
        message = (
            f"the answer ({len(reply)} bytes) would make the reply exceed the message size limit of "
            f"{self.max_message_size} bytes: ask for less in one message"
        )
        return self._error(
            None if isinstance(request_id, UnsetType) else request_id, ErrorCode.PAYLOAD_TOO_LARGE, message
        )

    def _finish_one_shot_if_done(self, c: _Client, out: list[HostOutput]) -> None:
        if c.state is not ClientState.ANSWERING or c.awaiting:
            return
        if c.replies:
            body = b"[" + b",".join(c.replies) + b"]" if c.batch else c.replies[0]
            out.append(Send(c.id, body))
        c.replies = []
        c.move_to(ClientState.CLOSING)
        out.append(Close(c.id, CloseCode.NORMAL, "answered"))

    def _close(self, c: _Client, code: CloseCode, reason: str, out: list[HostOutput]) -> None:
        self._release(c, out)
        c.move_to(ClientState.CLOSING)
        out.append(Close(c.id, code, reason))

    def _release(self, c: _Client, out: list[HostOutput]) -> None:
        """Give up everything ``c`` owns and settle every call it is part of."""
        if c.agent_types or c.subscriptions:
            for agent_type in c.agent_types:
                del self._agent_types[agent_type]
            c.agent_types.clear()
            for subscription_id in list(c.subscriptions):
                self._drop_subscription(c, subscription_id)
            self._routes.clear()
        for host_id in c.outgoing.values():
            pending = self._pending.pop(host_id)
            self._deadlines.discard(host_id)
            target = self._clients.get(pending.target)
            if target is not None:
                target.incoming.discard(host_id)
                if target is not c:
                    self._send_cancel(pending.target, host_id, out)
        c.outgoing.clear()
        for host_id in c.incoming:
            pending = self._pending.pop(host_id)
            self._deadlines.discard(host_id)
            caller = self._clients[pending.caller]
            del caller.outgoing[pending.caller_request_id]
            self._reply_to(
                caller,
                pending.caller_request_id,
                self._error(
                    pending.caller_request_id, ErrorCode.TARGET_DISCONNECTED, "the worker hosting the target went away"
                ),
                out,
            )
        c.incoming.clear()


def _check_name_lengths(*names: str) -> None:
    for name in names:
        if len(name) > MAX_NAME_LENGTH:
            raise _Reject(ErrorCode.INVALID_PARAMS, f"names are at most {MAX_NAME_LENGTH} characters, not {len(name)}")


def _is_unreadable_report(error: Raw) -> bool:
    """Whether a worker's error with id null reports an event it could not read."""
    try:
        return wire.RPC_ERROR_DECODER.decode(error).code == ErrorCode.UNREADABLE_PAYLOAD
    except (msgspec.ValidationError, RecursionError):
        return False


def _decode(decoder: msgspec.json.Decoder[_T], params: Raw | UnsetType) -> _T:
    if isinstance(params, UnsetType):
        raise _Reject(ErrorCode.INVALID_PARAMS, "params are required")
    try:
        return decoder.decode(params)
    except (msgspec.ValidationError, RecursionError) as exc:  # RecursionError: nested too deeply to decode here
        raise _Reject(ErrorCode.INVALID_PARAMS, f"invalid params: {exc}") from None
