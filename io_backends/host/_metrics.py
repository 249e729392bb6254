"""``GET /metrics``: the host's Prometheus metrics, one registry per host.

:class:`HostMetrics` keeps plain integer counters that the host's code bumps as things happen
(an attribute increment, no lock: the host serves from one event loop), reads the engine's own
counters (:class:`sansio_runtime.HostStats`) when scraped, and renders both with
prometheus-client in the text format a scraper asks for (Prometheus text 0.0.4, or OpenMetrics
when its ``Accept`` says so). Each host has a ``CollectorRegistry`` of its own, never the
process-global default one, so two hosts in one process (tests, a host per tenant) do not mix.

prometheus-client is in the ``metrics`` extra; without it :class:`HostMetrics` raises
:class:`MetricsUnavailable`, which names the extra. Metrics (all prefixed ``autogen_http_host_``):

=======================================  =========  ==========================================
``calls_routed_total``                   counter    ``agent.call`` s forwarded to a target
``calls_failed_total{code,error}``       counter    calls answered with an error, by JSON-RPC code
``call_duration_seconds``                histogram  from a call's arrival to its answer leaving
``events_published_total``               counter    ``agent.publish`` es accepted
``event_deliveries_total``               counter    ``agent.event`` s sent to workers
``events_dropped_total{reason}``         counter    deliveries lost (``unreadable``,
                                                    ``connection_gone``, ``slow_consumer``)
``errors_sent_total``                    counter    JSON-RPC errors the host answered itself
``connections{kind}``                    gauge      open connections (``channel``, ``rpc``, ``events``)
``connections_opened_total{kind}``       counter    connections accepted
``received_bytes_total``                 counter    bytes read from peers
``sent_bytes_total``                     counter    bytes written to peers
=======================================  =========  ==========================================

Error codes outside :class:`sansio_runtime.ErrorCode` (a worker may answer with any code) are
counted under ``code="other"``, so a peer cannot grow the label set.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Final, Literal

from sansio_runtime import CallEnd, ErrorCode, HostStats

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import CollectorRegistry

METRICS_EXTRA: Final = "autogen-http-runtime-ng[metrics]"
NAMESPACE: Final = "autogen_http_host"
DEFAULT_LATENCY_BUCKETS: Final = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
)  # fmt: skip
"""Upper bounds in seconds: sub-millisecond routing up to the minutes a model-backed agent can take."""

ConnectionKind = Literal["channel", "rpc", "events"]
DropReason = Literal["connection_gone", "slow_consumer"]
"""Why the host lost a delivery (``unreadable`` comes from the engine's counters)."""
CONNECTION_KINDS: Final[tuple[ConnectionKind, ...]] = ("channel", "rpc", "events")
DROP_REASONS: Final[tuple[DropReason, ...]] = ("connection_gone", "slow_consumer")
_KNOWN_CODES: Final = {int(code): code.name.lower() for code in ErrorCode}


class MetricsUnavailable(ImportError):
    """prometheus-client is not installed (it comes with the ``metrics`` extra)."""


class HostMetrics:
    """One host's metrics. Create it with the engine's stats; bump the counters; :meth:`render`.

    ``stats`` returns the engine's counters (``lambda: engine.stats``), read at each scrape.
    ``process_metrics`` adds the standard ``process_*``, ``python_gc_*`` and ``python_info``
    collectors to this host's registry.
    """

    def __init__(
        self,
        stats: Callable[[], HostStats],
        *,
        latency_buckets: Sequence[float] = DEFAULT_LATENCY_BUCKETS,
        process_metrics: bool = True,
    ) -> None:
        try:
            import prometheus_client
            from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
            from prometheus_client.exposition import choose_encoder
        except ImportError as exc:
            raise MetricsUnavailable(f"GET /metrics needs prometheus-client: pip install '{METRICS_EXTRA}'") from exc
        bounds = tuple(float(b) for b in latency_buckets)
        if not bounds or list(bounds) != sorted(set(bounds)) or bounds[0] <= 0:
            raise ValueError("latency_buckets must be positive, increasing and not empty")
        self._stats = stats
        self._counter, self._gauge, self._histogram = CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
        self._choose_encoder = choose_encoder
        self._bounds = bounds
        self._latency_counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self._latency_sum = 0.0
        self._failed: dict[int | None, int] = {}  # by known error code; None: any other code
        self._dropped: dict[DropReason, int] = dict.fromkeys(DROP_REASONS, 0)
        self._open: dict[ConnectionKind, int] = dict.fromkeys(CONNECTION_KINDS, 0)
        self._opened: dict[ConnectionKind, int] = dict.fromkeys(CONNECTION_KINDS, 0)
        self.bytes_received = 0
        """Bytes read from peers: add to it as they arrive."""
        self.bytes_sent = 0
        """Bytes written to peers: add to it as they leave."""
        self.registry: CollectorRegistry = prometheus_client.CollectorRegistry(auto_describe=True)
        self.registry.register(self)
        if process_metrics:
            prometheus_client.ProcessCollector(registry=self.registry)
            prometheus_client.PlatformCollector(registry=self.registry)
            prometheus_client.GCCollector(registry=self.registry)

    # ----------------------------------------------------------------- what the host reports

    def call_finished(self, duration_seconds: float, error_code: int | None = None) -> None:
        """A routed call was answered (``error_code``: with that error) after ``duration_seconds``."""
        self._latency_counts[bisect_left(self._bounds, duration_seconds)] += 1
        self._latency_sum += duration_seconds
        if error_code is not None:
            self.call_refused(error_code)

    # (sansio_runtime.CallObserver: the engine tells these directly when nothing else observes calls)

    def call_started(self, host_id: int, target_type: str, metadata: Mapping[str, str] | None) -> None:
        return None

    def call_ended(self, host_id: int, duration: float, error_code: int | None, how: CallEnd) -> None:
        """A routed call ended (one that ended because its caller went is not timed: no one waits)."""
        if how is not CallEnd.CALLER_GONE:
            self._latency_counts[bisect_left(self._bounds, duration)] += 1
            self._latency_sum += duration
            if error_code is not None:
                self.call_refused(error_code)

    def call_refused(self, error_code: int) -> None:
        """A call failed without being routed (no such agent type, too many in flight, ...)."""
        key = int(error_code) if error_code in _KNOWN_CODES else None  # (an IntEnum prints its name on 3.10)
        self._failed[key] = self._failed.get(key, 0) + 1

    def events_dropped(self, reason: DropReason, count: int = 1) -> None:
        """``count`` deliveries were lost for ``reason``."""
        self._dropped[reason] += count

    def connection_opened(self, kind: ConnectionKind) -> None:
        self._open[kind] += 1
        self._opened[kind] += 1

    def connection_closed(self, kind: ConnectionKind) -> None:
        self._open[kind] -= 1

    def set_connections(self, open_now: Mapping[str, int], opened: Mapping[str, int]) -> None:
        """Set the connection counts from a host that keeps its own (by kind; others are ignored)."""
        for kind in CONNECTION_KINDS:
            self._open[kind] = open_now.get(kind, 0)
            self._opened[kind] = opened.get(kind, 0)

    # ------------------------------------------------------------------------------ scraping

    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """The ``/metrics`` response body and its ``Content-Type``, in the format ``accept`` prefers."""
        encoder, content_type = self._choose_encoder(accept or "")
        return encoder(self.registry), content_type

    def collect(self) -> Iterator[Metric]:
        """This host's own metric families, as of now (what a scrape reads)."""
        counter_family, gauge_family, histogram_family = self._counter, self._gauge, self._histogram
        stats = self._stats()

        def counter(name: str, documentation: str, value: int) -> Metric:
            return counter_family(f"{NAMESPACE}_{name}", documentation, value=value)

        yield counter("calls_routed", "agent.call requests forwarded to a target.", stats.calls_forwarded)
        failed = counter_family(
            f"{NAMESPACE}_calls_failed",
            "Calls answered with an error, by JSON-RPC error code.",
            labels=("code", "error"),
        )
        for code, count in self._failed.items():
            failed.add_metric(("other", "other") if code is None else (str(code), _KNOWN_CODES[code]), count)
        yield failed
        cumulative, buckets = 0, []
        for bound, count in zip((*self._bounds, float("inf")), self._latency_counts, strict=True):
            cumulative += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), float(cumulative)))
        yield histogram_family(
            f"{NAMESPACE}_call_duration_seconds",
            "Time from a call's arrival at the host to its answer leaving it.",
            buckets=buckets,
            sum_value=self._latency_sum,
        )
        yield counter("events_published", "agent.publish events accepted.", stats.events_published)
        yield counter("event_deliveries", "agent.event deliveries sent to workers.", stats.event_deliveries)
        dropped = counter_family(f"{NAMESPACE}_events_dropped", "Event deliveries lost.", labels=("reason",))
        dropped.add_metric(("unreadable",), stats.events_unreadable)
        dropped.add_metric(("unplaced",), stats.events_unplaced)
        for reason, count in self._dropped.items():
            dropped.add_metric((reason,), count)
        yield dropped
        yield counter("errors_sent", "JSON-RPC errors the host answered itself.", stats.errors_sent)
        open_now = gauge_family(f"{NAMESPACE}_connections", "Open connections.", labels=("kind",))
        opened = counter_family(f"{NAMESPACE}_connections_opened", "Connections accepted.", labels=("kind",))
        for kind in CONNECTION_KINDS:
            open_now.add_metric((kind,), self._open[kind])
            opened.add_metric((kind,), self._opened[kind])
        yield open_now
        yield opened
        yield counter("received_bytes", "Bytes read from peers.", self.bytes_received)
        yield counter("sent_bytes", "Bytes written to peers.", self.bytes_sent)


__all__ = [
    "CONNECTION_KINDS",
    "DEFAULT_LATENCY_BUCKETS",
    "DROP_REASONS",
    "ConnectionKind",
    "DropReason",
    "HostMetrics",
    "MetricsUnavailable",
]
