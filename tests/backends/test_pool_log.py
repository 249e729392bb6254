"""The host command line's log of shared agent types: one line per type whose workers or keys changed."""

from __future__ import annotations

from io_backends.host._cli import describe_pools


def test_a_line_per_changed_type_naming_each_worker_and_its_keys() -> None:
    before = {"counter": {"w-a": 3}, "gone": {"w-c": 1}, "same": {"w-d": 2}}
    now = {"counter": {"w-a": 3, "w-b": 0}, "same": {"w-d": 2}}
    assert describe_pools(now, before) == [
        "shared agent type 'counter': 2 worker(s) (w-a: 3 keys, w-b: 0 keys)",
        "shared agent type 'gone': no workers left",
    ]
    assert describe_pools(now, now) == []
