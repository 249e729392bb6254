"""Shared agent types across the hosts of a cluster: which hosts have members, and which host
holds each agent instance (docs/CLUSTER.md section 8).

On one host, a shared type's pool is its member workers, and :mod:`._pools` places each
``AgentId(type, key)`` on one of them. In a cluster the same happens one level up first:
:class:`ClusterPools` keeps, per shared type, the *hosts* that have at least one member (by host
name, this host among them when it has members) and which of them holds each placed key. A key
is placed on a host once, cluster-wide, by a claim in the cluster's registry (create-if-absent:
exactly one proposal wins, whatever each host saw); that host then places it on one of its own
members, as on one host. So an agent instance lives in one place in the whole cluster.

* **Proposals** are made by rendezvous hashing over the host names (:class:`~._placement.Placement`),
  so two hosts that see the same pool propose the same host and a race costs nothing.
* **Sticky at host level**: a key stays on its host while that host has members of the type; a
  member leaving re-places its keys among the host's other members only.
* **Released with the host's pool**: when a host has no member left (or is gone), its keys are
  forgotten here; each is claimed afresh the next time it is needed.
* **Work waits for its claim**: a call or an event that needs a key not placed yet is held, per
  key, until the claim settles (:class:`Waiting`), then carried out in the order it came.

Pure bookkeeping: no I/O, no clock. The host engine asks it and acts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from msgspec import Raw

from ._events import ClientId
from ._placement import Placement
from ._wire import CallRouting, RequestId


@dataclass(frozen=True, slots=True)
class HeldCall:
    """An ``agent.call`` waiting for its target's placement."""

    caller: ClientId
    request_id: RequestId
    params: Raw
    call: CallRouting
    deadline: float | None


@dataclass(frozen=True, slots=True)
class HeldPublish:
    """An ``agent.publish`` waiting for the placement of the instances it reaches."""

    from_peer: bool
    """Forwarded by another host (delivered here only to the instances this host holds)."""
    params: Raw
    topic_type: str
    source: str


@dataclass(slots=True)
class Waiting:
    """One claim in flight: the key it places, the host it proposed, and the calls held for it, in
    the order they came."""

    agent_type: str
    key: str
    proposal: str
    calls: list[HeldCall] = field(default_factory=list)


class ClusterPools:
    """The cluster-wide pools of the shared agent types, as seen by one host (``here``)."""

    __slots__ = ("_claims", "_pools", "_waiting", "here")

    def __init__(self, here: str) -> None:
        self.here = here
        """This host's name in the cluster."""
        self._pools: dict[str, Placement[str]] = {}  # shared type -> its hosts, and their keys
        self._waiting: dict[tuple[str, str], int] = {}  # (type, key) -> the claim placing it
        self._claims: dict[int, Waiting] = {}

    def __contains__(self, agent_type: object) -> bool:
        """Whether some host of the cluster (this one included) has members of ``agent_type``."""
        return agent_type in self._pools

    def __bool__(self) -> bool:
        return bool(self._pools)

    def hosts(self, agent_type: str) -> list[str]:
        """The hosts with members of ``agent_type``, in the order they were heard of."""
        pool = self._pools.get(agent_type)
        return [] if pool is None else list(pool.members())

    def has_host(self, agent_type: str, host: str) -> bool:
        pool = self._pools.get(agent_type)
        return pool is not None and host in pool

    # ------------------------------------------------------------------ hosts joining and leaving

    def join(self, agent_type: str, host: str) -> bool:
        """``host`` has members of ``agent_type`` now; False if it was known to have them."""
        pool = self._pools.get(agent_type)
        if pool is None:
            pool = self._pools[agent_type] = Placement()
        if host in pool:
            return False
        pool.join(host, host)
        return True

    def leave(self, agent_type: str, host: str) -> list[str]:
        """``host`` has no member of ``agent_type`` left: the keys it held (now forgotten)."""
        pool = self._pools.get(agent_type)
        if pool is None or host not in pool:
            return []
        keys = pool.keys_of(host)
        pool.leave(host)
        if not pool:
            del self._pools[agent_type]
        return keys

    def host_gone(self, host: str) -> None:
        """``host`` left the cluster: it leaves every pool, and its keys are forgotten."""
        for agent_type in [t for t, pool in self._pools.items() if host in pool]:
            self.leave(agent_type, host)

    # ------------------------------------------------------------------ placements

    def holder(self, agent_type: str, key: str) -> str | None:
        """The host holding ``AgentId(agent_type, key)``, or None if it is not placed."""
        pool = self._pools.get(agent_type)
        return None if pool is None else pool.holder(key)

    def propose(self, agent_type: str, key: str) -> str | None:
        """The host rendezvous hashing picks for the key among the pool's hosts (None: no pool)."""
        pool = self._pools.get(agent_type)
        return None if pool is None else pool.choose(key)

    def assign(self, agent_type: str, key: str, host: str) -> bool:
        """Record that ``host`` holds the key (the registry says so). False, and nothing changes, if
        ``host`` has no members of the type here or the key is placed on another host."""
        pool = self._pools.get(agent_type)
        if pool is None or host not in pool:
            return False
        current = pool.holder(key)
        if current is None:
            pool.assign(key, host)
            return True
        return current == host

    def release(self, agent_type: str, key: str, host: str | None = None) -> bool:
        """Forget where the key is placed (only if on ``host``, when given); True if it was."""
        pool = self._pools.get(agent_type)
        if pool is None:
            return False
        if host is not None and pool.holder(key) != host:
            return False
        return pool.release(key) is not None

    def placed_on(self, host: str) -> list[tuple[str, str]]:
        """Every ``(type, key)`` placed on ``host``."""
        return [(t, k) for t, pool in self._pools.items() if host in pool for k in pool.keys_of(host)]

    # ------------------------------------------------------------------ claims

    def claim_for(self, agent_type: str, key: str) -> int | None:
        """The claim in flight placing the key, if any."""
        return self._waiting.get((agent_type, key))

    def open_claim(self, claim: int, agent_type: str, key: str, proposal: str) -> Waiting:
        waiting = self._claims[claim] = Waiting(agent_type, key, proposal)
        self._waiting[(agent_type, key)] = claim
        return waiting

    def waiting(self, claim: int) -> Waiting | None:
        return self._claims.get(claim)

    def close_claim(self, claim: int) -> Waiting | None:
        waiting = self._claims.pop(claim, None)
        if waiting is not None:
            del self._waiting[(waiting.agent_type, waiting.key)]
        return waiting

    def claims(self) -> list[int]:
        """The claims in flight, oldest first."""
        return list(self._claims)


__all__ = ["ClusterPools", "HeldCall", "HeldPublish", "Waiting"]
