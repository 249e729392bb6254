"""HostEngine: the router of the protocol, as a pure state machine.

The backend tells the engine that a client connected, sent a frame, went away, or that time
passed; the engine queues :class:`Send` and :class:`Close` instructions, which the backend takes
with :meth:`HostEngine.data_to_send` and carries out in order. It keeps:

* the clients and where each is in its life (:mod:`._clients`);
* who hosts which agent type and who listens to which topic (:mod:`._registry`);
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
from ._cluster import AgentTypeReleased, ClaimAgentType, ClusterOutput, SubscriptionAdded, SubscriptionRemoved
from ._errors import CloseCode, ErrorCode, LocalProtocolError
from ._events import ClientId, Close, HostOutput, Send
from ._limits import (
    DEFAULT_MAX_AGENT_TYPES_PER_CONNECTION,
    DEFAULT_MAX_BATCH_LENGTH,
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MAX_PENDING_CALLS,
    DEFAULT_MAX_SUBSCRIPTIONS_PER_CONNECTION,
)
from ._params import Rejection, decode_params, read_call, read_publish
from ._registry import Registry
from ._stats import HostStats
from ._wire import RequestId, SubscriptionSpec

_CHANNEL_ONLY_METHODS = frozenset(
    {wire.REGISTER_AGENT, wire.UNREGISTER_AGENT, wire.ADD_SUBSCRIPTION, wire.REMOVE_SUBSCRIPTION}
)


_Handler = Callable[[Client, "RequestId | UnsetType", "Raw | UnsetType", float], "bytes | None"]


class HostEngine:
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
        self.stats = HostStats()
        self._clients: dict[ClientId, Client] = {}
        self._names: dict[str, ClientId] = {}
        self._client_ids = itertools.count(1)
        self._calls = CallTable()
        self._registry = Registry()
        self._out: list[HostOutput] = []
        # Clustered hosts only (docs/CLUSTER.md section 4): see enable_cluster().
        self._clustered = False
        self._cluster_link_up = True
        self._cluster_out: list[ClusterOutput] = []
        self._claims: dict[int, tuple[ClientId, RequestId | None, str]] = {}  # claim -> (worker, its request, type)
        self._claim_ids = itertools.count(1)
        self._peer_names: dict[ClientId, str] = {}
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
        if c.name is not None:
            del self._names[c.name]
        if c.state is not ClientState.CLOSING:
            self._release(c)

    def handle_timer(self, now: float) -> None:
        """Time is now ``now``: calls past their deadline fail with DEADLINE_EXCEEDED."""
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
        """Every registered agent type and the client hosting it."""
        return self._registry.agent_types()

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
        if c.kind is ClientKind.ONE_SHOT and m.method in _CHANNEL_ONLY_METHODS:
            return self._error(reply_id, ErrorCode.METHOD_NOT_FOUND, f"{m.method} needs a /v1/channel connection")
        if c.kind is ClientKind.PEER and m.method in _CHANNEL_ONLY_METHODS:
            return self._error(reply_id, ErrorCode.METHOD_NOT_FOUND, f"{m.method} is not for a peer host")
        try:
            return handler(c, msg_id, m.params, now)
        except Rejection as rej:
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
        if not isinstance(result, UnsetType):
            answer = wire.response(call.caller_request_id, result)
        else:
            assert not isinstance(error, UnsetType)
            try:
                answer = wire.forwarded_error(call.caller_request_id, wire.RPC_ERROR_DECODER.decode(error))
            except (msgspec.ValidationError, RecursionError):  # the call is answered all the same
                answer = self._error(
                    call.caller_request_id,
                    ErrorCode.INTERNAL_ERROR,
                    "the target answered with a malformed error object",
                )
        self._end_call(call.host_id, CallEnd.ANSWERED, answer)

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
        target = self._registry.owner_of(call.target.type)
        if target is None or (c.kind is ClientKind.PEER and target in self._peer_names):
            raise Rejection(ErrorCode.AGENT_TYPE_NOT_FOUND, self._not_found(call.target.type, c))
        pending = calls.open(c.id, msg_id, target, deadline)
        assert not isinstance(params, UnsetType)
        self._out.append(Send(target, wire.request(pending.host_id, wire.AGENT_CALL, params)))
        self.stats.calls_forwarded += 1
        if c.kind is ClientKind.ONE_SHOT:
            c.awaiting += 1

    def _agent_publish(
        self, c: Client, msg_id: RequestId | UnsetType, params: Raw | UnsetType, now: float
    ) -> bytes | None:
        event = read_publish(params)
        assert not isinstance(params, UnsetType)
        self.stats.events_published += 1
        clients = self._clients
        out = self._out
        from_peer = c.kind is ClientKind.PEER
        for client_id, recipients in self._registry.routes_for(event.type):
            target = clients[client_id]
            if target.state is not ClientState.OPEN:
                continue
            if target.kind is ClientKind.PEER:
                # Once per host, as published; that host routes it to its own workers. A peer's
                # events are never relayed to another peer.
                if not from_peer:
                    out.append(Send(client_id, wire.notification(wire.AGENT_PUBLISH, params)))
                continue
            out.append(Send(client_id, wire.notification(wire.AGENT_EVENT, wire.EventDelivery(recipients, params))))
            self.stats.event_deliveries += 1
        return ok(msg_id)

    def _cancel_request(
        self, c: Client, msg_id: RequestId | UnsetType, params: Raw | UnsetType, now: float
    ) -> bytes | None:
        cancel = decode_params(wire.CANCEL_DECODER, params)
        host_id = self._calls.host_id_of(c.id, cancel.id)
        if host_id is not None:
            self._end_call(host_id, CallEnd.CANCELLED)
        return ok(msg_id)

    def _register_agent(
        self, c: Client, msg_id: RequestId | UnsetType, params: Raw | UnsetType, now: float
    ) -> bytes | None:
        if self._peer_names:
            self._refuse_a_peers_type(params)
        agent_type = registration.register_agent(
            self._registry, c.id, params, max_types=self.max_agent_types_per_connection
        )
        if self._clustered:
            # Held (routed here) until the claim settles; the worker is answered then.
            claim = next(self._claim_ids)
            self._claims[claim] = (c.id, None if isinstance(msg_id, UnsetType) else msg_id, agent_type)
            self._cluster_out.append(ClaimAgentType(claim, agent_type))
            return None
        return ok(msg_id)

    def _unregister_agent(
        self, c: Client, msg_id: RequestId | UnsetType, params: Raw | UnsetType, now: float
    ) -> bytes | None:
        agent_type = registration.unregister_agent(self._registry, c.id, params)
        if self._clustered:
            self._cluster_out.append(AgentTypeReleased(agent_type))
        return ok(msg_id)

    def _add_subscription(
        self, c: Client, msg_id: RequestId | UnsetType, params: Raw | UnsetType, now: float
    ) -> bytes | None:
        limit = self.max_subscriptions_per_connection
        spec = registration.add_subscription(self._registry, c.id, params, max_subscriptions=limit)
        if self._clustered:
            self._cluster_out.append(SubscriptionAdded(spec))
        return ok(msg_id)

    def _remove_subscription(
        self, c: Client, msg_id: RequestId | UnsetType, params: Raw | UnsetType, now: float
    ) -> bytes | None:
        subscription_id = registration.remove_subscription(self._registry, c.id, params)
        if self._clustered:
            self._cluster_out.append(SubscriptionRemoved(subscription_id))
        return ok(msg_id)

    def _get_subscriptions(
        self, c: Client, msg_id: RequestId | UnsetType, params: Raw | UnsetType, now: float
    ) -> bytes | None:
        return None if isinstance(msg_id, UnsetType) else wire.response(msg_id, self.subscriptions())

    # ------------------------------------------------------------------ calls ending, clients leaving

    def _end_call(self, host_id: int, how: CallEnd, answer: bytes | None = None) -> None:
        """End a pending call as :data:`~._calls.CALL_ENDINGS` says: tell the target, then the caller."""
        call = self._calls.close(host_id)
        ending = CALL_ENDINGS[how]
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
        if self._clustered:
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

    # ------------------------------------------------------------------ the cluster (docs/CLUSTER.md 4)

    def enable_cluster(self) -> None:
        """This host is part of a cluster: from now on, what its workers register and subscribe is
        also asked of the driver (:meth:`cluster_to_send`), and a registration is answered once its
        claim settles (:meth:`claim_settled`). Call it before any worker connects."""
        self._clustered = True

    def cluster_to_send(self) -> list[ClusterOutput]:
        """Take every request for the cluster driver queued so far, oldest first."""
        out, self._cluster_out = self._cluster_out, []
        return out

    def set_cluster_link(self, up: bool) -> None:
        """Whether the driver's link to the cluster is up (only the wording of errors depends on it)."""
        self._cluster_link_up = up

    def add_peer(self, name: str) -> ClientId:
        """Another host (``name``: its name and epoch, for error messages) joined: it is a client now."""
        peer = self.connect(ClientKind.PEER)
        self._peer_names[peer] = name
        return peer

    def remove_peer(self, peer: ClientId, now: float) -> None:
        """The host ``peer`` is gone: calls pending at it fail with TARGET_DISCONNECTED, calls it
        made are cancelled at their targets, its agent types and subscriptions are forgotten."""
        self.disconnect(peer, now)
        self._peer_names.pop(peer, None)

    def peer_registered(self, peer: ClientId, agent_type: str) -> bool:
        """The host ``peer`` hosts ``agent_type`` (by the cluster's registry). False (and nothing
        changes) if a client here holds the type already: the cluster's claim decides between them."""
        self._check_peer(peer)
        owner = self._registry.owner_of(agent_type)
        if owner is not None:
            return owner == peer
        self._registry.register_type(peer, agent_type)
        return True

    def peer_unregistered(self, peer: ClientId, agent_type: str) -> None:
        """The host ``peer`` no longer hosts ``agent_type`` (nothing happens if it did not)."""
        self._check_peer(peer)
        if self._registry.owner_of(agent_type) == peer:
            self._registry.unregister_type(agent_type)

    def peer_subscribed(self, peer: ClientId, spec: SubscriptionSpec) -> bool:
        """The host ``peer`` holds subscription ``spec``; False if a subscription with its id exists."""
        self._check_peer(peer)
        if self._registry.subscription_owner(spec.id) is not None:
            return self._registry.subscription_owner(spec.id) == peer
        self._registry.add_subscription(peer, spec)
        return True

    def peer_unsubscribed(self, peer: ClientId, subscription_id: str) -> None:
        """The host ``peer`` no longer holds subscription ``subscription_id``."""
        self._check_peer(peer)
        if self._registry.subscription_owner(subscription_id) == peer:
            self._registry.remove_subscription(subscription_id)

    def claim_settled(self, claim: int, won: bool, holder: str = "another host") -> None:
        """The cluster decided the :class:`ClaimAgentType` ``claim``: ``won``, or held by ``holder``.

        A won claim answers the worker's registration; a lost one takes the type back from the
        worker and answers AGENT_TYPE_ALREADY_REGISTERED. A claim whose worker has left, or has
        unregistered the type meanwhile, is only forgotten (the driver was told of the release).
        """
        pending = self._claims.pop(claim, None)
        if pending is None:
            return
        client_id, request_id, agent_type = pending
        c = self._clients.get(client_id)
        if c is None or c.state is not ClientState.OPEN or self._registry.owner_of(agent_type) != client_id:
            return
        if won:
            if request_id is not None:
                self._out.append(Send(client_id, wire.response(request_id, None)))
            return
        self._registry.unregister_type(agent_type)
        if request_id is not None:
            message = f"Agent type {agent_type} already registered by {holder} of the cluster"
            error = self._error(request_id, ErrorCode.AGENT_TYPE_ALREADY_REGISTERED, message)
            self._out.append(Send(client_id, error))

    def pending_claims(self) -> list[int]:
        """The claims not settled yet."""
        return list(self._claims)

    def is_peer(self, client: ClientId) -> bool:
        return client in self._peer_names

    def _check_peer(self, peer: ClientId) -> None:
        if peer not in self._peer_names or peer not in self._clients:
            raise LocalProtocolError(f"client {peer} is not a connected peer host")

    def _not_found(self, agent_type: str, caller: Client) -> str:
        if caller.kind is ClientKind.PEER:
            return f"agent type {agent_type!r} is not hosted by a worker of this host"
        if self._clustered and not self._cluster_link_up:
            return (
                f"no worker of this host hosts agent type {agent_type!r}, and the cluster link is down: "
                "types on other hosts are unreachable until it is back"
            )
        if self._clustered:
            return f"no connected worker on any host of the cluster hosts agent type {agent_type!r}"
        return f"no connected worker hosts agent type {agent_type!r}"

    def _refuse_a_peers_type(self, params: Raw | UnsetType) -> None:
        """A registration of a type another host holds is refused, naming that host."""
        agent_type = decode_params(wire.REGISTER_AGENT_DECODER, params).type
        owner = self._registry.owner_of(agent_type)
        if owner is not None and owner in self._peer_names:
            raise Rejection(
                ErrorCode.AGENT_TYPE_ALREADY_REGISTERED,
                f"Agent type {agent_type} already registered by {self._peer_names[owner]} of the cluster",
            )

    def _release_cluster_records(self, c: Client) -> None:
        """Tell the driver what the leaving (local) client held cluster-wide."""
        if c.id in self._peer_names:
            return
        out = self._cluster_out
        out.extend(AgentTypeReleased(t) for t in self._registry.types_of(c.id))
        out.extend(SubscriptionRemoved(s) for s in self._registry.subscriptions_of(c.id))

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


__all__ = ["ClientNameInUse", "HostEngine", "HostStats"]
