"""The registry side of :class:`~._link.ClusterLink`: the engine's claims and releases carried out in
the key-value buckets, one at a time and in order, and the buckets' entries turned into engine
input (docs/CLUSTER.md section 7). A mixin: the state it uses is the link's, declared below."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
import nats.errors
import nats.js.errors
from nats.aio.client import Client as Nats
from nats.aio.msg import Msg
from nats.js.kv import KeyValue

from sansio_runtime import (
    AgentTypeReleased,
    ClaimAgentType,
    ClientId,
    ClusterOutput,
    HostEngine,
    SubscriptionAdded,
    SubscriptionRemoved,
)
from sansio_runtime._membership import Membership

from ..sansio import HostHub
from ._placement_sync import PlacementSync
from ._records import DELETED, ClusterSettings, SubscriptionRecord, TypeRecord, key_of, text_of

logger = logging.getLogger("io_backends.cluster")
T = TypeVar("T")

# What NATS answers while a client fails over to another server, or JetStream elects a new stream
# leader: nothing was decided, the write may be retried (docs/CLUSTER.md section 13, fact 14).
TRANSIENT = (
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    nats.errors.OutboundBufferLimitError,
    nats.errors.ConnectionReconnectingError,
    nats.js.errors.NoStreamResponseError,
    nats.js.errors.ServiceUnavailableError,
)
# How long a registry write is retried through such answers while the link is up: after the
# server that led a bucket's stream is SIGKILLed, the others elect a new leader once raft's
# election timeout runs out (measured 4.3-4.5 s), and until then every write fails.
ELECTION_WAIT = 15.0
# How often each bucket's watcher is checked for a stall (see :meth:`RegistrySync._watchdog`).
WATCH_CHECK = 1.0


class RegistrySync(PlacementSync):
    """Claims, releases and the watchers' entries, for :class:`~._link.ClusterLink`."""

    hub: HostHub
    engine: HostEngine
    settings: ClusterSettings
    membership: Membership
    host: str
    epoch: int
    linked: bool
    _loop: asyncio.AbstractEventLoop
    _flush: Callable[[], None]
    _types_kv: KeyValue | None
    _subs_kv: KeyValue | None
    _peers: dict[tuple[str, int], ClientId]
    _types: dict[str, tuple[TypeRecord, int]]
    _subs: dict[str, tuple[SubscriptionRecord, int]]
    _owned_types: dict[str, int]
    _owned_subs: dict[str, str]
    _ops: deque[ClusterOutput]
    _ops_ready: asyncio.Event
    _ops_idle: asyncio.Event
    _resyncing: bool
    _nc: Nats | None
    _subscriptions: list[Any]
    _watchers: list[Any]
    _closing: bool
    _claiming: str | None = None  # the agent type whose claim the queue is carrying out
    _delivered: dict[str, int]  # bucket -> the highest revision its watcher delivered

    # (the link's)
    def _pump(self) -> None:
        raise NotImplementedError

    def _take_cluster_outputs(self, outputs: list[ClusterOutput]) -> None:
        raise NotImplementedError

    def control_of(self, host: str, epoch: int) -> str:
        raise NotImplementedError

    @property
    def subject(self) -> str:
        raise NotImplementedError

    async def _on_frame(self, msg: Msg) -> None:
        raise NotImplementedError

    async def _on_control(self, msg: Msg) -> None:
        raise NotImplementedError

    async def _on_presence(self, msg: Msg) -> None:
        raise NotImplementedError

    async def _listen(self) -> None:
        """Subscribe to our subjects (for the current epoch) and watch both buckets afresh."""
        nc = self._nc
        assert nc is not None and self._types_kv is not None and self._subs_kv is not None
        assert self._pool_kv is not None and self._placements_kv is not None
        for sub in self._subscriptions:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._subscriptions = [
            await nc.subscribe(self.subject, cb=self._on_frame),
            await nc.subscribe(self.control_of(self.host, self.epoch), cb=self._on_control),
            await nc.subscribe(f"{self.settings.name}.presence", cb=self._on_presence),
        ]
        for cache in (self._types, self._subs, self._pool_entries, self._placements):
            cache.clear()
        await self._watch()
        await nc.flush()

    def _watched(self) -> list[tuple[str, KeyValue, Callable[[Any], None]]]:
        """Each bucket, and what its entries become (in this order: pools before placements)."""
        assert self._types_kv is not None and self._subs_kv is not None
        assert self._pool_kv is not None and self._placements_kv is not None
        return [
            ("types", self._types_kv, self._on_type_entry),
            ("subs", self._subs_kv, self._on_sub_entry),
            ("pool", self._pool_kv, self._on_pool_entry),
            ("placements", self._placements_kv, self._on_placement_entry),
        ]

    async def _watch(self) -> None:
        """Watch every bucket afresh: the current state first (up to the watcher's None), then a
        task follows each watcher. What each delivered is noted for :meth:`_watchdog`."""
        for watcher in self._watchers:
            with contextlib.suppress(Exception):
                await watcher.stop()
        self._watchers = []
        for name, kv, on_entry in self._watched():
            watcher = await kv.watchall()
            self._watchers.append(watcher)
            noted = self._noting(name, on_entry)
            while True:
                entry = await watcher.updates(timeout=self.settings.connect_timeout)  # type: ignore[no-untyped-call]
                if entry is None:
                    break
                noted(entry)
            self._spawn(self._follow(watcher, noted))

    def _noting(self, bucket: str, on_entry: Callable[[Any], None]) -> Callable[[Any], None]:
        delivered = self._delivered

        def noted(entry: Any) -> None:
            delivered[bucket] = max(delivered.get(bucket, 0), entry.revision or 0)
            on_entry(entry)

        return noted

    async def _follow(self, watcher: Any, on_entry: Callable[[Any], None]) -> None:
        async for entry in watcher:
            if entry is not None:
                on_entry(entry)

    async def _kv_worker(self) -> None:
        """The engine's requests for the registry, one at a time, in order."""
        ops = self._ops
        while True:
            await self._ops_ready.wait()
            self._ops_ready.clear()
            while ops:
                op = ops.popleft()
                try:
                    await self._retrying(lambda op=op: self._carry_out(op))  # type: ignore[misc]
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    logger.warning("cluster: registry update %s failed: %r", op, exc)
            self._ops_idle.set()

    async def _carry_out(self, op: ClusterOutput) -> None:
        types_kv, subs_kv = self._types_kv, self._subs_kv
        assert types_kv is not None and subs_kv is not None
        if isinstance(op, ClaimAgentType):
            try:
                self._claiming = op.agent_type
                won, holder = await self._claim_settling(op.agent_type, op.shared)
                if won and op.shared and op.agent_type not in self._owned_pools:
                    await self._join_pool(op.agent_type)
            except Exception as exc:
                # NATS unreachable: serve the type locally; it is claimed when the link is back.
                logger.warning("cluster: cannot claim agent type %r now (%r); claimed on re-sync", op.agent_type, exc)
                won, holder = True, ""
            finally:
                self._claiming = None
            now = self._loop.time()
            self.hub.drive(now, lambda engine: engine.claim_settled(op.claim, won, holder))
            known = self._types.get(op.agent_type)
            if not won and known is not None and not known[0].shared:  # the winner's entry, held back
                peer = self._peers.get((known[0].host, known[0].epoch))
                if peer is not None:
                    self.hub.drive(now, lambda engine: engine.peer_registered(peer, op.agent_type))
            self._flush()
        elif isinstance(op, AgentTypeReleased):
            revision = self._owned_types.pop(op.agent_type, None)
            if op.agent_type in self._owned_pools and await self._leave_pool(op.agent_type):
                known = self._types.get(op.agent_type)  # the last host of a shared type: its record goes
                revision = known[1] if known is not None and known[0].shared else None
            if revision is not None:
                with contextlib.suppress(nats.js.errors.KeyWrongLastSequenceError, nats.js.errors.KeyNotFoundError):
                    await types_kv.delete(key_of(op.agent_type), last=revision)
        elif isinstance(op, SubscriptionAdded):
            key = f"{self.host}.{self.epoch}.{key_of(op.subscription.id)}"
            self._owned_subs[op.subscription.id] = key
            await subs_kv.put(key, msgspec.json.encode(SubscriptionRecord(self.host, self.epoch, op.subscription)))
        elif isinstance(op, SubscriptionRemoved):
            sub_key = self._owned_subs.pop(op.subscription_id, None)
            if sub_key is not None:
                await subs_kv.delete(sub_key)

    async def _retrying(self, write: Callable[[], Awaitable[T]]) -> T:
        """``await write()``, retried while the link is up and NATS answers :data:`TRANSIENT`, for
        up to :data:`ELECTION_WAIT` seconds (nothing was written: a retry is safe)."""
        deadline = self._loop.time() + ELECTION_WAIT
        while True:
            try:
                return await write()
            except TRANSIENT:
                if not self.linked or self._closing or self._loop.time() >= deadline:
                    raise
            await asyncio.sleep(0.1)

    async def _claim_settling(self, agent_type: str, shared: bool = False) -> tuple[bool, str]:
        """:meth:`_claim` once the link is up, retried through an election. A link that is down is
        waited for up to ``dead_after`` (a failover to another server of a NATS cluster takes
        less), or up to :data:`ELECTION_WAIT` while the host re-syncs (it is connected again and
        waits for JetStream). Accepting the registration locally instead would give a race two
        winners; it is done only when NATS stays away (ConnectionError)."""
        give_up = self._loop.time() + ELECTION_WAIT
        while True:
            down_since = self._loop.time()
            while not self.linked:
                waited = self._loop.time() - down_since
                if self._closing or waited >= (ELECTION_WAIT if self._resyncing else self.settings.dead_after):
                    raise ConnectionError("the link to NATS is down")
                await asyncio.sleep(0.05)
            try:
                return await self._claim(agent_type, shared)
            except TRANSIENT:
                if self._closing or self._loop.time() >= give_up:
                    raise
            await asyncio.sleep(0.1)

    async def _claim(self, agent_type: str, shared: bool = False) -> tuple[bool, str]:
        """Make ``agent_type`` ours in the registry unless a live host holds it: (won, its holder).
        A ``shared`` claim wins a type that is shared already (the host joins its pool); either kind
        loses to a live holder of the other kind."""
        kv = self._types_kv
        assert kv is not None
        key, value = key_of(agent_type), msgspec.json.encode(TypeRecord(self.host, self.epoch, shared))
        for _ in range(5):
            try:
                self._owned_types[agent_type] = await kv.create(key, value)
                return True, ""
            except (nats.js.errors.KeyWrongLastSequenceError, nats.js.errors.KeyNotFoundError):
                pass  # taken (on a NATS cluster, create's re-read may miss the winner: KeyNotFoundError)
            try:
                entry = await kv.get(key)
            except nats.js.errors.KeyNotFoundError:
                continue  # deleted meanwhile: create again
            if entry.value:
                record = msgspec.json.decode(entry.value, type=TypeRecord)
                if record.shared:
                    if shared:
                        return True, ""  # (a pool to join)
                    sharers = [h for h, e in self.pool_hosts(agent_type) if h != self.host and await self._alive(h, e)]
                    if sharers:
                        return False, f"workers of host {sharers[0]}, shared"
                theirs = (record.host, record.epoch)
                if theirs == (self.host, self.epoch):
                    self._owned_types[agent_type] = entry.revision or 0
                    return True, ""
                if not record.shared and record.host != self.host and await self._alive(*theirs):
                    return False, f"host {record.host}" + (", not shared" if shared else "")
            # Free: its owner is gone (or it is our own earlier epoch). Take it over unless someone
            # else did first.
            try:
                self._owned_types[agent_type] = await kv.update(key, value, last=entry.revision)
                return True, ""
            except nats.js.errors.KeyWrongLastSequenceError:
                continue
        return False, "another host (the claim lost five races in a row)"

    async def _watchdog(self) -> None:
        """Watch the buckets afresh when a watcher stalls. A watcher is a nats-py ordered consumer
        on one server; when that server dies, the watcher delivers nothing until it has missed two
        5 s idle heartbeats (nats-py's, not settable through ``KeyValue.watch``), so this host
        would not see another host's entries for 10-20 s. Stalled: the bucket's last revision is
        ahead of what the watcher delivered, twice in a row with no delivery in between."""
        behind: dict[str, int] = {}
        while True:
            await asyncio.sleep(WATCH_CHECK)
            if not self.linked or self._resyncing or self._types_kv is None:
                behind.clear()
                continue
            stalled = False
            for name, kv, _ in self._watched():
                try:
                    last = (await kv.status()).stream_info.state.last_seq
                except Exception:  # JetStream busy (an election): look again next time
                    continue
                seen = self._delivered.get(name, 0)
                if last > seen and behind.get(name) == seen:
                    stalled = True
                behind[name] = seen if last > seen else -1
            if stalled:
                behind.clear()
                try:
                    await self._rewatch()
                except Exception as exc:
                    logger.debug("cluster: watching the registry afresh failed (%r); trying again", exc)

    async def _rewatch(self) -> None:
        logger.warning("cluster: a registry watcher stalled (its NATS server went?); watching afresh")
        await self._watch()  # (the latest entry of each key, tombstones too, then every change)

    def _on_type_entry(self, entry: Any) -> None:
        agent_type = text_of(entry.key)
        if entry.operation in DELETED or not entry.value:
            old = self._types.pop(agent_type, None)
            if old is not None:
                peer = self._peers.get((old[0].host, old[0].epoch))
                if peer is not None:
                    self.hub.drive(self._loop.time(), lambda e: e.peer_unregistered(peer, agent_type))
            return
        record = msgspec.json.decode(entry.value, type=TypeRecord)
        old = self._types.get(agent_type)
        if old is not None and (old[0].host, old[0].epoch) != (record.host, record.epoch):
            # Taken over (e.g. by the new epoch of its host after a re-sync): the old holder, if it
            # is still a peer here, holds it no more, or the new holder could not be recorded.
            was = self._peers.get((old[0].host, old[0].epoch))
            if was is not None:
                self.hub.drive(self._loop.time(), lambda e: e.peer_unregistered(was, agent_type))
        self._types[agent_type] = (record, entry.revision or 0)
        if not record.shared:  # (a shared type's hosts are its pool entries)
            self._learn(record.host, record.epoch, lambda peer: self.engine.peer_registered(peer, agent_type))

    def _on_sub_entry(self, entry: Any) -> None:
        if entry.operation in DELETED or not entry.value:
            old = self._subs.pop(entry.key, None)
            if old is not None:
                peer = self._peers.get((old[0].host, old[0].epoch))
                sid = old[0].subscription.id
                if peer is not None:
                    self.hub.drive(self._loop.time(), lambda e: e.peer_unsubscribed(peer, sid))
            return
        record = msgspec.json.decode(entry.value, type=SubscriptionRecord)
        self._subs[entry.key] = (record, entry.revision or 0)
        self._learn(record.host, record.epoch, lambda peer: self.engine.peer_subscribed(peer, record.subscription))

    def _learn(self, host: str, epoch: int, apply: Callable[[ClientId], object]) -> None:
        """Apply a registry entry of ``host``/``epoch`` now if it is a live peer (else when it joins)."""
        if host == self.host:
            return  # ours (or an earlier epoch of ours, taken over on re-claim)
        peer = self._peers.get((host, epoch))
        if peer is not None:
            apply(peer)
            return
        if not self.linked:
            return
        # An entry is news of its owner: it joins now and is probed at once (a dead one is gone
        # within a round trip; it applies its entries when it joins).
        self.membership.heartbeat(host, epoch, self._loop.time())
        self._pump()
        if (host, epoch) in self._peers:
            self._spawn(self._alive(host, epoch))

    async def _resync(self, rejoin: bool = False) -> None:
        """The link is back (or, ``rejoin``, the others declared our epoch gone while we were frozen):
        a new epoch, new subscriptions and watchers, our records claimed again."""
        if self.linked != rejoin or self._resyncing:
            return
        self._resyncing = True
        try:
            await self._start_epoch(rejoin)
        finally:
            self._resyncing = False

    async def _start_epoch(self, rejoin: bool) -> None:
        self.epoch = max(time.time_ns(), self.epoch + 1)
        if rejoin:  # every peer's session with our old epoch ends (REJOINED)
            logger.warning("cluster: the other hosts declared this host gone (it was frozen?); rejoining")
            self.membership.rejoin(self.epoch, self._loop.time())
            self._pump()
        # Retried until it works: after a NATS server is lost, JetStream answers nothing (its
        # watchers' consumers cannot be made) until the buckets' streams elect new leaders. The
        # first heartbeat of the new epoch goes out once we listen on its subjects.
        for attempt in itertools.count():
            try:
                await self._listen()
                break
            except Exception as exc:
                if self._closing:
                    return
                log = logger.warning if attempt == 0 else logger.debug
                log("cluster: re-sync after the link came back failed (%r); retrying every 0.25 s", exc)
                await asyncio.sleep(0.25)
        if not rejoin:
            self.membership.link_restored(self.epoch, self._loop.time())
        self.linked = True
        self.engine.set_cluster_link(True)
        # Everything this host's workers hold, under the new epoch (the old entries are taken over).
        # (not those with a claim queued or under way: the queue claims them and answers their worker)
        queued = {op.agent_type for op in self._ops if isinstance(op, ClaimAgentType)} | {self._claiming}
        mine = [
            t for t, owner in self.engine.agent_types().items() if not self.engine.is_peer(owner) and t not in queued
        ]
        self._owned_types.clear()
        old_subs = list(self._owned_subs.values())
        self._owned_subs.clear()
        subs_kv = self._subs_kv
        assert subs_kv is not None
        for key in old_subs:
            with contextlib.suppress(Exception):
                await subs_kv.delete(key)
        await self._reclaim_pools_and_placements(list(self.engine.shared_agent_types()))
        for agent_type in mine:
            try:
                won, holder = await self._retrying(lambda t=agent_type: self._claim(t))  # type: ignore[misc]
            except Exception as exc:
                logger.error("cluster: cannot claim agent type %r again (%r); its calls stay local", agent_type, exc)
                continue
            if not won:
                logger.error(
                    "cluster: agent type %r was taken over by %s while this host was cut off; its worker "
                    "here is told, and the type is routed there",
                    agent_type,
                    holder,
                )
                self._give_up(agent_type, holder)
        for spec in self.engine.subscriptions():
            owner = self.engine.subscription_owner(spec.id)
            if owner is not None and not self.engine.is_peer(owner):
                self._take_cluster_outputs([SubscriptionAdded(spec)])
        self._pump()
        logger.warning("cluster: re-synced with the cluster as epoch %d", self.epoch)

    def _give_up(self, agent_type: str, holder: str) -> None:
        """Our worker's type belongs to another host now: the engine takes it back from the worker
        (telling it), and routes the type to the holder if that host is a peer already."""
        known = self._types.get(agent_type)
        peer = None if known is None else self._peers.get((known[0].host, known[0].epoch))

        def apply(engine: HostEngine) -> None:
            engine.type_lost(agent_type, holder)
            if peer is not None:
                engine.peer_registered(peer, agent_type)

        self.hub.drive(self._loop.time(), apply)
        self._flush()

    async def _clean(self, host: str, epoch: int) -> None:
        types_kv, subs_kv = self._types_kv, self._subs_kv
        assert types_kv is not None and subs_kv is not None
        await self._clean_pools_of(host, epoch)
        for agent_type, (record, revision) in list(self._types.items()):
            if (record.host, record.epoch) == (host, epoch) and not record.shared:
                with contextlib.suppress(Exception):
                    await types_kv.delete(key_of(agent_type), last=revision)
        for key, (sub, revision) in list(self._subs.items()):
            if (sub.host, sub.epoch) == (host, epoch):
                with contextlib.suppress(Exception):
                    await subs_kv.delete(key, last=revision)


__all__ = ["RegistrySync"]
