"""Shared agent types across hosts, in the key-value buckets (docs/CLUSTER.md section 8): the pool
entries (``<c>_pool``: which hosts have members of a shared type) and the placements
(``<c>_placements``: which host holds each ``AgentId``), written for the engine's requests and read
back into it from the watchers. A mixin of :class:`~._link.ClusterLink`, like :mod:`._registry_sync`:
the state it uses is the link's, declared below. It decides nothing: the engine proposes a host
for each key; create-if-absent decides between proposals.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import msgspec
import nats.js.errors
from nats.js.kv import KeyValue

from sansio_runtime import ClaimPlacement, ClientId, HostEngine

from ..sansio import HostHub
from ._records import DELETED, PlacementRecord, PoolRecord, placement_key, pool_key

logger = logging.getLogger("io_backends.cluster")
T = TypeVar("T")


class PlacementSync:
    """Pool entries and placements, for :class:`~._link.ClusterLink`."""

    hub: HostHub
    engine: HostEngine
    host: str
    epoch: int
    linked: bool
    _loop: asyncio.AbstractEventLoop
    _flush: Callable[[], None]
    _pool_kv: KeyValue | None
    _placements_kv: KeyValue | None
    _peers: dict[tuple[str, int], ClientId]
    _pool_entries: dict[str, tuple[PoolRecord, int]]
    _placements: dict[str, tuple[PlacementRecord, int]]
    _owned_pools: dict[str, int]

    # (the link's)
    async def _alive(self, host: str, epoch: int) -> bool:
        raise NotImplementedError

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        raise NotImplementedError

    def _learn(self, host: str, epoch: int, apply: Callable[[ClientId], object]) -> None:
        raise NotImplementedError

    async def _claim(self, agent_type: str, shared: bool = False) -> tuple[bool, str]:
        raise NotImplementedError

    async def _retrying(self, write: Callable[[], Awaitable[T]]) -> T:
        raise NotImplementedError

    # ------------------------------------------------------------------ pools

    async def _join_pool(self, agent_type: str) -> None:
        """Write this host's entry in ``agent_type``'s pool (under the current epoch)."""
        kv = self._pool_kv
        assert kv is not None
        record = PoolRecord(self.host, self.epoch, agent_type)
        self._owned_pools[agent_type] = await kv.put(pool_key(agent_type, self.host), msgspec.json.encode(record))

    def pool_hosts(self, agent_type: str) -> list[tuple[str, int]]:
        """The ``(host, epoch)`` of every pool entry of ``agent_type`` the watcher has shown."""
        return [(r.host, r.epoch) for r, _ in self._pool_entries.values() if r.type == agent_type]

    async def _leave_pool(self, agent_type: str) -> bool:
        """Delete this host's pool entry and its placements of ``agent_type``; True if no other host
        has an entry left (the type's record may go too)."""
        kv, placements_kv = self._pool_kv, self._placements_kv
        assert kv is not None and placements_kv is not None
        self._owned_pools.pop(agent_type, None)
        with contextlib.suppress(nats.js.errors.KeyNotFoundError):
            await kv.delete(pool_key(agent_type, self.host))
        for key, (record, revision) in list(self._placements.items()):
            if record.type == agent_type and record.host == self.host:
                with contextlib.suppress(nats.js.errors.KeyWrongLastSequenceError, nats.js.errors.KeyNotFoundError):
                    await placements_kv.delete(key, last=revision)
        return all(host == self.host for host, _ in self.pool_hosts(agent_type))

    def _on_pool_entry(self, entry: Any) -> None:
        if entry.operation in DELETED or not entry.value:
            old = self._pool_entries.pop(entry.key, None)
            if old is not None:
                peer = self._peers.get((old[0].host, old[0].epoch))
                if peer is not None:
                    self.hub.drive(self._loop.time(), lambda e: e.peer_left_pool(peer, old[0].type))
            return
        record = msgspec.json.decode(entry.value, type=PoolRecord)
        self._pool_entries[entry.key] = (record, entry.revision or 0)
        self._learn(record.host, record.epoch, lambda peer: self.engine.peer_joined_pool(peer, record.type))

    # ------------------------------------------------------------------ placements

    async def _place(self, op: ClaimPlacement) -> None:
        """Carry out a :class:`ClaimPlacement` and settle it in the engine."""
        holder: str | None
        why = ""
        try:
            if not self.linked:
                raise ConnectionError("the cluster link is down")
            holder = await self._retrying(lambda: self._claim_placement(op))
        except Exception as exc:
            holder, why = None, f"the cluster link is down ({exc})" if not self.linked else repr(exc)
            logger.warning("cluster: could not place %s/%s: %s", op.agent_type, op.key, why)
        now = self._loop.time()
        self.hub.drive(now, lambda engine: engine.placement_settled(op.claim, holder, why, now))
        self._flush()

    async def _claim_placement(self, op: ClaimPlacement) -> str:
        """Create the key's entry with the engine's proposal unless a live host holds it: the holder."""
        kv = self._placements_kv
        assert kv is not None
        epoch = self._epoch_of(op.host)
        if epoch is None:
            raise ConnectionError(f"host {op.host}, proposed for it, left the cluster a moment ago")
        key = placement_key(op.agent_type, op.key)
        value = msgspec.json.encode(PlacementRecord(op.host, epoch, op.agent_type, op.key))
        for _ in range(5):
            try:
                await kv.create(key, value)
                return op.host
            except nats.js.errors.KeyWrongLastSequenceError:
                pass
            try:
                entry = await kv.get(key)
            except nats.js.errors.KeyNotFoundError:
                continue  # deleted meanwhile: create again
            if entry.value:
                record = msgspec.json.decode(entry.value, type=PlacementRecord)
                if (record.type, record.key) != (op.agent_type, op.key):
                    raise ValueError(f"placement key {key} collides with {record.type}/{record.key}: not followed")
                if await self._holds(record.host, record.epoch):
                    return record.host
            try:  # void (its host's epoch is over): take it over unless someone else did first
                await kv.update(key, value, last=entry.revision)
                return op.host
            except nats.js.errors.KeyWrongLastSequenceError:
                continue
        raise RuntimeError("the placement lost five races in a row")

    def _epoch_of(self, host: str) -> int | None:
        if host == self.host:
            return self.epoch
        return next((e for (h, e) in self._peers if h == host), None)

    def _is_live(self, host: str, epoch: int) -> bool:
        """Whether ``host``/``epoch`` is our current epoch or a peer's we know to be alive."""
        return (host, epoch) == (self.host, self.epoch) or (host, epoch) in self._peers

    async def _holds(self, host: str, epoch: int) -> bool:
        """Whether an entry of ``host``/``epoch`` is valid: that epoch is alive."""
        if self._is_live(host, epoch):
            return True
        if host == self.host:
            return False  # an epoch of ours that ended
        return await self._alive(host, epoch)

    def _on_placement_entry(self, entry: Any) -> None:
        live = entry.operation not in DELETED and bool(entry.value)
        record = msgspec.json.decode(entry.value, type=PlacementRecord) if live else None
        old = self._placements.get(entry.key)
        now = self._loop.time()
        if old is not None and (record is None or old[0].host != record.host):
            del self._placements[entry.key]
            r = old[0]
            self.hub.drive(now, lambda e: e.placement_released(r.type, r.key, r.host))
        if record is None:
            return
        self._placements[entry.key] = (record, entry.revision or 0)
        if self._is_live(record.host, record.epoch):
            self.hub.drive(now, lambda e: e.placement_known(record.type, record.key, record.host))

    def _apply_pools_of(self, engine: HostEngine, peer: ClientId, host: str, epoch: int) -> None:
        """A host joined: its pool entries and placements apply now."""
        for record, _ in self._pool_entries.values():
            if (record.host, record.epoch) == (host, epoch):
                engine.peer_joined_pool(peer, record.type)
        for placement, _ in self._placements.values():
            if (placement.host, placement.epoch) == (host, epoch):
                engine.placement_known(placement.type, placement.key, host)

    async def _reclaim_pools_and_placements(self, shared_types: list[str]) -> None:
        """Under a new epoch: our pool entries again, and each placement we hold taken over from our
        old epoch (one another host took meanwhile is given up here, and logged)."""
        self._owned_pools.clear()
        for agent_type in shared_types:
            try:
                won, holder = await self._retrying(lambda t=agent_type: self._claim(t, True))  # type: ignore[misc]
                if won:
                    await self._retrying(lambda t=agent_type: self._join_pool(t))  # type: ignore[misc]
            except Exception as exc:
                logger.error("cluster: cannot rejoin the pool of %r (%r); its keys stay local", agent_type, exc)
                continue
            if not won:
                logger.error(
                    "cluster: agent type %r is held by %s while this host's workers share it; "
                    "calls to it from other hosts go there: stop one side",
                    agent_type,
                    holder,
                )
        kv = self._placements_kv
        assert kv is not None
        for agent_type, key in self.engine.placements_here():
            entry_key = placement_key(agent_type, key)
            value = msgspec.json.encode(PlacementRecord(self.host, self.epoch, agent_type, key))
            known = self._placements.get(entry_key)
            try:
                if known is None:
                    await self._retrying(lambda k=entry_key, v=value: kv.create(k, v))  # type: ignore[misc]
                elif known[0].host == self.host:
                    await self._retrying(lambda k=entry_key, v=value, r=known[1]: kv.update(k, v, last=r))  # type: ignore[misc]
                else:
                    raise nats.js.errors.KeyWrongLastSequenceError()
            except Exception as exc:
                if not isinstance(exc, (nats.js.errors.KeyWrongLastSequenceError, nats.js.errors.KeyNotFoundError)):
                    logger.error("cluster: cannot claim agent %s/%s again (%r)", agent_type, key, exc)
                    continue
                logger.error(
                    "cluster: agent %s/%s was placed on another host while this host was cut off; "
                    "its state here is no longer used",
                    agent_type,
                    key,
                )
                self._release_here(agent_type, key)

    def _release_here(self, agent_type: str, key: str) -> None:
        self.hub.drive(self._loop.time(), lambda e: e.placement_released(agent_type, key, self.host))

    async def _clean_pools_of(self, host: str, epoch: int) -> None:
        """Delete the pool entries and placements of a host's epoch that is over."""
        kv, placements_kv = self._pool_kv, self._placements_kv
        assert kv is not None and placements_kv is not None
        for key, (record, revision) in list(self._pool_entries.items()):
            if (record.host, record.epoch) == (host, epoch):
                with contextlib.suppress(Exception):
                    await kv.delete(key, last=revision)
        for key, (placement, revision) in list(self._placements.items()):
            if (placement.host, placement.epoch) == (host, epoch):
                with contextlib.suppress(Exception):
                    await placements_kv.delete(key, last=revision)


__all__ = ["PlacementSync"]
