"""The ``GET /v1/status`` document: built from snapshots with time as an input, held to its schema."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from io_backends.sansio._status import (
    HostCounters,
    HostSnapshot,
    RateWindow,
    Status,
    StatusBuilder,
    WorkerSnapshot,
    encode_status,
)
from sansio_runtime import TypePrefixSubscriptionSpec, TypeSubscriptionSpec

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "docs" / "status.schema.json"
SCHEMA: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())
FORMATS = jsonschema.FormatChecker(formats=())


@FORMATS.checks("date-time")
def _utc_timestamp(value: object) -> bool:  # jsonschema checks date-time only with an extra package
    return not isinstance(value, str) or re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", value) is not None


VALIDATOR = jsonschema.Draft202012Validator(SCHEMA, format_checker=FORMATS)
T0 = 1_700_000_000.0  # wall clock of the tests' "now"


def document(builder: StatusBuilder, snapshot: HostSnapshot, now: float) -> dict[str, Any]:
    body = encode_status(builder.build(snapshot, now=now, wall_clock=T0 + now))
    doc: dict[str, Any] = json.loads(body)
    VALIDATOR.validate(doc)
    return doc


def _minimal() -> dict[str, Any]:
    return json.loads(
        encode_status(StatusBuilder(started_at=0).build(HostSnapshot(HostCounters()), now=0, wall_clock=T0))
    )


def worker(id: int = 1, **over: Any) -> WorkerSnapshot:
    fields: dict[str, Any] = {"id": id, "name": f"w{id}", "address": f"127.0.0.1:{5000 + id}", "connected_at": T0}
    fields.update(over)
    return WorkerSnapshot(**fields)


def test_schema_is_valid_and_describes_the_structs() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert not VALIDATOR.is_valid({**_minimal(), "generated_at": "yesterday"})  # formats are checked
    assert VALIDATOR.is_valid(_minimal())
    generated = msgspec.json.schema(Status)["$defs"]
    ours = SCHEMA["$defs"]
    assert set(generated) == set(ours)
    for name, definition in generated.items():
        assert set(definition["properties"]) == set(ours[name]["properties"]), name
        assert set(definition["required"]) == set(ours[name]["required"]), name


def test_document_of_a_host_with_workers() -> None:
    builder = StatusBuilder(started_at=0.0)
    a = worker(1, agent_types=("upper", "echo"), subscriptions=2, pending_calls=1, messages_in=10, bytes_in=900)
    b = worker(2, name=None, connected_at=T0 - 30, agent_types=("reverse",), subscriptions=1)
    snapshot = HostSnapshot(
        counters=HostCounters(calls_routed=5, events_published=2, event_deliveries=3, messages_in=10, bytes_in=900),
        workers=[a, b],
        agent_types={"echo": 1, "upper": 1, "reverse": 2},
        subscriptions=[
            (TypeSubscriptionSpec("s1", "news", "echo"), 1),
            (TypePrefixSubscriptionSpec("s2", "upper:", "upper"), 1),
            (TypeSubscriptionSpec("s3", "default", "reverse"), 2),
        ],
        subscriptions_total=3,
        connections=3,
    )
    doc = document(builder, snapshot, now=12.0)
    assert doc["version"] == 1 and doc["uptime_seconds"] == 12.0 and doc["generated_at"] == "2023-11-14T22:13:32.000Z"
    assert [w["id"] for w in doc["workers"]] == [2, 1]  # by connection time
    w1 = doc["workers"][1]
    assert w1["name"] == "w1" and w1["address"] == "127.0.0.1:5001" and w1["agent_types"] == ["echo", "upper"]
    assert (w1["subscriptions"], w1["pending_calls"], w1["messages_in"], w1["bytes_in"]) == (2, 1, 10, 900)
    assert doc["workers"][0]["connected_seconds"] == 42.0 and doc["workers"][0]["name"] is None
    assert doc["agent_types"] == [
        {"type": "echo", "owner": 1, "owner_name": "w1"},
        {"type": "reverse", "owner": 2, "owner_name": None},
        {"type": "upper", "owner": 1, "owner_name": "w1"},
    ]
    assert doc["subscriptions"][1] == {
        "id": "s2",
        "kind": "type_prefix",
        "topic": "upper:",
        "agent_type": "upper",
        "owner": 1,
    }
    assert doc["subscriptions_truncated"] is False
    totals = doc["totals"]
    assert (totals["workers"], totals["agent_types"], totals["subscriptions"], totals["pending_calls"]) == (2, 3, 3, 1)
    assert totals["calls_routed"] == 5 and totals["connections"] == 3
    # nothing to compare with yet
    assert doc["rates"]["calls_per_second"] is None and w1["rates"]["messages_in_per_second"] is None


def test_rates_follow_the_counters() -> None:
    builder = StatusBuilder(started_at=0.0, window=5.0)

    def at(now: float, calls: int, messages: int) -> dict[str, Any]:
        snapshot = HostSnapshot(
            counters=HostCounters(calls_routed=calls, events_published=calls // 2),
            workers=[worker(7, messages_in=messages)],
        )
        return document(builder, snapshot, now)

    at(0.0, 0, 0)
    doc = at(1.0, 100, 40)  # one second later: 100 calls, 40 messages
    assert doc["rates"]["calls_per_second"] == 100.0 and doc["rates"]["events_per_second"] == 50.0
    assert doc["workers"][0]["rates"]["messages_in_per_second"] == 40.0
    for now in range(2, 11):  # steady 100 calls/s
        doc = at(float(now), 100 * now, 40)
    assert doc["rates"]["calls_per_second"] == 100.0
    assert doc["workers"][0]["rates"]["messages_in_per_second"] == 0.0  # the worker went quiet
    doc = at(11.0, 1000, 40)  # calls stopped: the rate falls over the window
    assert 0 < doc["rates"]["calls_per_second"] < 100.0
    for now in range(12, 17):
        doc = at(float(now), 1000, 40)
    assert doc["rates"]["calls_per_second"] == 0.0


def test_rates_of_a_rare_poller_cover_the_time_since_its_last_poll() -> None:
    builder = StatusBuilder(started_at=0.0, window=5.0)
    document(builder, HostSnapshot(counters=HostCounters(calls_routed=0)), 0.0)
    doc = document(builder, HostSnapshot(counters=HostCounters(calls_routed=600)), 60.0)
    assert doc["rates"]["calls_per_second"] == 10.0


def test_samples_stay_bounded_however_often_it_is_polled() -> None:
    window = RateWindow(5.0, 0.25)
    for i in range(100_000):
        window.rates(i * 0.001, (i,))  # 100 s of polls every millisecond
    assert len(window._samples) <= 5.0 / 0.25 + 3


def test_a_counter_that_went_down_gives_zero_not_a_negative_rate() -> None:
    window = RateWindow(5.0, 0.0)
    window.rates(0.0, (100,))
    assert window.rates(1.0, (10,)) == (0.0,)


def test_gone_workers_are_forgotten_and_a_new_one_starts_without_rates() -> None:
    builder = StatusBuilder(started_at=0.0)
    document(builder, HostSnapshot(counters=HostCounters(), workers=[worker(1)]), 0.0)
    doc = document(builder, HostSnapshot(counters=HostCounters(), workers=[worker(2)]), 1.0)
    assert doc["workers"][0]["rates"]["messages_in_per_second"] is None
    assert set(builder._worker_rates) == {2}


def test_subscription_listing_is_bounded() -> None:
    builder = StatusBuilder(started_at=0.0, max_listed_subscriptions=10)
    read: list[int] = []

    def many() -> Any:
        for i in range(50_000):
            read.append(i)
            yield TypeSubscriptionSpec(f"s{i}", "t", "a"), 1

    doc = document(builder, HostSnapshot(counters=HostCounters(), subscriptions=many(), subscriptions_total=50_000), 0)
    assert len(doc["subscriptions"]) == 10 and doc["subscriptions_truncated"] is True
    assert len(read) <= 11  # read lazily, not all 50,000
    assert doc["totals"]["subscriptions"] == 50_000


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="window must be positive"):
        StatusBuilder(started_at=0.0, window=0)


_COUNT = st.integers(0, 2**53)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.builds(
            WorkerSnapshot,
            id=st.integers(1, 10**9),
            name=st.none() | st.text(max_size=20),
            address=st.text(max_size=30),
            connected_at=st.floats(0, 4e9),
            agent_types=st.lists(st.text(max_size=10), max_size=4),
            subscriptions=_COUNT,
            pending_calls=_COUNT,
            messages_in=_COUNT,
            messages_out=_COUNT,
            bytes_in=_COUNT,
            bytes_out=_COUNT,
        ),
        max_size=5,
        unique_by=lambda w: w.id,
    ),
    st.lists(st.floats(0, 1e6), min_size=1, max_size=4).map(sorted),
)
def test_any_snapshot_gives_a_valid_document(workers: list[WorkerSnapshot], times: list[float]) -> None:
    builder = StatusBuilder(started_at=0.0)
    for now in times:
        counters = HostCounters(calls_routed=int(now), bytes_out=int(now) * 3)
        agent_types = {t: w.id for w in workers for t in w.agent_types}
        document(builder, HostSnapshot(counters=counters, workers=workers, agent_types=agent_types), now)
