"""ClusterLink: one host's link to the others over NATS (docs/CLUSTER.md), on asyncio with nats-py.

It is a driver like the socket drivers: NATS messages and key-value changes become input to the
host's engine (through its :class:`~io_backends.sansio.HostHub`), and the engine's output for
other hosts becomes NATS messages and key-value writes. It decides nothing about the wire. Its
only state machine, who is alive, is the pure :class:`~sansio_runtime._membership.Membership`.

* Frames for host ``h`` (incarnation ``e``) are published on ``<c>.host.<h>.<e>`` with the reply
  subject set to our own; a frame to nobody comes back from the server as a 503, which ends that
  peer at once.
* Heartbeats and goodbyes on ``<c>.presence``; probes (``ping``) on ``<c>.ctl.<h>.<e>``.
* Agent types in the key-value bucket ``<c>_types`` (create-if-absent: one host wins; an entry is
  valid while its owner's epoch is alive), subscriptions in ``<c>_subs``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import re
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as Nats
from nats.aio.msg import Msg
from nats.js.kv import KeyValue

from sansio_runtime import (
    AgentTypeReleased,
    ClaimAgentType,
    ClientId,
    Close,
    CloseCode,
    ClusterOutput,
    HostEngine,
    Send,
    SubscriptionAdded,
    SubscriptionRemoved,
    SubscriptionSpec,
)
from sansio_runtime._membership import (
    DEFAULT_DEAD_AFTER,
    DEFAULT_HEARTBEAT_INTERVAL,
    DEFAULT_SUSPECT_AFTER,
    GoneReason,
    HostGone,
    HostJoined,
    Membership,
    NameConflict,
    ProbeHost,
    SendHeartbeat,
    StaleEpoch,
)

from ..sansio import HostHub

logger = logging.getLogger("io_backends.cluster")

_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_DELETED = ("DEL", "PURGE")
_PING, _PONG = b"ping", b"pong"


def default_host_name(port: int) -> str:
    """``<hostname>-<port>``, cut to the characters a NATS subject token may hold."""
    base = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())[:50] or "host"
    return f"{base}-{port}"


def _key(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


def _unkey(key: str) -> str:
    return base64.urlsafe_b64decode(key + "=" * (-len(key) % 4)).decode()


class TypeRecord(msgspec.Struct, frozen=True):
    """The value of an agent type's key in ``<c>_types``: who hosts it."""

    host: str
    epoch: int


class SubscriptionRecord(msgspec.Struct, frozen=True):
    """The value of a key in ``<c>_subs``: one subscription of a worker of ``host``."""

    host: str
    epoch: int
    subscription: SubscriptionSpec


class Presence(msgspec.Struct, frozen=True):
    """A heartbeat (or a goodbye) on ``<c>.presence``."""

    host: str
    epoch: int
    goodbye: bool = False


@dataclass(frozen=True)
class ClusterSettings:
    """How a host joins its cluster (defaults: docs/CLUSTER.md section 11)."""

    url: str
    """The NATS server(s): ``nats://host:4222``, several separated by commas."""
    name: str = "agrt"
    """The cluster's name: the prefix of every subject and bucket (hosts with other names do not meet)."""
    host_name: str | None = None
    """This host's name, unique in the cluster (default ``<hostname>-<port>``)."""
    heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL
    suspect_after: float = DEFAULT_SUSPECT_AFTER
    dead_after: float = DEFAULT_DEAD_AFTER
    connect_timeout: float = 5.0

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"cluster name {self.name!r}: use 1-64 of A-Z a-z 0-9 _ -")
        if self.host_name is not None and not _NAME.fullmatch(self.host_name):
            raise ValueError(f"host name {self.host_name!r}: use 1-64 of A-Z a-z 0-9 _ -")


class ClusterLink:
    """One host's membership of a cluster (see the module docs). Runs on the host's asyncio loop."""

    def __init__(self, hub: HostHub, flush: Callable[[], None], settings: ClusterSettings, *, port: int) -> None:
        self.hub = hub
        self.engine: HostEngine = hub.engine
        self._flush = flush
        self.settings = settings
        self.host = settings.host_name or default_host_name(port)
        self._loop = asyncio.get_running_loop()
        self._nc: Nats | None = None
        self._types_kv: KeyValue | None = None
        self._subs_kv: KeyValue | None = None
        self.epoch = time.time_ns()
        self.membership = Membership(
            self.host,
            self.epoch,
            self._loop.time(),
            heartbeat_interval=settings.heartbeat_interval,
            suspect_after=settings.suspect_after,
            dead_after=settings.dead_after,
        )
        self._peers: dict[tuple[str, int], ClientId] = {}
        self._by_subject: dict[str, tuple[str, int]] = {}
        self._types: dict[str, tuple[TypeRecord, int]] = {}  # agent type -> its entry and revision
        self._subs: dict[str, tuple[SubscriptionRecord, int]] = {}  # key -> entry, revision
        self._owned_types: dict[str, int] = {}  # our types -> the revision we wrote
        self._owned_subs: dict[str, str] = {}  # our subscription ids -> their keys
        self._out: deque[tuple[str, bytes]] = deque()
        self._out_ready = asyncio.Event()
        self._ops: deque[ClusterOutput] = deque()
        self._ops_ready = asyncio.Event()
        self._ops_idle = asyncio.Event()
        self._ops_idle.set()
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[Any]] = set()
        self._subscriptions: list[Any] = []
        self._watchers: list[Any] = []
        self._closing = False
        self._leaving = False
        self.linked = False

    # ------------------------------------------------------------------ names

    def subject_of(self, host: str, epoch: int) -> str:
        return f"{self.settings.name}.host.{host}.{epoch}"

    def control_of(self, host: str, epoch: int) -> str:
        return f"{self.settings.name}.ctl.{host}.{epoch}"

    @property
    def subject(self) -> str:
        return self.subject_of(self.host, self.epoch)

    # ------------------------------------------------------------------ life

    async def start(self) -> None:
        """Connect, make the buckets, listen, read the registry, and say we are here."""
        s = self.settings
        self.engine.enable_cluster()
        self.hub.set_cluster_sink(self._take_cluster_outputs)
        try:
            # (bounded: with reconnects on for good, nats-py would retry a first connect forever)
            self._nc = await asyncio.wait_for(self._connect(), s.connect_timeout)
        except Exception as exc:
            why = "no answer" if isinstance(exc, asyncio.TimeoutError) else str(exc) or type(exc).__name__
            raise ConnectionError(
                f"cannot reach the cluster's NATS server at {s.url} within {s.connect_timeout:g}s ({why}): "
                "start nats-server with JetStream (nats-server -js; the 'cluster' extra installs it) or check --cluster"
            ) from exc
        js = self._nc.jetstream()
        try:
            self._types_kv = await self._bucket(js, f"{s.name}_types")
            self._subs_kv = await self._bucket(js, f"{s.name}_subs")
        except Exception as exc:
            await self._nc.close()
            raise ConnectionError(
                f"the NATS server at {s.url} has no JetStream key-value store ({exc!r}): start it with -js"
            ) from exc
        await self._listen()
        self.linked = True
        self.engine.set_cluster_link(True)
        self._tasks = [
            self._loop.create_task(self._writer()),
            self._loop.create_task(self._kv_worker()),
            self._loop.create_task(self._timer()),
        ]
        self._pump()

    async def _connect(self) -> Nats:
        s = self.settings
        return await nats.connect(
            servers=[u.strip() for u in s.url.split(",") if u.strip()],
            name=f"autogen-http-host {self.host}",
            connect_timeout=s.connect_timeout,
            allow_reconnect=True,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.05,
            ping_interval=1,
            max_outstanding_pings=2,
            pending_size=0,  # while disconnected, fail at once instead of sending ghosts later
            disconnected_cb=self._link_lost,
            reconnected_cb=self._on_reconnected,
            error_cb=self._on_error,
        )

    async def leave(self) -> None:
        """Say goodbye (the host is shutting down): the other hosts end us at once, so calls they
        have pending here fail now rather than when we fall silent. No more heartbeats."""
        if self._leaving:
            return
        self._leaving = True
        nc = self._nc
        if nc is not None and nc.is_connected:
            with contextlib.suppress(Exception):
                await nc.publish(
                    f"{self.settings.name}.presence", msgspec.json.encode(Presence(self.host, self.epoch, True))
                )
                await nc.flush(timeout=1)

    async def stop(self) -> None:
        """Leave (if not done yet), take our records out of the registry (after the host closed its
        workers: their releases are queued), and close the NATS connection."""
        if self._closing:
            return
        await self.leave()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._drained(), 2.0)
        self._closing = True
        nc = self._nc
        for task in [*self._tasks, *self._background]:
            task.cancel()
        for task in [*self._tasks, *self._background]:
            with contextlib.suppress(BaseException):
                await task
        for watcher in self._watchers:
            with contextlib.suppress(Exception):
                await watcher.stop()
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.close()
        self.hub.set_cluster_sink(None)

    async def _drained(self) -> None:
        while self._ops or not self._ops_idle.is_set() or self._out:
            await asyncio.sleep(0.01)

    @staticmethod
    async def _bucket(js: Any, bucket: str) -> KeyValue:
        try:
            kv: KeyValue = await js.key_value(bucket)
            return kv
        except nats.js.errors.BucketNotFoundError:
            created: KeyValue = await js.create_key_value(bucket=bucket, history=1)
            return created

    async def _listen(self) -> None:
        """Subscribe to our subjects (for the current epoch) and watch both buckets afresh."""
        nc = self._nc
        assert nc is not None and self._types_kv is not None and self._subs_kv is not None
        for sub in self._subscriptions:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        for watcher in self._watchers:
            with contextlib.suppress(Exception):
                await watcher.stop()
        self._subscriptions = [
            await nc.subscribe(self.subject, cb=self._on_frame),
            await nc.subscribe(self.control_of(self.host, self.epoch), cb=self._on_control),
            await nc.subscribe(f"{self.settings.name}.presence", cb=self._on_presence),
        ]
        self._types.clear()
        self._subs.clear()
        types_watch = await self._types_kv.watchall()
        subs_watch = await self._subs_kv.watchall()
        self._watchers = [types_watch, subs_watch]
        # The current state first (up to the watcher's None), so the host starts knowing the registry.
        for watcher, on_entry in ((types_watch, self._on_type_entry), (subs_watch, self._on_sub_entry)):
            while True:
                entry = await watcher.updates(timeout=self.settings.connect_timeout)  # type: ignore[no-untyped-call]
                if entry is None:
                    break
                on_entry(entry)
            self._spawn(self._follow(watcher, on_entry))
        await nc.flush()

    def _spawn(self, coro: Any) -> None:
        task = self._loop.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _follow(self, watcher: Any, on_entry: Callable[[Any], None]) -> None:
        async for entry in watcher:
            if entry is not None:
                on_entry(entry)

    # ------------------------------------------------------------------ the engine's side

    def _take_cluster_outputs(self, outputs: list[ClusterOutput]) -> None:
        self._ops.extend(outputs)
        self._ops_idle.clear()
        self._ops_ready.set()

    def _sink(self, host: str, epoch: int) -> Callable[[Send | Close], None]:
        subject = self.subject_of(host, epoch)

        def sink(out: Send | Close) -> None:
            if isinstance(out, Send):
                self._out.append((subject, out.data))
                self._out_ready.set()
            elif out.code is CloseCode.GOING_AWAY:  # this host shuts down (the goodbye tells the others)
                self._loop.call_soon(self._end_peer, host, epoch)
            else:  # the engine refused that host's input (a protocol error): it is a peer no more
                logger.error("cluster: host %s sent what this host cannot accept (%s); leaving it", host, out.reason)
                self._loop.call_soon(self._end_peer, host, epoch)

        return sink

    def _end_peer(self, host: str, epoch: int) -> None:
        peer = self._peers.pop((host, epoch), None)
        if peer is not None:
            self._by_subject.pop(self.subject_of(host, epoch), None)
            self.hub.remove_peer(peer, self._loop.time())
            self._flush()

    async def _writer(self) -> None:
        """Frames for other hosts, published in the order the engine queued them."""
        out = self._out
        while True:
            await self._out_ready.wait()
            self._out_ready.clear()
            nc = self._nc
            assert nc is not None
            while out:
                subject, data = out.popleft()
                try:
                    await nc.publish(subject, data, reply=self.subject)
                except Exception as exc:  # link down: the calls in it fail when the link loss is handled
                    logger.debug("cluster: frame to %s not sent: %r", subject, exc)

    async def _kv_worker(self) -> None:
        """The engine's requests for the registry, one at a time, in order."""
        ops = self._ops
        while True:
            await self._ops_ready.wait()
            self._ops_ready.clear()
            while ops:
                op = ops.popleft()
                try:
                    await self._carry_out(op)
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
                if not self.linked:
                    raise ConnectionError("the link to NATS is down")
                won, holder = await self._claim(op.agent_type)
            except Exception as exc:
                # NATS unreachable: serve the type locally; it is claimed when the link is back.
                logger.warning("cluster: cannot claim agent type %r now (%r); claimed on re-sync", op.agent_type, exc)
                won, holder = True, ""
            now = self._loop.time()
            self.hub.drive(now, lambda engine: engine.claim_settled(op.claim, won, holder))
            known = self._types.get(op.agent_type)
            if not won and known is not None:  # the winner's entry, held back while our claim was open
                peer = self._peers.get((known[0].host, known[0].epoch))
                if peer is not None:
                    self.hub.drive(now, lambda engine: engine.peer_registered(peer, op.agent_type))
            self._flush()
        elif isinstance(op, AgentTypeReleased):
            revision = self._owned_types.pop(op.agent_type, None)
            if revision is not None:
                with contextlib.suppress(nats.js.errors.KeyWrongLastSequenceError, nats.js.errors.KeyNotFoundError):
                    await types_kv.delete(_key(op.agent_type), last=revision)
        elif isinstance(op, SubscriptionAdded):
            key = f"{self.host}.{self.epoch}.{_key(op.subscription.id)}"
            self._owned_subs[op.subscription.id] = key
            await subs_kv.put(key, msgspec.json.encode(SubscriptionRecord(self.host, self.epoch, op.subscription)))
        elif isinstance(op, SubscriptionRemoved):
            sub_key = self._owned_subs.pop(op.subscription_id, None)
            if sub_key is not None:
                await subs_kv.delete(sub_key)

    async def _claim(self, agent_type: str) -> tuple[bool, str]:
        """Make ``agent_type`` ours in the registry unless a live host holds it: (won, its holder)."""
        kv = self._types_kv
        assert kv is not None
        key, value = _key(agent_type), msgspec.json.encode(TypeRecord(self.host, self.epoch))
        for _ in range(5):
            try:
                self._owned_types[agent_type] = await kv.create(key, value)
                return True, ""
            except nats.js.errors.KeyWrongLastSequenceError:
                pass
            try:
                entry = await kv.get(key)
            except nats.js.errors.KeyNotFoundError:
                continue  # deleted meanwhile: create again
            if entry.value:
                record = msgspec.json.decode(entry.value, type=TypeRecord)
                theirs = (record.host, record.epoch)
                if theirs == (self.host, self.epoch):
                    self._owned_types[agent_type] = entry.revision or 0
                    return True, ""
                if record.host != self.host and await self._alive(*theirs):
                    return False, f"host {record.host}"
            # Free: its owner is gone (or it is our own earlier epoch). Take it over unless someone
            # else did first.
            try:
                self._owned_types[agent_type] = await kv.update(key, value, last=entry.revision)
                return True, ""
            except nats.js.errors.KeyWrongLastSequenceError:
                continue
        return False, "another host (the claim lost five races in a row)"

    async def _alive(self, host: str, epoch: int) -> bool:
        """Whether ``host`` under ``epoch`` answers a probe now (a timeout counts as alive)."""
        nc = self._nc
        assert nc is not None
        try:
            await nc.request(self.control_of(host, epoch), _PING, timeout=self.settings.dead_after)
        except nats.errors.NoRespondersError:
            self.membership.probe_failed(host, epoch, self._loop.time())
            self._pump()
            return False
        except (nats.errors.TimeoutError, asyncio.TimeoutError):
            return True
        self.membership.heartbeat(host, epoch, self._loop.time())
        self._pump()
        return True

    # ------------------------------------------------------------------ NATS input

    async def _on_frame(self, msg: Msg) -> None:
        now = self._loop.time()
        headers = msg.headers
        if headers and headers.get("Status") == "503":  # a frame of ours found nobody: that host is gone
            gone = self._by_subject.get(headers.get("Nats-Subject", ""))
            if gone is not None:
                self.membership.probe_failed(gone[0], gone[1], now)
                self._pump()
            return
        sender = self._sender(msg.reply)
        if sender is None:
            logger.debug("cluster: dropped a frame with reply subject %r", msg.reply)
            return
        peer = self._peers.get(sender)
        if peer is None:  # a frame is news of its sender (it may have joined a moment ago)
            self.membership.heartbeat(sender[0], sender[1], now)
            self._pump()
            peer = self._peers.get(sender)
            if peer is None:
                return  # a retired epoch: its frames are void
        self.hub.peer_frame(peer, msg.data, now)
        self._flush()

    def _sender(self, reply: str) -> tuple[str, int] | None:
        prefix = f"{self.settings.name}.host."
        if not reply.startswith(prefix):
            return None
        host, _, epoch = reply[len(prefix) :].partition(".")
        if not _NAME.fullmatch(host) or not epoch.isdigit():
            return None
        return host, int(epoch)

    async def _on_control(self, msg: Msg) -> None:
        if msg.data == _PING and msg.reply:
            with contextlib.suppress(Exception):
                await msg.respond(_PONG)

    async def _on_presence(self, msg: Msg) -> None:
        try:
            beat = msgspec.json.decode(msg.data, type=Presence)
        except msgspec.DecodeError:
            return
        now = self._loop.time()
        if beat.goodbye:
            self.membership.goodbye(beat.host, beat.epoch, now)
        else:
            self.membership.heartbeat(beat.host, beat.epoch, now)
        self._pump()

    def _on_type_entry(self, entry: Any) -> None:
        agent_type = _unkey(entry.key)
        if entry.operation in _DELETED or not entry.value:
            old = self._types.pop(agent_type, None)
            if old is not None:
                peer = self._peers.get((old[0].host, old[0].epoch))
                if peer is not None:
                    self.hub.drive(self._loop.time(), lambda e: e.peer_unregistered(peer, agent_type))
            return
        record = msgspec.json.decode(entry.value, type=TypeRecord)
        self._types[agent_type] = (record, entry.revision or 0)
        self._learn(record.host, record.epoch, lambda peer: self.engine.peer_registered(peer, agent_type))

    def _on_sub_entry(self, entry: Any) -> None:
        if entry.operation in _DELETED or not entry.value:
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

    async def _link_lost(self) -> None:
        if self._closing or not self.linked:
            return
        logger.warning("cluster: the link to NATS (%s) is down; serving local traffic only", self.settings.url)
        self.linked = False
        self.engine.set_cluster_link(False)
        self.membership.link_lost(self._loop.time())
        self._pump()

    async def _on_reconnected(self) -> None:
        if self._closing:
            return
        self._spawn(self._resync())

    async def _resync(self) -> None:
        """The link is back: a new epoch, new subscriptions and watchers, our records claimed again."""
        if self.linked:
            return
        self.epoch = max(time.time_ns(), self.epoch + 1)
        self.membership.link_restored(self.epoch, self._loop.time())
        try:
            await self._listen()
        except Exception as exc:
            logger.error("cluster: re-sync after the link came back failed: %r", exc)
            return
        self.linked = True
        self.engine.set_cluster_link(True)
        # Everything this host's workers hold, under the new epoch (the old entries are taken over).
        mine = [t for t, owner in self.engine.agent_types().items() if not self.engine.is_peer(owner)]
        self._owned_types.clear()
        old_subs = list(self._owned_subs.values())
        self._owned_subs.clear()
        subs_kv = self._subs_kv
        assert subs_kv is not None
        for key in old_subs:
            with contextlib.suppress(Exception):
                await subs_kv.delete(key)
        for agent_type in mine:
            won, holder = await self._claim(agent_type)
            if not won:
                logger.error(
                    "cluster: agent type %r was taken over by %s while this host was cut off; "
                    "restart the worker that hosts it here",
                    agent_type,
                    holder,
                )
        for spec in self.engine.subscriptions():
            owner = self.engine.subscription_owner(spec.id)
            if owner is not None and not self.engine.is_peer(owner):
                self._take_cluster_outputs([SubscriptionAdded(spec)])
        self._pump()
        logger.warning("cluster: the link to NATS is back; re-synced as epoch %d", self.epoch)

    async def _on_error(self, exc: Exception) -> None:
        logger.debug("cluster: nats-py reports %r", exc)

    # ------------------------------------------------------------------ membership

    async def _timer(self) -> None:
        membership = self.membership
        while True:
            deadline = membership.next_deadline()
            now = self._loop.time()
            wait = self.settings.heartbeat_interval if deadline is None else deadline - now
            await asyncio.sleep(max(0.0, min(wait, self.settings.heartbeat_interval)))
            membership.handle_timer(self._loop.time())
            self._pump()

    def _pump(self) -> None:
        """Act on what the membership decided."""
        now = self._loop.time()
        for event in self.membership.take_events():
            if isinstance(event, SendHeartbeat):
                self._spawn(self._beat(event.epoch))
            elif isinstance(event, HostJoined):
                self._joined(event.host, event.epoch, now)
            elif isinstance(event, HostGone):
                self._gone(event.host, event.epoch, event.reason)
            elif isinstance(event, ProbeHost):
                self._spawn(self._alive(event.host, event.epoch))
            elif isinstance(event, StaleEpoch):
                logger.debug("cluster: ignored host %s under its retired epoch %d", event.host, event.epoch)
            elif isinstance(event, NameConflict):
                logger.error(
                    "cluster: another host also calls itself %r: give each host its own --host-name", event.host
                )
        self._flush()

    async def _beat(self, epoch: int) -> None:
        nc = self._nc
        if nc is None or self._leaving:
            return
        with contextlib.suppress(Exception):
            await nc.publish(f"{self.settings.name}.presence", msgspec.json.encode(Presence(self.host, epoch)))

    def _joined(self, host: str, epoch: int, now: float) -> None:
        peer = self.hub.add_peer(f"host {host}", self._sink(host, epoch))
        self._peers[(host, epoch)] = peer
        self._by_subject[self.subject_of(host, epoch)] = (host, epoch)
        logger.info("cluster: host %s (epoch %d) joined", host, epoch)

        def apply(engine: HostEngine) -> None:
            for agent_type, (record, _) in self._types.items():
                if (record.host, record.epoch) == (host, epoch):
                    engine.peer_registered(peer, agent_type)
            for sub, _ in self._subs.values():
                if (sub.host, sub.epoch) == (host, epoch):
                    engine.peer_subscribed(peer, sub.subscription)

        self.hub.drive(now, apply)

    def _gone(self, host: str, epoch: int, reason: GoneReason) -> None:
        logger.warning("cluster: host %s (epoch %d) is gone (%s)", host, epoch, reason.value)
        self._end_peer(host, epoch)
        if reason in (GoneReason.LINK_LOST, GoneReason.REJOINED):
            return
        # Its records are void already; the survivors delete them (the first one wins, the others
        # see a newer revision and stop).
        self._spawn(self._clean(host, epoch))

    async def _clean(self, host: str, epoch: int) -> None:
        types_kv, subs_kv = self._types_kv, self._subs_kv
        assert types_kv is not None and subs_kv is not None
        for agent_type, (record, revision) in list(self._types.items()):
            if (record.host, record.epoch) == (host, epoch):
                with contextlib.suppress(Exception):
                    await types_kv.delete(_key(agent_type), last=revision)
        for key, (sub, revision) in list(self._subs.items()):
            if (sub.host, sub.epoch) == (host, epoch):
                with contextlib.suppress(Exception):
                    await subs_kv.delete(key, last=revision)


__all__ = ["ClusterLink", "ClusterSettings", "default_host_name"]
