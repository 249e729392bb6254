"""Shared agent types: the pool of connections hosting each, and where each agent instance lives.

A worker registers an agent type as *shared* (``runtime.register_agent`` with ``"shared": true``)
to host it together with other workers that do the same. :class:`SharedTypes` keeps, per shared
type, its pool of member connections and the pool's :class:`~._placement.Placement`: each agent
instance ``AgentId(type, key)`` is on exactly one live member, stays there while that member
lives, and is placed afresh (by rendezvous hashing over the members' names) when it is next
needed after its holder left. docs/PROTOCOL.md section 7.9 is the rule written for implementers.

Pure bookkeeping, like the registry: the host engine checks requests and asks it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from ._events import ClientId
from ._placement import Placement


def member_name(client: ClientId, name: str | None) -> str:
    """The name a connection is hashed by: its ``X-Client-Id`` if it has one, else a name no
    header can spell (a NUL and its handle), so that unnamed connections never collide."""
    return name if name is not None else f"\0{client}"


class SharedTypes:
    """The pools of the shared agent types of one host."""

    __slots__ = ("_names", "_pools", "_types_of", "active")

    def __init__(self) -> None:
        self._pools: dict[str, Placement[ClientId]] = {}  # shared type -> its pool (never empty)
        self._types_of: dict[ClientId, set[str]] = {}  # member -> the shared types it is in
        self._names: dict[ClientId, str] = {}  # member -> the name it is known by (for status)
        self.active = False
        """Whether any agent type is shared (a plain attribute: the publish path reads it each time)."""

    def __contains__(self, agent_type: object) -> bool:
        """Whether ``agent_type`` is shared (it has at least one member)."""
        return agent_type in self._pools

    def __bool__(self) -> bool:
        return bool(self._pools)

    def types(self) -> Iterator[str]:
        """The shared agent types, in the order their pools were made."""
        return iter(self._pools)

    def is_member(self, agent_type: str, client: ClientId) -> bool:
        pool = self._pools.get(agent_type)
        return pool is not None and client in pool

    def members(self, agent_type: str) -> list[ClientId]:
        """The members of ``agent_type``'s pool, in the order they joined (empty if not shared)."""
        pool = self._pools.get(agent_type)
        return [] if pool is None else list(pool.members())

    def count_types_of(self, client: ClientId) -> int:
        return len(self._types_of.get(client, ()))

    def types_of(self, client: ClientId) -> list[str]:
        """The shared types ``client`` is a member of (sorted)."""
        return sorted(self._types_of.get(client, ()))

    # ------------------------------------------------------------------ joining and leaving

    def join(self, agent_type: str, client: ClientId, name: str | None) -> bool:
        """Add ``client`` to the pool of ``agent_type``; True if that made the type shared."""
        pool = self._pools.get(agent_type)
        made = pool is None
        if pool is None:
            pool = self._pools[agent_type] = Placement()
            self.active = True
        pool.join(client, member_name(client, name))
        self._types_of.setdefault(client, set()).add(agent_type)
        self._names[client] = member_name(client, name)
        return made

    def leave(self, agent_type: str, client: ClientId) -> bool:
        """Take ``client`` out of ``agent_type``'s pool, releasing its keys; True if the pool is gone."""
        pool = self._pools[agent_type]
        pool.leave(client)
        types = self._types_of[client]
        types.discard(agent_type)
        if not types:
            del self._types_of[client]
            del self._names[client]
        if pool:
            return False
        del self._pools[agent_type]
        self.active = bool(self._pools)
        return True

    def release(self, client: ClientId) -> bool:
        """``client`` is gone: leave every pool it is in; True if some type stopped being shared."""
        gone = False
        for agent_type in sorted(self._types_of.get(client, ())):
            gone |= self.leave(agent_type, client)
        return gone

    # ------------------------------------------------------------------ agent instances

    def place(self, agent_type: str, key: str) -> ClientId | None:
        """The member holding ``AgentId(agent_type, key)``, placing it first if it is not placed.

        None if ``agent_type`` is not shared.
        """
        pool = self._pools.get(agent_type)
        return None if pool is None else pool.place(key)

    def holder(self, agent_type: str, key: str) -> ClientId | None:
        """The member holding ``AgentId(agent_type, key)``, or None if it is not placed. Places nothing."""
        pool = self._pools.get(agent_type)
        return None if pool is None else pool.holder(key)

    def placed(self, agent_type: str) -> int:
        """How many agent instances of ``agent_type`` are placed."""
        pool = self._pools.get(agent_type)
        return 0 if pool is None else len(pool)

    def keys_per_member(self) -> dict[str, dict[ClientId, int]]:
        """Per shared type, how many agent instances each member holds (members in join order)."""
        return {agent_type: pool.counts() for agent_type, pool in self._pools.items()}

    def name_of(self, client: ClientId) -> str | None:
        """The name a member is known by (its ``X-Client-Id``), or None if it is in no pool."""
        name = self._names.get(client)
        return None if name is None or name.startswith("\0") else name


def with_holders(
    routes: list[tuple[ClientId, list[str]]],
    shared: list[str],
    key: str,
    place: Callable[[str, str], ClientId | None],
) -> list[tuple[ClientId, list[str]]]:
    """``routes`` and, for each shared type in ``shared``, the member holding its instance ``key``
    (``place(agent_type, key)``, which places it if it is not)."""
    by_client = {client_id: recipients for client_id, recipients in routes}
    grown: set[ClientId] = set()
    for agent_type in shared:
        holder = place(agent_type, key)
        assert holder is not None  # a pool is never empty
        recipients = by_client.get(holder)
        if recipients is None:
            by_client[holder] = [agent_type]
        else:
            if holder not in grown:  # (the cached list of the routes is not ours to change)
                recipients = by_client[holder] = list(recipients)
                grown.add(holder)
            recipients.append(agent_type)
    for client_id in grown:
        by_client[client_id].sort()
    return list(by_client.items())


__all__ = ["SharedTypes", "member_name", "with_holders"]
