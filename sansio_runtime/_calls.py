"""The calls in flight through the host, and how each one ends: a call's life, written once.

A call the host accepts is *pending* under an id the host assigns, until exactly one of five
things ends it. :data:`CALL_ENDINGS` says, for each, what the caller and the target hear; the host
engine settles every call through that one table, whatever ended it::

    ended by        the caller hears                      the target hears
    ANSWERED        the target's answer                   -
    CANCELLED       CANCELLED (-32005)                    $/cancelRequest
    DEADLINE        DEADLINE_EXCEEDED (-32006)            $/cancelRequest
    CALLER_GONE     - (no one is left to hear it)         $/cancelRequest
    TARGET_GONE     TARGET_DISCONNECTED (-32003)          - (it is gone)

(docs/PROTOCOL.md section 7.1.) The target is told first, then the caller.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import msgspec

from ._deadlines import DeadlineHeap
from ._errors import ErrorCode
from ._events import ClientId
from ._wire import RequestId


class CallEnd(enum.Enum):
    """What ended a pending call."""

    ANSWERED = "answered"
    """The target answered (a result or an error)."""
    CANCELLED = "cancelled"
    """The caller sent ``$/cancelRequest`` for it."""
    DEADLINE = "deadline"
    """Its ``timeout_ms`` ran out."""
    CALLER_GONE = "caller gone"
    """The caller's connection went away."""
    TARGET_GONE = "target gone"
    """The target's connection went away."""


@dataclass(frozen=True, slots=True)
class CallEnding:
    """What the two ends of a call hear when it ends one way."""

    caller_error: ErrorCode | None
    """The error the caller gets (None: the target's own answer, or no one to tell)."""
    message: str
    """The error's message."""
    cancel_target: bool
    """Whether the target gets ``$/cancelRequest`` (its handler is still running)."""


CALL_ENDINGS: dict[CallEnd, CallEnding] = {
    CallEnd.ANSWERED: CallEnding(None, "", cancel_target=False),
    CallEnd.CANCELLED: CallEnding(ErrorCode.CANCELLED, "cancelled by the caller", cancel_target=True),
    CallEnd.DEADLINE: CallEnding(ErrorCode.DEADLINE_EXCEEDED, "the call's timeout_ms ran out", cancel_target=True),
    CallEnd.CALLER_GONE: CallEnding(None, "", cancel_target=True),
    CallEnd.TARGET_GONE: CallEnding(
        ErrorCode.TARGET_DISCONNECTED, "the worker hosting the target went away", cancel_target=False
    ),
}
"""The call-ending table (see the module docs)."""


class PendingCall(msgspec.Struct, frozen=True, gc=False):
    """A call the host forwarded and is waiting on (a Struct: one is made for every call)."""

    host_id: int
    caller: ClientId
    caller_request_id: RequestId
    target: ClientId
    opened_at: float = 0.0
    """When the host accepted the call (the engine's clock)."""


class CallTable:
    """Pending calls by host id, by caller (and the caller's own id) and by target, with deadlines.

    :meth:`open` and :meth:`close` are the only ways in and out, so the indexes always agree.
    """

    __slots__ = ("_by_caller", "_by_target", "_deadlines", "_ids", "_pending")

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._pending: dict[int, PendingCall] = {}
        self._by_caller: dict[ClientId, dict[RequestId, int]] = {}  # caller -> its request id -> host id
        self._by_target: dict[ClientId, dict[int, None]] = {}  # target -> host ids it must answer, oldest first
        self._deadlines: DeadlineHeap[int] = DeadlineHeap()

    def __len__(self) -> int:
        return len(self._pending)

    def __iter__(self) -> Iterator[PendingCall]:
        return iter(self._pending.values())

    def open(
        self, caller: ClientId, request_id: RequestId, target: ClientId, deadline: float | None, now: float = 0.0
    ) -> PendingCall:
        """A new pending call, under the next host id, accepted at ``now``."""
        call = PendingCall(next(self._ids), caller, request_id, target, now)
        self._pending[call.host_id] = call
        self._by_caller.setdefault(caller, {})[request_id] = call.host_id
        self._by_target.setdefault(target, {})[call.host_id] = None
        if deadline is not None:
            self._deadlines.set(call.host_id, deadline)
        return call

    def close(self, host_id: int) -> PendingCall:
        """Remove a pending call from every index and return it. Raises KeyError if it is not pending."""
        call = self._pending.pop(host_id)
        self._deadlines.discard(host_id)
        made = self._by_caller[call.caller]
        del made[call.caller_request_id]
        if not made:
            del self._by_caller[call.caller]
        answering = self._by_target[call.target]
        del answering[host_id]
        if not answering:
            del self._by_target[call.target]
        return call

    def get(self, host_id: int) -> PendingCall | None:
        return self._pending.get(host_id)

    def host_id_of(self, caller: ClientId, request_id: RequestId) -> int | None:
        """The host id of ``caller``'s pending call ``request_id``, or None."""
        made = self._by_caller.get(caller)
        return None if made is None else made.get(request_id)

    def count_made_by(self, caller: ClientId) -> int:
        """How many calls ``caller`` has in flight."""
        made = self._by_caller.get(caller)
        return 0 if made is None else len(made)

    def made_by(self, caller: ClientId) -> list[int]:
        """Host ids of the calls ``caller`` has in flight, oldest first."""
        return list(self._by_caller.get(caller, {}).values())

    def sent_to(self, target: ClientId) -> list[int]:
        """Host ids of the calls pending at ``target``, oldest first."""
        return list(self._by_target.get(target, ()))

    def expire(self, now: float) -> list[int]:
        """Host ids of the calls whose deadline has passed at ``now`` (still pending: close them)."""
        return self._deadlines.expire(now)

    def next_deadline(self) -> float | None:
        return self._deadlines.next_deadline()


__all__ = ["CALL_ENDINGS", "CallEnd", "CallEnding", "CallTable", "PendingCall"]
