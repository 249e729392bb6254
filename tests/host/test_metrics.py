"""``GET /metrics``: the host's counters rendered by prometheus-client, read back with its own parsers."""

from __future__ import annotations

import sys
from typing import Any

import prometheus_client
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families

from io_backends.host._metrics import HostMetrics, MetricsUnavailable
from sansio_runtime import ErrorCode, HostStats

P = "autogen_http_host_"


def scrape(metrics: HostMetrics, accept: str | None = None) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape: (name, sorted labels) -> value, parsed by prometheus-client."""
    body, content_type = metrics.render(accept)
    assert content_type.startswith("text/plain; version=0.0.4")
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples[(P + name, tuple(sorted(labels.items())))]


def test_a_new_host_exports_every_metric_at_zero() -> None:
    samples = scrape(HostMetrics(lambda: HostStats(), process_metrics=False))
    for name in (
        "calls_routed_total",
        "events_published_total",
        "event_deliveries_total",
        "errors_sent_total",
        "received_bytes_total",
        "sent_bytes_total",
        "call_duration_seconds_count",
        "call_duration_seconds_sum",
    ):
        assert value(samples, name) == 0.0, name
    for kind in ("channel", "rpc", "events"):
        assert value(samples, "connections", kind=kind) == 0.0
        assert value(samples, "connections_opened_total", kind=kind) == 0.0
    for reason in ("unreadable", "connection_gone", "slow_consumer"):
        assert value(samples, "events_dropped_total", reason=reason) == 0.0
    assert value(samples, "call_duration_seconds_bucket", le="+Inf") == 0.0
    assert not any(name.startswith("process_") for name, _ in samples)


def test_counters_from_the_host_and_the_engine() -> None:
    stats = HostStats()
    metrics = HostMetrics(lambda: stats, process_metrics=False)
    metrics.call_finished(0.003)
    metrics.call_finished(0.2, error_code=ErrorCode.HANDLER_ERROR)
    metrics.call_refused(ErrorCode.AGENT_TYPE_NOT_FOUND)
    metrics.call_refused(-31999)  # a code of a worker's own
    metrics.events_dropped("connection_gone", 3)
    metrics.connection_opened("channel")
    metrics.connection_opened("channel")
    metrics.connection_opened("rpc")
    metrics.connection_closed("channel")
    metrics.bytes_received += 1200
    metrics.bytes_sent += 800
    stats.calls_forwarded, stats.events_published, stats.event_deliveries = 7, 3, 5
    stats.events_unreadable, stats.errors_sent = 2, 4

    samples = scrape(metrics)
    assert value(samples, "calls_routed_total") == 7
    assert value(samples, "calls_failed_total", code="-32004", error="handler_error") == 1
    assert value(samples, "calls_failed_total", code="-32001", error="agent_type_not_found") == 1
    assert value(samples, "calls_failed_total", code="other", error="other") == 1
    assert value(samples, "call_duration_seconds_count") == 2
    assert value(samples, "call_duration_seconds_sum") == pytest.approx(0.203)
    assert value(samples, "call_duration_seconds_bucket", le="0.0025") == 0
    assert value(samples, "call_duration_seconds_bucket", le="0.005") == 1
    assert value(samples, "call_duration_seconds_bucket", le="0.25") == 2
    assert value(samples, "call_duration_seconds_bucket", le="+Inf") == 2
    assert (value(samples, "events_published_total"), value(samples, "event_deliveries_total")) == (3, 5)
    assert value(samples, "events_dropped_total", reason="unreadable") == 2
    assert value(samples, "events_dropped_total", reason="connection_gone") == 3
    assert value(samples, "errors_sent_total") == 4
    assert value(samples, "connections", kind="channel") == 1 and value(samples, "connections", kind="rpc") == 1
    assert value(samples, "connections_opened_total", kind="channel") == 2
    assert (value(samples, "received_bytes_total"), value(samples, "sent_bytes_total")) == (1200, 800)

    stats.calls_forwarded = 9  # the engine's counters are read at each scrape
    assert value(scrape(metrics), "calls_routed_total") == 9


def test_unknown_error_codes_share_one_series() -> None:
    metrics = HostMetrics(lambda: HostStats(), process_metrics=False)
    for code in range(1000, 2000):
        metrics.call_refused(code)
    failed = [key for key in scrape(metrics) if key[0] == P + "calls_failed_total"]
    assert failed == [(P + "calls_failed_total", (("code", "other"), ("error", "other")))]


def test_two_hosts_in_one_process_do_not_mix() -> None:
    a = HostMetrics(lambda: HostStats(calls_forwarded=1), process_metrics=False)
    b = HostMetrics(lambda: HostStats(calls_forwarded=2), process_metrics=False)
    a.bytes_sent += 10
    assert value(scrape(a), "calls_routed_total") == 1 and value(scrape(b), "calls_routed_total") == 2
    assert value(scrape(a), "sent_bytes_total") == 10 and value(scrape(b), "sent_bytes_total") == 0
    assert P + "calls_routed_total" not in prometheus_client.generate_latest().decode()  # not the global registry


def test_openmetrics_when_the_scraper_asks_for_it() -> None:
    metrics = HostMetrics(lambda: HostStats(calls_forwarded=3), process_metrics=False)
    metrics.call_finished(0.01, error_code=ErrorCode.DEADLINE_EXCEEDED)
    body, content_type = metrics.render("application/openmetrics-text; version=1.0.0; charset=utf-8")
    assert content_type.startswith("application/openmetrics-text") and body.endswith(b"# EOF\n")
    families = {f.name: f for f in parse_openmetrics(body.decode())}
    assert families[P + "calls_routed"].samples[0].value == 3
    assert families[P + "call_duration_seconds"].type == "histogram"
    (failed,) = families[P + "calls_failed"].samples
    assert failed.labels == {"code": "-32006", "error": "deadline_exceeded"}


def test_process_metrics_in_the_hosts_own_registry() -> None:
    samples = scrape(HostMetrics(lambda: HostStats()))
    assert any(name.startswith("python_gc_") for name, _ in samples)
    if sys.platform == "linux":
        assert ("process_cpu_seconds_total", ()) in samples


def test_without_prometheus_client_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # what an install without the extra meets
    with pytest.raises(MetricsUnavailable, match=r"pip install 'autogen-http-runtime-ng\[metrics\]'"):
        HostMetrics(lambda: HostStats())
    assert issubclass(MetricsUnavailable, ImportError)


def test_bad_buckets_are_refused() -> None:
    for buckets in ((), (1.0, 0.5), (0.0, 1.0), (1.0, 1.0)):
        with pytest.raises(ValueError, match="latency_buckets"):
            HostMetrics(lambda: HostStats(), latency_buckets=buckets)
