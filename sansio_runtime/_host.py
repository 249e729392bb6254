"""HostEngine: the router of the protocol, as a pure state machine.

The backend tells the engine that a client connected, sent a frame, went away, or that time
passed; the engine queues :class:`Send` and :class:`Close` instructions, which the backend takes
with :meth:`HostEngine.data_to_send` and carries out in order. It keeps:

* the clients and where each is in its life (:mod:`._clients`);
* who hosts which agent type and who listens to which topic (:mod:`._registry`), and for a shared
  agent type, its pool of clients and which of them holds each agent instance (:mod:`._pools`);
* the calls in flight under ids the host assigns itself, so two callers that both number their
  requests from 1 can never receive each other's replies, and how each call ends (:mod:`._calls`);
* per-call deadlines, driven by :meth:`HostEngine.handle_timer`.

It never reads a clock, never touches a socket and never decodes an agent payload.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import msgspec
from msgspec import Raw, UnsetType

from . import _frames as frames
from . import _registration as registration
from . import _wire as wire
from ._answers import fit_answer, ok
from ._calls import CALL_ENDINGS, CallEnd, CallTable, PendingCall
from ._clients import Client, ClientKind, ClientNameInUse, ClientState
from ._cluster import AgentTypeReleased, SubscriptionAdded, SubscriptionRemoved
from ._errors import CloseCode, ErrorCode, LocalProtocolError
from ._events import ClientId, Close, HostOutput, Send
from ._limits import (
    DEFAULT_MAX_AGENT_TYPES_PER_CONNECTION,
    DEFAULT_MAX_BATCH_LENGTH,
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MAX_PENDING_CALLS,
    DEFAULT_MAX_SUBSCRIPTIONS_PER_CONNECTION,
)
from ._observers import CallObserver, call_metadata
from ._params import Rejection, check_placed_key, decode_params, read_call, read_publish
from ._peers import PeerHosts
from ._pools import with_holders
from ._registry import Registry
from ._stats import HostStats
from ._wire import RequestId, SubscriptionSpec

_CHANNEL_ONLY_METHODS = frozenset(
    {wire.REGISTER_AGENT, wire.UNREGISTER_AGENT, wire.ADD_SUBSCRIPTION, wire.REMOVE_SUBSCRIPTION}
)


_Handler = Callable[[Client, "RequestId | UnsetType", "Raw | UnsetType", float], "bytes | None"]


class HostEngine(PeerHosts):
    """The host's protocol engine. One instance serves every connection of one host.

    Drive it with :meth:`connect`, :meth:`receive`, :meth:`disconnect` and :meth:`handle_timer`;
    after each, carry out the :class:`Send` / :class:`Close` instructions of :meth:`data_to_send`,
    in order. Call :meth:`handle_timer` when the clock reaches :meth:`next_deadline`.
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
        if min(max_message_size, max_pending_calls, max_batch_length) <= 0:
            raise ValueError("limits must be positive")
        if min(max_agent_types_per_connection, max_subscriptions_per_connection) <= 0:
            raise ValueError("limits must be positive")
        # What each limit does, and its default: sansio_runtime._limits and docs/PROTOCOL.md 2.5.
        self.max_message_size = max_message_size
        self.max_pending_calls = max_pending_calls
        self.max_batch_length = max_batch_length
        self.max_agent_types_per_connection = max_agent_types_per_connection
        self.max_subscriptions_per_connection = max_subscriptions_per_connection
        self.call_observer: CallObserver | None = None
        """Told of every ``agent.call``'s end, or its refusal (:class:`CallObserver`), and of its
        routing if ``observe_call_starts`` (then the engine reads each call's metadata)."""
        self.observe_call_starts = False
        self._now = 0.0  # the latest time an input came with (close_all has none of its own)
        self._clients: dict[ClientId, Client] = {}
        self._names: dict[str, ClientId] = {}
        self._client_ids = itertools.count(1)
        self._calls = CallTable()
        self._registry = Registry()
        self.stats = HostStats(shared=self._registry.shared)
        self._out: list[HostOutput] = []
        self._init_peers()  # clustered hosts only (docs/CLUSTER.md section 4): see enable_cluster()
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

    def data_to_send(self) -> list[HostOutput]:
        """Take every instruction queued so far, oldest first."""
        out, self._out = self._out, []
        return out

    def connect(self, kind: ClientKind = ClientKind.CHANNEL, name: str | None = None) -> ClientId:
        """A client attached; returns its handle for the other calls.

        ``name`` is the id a worker chose for itself (the ``X-Client-Id`` header). While a client
        with that name is connected, no other may take it: :class:`ClientNameInUse` is raised and
        the backend refuses the connection (HTTP 409).
        """
        if name is not None and name in self._names:
            raise ClientNameInUse(name)
        client = ClientId(next(self._client_ids))
        self._clients[client] = Client(client, kind, name=name)
        if name is not None:
            self._names[name] = client
        return client

    def receive(self, client: ClientId, data: bytes | str, now: float) -> None:
        """One frame (a JSON-RPC message or batch) arrived from ``client`` at time ``now``."""
        c = self._clients.get(client)
        if c is None:
            raise LocalProtocolError(f"client {client} is not connected")
        self._now = now
        if c.state is ClientState.CLOSING:
            return
        if c.state is ClientState.ANSWERING:
            raise LocalProtocolError(f"one-shot client {client} already sent its request")
        self.stats.frames_received += 1
        # The limit is in bytes: a str frame counts its UTF-8 length (O(1) check when it is ASCII).
        size = len(data) if not isinstance(data, str) or data.isascii() else len(data.encode("utf-8", "surrogatepass"))
        if size > self.max_message_size:
            self._close(c, CloseCode.MESSAGE_TOO_BIG, f"message of {size} bytes exceeds {self.max_message_size}")
            return
        frame = frames.decode_frame(data)
        if isinstance(frame, list):
            replies, is_batch = self._receive_batch(c, frame, now), bool(frame)
            if len(frame) > self.max_batch_length:
                is_batch = False
        elif isinstance(frame, frames.BadFrame):
            replies, is_batch = [self._error(None, frame.code, frame.message)], False
        else:
            single = self._dispatch(c, frame, now)
            replies, is_batch = ([] if single is None else [self._fit(single, frame.id, 0)]), False
        if c.kind is ClientKind.ONE_SHOT:
            if c.state is ClientState.OPEN:
                c.begin_answering(replies, is_batch)
                self._finish_one_shot_if_done(c)
        elif replies:
            if is_batch:
                self._out.append(Send(client, b"[" + b",".join(replies) + b"]"))
            else:
                self._out.extend(Send(client, r) for r in replies)

    def _receive_batch(self, c: Client, batch: list[Raw], now: float) -> list[bytes]:
        """The answers to a batch's entries, each fitted into what is left of the answer's budget."""
        if not batch:
            return [self._error(None, ErrorCode.INVALID_REQUEST, "empty batch")]
        if len(batch) > self.max_batch_length:
            refusal = (
                f"a batch of {len(batch)} messages is over the limit of {self.max_batch_length}: "
                "nothing in it was processed; send smaller batches"
            )
            return [self._error(None, ErrorCode.BATCH_TOO_LARGE, refusal)]
        replies: list[bytes] = []
        used = 2  # the answer's brackets
        for entry in batch:
            message = frames.decode_batch_entry(entry)
            if isinstance(message, frames.BadFrame):
                answer: bytes | None = self._error(None, message.code, message.message)
                answer_id: RequestId | UnsetType | None = None
            else:
                answer = self._dispatch(c, message, now)
                answer_id = message.id
            if answer is None:
                continue
            reply = self._fit(answer, answer_id, used)
            used += len(reply) + 1
            replies.append(reply)
        return replies

    def disconnect(self, client: ClientId, now: float) -> None:
        """``client`` went away (closed, crashed, or closed by us). Idempotent.

        Calls it was waiting on are cancelled at their targets; calls it was answering fail at
        their callers with TARGET_DISCONNECTED; its agent types and subscriptions are removed.
        """
        c = self._clients.pop(client, None)
        if c is None:
            return
        self._now = now
        if c.name is not None:
            del self._names[c.name]
        if c.state is not ClientState.CLOSING:
            self._release(c)

    def handle_timer(self, now: float) -> None:
        """Time is now ``now``: calls past their deadline fail with DEADLINE_EXCEEDED."""
        self._now = now
        for host_id in self._calls.expire(now):
            self._end_call(host_id, CallEnd.DEADLINE)

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timer` next has work, or None."""
        return self._calls.next_deadline()

    def close_all(self, code: CloseCode = CloseCode.GOING_AWAY, reason: str = "host shutting down") -> None:
        """Close every client (for a host shutdown). Nothing stays registered.

        Every client is closing before anything is released, so no caller is answered
        TARGET_DISCONNECTED for a target that goes with it: each client's own pending calls
        end with the close (a worker fails them locally as CONNECTION_LOST; ``/v1/rpc`` 503).
        """
        closing = [c for c in self._clients.values() if c.state is not ClientState.CLOSING]
        for c in closing:
            c.move_to(ClientState.CLOSING)
        for c in closing:
            self._release(c)
            self._out.append(Close(c.id, code, reason))

    # ------------------------------------------------------------------ read-only views

    def clients(self) -> Iterator[ClientId]:
        return iter(self._clients)

    def client_name(self, client: ClientId) -> str | None:
        c = self._clients.get(client)
        return None if c is None else c.name

    def client_state(self, client: ClientId) -> ClientState | None:
        c = self._clients.get(client)
        return None if c is None else c.state

    def agent_types(self) -> dict[str, ClientId]:
        """Every agent type registered by one client (not shared), and that client."""
        return self._registry.agent_types()

    def shared_agent_types(self) -> dict[str, dict[ClientId, int]]:
        """Every shared agent type, its pool's members (in the order they joined) and how many
        agent instances each holds."""
        return self._registry.shared.keys_per_member()

    def holder(self, agent_type: str, key: str) -> ClientId | None:
        """The pool member ``AgentId(agent_type, key)`` of a shared type is placed on, or None if it
        is not placed (or the type is not shared). Places nothing."""
        return self._registry.shared.holder(agent_type, key)

    def subscriptions(self) -> list[SubscriptionSpec]:
        return list(self._registry.subscriptions())

    def subscription_owner(self, subscription_id: str) -> ClientId | None:
        return self._registry.subscription_owner(subscription_id)

    def pending_calls(self) -> list[PendingCall]:
        return list(self._calls)

    def subscribers(self, topic_type: str) -> dict[ClientId, list[str]]:
        """Which clients a publish on ``topic_type`` reaches, and for which of their agent types."""
        return dict(self._registry.routes_for(topic_type))

    # ------------------------------------------------------------------ dispatch

    def _dispatch(self, c: Client, m: wire.IncomingMessage, now: float) -> bytes | None:
        """Carry out one message; returns the answer to send back at once, if any."""
        msg_id = m.id
        reply_id = None if msg_id is None or isinstance(msg_id, UnsetType) else msg_id
        if m.jsonrpc != wire.JSONRPC_VERSION:
            return self._error(reply_id, ErrorCode.INVALID_REQUEST, 'member "jsonrpc" must be "2.0"')
        if isinstance(m.method, UnsetType):
            if isinstance(m.result, UnsetType) == isinstance(m.error, UnsetType) or isinstance(msg_id, UnsetType):
                return self._error(
                    reply_id, ErrorCode.INVALID_REQUEST, "a response needs an id and exactly one of result, error"
                )
            self._on_response(c, msg_id, m.result, m.error)
            return None
        if not isinstance(m.result, UnsetType) or not isinstance(m.error, UnsetType):
            return self._error(reply_id, ErrorCode.INVALID_REQUEST, "a request cannot carry result or error")
        if msg_id is None:
            return self._error(None, ErrorCode.INVALID_REQUEST, "a request id must be a string or a number, not null")
        handler = self._methods.get(m.method)
        if handler is None:
            return self._error(reply_id, ErrorCode.METHOD_NOT_FOUND, f"unknown method {m.method!r}")
        if c.kind is not ClientKind.CHANNEL and m.method in _CHANNEL_ONLY_METHODS:
            why = "needs a /v1/channel connection" if c.kind is ClientKind.ONE_SHOT else "is not for a peer host"
            return self._error(reply_id, ErrorCode.METHOD_NOT_FOUND, f"{m.method} {why}")
        try:
            return handler(c, msg_id, m.params, now)
        except Rejection as rej:
            if m.method == wire.AGENT_CALL:
                self.stats.calls_refused += 1
                if self.call_observer is not None:
                    self.call_observer.call_refused(int(rej.code))
            return self._error(reply_id, rej.code, rej.message)

    def _on_response(
        self, c: Client, host_id: RequestId | None, result: Raw | UnsetType, error: Raw | UnsetType
    ) -> None:
        call = self._calls.get(host_id) if isinstance(host_id, int) else None
        if call is None or call.target != c.id:
            self.stats.responses_dropped += 1
            if host_id is None and not isinstance(error, UnsetType) and frames.is_unreadable_report(error):
                self.stats.events_unreadable += 1
            return
        code: int | None = None
        if not isinstance(result, UnsetType):
            answer = wire.response(call.caller_request_id, result)
        else:
            assert not isinstance(error, UnsetType)
            try:
                rpc_error = wire.RPC_ERROR_DECODER.decode(error)
                answer = wire.forwarded_error(call.caller_request_id, rpc_error)
                code = rpc_error.code
            except (msgspec.ValidationError, RecursionError):  # the call is answered all the same
                answer = self._error(
                    call.caller_request_id,
                    ErrorCode.INTERNAL_ERROR,
                    "the target answered with a malformed error object",
                )
                code = int(ErrorCode.INTERNAL_ERROR)
        self._end_call(call.host_id, CallEnd.ANSWERED, answer, code)

    # ------------------------------------------------------------------ methods

    def _agent_call(self, c: Client, msg_id: RequestId | UnsetType, params: Raw | UnsetType, now: float) -> None:
        if isinstance(msg_id, UnsetType):
            raise Rejection(ErrorCode.INVALID_REQUEST, "agent.call must be a request (with an id), not a notification")
        call, deadline = read_call(params, now)
        calls = self._calls
        if calls.host_id_of(c.id, msg_id) is not None:
            raise Rejection(ErrorCode.INVALID_REQUEST, f"request id {msg_id!r} is already used by a call in flight")
        if c.kind is not ClientKind.PEER and calls.count_made_by(c.id) >= self.max_pending_calls:
            raise Rejection(ErrorCode.TOO_MANY_PENDING_CALLS, f"more than {self.max_pending_calls} calls in flight")
        assert not isinstance(params, UnsetType)
        target = self._registry.owner_of(call.target.type)
        if target is None:
            pools = self._cluster_pools
            if pools is not None and call.target.type in pools:  # a shared type, over the cluster
                target = self._cluster_target(c, msg_id, params, call, deadline)
                if target is None:
                    return  # (it waits for its placement)
            else:
                target = self._place(call.target.type, call.target.key)
            if target is None:
                raise Rejection(ErrorCode.AGENT_TYPE_NOT_FOUND, self._not_found(call.target.type, c))
        if c.kind is ClientKind.PEER and target in self._peer_names:  # a peer never relays
            raise Rejection(ErrorCode.AGENT_TYPE_NOT_FOUND, self._not_found(call.target.type, c))
        self._open_call(c, msg_id, target, deadline, params, call)

    def _open_call(
        self,
        c: Client,
        msg_id: RequestId,
        target: ClientId,
        deadline: float | None,
        params: Raw,
        call: wire.CallRouting,
    ) -> None:
        """Forward an accepted call to ``target``; it is pending from now on."""
        pending = self._calls.open(c.id, msg_id, target, deadline, self._now)
        self._out.append(Send(target, wire.request(pending.host_id, wire.AGENT_CALL, params)))
        self.stats.calls_forwarded += 1
        if self.observe_call_starts and self.call_observer is not None:
            self.call_observer.call_started(pending.host_id, call.target.type, call_metadata(call.metadata))
        if c.kind is ClientKind.ONE_SHOT:
            c.awaiting += 1

    def _agent_publish(
        self, c: Client, msg_id: RequestId | UnsetType, params: Raw | UnsetType, now: float
    ) -> bytes | None:
        event = read_publish(params)
        assert not isinstance(params, UnsetType)
        if self._cluster_pools or self._held_publishes:  # shared types over the cluster
            self.stats.events_published += 1
            self._cluster_publish(c, params, event)
            return ok(msg_id)
        routes = self._registry.routes_for(event.type)
        if self._registry.shared.active:
            shared = self._registry.shared_for(event.type)
            if shared:
                routes = with_holders(routes, shared, event.source, self._place)
        self.stats.events_published += 1
        clients = self._clients
        out = self._out
        for client_id, recipients in routes:
            target = clients[client_id]
            if target.state is ClientState.OPEN:
                if target.kind is ClientKind.PEER:
                    self._forward_event(c, target, params)
                    continue
                out.append(Send(client_id, wire.notification(wire.AGENT_EVENT, wire.EventDelivery(recipients, params))))
                self.stats.event_deliveries += 1
        return ok(msg_id)

    def _place(self, agent_type: str, key: str) -> ClientId | None:
        """The pool member holding ``AgentId(agent_type, key)`` (placed now if it is not), or None
        if the type is not shared."""
        shared = self._registry.shared
        if agent_type not in shared:
            return None
        check_placed_key(agent_type, key)
        return shared.place(agent_type, key)

    def _cancel_request(
        self, c: Client, msg_id: RequestId | UnsetType, params: Raw | UnsetType, now: float
    ) -> bytes | None:
        cancel = decode_params(wire.CANCEL_DECODER, params)
        host_id = self._calls.host_id_of(c.id, cancel.id)
        if host_id is not None:
            self._end_call(host_id, CallEnd.CANCELLED)
        elif self._cluster_pools is not None:
            self._cancel_held(c, cancel.id)
        return ok(msg_id)

    def _register_agent(
        self, c: Client, msg_id: RequestId | UnsetType, params: Raw | UnsetType, now: float
    ) -> bytes | None:
        self._refuse_a_peers_type(params)
        limit = self.max_agent_types_per_connection
        agent_type, shared = registration.register_agent(self._registry, c.id, c.name, params, max_types=limit)
        if self._clustered:
            return self._hold_for_claim(c, msg_id, agent_type, shared)
        return ok(msg_id)

    def _unregister_agent(
        self, c: Client, msg_id: RequestId | UnsetType, params: Raw | UnsetType, now: float
    ) -> bytes | None:
        agent_type, shared = registration.unregister_agent(self._registry, c.id, params)
        if shared:
            self._left_pool(agent_type)
        else:
            self._tell_cluster(AgentTypeReleased(agent_type))
        return ok(msg_id)

    def _add_subscription(
        self, c: Client, msg_id: RequestId | UnsetType, params: Raw | UnsetType, now: float
    ) -> bytes | None:
        limit = self.max_subscriptions_per_connection
        spec = registration.add_subscription(self._registry, c.id, params, max_subscriptions=limit)
        self._tell_cluster(SubscriptionAdded(spec))
        return ok(msg_id)

    def _remove_subscription(
        self, c: Client, msg_id: RequestId | UnsetType, params: Raw | UnsetType, now: float
    ) -> bytes | None:
        subscription_id = registration.remove_subscription(self._registry, c.id, params)
        self._tell_cluster(SubscriptionRemoved(subscription_id))
        return ok(msg_id)

    def _get_subscriptions(
        self, c: Client, msg_id: RequestId | UnsetType, params: Raw | UnsetType, now: float
    ) -> bytes | None:
        return None if isinstance(msg_id, UnsetType) else wire.response(msg_id, self.subscriptions())

    # ------------------------------------------------------------------ calls ending, clients leaving

    def _end_call(
        self, host_id: int, how: CallEnd, answer: bytes | None = None, answer_code: int | None = None
    ) -> None:
        """End a pending call as :data:`~._calls.CALL_ENDINGS` says: tell the target, then the caller.
        ``answer_code``: the error code of the target's ``answer``, if it is an error."""
        call = self._calls.close(host_id)
        ending = CALL_ENDINGS[how]
        code = answer_code if ending.caller_error is None else int(ending.caller_error)
        if code is not None:
            self.stats.calls_failed += 1
        observer = self.call_observer
        if observer is not None:
            observer.call_ended(host_id, self._now - call.opened_at, code, how)
        if ending.cancel_target:
            target = self._clients.get(call.target)
            if target is not None and target.state is ClientState.OPEN:
                self._out.append(Send(call.target, wire.notification(wire.CANCEL_REQUEST, wire.CancelParams(host_id))))
        if ending.caller_error is not None:
            answer = self._error(call.caller_request_id, ending.caller_error, ending.message)
        caller = self._clients.get(call.caller)
        if answer is not None and caller is not None:
            self._reply_to(caller, call.caller_request_id, answer)

    def _release(self, c: Client) -> None:
        """Give up everything ``c`` owns and end every call it is part of.

        ``c`` is closing or already forgotten, so it hears nothing of its own calls' ends.
        """
        self._release_cluster_records(c)
        self._registry.release(c.id)
        for host_id in self._calls.made_by(c.id):
            self._end_call(host_id, CallEnd.CALLER_GONE)
        for host_id in self._calls.sent_to(c.id):
            self._end_call(host_id, CallEnd.TARGET_GONE)

    def _close(self, c: Client, code: CloseCode, reason: str) -> None:
        c.move_to(ClientState.CLOSING)
        self._release(c)
        self._out.append(Close(c.id, code, reason))

    # ------------------------------------------------------------------ answers

    def _error(self, msg_id: RequestId | None, code: ErrorCode, message: str) -> bytes:
        self.stats.errors_sent += 1
        return wire.error_response(msg_id, int(code), message)

    def _reply_to(self, caller: Client, request_id: RequestId, frame: bytes) -> None:
        """Deliver the reply to call ``request_id`` of ``caller`` (a one-shot client gathers them,
        within ``max_message_size`` for the whole HTTP answer)."""
        if caller.state is ClientState.CLOSING:
            return
        if caller.kind is not ClientKind.ONE_SHOT:
            self._out.append(Send(caller.id, frame))
            return
        caller.gather(self._fit(frame, request_id, caller.reply_bytes))
        self._finish_one_shot_if_done(caller)

    def _fit(self, reply: bytes, request_id: RequestId | UnsetType | None, used: int) -> bytes:
        """``reply``, or a PAYLOAD_TOO_LARGE error in its place if it does not fit (:func:`fit_answer`)."""
        fitted = fit_answer(reply, request_id, used, self.max_message_size)
        if fitted is not reply:
            self.stats.errors_sent += 1
        return fitted

    def _finish_one_shot_if_done(self, c: Client) -> None:
        if c.state is ClientState.ANSWERING and not c.awaiting:
            body = c.take_answer()
            if body is not None:
                self._out.append(Send(c.id, body))
            self._out.append(Close(c.id, CloseCode.NORMAL, "answered"))


__all__ = ["CallObserver", "ClientNameInUse", "HostEngine", "HostStats"]
