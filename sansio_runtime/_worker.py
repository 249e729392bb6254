"""WorkerEngine: the worker's side of the protocol, as a pure state machine.

Commands (:meth:`WorkerEngine.call`, :meth:`~WorkerEngine.publish`, :meth:`~WorkerEngine.respond`,
...) queue frames that the backend collects with :meth:`~WorkerEngine.data_to_send`, as h11 and
aioquic do; frames from the host go into :meth:`~WorkerEngine.receive`, which returns events.
The engine numbers its own requests, correlates answers, tracks the calls the host asked it to
handle, and enforces local deadlines given with ``timeout`` (time is passed in, never read).

One engine serves a worker's successive connections. Each connection is an **epoch**
(:attr:`WorkerEngine.epoch`, counting up from 0 at every :meth:`~WorkerEngine.connection_lost`).
The host numbers the calls it sends per connection (a restarted host starts again from 1), so an
incoming call is known by its epoch and the host's id together: an answer given for an epoch that
is over is dropped, and can never settle a newer call that happens to have the same id.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Mapping
from dataclasses import dataclass

import msgspec
from msgspec import UNSET, Raw, UnsetType

from . import _wire as wire
from ._deadlines import DeadlineHeap
from ._errors import CloseCode, ErrorCode
from ._events import (
    CallFailed,
    CallSucceeded,
    IncomingCall,
    IncomingCallCancelled,
    IncomingEvent,
    Payload,
    PeerError,
    RequestFailed,
    RequestSucceeded,
    WorkerEvent,
)
from ._host import DEFAULT_MAX_MESSAGE_SIZE
from ._wire import AgentRef, RequestId, RpcError, SubscriptionSpec

_EMPTY: Mapping[str, str] = {}


class PayloadTooLargeError(ValueError):
    """A message would exceed the engine's ``max_message_size`` and was not queued."""


@dataclass(slots=True)
class WorkerStats:
    """Counters of one worker engine (over all its connections), for metrics and tests."""

    calls_received: int = 0
    """``agent.call`` requests the host sent us to handle."""
    events_received: int = 0
    """``agent.event`` deliveries the host sent us."""
    events_dropped: int = 0
    """``agent.event`` deliveries that were not valid events (answered with an id-null error)."""
    calls_unreadable: int = 0
    """Calls answered with UNREADABLE_PAYLOAD: no serializer here could read their message."""
    events_unreadable: int = 0
    """Events whose payload no serializer here could read (reported to the host)."""
    results_unreadable: int = 0
    """Answers to our calls whose payload no serializer here could read."""


# What a worker's pending requests fail with when the connection ends with a close code.
_CLOSED_WITH: dict[int, tuple[ErrorCode, str]] = {
    CloseCode.GOING_AWAY: (ErrorCode.CONNECTION_LOST, "the host shut down (close 1001) before it answered"),
    CloseCode.MESSAGE_TOO_BIG: (
        ErrorCode.PAYLOAD_TOO_LARGE,
        "the host closed the connection (1009) because a message was over its size limit; set the "
        "worker's max_message_size= to at most the host's",
    ),
    CloseCode.SLOW_CONSUMER: (
        ErrorCode.CONNECTION_LOST,
        "the host cut the connection off (4008) because this worker stopped reading",
    ),
}


class _Kind(enum.Enum):
    CALL = "call"
    RUNTIME = "runtime"
    SUBSCRIPTIONS = "subscriptions"


class WorkerEngine:
    """The worker's protocol engine: one per connection to a host.

    All ``now`` and ``timeout`` values are in seconds on whatever monotonic clock the driver uses.
    """

    def __init__(self, *, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        self.configured_max_message_size = max_message_size
        """The limit this engine was made with."""
        self.max_message_size = max_message_size
        """Largest frame this engine will queue: the configured limit, or the host's when that is
        lower (:meth:`connection_made`); the host refuses larger ones (close 1009)."""
        self.stats = WorkerStats()
        self._ids = itertools.count(1)
        self._outbox: list[bytes] = []
        self._requests: dict[int, _Kind] = {}
        # Calls of the current epoch still to be answered (a dict: insertion-ordered, so deterministic).
        self._incoming: dict[RequestId, None] = {}
        self._epoch = 0
        self._deadlines: DeadlineHeap[int] = DeadlineHeap()

    # ------------------------------------------------------------------ connection

    def connection_made(self, host_max_message_size: int | None = None) -> None:
        """A new connection to a host is open. ``host_max_message_size`` is the host's message size
        limit when it announced one (the ``X-Max-Message-Size`` header of its upgrade answer):
        frames over it are refused here, before they are sent, instead of costing the connection."""
        limit = self.configured_max_message_size
        if host_max_message_size is not None and 0 < host_max_message_size < limit:
            limit = host_max_message_size
        self.max_message_size = limit

    # ------------------------------------------------------------------ outgoing

    def data_to_send(self) -> list[bytes]:
        """Take every queued frame (each one JSON-RPC message), oldest first."""
        out, self._outbox = self._outbox, []
        return out

    @property
    def has_data_to_send(self) -> bool:
        return bool(self._outbox)

    def register_agent(self, agent_type: str) -> int:
        return self._request(wire.REGISTER_AGENT, wire.RegisterAgentParams(agent_type), _Kind.RUNTIME)

    def unregister_agent(self, agent_type: str) -> int:
        return self._request(wire.UNREGISTER_AGENT, wire.RegisterAgentParams(agent_type), _Kind.RUNTIME)

    def add_subscription(self, subscription: SubscriptionSpec) -> int:
        return self._request(wire.ADD_SUBSCRIPTION, wire.AddSubscriptionParams(subscription), _Kind.RUNTIME)

    def remove_subscription(self, subscription_id: str) -> int:
        return self._request(wire.REMOVE_SUBSCRIPTION, wire.RemoveSubscriptionParams(subscription_id), _Kind.RUNTIME)

    def get_subscriptions(self) -> int:
        return self._request(wire.GET_SUBSCRIPTIONS, Raw(b"{}"), _Kind.SUBSCRIPTIONS)

    def call(
        self,
        target: AgentRef,
        payload: Payload,
        *,
        now: float,
        source: AgentRef | None = None,
        metadata: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> int:
        """Queue ``agent.call``; the answer arrives as :class:`CallSucceeded` or :class:`CallFailed`.

        With ``timeout`` (seconds) the host and this engine both give up after it: the call fails
        with DEADLINE_EXCEEDED and the target's handler is cancelled.
        """
        data, data_base64 = wire.pack_payload(payload.data, payload.data_content_type)
        timeout_ms: int | UnsetType = UNSET
        if timeout is not None:
            if timeout <= 0:
                raise ValueError("timeout must be positive")
            timeout_ms = max(1, round(timeout * 1000))
        params = wire.CallParams(
            target=target,
            data_type=payload.data_type,
            data_content_type=payload.data_content_type,
            data=data,
            data_base64=data_base64,
            source=UNSET if source is None else source,
            metadata=UNSET if not metadata else dict(metadata),
            timeout_ms=timeout_ms,
        )
        request_id = self._request(wire.AGENT_CALL, params, _Kind.CALL)
        if timeout is not None:
            self._deadlines.set(request_id, now + timeout)
        return request_id

    def cancel_call(self, request_id: int) -> bool:
        """Give up on a call: tell the host (which cancels the target's handler) and forget it.

        Returns False if the call is no longer pending. No event follows for a cancelled call.
        """
        if self._requests.get(request_id) is not _Kind.CALL:
            return False
        del self._requests[request_id]
        self._deadlines.discard(request_id)
        self._queue(wire.notification(wire.CANCEL_REQUEST, wire.CancelParams(request_id)))
        return True

    def publish(
        self,
        *,
        topic_type: str,
        topic_source: str,
        payload: Payload,
        event_id: str,
        sender: AgentRef | None = None,
        message_kind: str = wire.MESSAGE_KIND_PUBLISH,
        trace_context: Mapping[str, str] | None = None,
    ) -> None:
        """Queue ``agent.publish``: one CloudEvent, delivered to every subscribed agent but ``sender``."""
        data, data_base64 = wire.pack_payload(payload.data, payload.data_content_type)
        trace = trace_context or _EMPTY
        event = wire.CloudEvent(
            specversion=wire.CLOUDEVENTS_SPEC_VERSION,
            id=event_id,
            source=topic_source,
            type=topic_type,
            datacontenttype=payload.data_content_type,
            dataschema=payload.data_type,
            data=data,
            data_base64=data_base64,
            agagentsendertype=UNSET if sender is None else sender.type,
            agagentsenderkey=UNSET if sender is None else sender.key,
            agmsgkind=message_kind,
            traceparent=trace.get("traceparent", UNSET),
            tracestate=trace.get("tracestate", UNSET),
        )
        self._queue(wire.notification(wire.AGENT_PUBLISH, event))

    @property
    def epoch(self) -> int:
        """The number of the current connection: 0 at first, one more after each :meth:`connection_lost`."""
        return self._epoch

    def respond(
        self, call_id: RequestId, payload: Payload, *, epoch: int, metadata: Mapping[str, str] | None = None
    ) -> bool:
        """Answer the :class:`IncomingCall` ``call_id`` of connection ``epoch``.

        Returns False, and queues nothing, if the call is not waiting for an answer any more: it
        was cancelled or answered already, or its connection is gone (``epoch`` is not the
        current one). A result too large for ``max_message_size`` (or declared JSON but not
        JSON) is answered with an error instead, so the caller always hears back.
        """
        if not self._settle_incoming(call_id, epoch):
            return False
        try:
            data, data_base64 = wire.pack_payload(payload.data, payload.data_content_type)
        except wire.PayloadEncodingError as exc:
            self._queue(wire.error_response(call_id, ErrorCode.INTERNAL_ERROR, str(exc)))
            return True
        result = wire.CallResult(
            data_type=payload.data_type,
            data_content_type=payload.data_content_type,
            data=data,
            data_base64=data_base64,
            metadata=UNSET if not metadata else dict(metadata),
        )
        frame = wire.response(call_id, result)
        if len(frame) > self.max_message_size:
            frame = wire.error_response(
                call_id,
                ErrorCode.PAYLOAD_TOO_LARGE,
                f"the result is {len(frame)} bytes, over the limit of {self.max_message_size}",
            )
        self._outbox.append(frame)
        return True

    def respond_unreadable(self, call_id: RequestId, payload: Payload, reason: str, *, epoch: int) -> bool:
        """Answer an :class:`IncomingCall` whose message no serializer here can read (UNREADABLE_PAYLOAD).

        ``reason`` says why and what to register; the error's ``data`` names the payload. Returns
        False, and queues nothing, in the same cases as :meth:`respond`.
        """
        if not self._settle_incoming(call_id, epoch):
            return False
        self.stats.calls_unreadable += 1
        data = wire.unreadable_payload_data(payload.data_type, payload.data_content_type)
        self._reply(wire.error_response(call_id, ErrorCode.UNREADABLE_PAYLOAD, reason, data))
        return True

    def event_unreadable(self, event: IncomingEvent, reason: str) -> None:
        """An :class:`IncomingEvent`'s payload cannot be read here: count it and report it to the host
        (an UNREADABLE_PAYLOAD error with id null, which the host counts)."""
        self.stats.events_unreadable += 1
        payload = event.payload
        data = wire.unreadable_payload_data(payload.data_type, payload.data_content_type, event.event_id)
        self._reply(wire.error_response(None, ErrorCode.UNREADABLE_PAYLOAD, reason, data))

    def result_unreadable(self, payload: Payload, reason: str) -> RpcError:
        """A :class:`CallSucceeded` whose payload cannot be read here: the error its caller gets instead."""
        self.stats.results_unreadable += 1
        data = wire.unreadable_payload_data(payload.data_type, payload.data_content_type)
        return RpcError(ErrorCode.UNREADABLE_PAYLOAD, reason, data)

    def respond_error(
        self, call_id: RequestId, code: int, message: str, *, epoch: int, exception_type: str | None = None
    ) -> bool:
        """Answer an :class:`IncomingCall` with an error (HANDLER_ERROR carries ``exception_type``,
        ``"Exception"`` when none is given: its ``data`` is part of the contract).

        Returns False, and queues nothing, in the same cases as :meth:`respond`.
        """
        if not self._settle_incoming(call_id, epoch):
            return False
        if exception_type is None and code == ErrorCode.HANDLER_ERROR:
            exception_type = "Exception"
        data: Raw | UnsetType = UNSET if exception_type is None else wire.handler_error_data(exception_type, message)
        frame = wire.error_response(call_id, code, message, data)
        if len(frame) > self.max_message_size:  # e.g. a huge exception message: the caller must still hear back
            frame = wire.error_response(
                call_id,
                ErrorCode.PAYLOAD_TOO_LARGE,
                f"the error is {len(frame)} bytes, over the limit of {self.max_message_size}",
            )
        self._outbox.append(frame)
        return True

    # ------------------------------------------------------------------ incoming

    def receive(self, data: bytes | str, now: float) -> list[WorkerEvent]:
        """One frame from the host; returns what it means. Never raises on bad input."""
        events: list[WorkerEvent] = []
        try:
            if not isinstance(data, str) and not data.isascii():
                data.decode("utf-8")  # msgspec skips Raw parts without checking their UTF-8; later decodes would raise
            frame = wire.FRAME_DECODER.decode(data)
        except msgspec.ValidationError as exc:
            syntax = wire.json_syntax_error(data)  # a type mismatch may come before a syntax error
            if syntax is None:
                self._reply(wire.error_response(None, ErrorCode.INVALID_REQUEST, f"not a JSON-RPC 2.0 message: {exc}"))
            else:
                self._reply(wire.error_response(None, ErrorCode.PARSE_ERROR, f"invalid JSON: {syntax}"))
            return events
        # UnicodeError: bad UTF-8, or lone surrogates in a str; RecursionError: nested too deeply to parse
        except (msgspec.DecodeError, UnicodeError, RecursionError) as exc:
            self._reply(wire.error_response(None, ErrorCode.PARSE_ERROR, f"invalid JSON: {exc}"))
            return events
        if isinstance(frame, list):
            for item in frame:
                try:
                    self._dispatch(wire.MESSAGE_DECODER.decode(item), events)
                except msgspec.ValidationError as exc:
                    message = f"not a JSON-RPC 2.0 message: {exc}"
                    self._reply(wire.error_response(None, ErrorCode.INVALID_REQUEST, message))
        else:
            self._dispatch(frame, events)
        return events

    def handle_timer(self, now: float) -> list[WorkerEvent]:
        """Calls whose ``timeout`` ran out fail with DEADLINE_EXCEEDED (and are cancelled at the host)."""
        events: list[WorkerEvent] = []
        for request_id in self._deadlines.expire(now):
            del self._requests[request_id]
            self._queue(wire.notification(wire.CANCEL_REQUEST, wire.CancelParams(request_id)))
            events.append(CallFailed(request_id, RpcError(ErrorCode.DEADLINE_EXCEEDED, "the call's timeout ran out")))
        return events

    def next_deadline(self) -> float | None:
        return self._deadlines.next_deadline()

    def connection_lost(self, close_code: int | None = None) -> list[WorkerEvent]:
        """The connection is gone: every request of ours fails, and every call we were handling ends
        with :class:`IncomingCallCancelled` (the host has failed it at its caller).

        Requests fail with CONNECTION_LOST, or with PAYLOAD_TOO_LARGE when the host closed the
        connection with 1009 (``close_code``, the code the connection ended with, if any). The
        engine can then be reused on a new connection: request ids keep counting up, and the
        :attr:`epoch` moves on, so answers still coming from the lost connection's handlers are dropped.
        """
        code, message = _CLOSED_WITH.get(
            close_code or 0, (ErrorCode.CONNECTION_LOST, "the connection to the host was lost")
        )
        error = RpcError(code, message)
        events: list[WorkerEvent] = [
            CallFailed(rid, error) if kind is _Kind.CALL else RequestFailed(rid, error)
            for rid, kind in self._requests.items()
        ]
        events.extend(IncomingCallCancelled(call_id, self._epoch) for call_id in self._incoming)
        self._requests.clear()
        self._deadlines = DeadlineHeap()
        self._incoming = {}
        self._epoch += 1
        self._outbox.clear()
        return events

    @property
    def pending_requests(self) -> int:
        """Requests of ours still waiting for an answer."""
        return len(self._requests)

    @property
    def incoming_calls(self) -> frozenset[RequestId]:
        """Calls of the current connection the host asked us to handle, not answered or cancelled yet."""
        return frozenset(self._incoming)

    # ------------------------------------------------------------------ internals

    def _request(self, method: str, params: wire.Params, kind: _Kind) -> int:
        request_id = next(self._ids)
        self._queue(wire.request(request_id, method, params))
        self._requests[request_id] = kind
        return request_id

    def _queue(self, frame: bytes) -> None:
        if len(frame) > self.max_message_size:
            raise PayloadTooLargeError(f"message of {len(frame)} bytes exceeds the limit of {self.max_message_size}")
        self._outbox.append(frame)

    def _reply(self, frame: bytes) -> None:
        """Queue an answer to something the host sent; one over the size limit (e.g. echoing a huge id)
        is dropped: ``receive`` never raises on bad input."""
        if len(frame) <= self.max_message_size:
            self._outbox.append(frame)

    def _settle_incoming(self, call_id: RequestId, epoch: int) -> bool:
        if epoch == self._epoch and call_id in self._incoming:
            del self._incoming[call_id]
            return True
        return False

    def _dispatch(self, m: wire.IncomingMessage, events: list[WorkerEvent]) -> None:
        if isinstance(m.method, UnsetType):
            self._on_response(m, events)
        elif m.method == wire.AGENT_EVENT:
            self._on_event(m.params, events)
        elif m.method == wire.AGENT_CALL:
            self._on_call(m, events)
        elif m.method == wire.CANCEL_REQUEST:
            try:
                cancel = wire.CANCEL_DECODER.decode(m.params) if not isinstance(m.params, UnsetType) else None
            except (msgspec.ValidationError, RecursionError):
                cancel = None
            if cancel is not None and self._settle_incoming(cancel.id, self._epoch):
                events.append(IncomingCallCancelled(cancel.id, self._epoch))
        elif not isinstance(m.id, UnsetType) and m.id is not None:
            self._reply(wire.error_response(m.id, ErrorCode.METHOD_NOT_FOUND, f"unknown method {m.method[:100]!r}"))

    def _on_response(self, m: wire.IncomingMessage, events: list[WorkerEvent]) -> None:
        request_id = m.id
        if request_id is None or isinstance(request_id, UnsetType):
            if not isinstance(m.error, UnsetType):
                events.append(PeerError(_decode_error(m.error)))
            return
        kind = self._requests.pop(request_id, None) if isinstance(request_id, int) else None
        if kind is None:
            return  # late answer to a call we cancelled or timed out
        assert isinstance(request_id, int)
        self._deadlines.discard(request_id)
        if not isinstance(m.error, UnsetType):
            error = _decode_error(m.error)
            events.append(CallFailed(request_id, error) if kind is _Kind.CALL else RequestFailed(request_id, error))
            return
        if isinstance(m.result, UnsetType):
            bad = RpcError(ErrorCode.INTERNAL_ERROR, "the host answered with neither result nor error")
            events.append(CallFailed(request_id, bad) if kind is _Kind.CALL else RequestFailed(request_id, bad))
            return
        if kind is _Kind.RUNTIME:
            events.append(RequestSucceeded(request_id))
        elif kind is _Kind.SUBSCRIPTIONS:
            try:
                subscriptions = tuple(wire.SUBSCRIPTION_LIST_DECODER.decode(m.result))
            except (msgspec.ValidationError, RecursionError) as exc:
                events.append(RequestFailed(request_id, RpcError(ErrorCode.INTERNAL_ERROR, f"malformed result: {exc}")))
            else:
                events.append(RequestSucceeded(request_id, subscriptions))
        else:
            try:
                result = wire.CALL_RESULT_DECODER.decode(m.result)
                data = wire.unpack_payload(result.data, result.data_base64)
            except (msgspec.ValidationError, wire.PayloadEncodingError, RecursionError) as exc:
                events.append(
                    CallFailed(request_id, RpcError(ErrorCode.INTERNAL_ERROR, f"malformed call result: {exc}"))
                )
            else:
                metadata = _EMPTY if isinstance(result.metadata, UnsetType) else result.metadata
                events.append(
                    CallSucceeded(request_id, Payload(result.data_type, result.data_content_type, data), metadata)
                )

    def _on_call(self, m: wire.IncomingMessage, events: list[WorkerEvent]) -> None:
        call_id = m.id
        if call_id is None or isinstance(call_id, UnsetType):
            self._reply(wire.error_response(None, ErrorCode.INVALID_REQUEST, "agent.call needs an id"))
            return
        if isinstance(m.params, UnsetType):
            self._reply(wire.error_response(call_id, ErrorCode.INVALID_PARAMS, "params are required"))
            return
        try:
            params = wire.CALL_PARAMS_DECODER.decode(m.params)
            data = wire.unpack_payload(params.data, params.data_base64)
        except (msgspec.ValidationError, wire.PayloadEncodingError, RecursionError) as exc:
            self._reply(wire.error_response(call_id, ErrorCode.INVALID_PARAMS, f"invalid params: {exc}"))
            return
        if call_id in self._incoming:
            message = f"call id {call_id!r} is already in use"
            self._reply(wire.error_response(call_id, ErrorCode.INVALID_REQUEST, message))
            return
        self._incoming[call_id] = None
        self.stats.calls_received += 1
        events.append(
            IncomingCall(
                call_id=call_id,
                target=params.target,
                source=None if isinstance(params.source, UnsetType) else params.source,
                payload=Payload(params.data_type, params.data_content_type, data),
                metadata=_EMPTY if isinstance(params.metadata, UnsetType) else params.metadata,
                timeout_ms=None if isinstance(params.timeout_ms, UnsetType) else params.timeout_ms,
                epoch=self._epoch,
            )
        )

    def _on_event(self, params: Raw | UnsetType, events: list[WorkerEvent]) -> None:
        self.stats.events_received += 1
        if isinstance(params, UnsetType):
            self.stats.events_dropped += 1
            return
        try:
            delivery = wire.EVENT_DELIVERY_DECODER.decode(params)
            event = wire.CLOUD_EVENT_DECODER.decode(delivery.event)
            data = wire.unpack_payload(event.data, event.data_base64)
        except (msgspec.ValidationError, wire.PayloadEncodingError, RecursionError) as exc:
            self.stats.events_dropped += 1
            self._reply(wire.error_response(None, ErrorCode.INVALID_PARAMS, f"invalid agent.event: {exc}"))
            return
        sender: AgentRef | None = None
        if not isinstance(event.agagentsendertype, UnsetType) and not isinstance(event.agagentsenderkey, UnsetType):
            sender = AgentRef(event.agagentsendertype, event.agagentsenderkey)
        recipients = tuple(
            AgentRef(agent_type, event.source)
            for agent_type in delivery.recipients
            if sender is None or sender.type != agent_type or sender.key != event.source
        )
        if not recipients:
            return
        trace: dict[str, str] = {}
        if not isinstance(event.traceparent, UnsetType):
            trace["traceparent"] = event.traceparent
        if not isinstance(event.tracestate, UnsetType):
            trace["tracestate"] = event.tracestate
        content_type = "application/json" if isinstance(event.datacontenttype, UnsetType) else event.datacontenttype
        events.append(
            IncomingEvent(
                event_id=event.id,
                topic_type=event.type,
                topic_source=event.source,
                sender=sender,
                recipients=recipients,
                payload=Payload(
                    "" if isinstance(event.dataschema, UnsetType) else event.dataschema, content_type, data
                ),
                message_kind=wire.MESSAGE_KIND_PUBLISH if isinstance(event.agmsgkind, UnsetType) else event.agmsgkind,
                trace_context=trace,
            )
        )


def _decode_error(raw: Raw) -> RpcError:
    try:
        return wire.RPC_ERROR_DECODER.decode(raw)
    except (msgspec.ValidationError, RecursionError):
        return RpcError(ErrorCode.INTERNAL_ERROR, "the peer sent a malformed error object")


__all__ = ["PayloadTooLargeError", "WorkerEngine", "WorkerStats"]
