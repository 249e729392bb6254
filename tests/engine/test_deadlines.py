"""DeadlineHeap: ordering, discard, re-set, stale entries, exact boundary."""

from __future__ import annotations

from sansio_runtime._deadlines import DeadlineHeap


def test_empty() -> None:
    h: DeadlineHeap[str] = DeadlineHeap()
    assert len(h) == 0
    assert h.next_deadline() is None
    assert h.expire(1e9) == []


def test_expire_in_deadline_order() -> None:
    h: DeadlineHeap[str] = DeadlineHeap()
    h.set("c", 3.0)
    h.set("a", 1.0)
    h.set("b", 2.0)
    assert len(h) == 3
    assert h.next_deadline() == 1.0
    assert h.expire(2.5) == ["a", "b"]
    assert len(h) == 1
    assert h.next_deadline() == 3.0
    assert h.expire(10) == ["c"]
    assert h.next_deadline() is None
    assert len(h) == 0


def test_equal_deadlines_expire_in_insertion_order() -> None:
    h: DeadlineHeap[int] = DeadlineHeap()
    for k in [5, 3, 9, 1]:
        h.set(k, 7.0)
    assert h.expire(7.0) == [5, 3, 9, 1]


def test_expire_at_exact_boundary() -> None:
    h: DeadlineHeap[str] = DeadlineHeap()
    h.set("k", 1.5)
    assert h.expire(1.4999999) == []
    assert h.expire(1.5) == ["k"]
    assert h.expire(1.5) == []  # only once


def test_discard() -> None:
    h: DeadlineHeap[str] = DeadlineHeap()
    h.set("a", 1.0)
    h.set("b", 2.0)
    h.discard("a")
    assert len(h) == 1
    assert h.next_deadline() == 2.0
    assert h.expire(5) == ["b"]
    h.discard("nope")  # unknown key: nothing happens
    assert len(h) == 0


def test_discard_last_key_clears_heap() -> None:
    h: DeadlineHeap[str] = DeadlineHeap()
    h.set("a", 1.0)
    h.set("a", 2.0)
    h.discard("a")
    assert h._heap == []
    assert h.next_deadline() is None


def test_reset_later_moves_deadline() -> None:
    h: DeadlineHeap[str] = DeadlineHeap()
    h.set("a", 1.0)
    h.set("a", 5.0)
    assert len(h) == 1
    assert h.next_deadline() == 5.0  # the stale 1.0 entry is skipped
    assert h.expire(4.0) == []
    assert h.expire(5.0) == ["a"]


def test_reset_earlier_moves_deadline_and_old_entry_never_fires() -> None:
    h: DeadlineHeap[str] = DeadlineHeap()
    h.set("a", 5.0)
    h.set("a", 1.0)
    assert h.next_deadline() == 1.0
    assert h.expire(1.0) == ["a"]
    assert h.next_deadline() is None
    assert h.expire(10.0) == []


def test_reset_to_same_deadline_fires_once() -> None:
    h: DeadlineHeap[str] = DeadlineHeap()
    h.set("a", 2.0)
    h.set("a", 2.0)
    assert h.expire(2.0) == ["a"]
    assert h.expire(3.0) == []


def test_discard_then_set_again() -> None:
    h: DeadlineHeap[str] = DeadlineHeap()
    h.set("keep", 100.0)  # keeps the heap from being cleared on discard
    h.set("a", 1.0)
    h.discard("a")
    h.set("a", 3.0)
    assert h.next_deadline() == 3.0
    assert h.expire(2.0) == []
    assert h.expire(3.0) == ["a"]


def test_next_deadline_skips_stale_entries() -> None:
    h: DeadlineHeap[int] = DeadlineHeap()
    for k in range(10):
        h.set(k, float(k))
    for k in range(9):
        h.discard(k)
    assert h.next_deadline() == 9.0
    assert h._heap[0][2] == 9  # stale entries before it were dropped
    assert h.expire(8.99) == []
    assert h.expire(9.0) == [9]


def test_expire_skips_discarded_keys() -> None:
    h: DeadlineHeap[int] = DeadlineHeap()
    for k in range(6):
        h.set(k, 1.0 + k)
    h.discard(2)
    h.discard(4)
    assert h.expire(100) == [0, 1, 3, 5]
    assert len(h) == 0
