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

import itertools
from collections.abc import Mapping

from msgspec import UNSET, Raw, UnsetType

from . import _frames as frames
from . import _wire as wire
from ._deadlines import DeadlineHeap
from ._errors import CLOSED_WITH, ErrorCode, PayloadTooLargeError
from ._events import (
    CallFailed,
    IncomingCallCancelled,
    IncomingEvent,
    Payload,
    PeerError,
    RequestFailed,
    WorkerEvent,
)
from ._inbound import Refusal, RequestKind, read_answer, read_call, read_cancel, read_error, read_event
from ._limits import DEFAULT_MAX_MESSAGE_SIZE
from ._outbound import call_params, call_result, cloud_event
from ._stats import WorkerStats
from ._wire import AgentRef, RequestId, RpcError, SubscriptionSpec


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
        self._requests: dict[int, RequestKind] = {}
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

    def register_agent(self, agent_type: str, *, shared: bool = False) -> int:
        """Ask the host to send this connection the calls and events of ``agent_type``; ``shared``:
        together with other connections that register it shared, each agent instance on one of them."""
        params = wire.RegisterAgentParams(agent_type, shared)
        return self._request(wire.REGISTER_AGENT, params, RequestKind.RUNTIME)

    def unregister_agent(self, agent_type: str) -> int:
        return self._request(wire.UNREGISTER_AGENT, wire.RegisterAgentParams(agent_type), RequestKind.RUNTIME)

    def add_subscription(self, subscription: SubscriptionSpec) -> int:
        return self._request(wire.ADD_SUBSCRIPTION, wire.AddSubscriptionParams(subscription), RequestKind.RUNTIME)

    def remove_subscription(self, subscription_id: str) -> int:
        return self._request(
            wire.REMOVE_SUBSCRIPTION, wire.RemoveSubscriptionParams(subscription_id), RequestKind.RUNTIME
        )

    def get_subscriptions(self) -> int:
        return self._request(wire.GET_SUBSCRIPTIONS, Raw(b"{}"), RequestKind.SUBSCRIPTIONS)

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
        params = call_params(target, payload, source=source, metadata=metadata, timeout=timeout)
        request_id = self._request(wire.AGENT_CALL, params, RequestKind.CALL)
        if timeout is not None:
            self._deadlines.set(request_id, now + timeout)
        return request_id

    def cancel_call(self, request_id: int) -> bool:
        """Give up on a call: tell the host (which cancels the target's handler) and forget it.

        Returns False if the call is no longer pending. No event follows for a cancelled call.
        """
        if self._requests.get(request_id) is not RequestKind.CALL:
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
        event = cloud_event(topic_type, topic_source, payload, event_id, sender, message_kind, trace_context)
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
            result = call_result(payload, metadata)
        except wire.PayloadEncodingError as exc:
            self._queue(wire.error_response(call_id, ErrorCode.INTERNAL_ERROR, str(exc)))
            return True
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

    def respond_handler_error(self, call_id: RequestId, exception_type: str, message: str, *, epoch: int) -> bool:
        """Answer an :class:`IncomingCall` whose handler raised ``exception_type(message)`` (HANDLER_ERROR,
        with both in its ``data``). Returns False, and queues nothing, in the same cases as :meth:`respond`."""
        return self._answer_error(call_id, epoch, ErrorCode.HANDLER_ERROR, message, exception_type or "Exception")

    def respond_cancelled(self, call_id: RequestId, *, epoch: int) -> bool:
        """Answer an :class:`IncomingCall` whose handler was cancelled here (CANCELLED)."""
        return self._answer_error(call_id, epoch, ErrorCode.CANCELLED, "the handler was cancelled")

    def respond_agent_not_found(self, call_id: RequestId, message: str, *, epoch: int) -> bool:
        """Answer an :class:`IncomingCall` for an agent this worker cannot create or find, or whose
        type it no longer hosts (AGENT_NOT_FOUND)."""
        return self._answer_error(call_id, epoch, ErrorCode.AGENT_NOT_FOUND, message)

    def respond_invalid_call(self, call_id: RequestId, message: str, *, epoch: int) -> bool:
        """Answer an :class:`IncomingCall` whose params the worker cannot use, e.g. a ``target`` or
        ``source`` that is not a valid AutoGen agent id (INVALID_PARAMS)."""
        return self._answer_error(call_id, epoch, ErrorCode.INVALID_PARAMS, message)

    def _answer_error(
        self, call_id: RequestId, epoch: int, code: ErrorCode, message: str, exception_type: str | None = None
    ) -> bool:
        if not self._settle_incoming(call_id, epoch):
            return False
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

    # ------------------------------------------------------------------ incoming

    def receive(self, data: bytes | str, now: float) -> list[WorkerEvent]:
        """One frame from the host; returns what it means. Never raises on bad input."""
        events: list[WorkerEvent] = []
        frame = frames.decode_frame(data)
        if isinstance(frame, frames.BadFrame):
            self._reply(wire.error_response(None, frame.code, frame.message))
        elif isinstance(frame, list):
            for entry in frame:
                message = frames.decode_batch_entry(entry)
                if isinstance(message, frames.BadFrame):
                    self._reply(wire.error_response(None, message.code, message.message))
                else:
                    self._dispatch(message, events)
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
        code, message = CLOSED_WITH.get(
            close_code or 0, (ErrorCode.CONNECTION_LOST, "the connection to the host was lost")
        )
        error = RpcError(code, message)
        events: list[WorkerEvent] = [
            CallFailed(rid, error) if kind is RequestKind.CALL else RequestFailed(rid, error)
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

    def _request(self, method: str, params: wire.Params, kind: RequestKind) -> int:
        request_id = next(self._ids)
        self._queue(wire.request(request_id, method, params))
        self._requests[request_id] = kind
        return request_id

    def _queue(self, frame: bytes) -> None:
        if len(frame) > self.max_message_size:
            message = f"message of {len(frame)} bytes exceeds the limit of {self.max_message_size}"
            raise PayloadTooLargeError(RpcError(ErrorCode.PAYLOAD_TOO_LARGE, message))
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
        method = m.method
        if isinstance(method, UnsetType):
            self._on_response(m, events)
        elif method == wire.AGENT_EVENT:
            self._on_event(m.params, events)
        elif method == wire.AGENT_CALL:
            self._on_call(m, events)
        elif method == wire.CANCEL_REQUEST:
            call_id = read_cancel(m.params)
            if call_id is not None and self._settle_incoming(call_id, self._epoch):
                events.append(IncomingCallCancelled(call_id, self._epoch))
        elif not isinstance(m.id, UnsetType) and m.id is not None:
            self._reply(wire.error_response(m.id, ErrorCode.METHOD_NOT_FOUND, f"unknown method {method[:100]!r}"))

    def _on_response(self, m: wire.IncomingMessage, events: list[WorkerEvent]) -> None:
        request_id = m.id
        if request_id is None or isinstance(request_id, UnsetType):
            if not isinstance(m.error, UnsetType):
                events.append(PeerError(read_error(m.error)))
            return
        kind = self._requests.pop(request_id, None) if isinstance(request_id, int) else None
        if kind is None:
            return  # late answer to a call we cancelled or timed out
        assert isinstance(request_id, int)
        self._deadlines.discard(request_id)
        events.append(read_answer(request_id, kind, m))

    def _on_call(self, m: wire.IncomingMessage, events: list[WorkerEvent]) -> None:
        call = read_call(m, self._epoch)
        if isinstance(call, Refusal):
            self._reply(wire.error_response(call.id, call.code, call.message))
            return
        if call.call_id in self._incoming:
            message = f"call id {call.call_id!r} is already in use"
            self._reply(wire.error_response(call.call_id, ErrorCode.INVALID_REQUEST, message))
            return
        self._incoming[call.call_id] = None
        self.stats.calls_received += 1
        events.append(call)

    def _on_event(self, params: Raw | UnsetType, events: list[WorkerEvent]) -> None:
        self.stats.events_received += 1
        if isinstance(params, UnsetType):
            self.stats.events_dropped += 1
            return
        event = read_event(params)
        if isinstance(event, Refusal):
            self.stats.events_dropped += 1
            self._reply(wire.error_response(None, event.code, event.message))
        elif event is not None:
            events.append(event)


__all__ = ["PayloadTooLargeError", "WorkerEngine", "WorkerStats"]
