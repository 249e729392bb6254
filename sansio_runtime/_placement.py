"""Which member of a shared agent type's pool holds each agent instance.

Several workers may host one agent type together (they register it as *shared*). Each agent
instance, ``AgentId(type, key)``, lives on exactly one of them, so that its in-memory state stays in
one place. :class:`Placement` is the table that says where, for one pool:

* **Sticky.** Once placed, a key stays on its holder for as long as that member is in the pool.
  A member that joins takes some of the keys placed *after* it joined, never one already placed.
* **Spread by rendezvous hashing.** A key that is not placed goes to the member with the highest
  score ``blake2b(member name, key)``: keys spread evenly, and the choice depends only on the key
  and the member names, not on the order things happened in, so two hosts that see the same pool
  pick the same member without talking to each other.
* **Released with its holder.** When a member leaves, its keys are forgotten; each is placed
  afresh (on a live member) the next time it is needed.

The table is pure: no I/O, no clock. It never decides anything on its own; the host engine asks it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable, Iterator
from typing import Generic, TypeVar

M = TypeVar("M", bound=Hashable)


def rendezvous_score(member_name: bytes, key: str) -> int:
    """The score of ``key`` on the member named ``member_name``: the highest score wins the key."""
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8, key=member_name[:64]).digest()
    return int.from_bytes(digest, "big")


class Placement(Generic[M]):
    """The placement table of one pool: member handles ``M`` (the host uses its client ids)."""

    __slots__ = ("_counts", "_holder", "_names")

    def __init__(self) -> None:
        self._names: dict[M, bytes] = {}  # member -> its name, as hashed
        self._holder: dict[str, M] = {}  # placed key -> member
        # Keys held per member. No per-member set of keys: it would cost ~60 bytes per key, and it
        # is only needed when a member leaves, which scans the table once instead.
        self._counts: dict[M, int] = {}

    # ------------------------------------------------------------------ the pool

    def join(self, member: M, name: str) -> None:
        """Add a member. ``name`` is what it is known by for hashing (stable for its life)."""
        if member in self._names:
            raise KeyError(f"{member!r} is already a member")
        self._names[member] = name.encode("utf-8", "surrogatepass")
        self._counts[member] = 0

    def leave(self, member: M) -> int:
        """Remove a member and release the keys it held; returns how many were released.

        Costs one pass over the pool's placed keys (measured here: 10-25 ms per 100,000).
        """
        del self._names[member]
        released = self._counts.pop(member)
        if released:
            self._holder = {key: m for key, m in self._holder.items() if m != member}
        return released

    def __contains__(self, member: object) -> bool:
        return member in self._names

    def members(self) -> Iterator[M]:
        """The members, in the order they joined."""
        return iter(self._names)

    def __bool__(self) -> bool:
        """Whether the pool has any member."""
        return bool(self._names)

    # ------------------------------------------------------------------ keys

    def place(self, key: str) -> M | None:
        """The member holding ``key``, placing it first if it is not placed; None if the pool is empty."""
        member = self._holder.get(key)
        if member is not None:
            return member
        member = self.choose(key)
        if member is not None:
            self._holder[key] = member
            self._counts[member] += 1
        return member

    def holder(self, key: str) -> M | None:
        """The member holding ``key``, or None if it is not placed. Places nothing."""
        return self._holder.get(key)

    def choose(self, key: str) -> M | None:
        """The member rendezvous hashing picks for ``key`` among the members now. Places nothing."""
        best: M | None = None
        best_score = -1
        for member, name in self._names.items():
            score = rendezvous_score(name, key)
            if score > best_score:
                best, best_score = member, score
        return best

    def assign(self, key: str, member: M) -> None:
        """Place ``key`` on ``member`` (a placement decided elsewhere, e.g. by a cluster registry).

        Raises KeyError if ``member`` is not in the pool, ValueError if ``key`` is placed elsewhere.
        """
        if member not in self._names:
            raise KeyError(f"{member!r} is not a member")
        current = self._holder.get(key)
        if current is not None:
            if current != member:
                raise ValueError(f"key {key!r} is already placed on {current!r}")
            return
        self._holder[key] = member
        self._counts[member] += 1

    def release(self, key: str) -> M | None:
        """Forget where ``key`` is placed; returns its holder, or None if it was not placed."""
        member = self._holder.pop(key, None)
        if member is not None:
            self._counts[member] -= 1
        return member

    def __len__(self) -> int:
        """How many keys are placed."""
        return len(self._holder)

    def counts(self) -> dict[M, int]:
        """How many keys each member holds, in the order members joined."""
        return dict(self._counts)

    def keys_of(self, member: M) -> list[str]:
        """The keys ``member`` holds (one pass over the table)."""
        return [key for key, m in self._holder.items() if m == member]


__all__ = ["Placement", "rendezvous_score"]
