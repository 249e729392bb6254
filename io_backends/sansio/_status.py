"""The JSON document of ``GET /v1/status``, built from plain data with time as an input.

The host hands :class:`StatusBuilder` a :class:`HostSnapshot` (its counters, its connected
workers, the registry's agent types and subscriptions) and two clocks; the builder answers a
:class:`Status`, which :func:`encode_status` turns into the response body. Nothing here reads a
clock or a socket: rates come from the counters of earlier snapshots, kept for a short window.

Rates: each :meth:`StatusBuilder.build` keeps a sample of the counters (at most one every
``min_sample_interval`` seconds, so pollers cannot grow it) and answers the average rate since
the newest sample at least ``window`` seconds old, or since the oldest sample when none is that
old yet (a host just started, or polled rarely). The first build has nothing to compare with:
its rates are ``null``. Counters only grow; one that went down (a restarted source) gives a rate
of 0 until the window has passed it.

``docs/status.schema.json`` is the JSON Schema of the document; the tests hold every document
to it and the schema to these Structs.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Final, Literal

import msgspec

from sansio_runtime import SubscriptionSpec, TypeSubscriptionSpec

STATUS_VERSION: Final = 1
"""``version`` of the document; bumped only for changes old readers would misread."""
DEFAULT_WINDOW: Final = 5.0
DEFAULT_MIN_SAMPLE_INTERVAL: Final = 0.25
DEFAULT_MAX_LISTED_SUBSCRIPTIONS: Final = 1000


# ---------------------------------------------------------------------------- input: snapshots


class HostCounters(msgspec.Struct, frozen=True, kw_only=True):
    """The host's counters since it started (they only grow)."""

    calls_routed: int = 0
    """``agent.call`` s forwarded to a target."""
    calls_failed: int = 0
    """Calls answered with an error (by the host or the target)."""
    events_published: int = 0
    """``agent.publish`` es accepted."""
    event_deliveries: int = 0
    """``agent.event`` s sent (one per publish per receiving connection)."""
    events_dropped: int = 0
    """Deliveries that did not happen or could not be read (unreadable, connection gone)."""
    messages_in: int = 0
    messages_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0


class WorkerSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """One connected worker (a ``/v1/channel`` connection) as the host sees it now."""

    id: int
    """The host's id of the connection (the engine's ``ClientId``)."""
    name: str | None
    """The name the worker gave (``X-Client-Id``), if any."""
    address: str
    """The peer's address, ``host:port``."""
    connected_at: float
    """When it connected, wall clock, seconds since the Unix epoch."""
    agent_types: Sequence[str] = ()
    subscriptions: int = 0
    pending_calls: int = 0
    """Calls this worker made that are not answered yet."""
    messages_in: int = 0
    """Messages received from the worker (counters since it connected)."""
    messages_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0


@dataclass(frozen=True, slots=True)
class HostSnapshot:
    """Everything the status document shows, as the host has it at one moment."""

    counters: HostCounters
    workers: Sequence[WorkerSnapshot] = ()
    agent_types: Mapping[str, int] = field(default_factory=dict)
    """Agent type -> id of the worker that registered it (``Registry.agent_types()``)."""
    subscriptions: Iterable[tuple[SubscriptionSpec, int]] = ()
    """(subscription, id of the worker that added it); read lazily, at most the listing limit."""
    subscriptions_total: int = 0
    connections: int = 0
    """Every open connection: the workers, plus one-shot ``/v1/rpc`` and ``/v1/events`` requests."""


# ---------------------------------------------------------------------------- output: document


class Rates(msgspec.Struct, frozen=True, kw_only=True):
    """Per-second rates over the recent window; ``null`` when there is nothing to compare yet."""

    calls_per_second: float | None
    calls_failed_per_second: float | None
    events_per_second: float | None
    deliveries_per_second: float | None
    events_dropped_per_second: float | None
    messages_in_per_second: float | None
    messages_out_per_second: float | None
    bytes_in_per_second: float | None
    bytes_out_per_second: float | None


class WorkerRates(msgspec.Struct, frozen=True, kw_only=True):
    messages_in_per_second: float | None
    messages_out_per_second: float | None
    bytes_in_per_second: float | None
    bytes_out_per_second: float | None


class WorkerStatus(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    name: str | None
    address: str
    since: str
    """When it connected, RFC 3339 in UTC."""
    connected_seconds: float
    agent_types: list[str]
    subscriptions: int
    pending_calls: int
    messages_in: int
    messages_out: int
    bytes_in: int
    bytes_out: int
    rates: WorkerRates


class AgentTypeStatus(msgspec.Struct, frozen=True, kw_only=True):
    type: str
    owner: int
    """The id of the worker hosting it."""
    owner_name: str | None


class SubscriptionStatus(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    kind: Literal["type", "type_prefix"]
    topic: str
    """The topic type (``kind`` ``type``) or topic type prefix (``type_prefix``) it matches."""
    agent_type: str
    owner: int


class Totals(msgspec.Struct, frozen=True, kw_only=True):
    connections: int
    workers: int
    agent_types: int
    subscriptions: int
    pending_calls: int
    calls_routed: int
    calls_failed: int
    events_published: int
    event_deliveries: int
    events_dropped: int
    messages_in: int
    messages_out: int
    bytes_in: int
    bytes_out: int


class Status(msgspec.Struct, frozen=True, kw_only=True):
    """The ``GET /v1/status`` document."""

    version: int
    generated_at: str
    """RFC 3339, UTC."""
    uptime_seconds: float
    window_seconds: float
    totals: Totals
    rates: Rates
    workers: list[WorkerStatus]
    """Sorted by connection time, then id."""
    agent_types: list[AgentTypeStatus]
    """Sorted by type."""
    subscriptions: list[SubscriptionStatus]
    """At most the builder's listing limit, in the registry's order."""
    subscriptions_truncated: bool
    """Whether ``subscriptions`` lists fewer than ``totals.subscriptions``."""


_encoder: Final = msgspec.json.Encoder()


def encode_status(status: Status) -> bytes:
    """The response body (``application/json``)."""
    return _encoder.encode(status)


# --------------------------------------------------------------------------------- the builder


class RateWindow:
    """Per-second rates of a few counters, from samples taken at the times given."""

    __slots__ = ("_min_interval", "_samples", "_window")

    def __init__(self, window: float, min_interval: float) -> None:
        self._window = window
        self._min_interval = min_interval
        self._samples: deque[tuple[float, tuple[int, ...]]] = deque()

    def rates(self, now: float, values: tuple[int, ...]) -> tuple[float | None, ...]:
        """The rate of each of ``values`` since the baseline sample; records ``values`` at ``now``."""
        samples = self._samples
        if samples and now < samples[-1][0]:  # a clock that went back: start over
            samples.clear()
        baseline = None
        for sample in samples:  # the newest at least a window old, else the oldest
            if sample[0] <= now - self._window or baseline is None:
                baseline = sample
            else:
                break
        if not samples or now - samples[-1][0] >= self._min_interval:
            samples.append((now, values))
        while len(samples) > 2 and samples[1][0] <= now - self._window:
            samples.popleft()
        if baseline is None or now <= baseline[0]:
            return (None,) * len(values)
        span = now - baseline[0]
        return tuple(round(max(0, v - b) / span, 3) for v, b in zip(values, baseline[1], strict=True))


class StatusBuilder:
    """Builds :class:`Status` documents from :class:`HostSnapshot` s; keeps the rate samples.

    One per host. ``started_at`` is the host's start on the same clock as ``now`` (monotonic).
    """

    def __init__(
        self,
        *,
        started_at: float,
        window: float = DEFAULT_WINDOW,
        min_sample_interval: float = DEFAULT_MIN_SAMPLE_INTERVAL,
        max_listed_subscriptions: int = DEFAULT_MAX_LISTED_SUBSCRIPTIONS,
    ) -> None:
        if window <= 0 or min_sample_interval < 0 or max_listed_subscriptions < 0:
            raise ValueError("window must be positive, min_sample_interval and max_listed_subscriptions not negative")
        self.started_at = started_at
        self.window = window
        self.min_sample_interval = min_sample_interval
        self.max_listed_subscriptions = max_listed_subscriptions
        self._host_rates = RateWindow(window, min_sample_interval)
        self._worker_rates: dict[int, RateWindow] = {}

    def build(self, snapshot: HostSnapshot, *, now: float, wall_clock: float) -> Status:
        """The document for ``snapshot``; ``now`` is monotonic seconds, ``wall_clock`` Unix seconds."""
        c = snapshot.counters
        host = self._host_rates.rates(
            now,
            (
                c.calls_routed,
                c.calls_failed,
                c.events_published,
                c.event_deliveries,
                c.events_dropped,
                c.messages_in,
                c.messages_out,
                c.bytes_in,
                c.bytes_out,
            ),
        )
        names = {w.id: w.name for w in snapshot.workers}
        workers = [self._worker(w, now, wall_clock) for w in sorted(snapshot.workers, key=_connection_order)]
        for gone in self._worker_rates.keys() - names.keys():
            del self._worker_rates[gone]
        listed = [
            _subscription(spec, owner)
            for spec, owner in itertools.islice(snapshot.subscriptions, self.max_listed_subscriptions)
        ]
        return Status(
            version=STATUS_VERSION,
            generated_at=_rfc3339(wall_clock),
            uptime_seconds=round(max(0.0, float(now - self.started_at)), 3),
            window_seconds=self.window,
            totals=Totals(
                connections=snapshot.connections,
                workers=len(workers),
                agent_types=len(snapshot.agent_types),
                subscriptions=snapshot.subscriptions_total,
                pending_calls=sum(w.pending_calls for w in snapshot.workers),
                calls_routed=c.calls_routed,
                calls_failed=c.calls_failed,
                events_published=c.events_published,
                event_deliveries=c.event_deliveries,
                events_dropped=c.events_dropped,
                messages_in=c.messages_in,
                messages_out=c.messages_out,
                bytes_in=c.bytes_in,
                bytes_out=c.bytes_out,
            ),
            rates=Rates(
                calls_per_second=host[0],
                calls_failed_per_second=host[1],
                events_per_second=host[2],
                deliveries_per_second=host[3],
                events_dropped_per_second=host[4],
                messages_in_per_second=host[5],
                messages_out_per_second=host[6],
                bytes_in_per_second=host[7],
                bytes_out_per_second=host[8],
            ),
            workers=workers,
            agent_types=[
                AgentTypeStatus(type=agent_type, owner=owner, owner_name=names.get(owner))
                for agent_type, owner in sorted(snapshot.agent_types.items())
            ],
            subscriptions=listed,
            subscriptions_truncated=len(listed) < snapshot.subscriptions_total,
        )

    def _worker(self, w: WorkerSnapshot, now: float, wall_clock: float) -> WorkerStatus:
        window = self._worker_rates.get(w.id)
        if window is None:
            window = self._worker_rates[w.id] = RateWindow(self.window, self.min_sample_interval)
        rates = window.rates(now, (w.messages_in, w.messages_out, w.bytes_in, w.bytes_out))
        return WorkerStatus(
            id=w.id,
            name=w.name,
            address=w.address,
            since=_rfc3339(w.connected_at),
            connected_seconds=round(max(0.0, float(wall_clock - w.connected_at)), 3),
            agent_types=sorted(w.agent_types),
            subscriptions=w.subscriptions,
            pending_calls=w.pending_calls,
            messages_in=w.messages_in,
            messages_out=w.messages_out,
            bytes_in=w.bytes_in,
            bytes_out=w.bytes_out,
            rates=WorkerRates(
                messages_in_per_second=rates[0],
                messages_out_per_second=rates[1],
                bytes_in_per_second=rates[2],
                bytes_out_per_second=rates[3],
            ),
        )


def _connection_order(w: WorkerSnapshot) -> tuple[float, int]:
    return (w.connected_at, w.id)


def _subscription(spec: SubscriptionSpec, owner: int) -> SubscriptionStatus:
    if isinstance(spec, TypeSubscriptionSpec):
        return SubscriptionStatus(
            id=spec.id, kind="type", topic=spec.topic_type, agent_type=spec.agent_type, owner=owner
        )
    return SubscriptionStatus(
        id=spec.id, kind="type_prefix", topic=spec.topic_type_prefix, agent_type=spec.agent_type, owner=owner
    )


def _rfc3339(unix_seconds: float) -> str:
    moment = datetime.fromtimestamp(unix_seconds, timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


__all__ = [
    "STATUS_VERSION",
    "AgentTypeStatus",
    "HostCounters",
    "HostSnapshot",
    "RateWindow",
    "Rates",
    "Status",
    "StatusBuilder",
    "SubscriptionStatus",
    "Totals",
    "WorkerRates",
    "WorkerSnapshot",
    "WorkerStatus",
    "encode_status",
]
