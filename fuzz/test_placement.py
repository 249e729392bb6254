"""Hypothesis state machine of :class:`Placement` against a plain-dict model.

Members join and leave, keys are placed, assigned and released in any order (from tiny alphabets,
so that the same key and the same member come back often). After every step:

* every placed key is held by a live member, and by exactly one (the model is a dict);
* a placed key stays where it is while its holder lives, whoever joins meanwhile (sticky);
* a key that is not placed goes to the member with the highest rendezvous score, computed here
  from the definition (BLAKE2b of the key, keyed with the member's name), among the members alive
  at that moment;
* ``len``, ``counts``, ``holder``, ``keys_of`` and ``members`` equal the model.
"""

from __future__ import annotations

import hashlib

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from sansio_runtime._placement import Placement

MEMBERS = [1, 2, 3, 4, 5]
KEYS = ["", "a", "b", "c", "k1", "k2", "é", "\udc80", "x" * 70]


def score(name: str, key: str) -> int:
    """The definition in docs/PROTOCOL.md: BLAKE2b-64 of the key's UTF-8, keyed with the member's name."""
    h = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8, key=name.encode()[:64])
    return int.from_bytes(h.digest(), "big")


def name_of(member: int, generation: int) -> str:
    return f"worker-{member}-{generation}"


class PlacementMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.table: Placement[int] = Placement()
        self.names: dict[int, str] = {}  # live members, in join order
        self.placed: dict[str, int] = {}
        self.generation = 0

    @rule(member=st.sampled_from(MEMBERS))
    def join(self, member: int) -> None:
        if member in self.names:
            try:
                self.table.join(member, "again")
            except KeyError:
                return
            raise AssertionError("joining twice must fail")
        self.generation += 1
        name = name_of(member, self.generation)
        before = dict(self.placed)
        self.table.join(member, name)
        self.names[member] = name
        assert {k: self.table.holder(k) for k in before} == before, "a join moved a placed key"

    @precondition(lambda self: bool(self.names))
    @rule(data=st.data())
    def leave(self, data: st.DataObject) -> None:
        member = data.draw(st.sampled_from(sorted(self.names)))
        released = self.table.leave(member)
        mine = [k for k, m in self.placed.items() if m == member]
        assert released == len(mine)
        for key in mine:
            del self.placed[key]
        del self.names[member]

    @rule(key=st.sampled_from(KEYS))
    def place(self, key: str) -> None:
        got = self.table.place(key)
        if key in self.placed:
            assert got == self.placed[key], "a placed key moved"
            return
        if not self.names:
            assert got is None
            return
        expected = max(self.names, key=lambda m: score(self.names[m], key))
        assert got == expected
        self.placed[key] = expected

    @precondition(lambda self: bool(self.names))
    @rule(key=st.sampled_from(KEYS), data=st.data())
    def assign(self, key: str, data: st.DataObject) -> None:
        member = data.draw(st.sampled_from(sorted(self.names)))
        current = self.placed.get(key)
        if current is not None and current != member:
            try:
                self.table.assign(key, member)
            except ValueError:
                return
            raise AssertionError("assigning a key placed elsewhere must fail")
        self.table.assign(key, member)
        self.placed[key] = member

    @rule(member=st.sampled_from(MEMBERS), key=st.sampled_from(KEYS))
    def assign_to_a_stranger(self, member: int, key: str) -> None:
        if member in self.names:
            return
        try:
            self.table.assign(key, member)
        except KeyError:
            return
        raise AssertionError("assigning to a non-member must fail")

    @rule(key=st.sampled_from(KEYS))
    def release(self, key: str) -> None:
        assert self.table.release(key) == self.placed.pop(key, None)

    @invariant()
    def agrees_with_the_model(self) -> None:
        table = self.table
        assert len(table) == len(self.placed)
        assert list(table.members()) == list(self.names)
        assert bool(table) == bool(self.names)
        for key in KEYS:
            assert table.holder(key) == self.placed.get(key)
        counts = {m: 0 for m in self.names}
        for member in self.placed.values():
            assert member in self.names, "a key is placed on a member that left"
            counts[member] += 1
        assert table.counts() == counts
        for member in self.names:
            assert sorted(table.keys_of(member)) == sorted(k for k, m in self.placed.items() if m == member)


TestPlacement = PlacementMachine.TestCase


def test_keys_spread_evenly_over_the_pool() -> None:
    table: Placement[int] = Placement()
    for member in range(4):
        table.join(member, f"pod-{member}")
    for i in range(4000):
        table.place(f"user-{i}")
    counts = table.counts()
    assert sum(counts.values()) == 4000
    assert min(counts.values()) > 800, counts  # 1000 each on average; rendezvous hashing is close


def test_a_new_member_takes_new_keys_only() -> None:
    table: Placement[int] = Placement()
    table.join(1, "a")
    table.join(2, "b")
    first = {f"k{i}": table.place(f"k{i}") for i in range(200)}
    table.join(3, "c")
    assert {k: table.place(k) for k in first} == first
    later = [table.place(f"new{i}") for i in range(300)]
    assert later.count(3) > 50  # about a third of the new keys


def test_the_choice_depends_on_names_not_on_join_order() -> None:
    one: Placement[int] = Placement()
    two: Placement[int] = Placement()
    for member, name in [(1, "x"), (2, "y"), (3, "z")]:
        one.join(member, name)
    for member, name in [(3, "z"), (1, "x"), (2, "y")]:
        two.join(member, name)
    assert all(one.choose(f"k{i}") == two.choose(f"k{i}") for i in range(100))
    # The same names on other members (another process's ids): the same names are chosen.
    three: Placement[int] = Placement()
    for member, name in [(30, "z"), (10, "x"), (20, "y")]:
        three.join(member, name)
    assert all(three.choose(f"k{i}") == 10 * one.choose(f"k{i}") for i in range(100))
    # And it does depend on the names: each member gets some of the keys.
    assert {one.choose(f"k{i}") for i in range(100)} == {1, 2, 3}
