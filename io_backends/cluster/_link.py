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
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import msgspec
import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as Nats
from nats.aio.msg import Msg
from nats.js.kv import KeyValue

from sansio_runtime import (
    ClaimPlacement,
    ClientId,
    Close,
    CloseCode,
    ClusterOutput,
    HostEngine,
    Send,
)
from sansio_runtime._membership import (
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
from ._buckets import open_bucket
from ._records import (
    NAME,
    PING,
    PONG,
    STALE,
    ClusterSettings,
    PlacementRecord,
    PoolRecord,
    Presence,
    SubscriptionRecord,
    TypeRecord,
    default_host_name,
)
from ._registry_sync import ELECTION_WAIT, TRANSIENT, RegistrySync

logger = logging.getLogger("io_backends.cluster")


class ClusterLink(RegistrySync):
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
        self._pool_kv: KeyValue | None = None
        self._placements_kv: KeyValue | None = None
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
        self._pool_entries: dict[str, tuple[PoolRecord, int]] = {}  # key -> entry, revision
        self._placements: dict[str, tuple[PlacementRecord, int]] = {}  # key -> entry, revision
        self._owned_pools: dict[str, int] = {}  # shared types we have members of -> our entry's revision
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
        self._delivered: dict[str, int] = {}
        self._closing = False
        self._leaving = False
        self._resyncing = False
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
        self.engine.enable_cluster(self.host)
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
            self._pool_kv = await self._bucket(js, f"{s.name}_pool")
            self._placements_kv = await self._bucket(js, f"{s.name}_placements")
        except ConnectionError:  # too few servers for the replicas asked for
            await self._nc.close()
            raise
        except Exception as exc:
            await self._nc.close()
            raise ConnectionError(
                f"the NATS server at {s.url} gave no JetStream key-value store within {ELECTION_WAIT:g}s ({exc!r}): "
                "start it with -js (on a NATS cluster: on every server, and let it elect its JetStream leader)"
            ) from exc
        await self._listen()
        self.linked = True
        self.engine.set_cluster_link(True)
        self._tasks = [
            self._loop.create_task(self._writer()),
            self._loop.create_task(self._kv_worker()),
            self._loop.create_task(self._timer()),
            self._loop.create_task(self._watchdog()),
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

    async def _bucket(self, js: Any, bucket: str) -> KeyValue:
        """The bucket, retried while JetStream is not ready (a NATS cluster that has just started
        elects its JetStream leader a few seconds after its routes are up) for up to
        :data:`~._registry_sync.ELECTION_WAIT` seconds."""
        assert self._nc is not None
        give_up = self._loop.time() + ELECTION_WAIT
        while True:
            try:
                return await open_bucket(self._nc, js, bucket, self.settings)
            except TRANSIENT:
                if self._loop.time() >= give_up:
                    raise
            await asyncio.sleep(0.2)

    def _spawn(self, coro: Any) -> None:
        task = self._loop.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # ------------------------------------------------------------------ the engine's side

    def _take_cluster_outputs(self, outputs: list[ClusterOutput]) -> None:
        placements = [op for op in outputs if isinstance(op, ClaimPlacement)]
        if placements:  # (independent of each other and of the rest: carried out at once, side by side)
            for op in placements:
                self._spawn(self._place(op))
            outputs = [op for op in outputs if not isinstance(op, ClaimPlacement)]
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

    async def _alive(self, host: str, epoch: int) -> bool:
        """Whether ``host`` under ``epoch`` answers a probe now (a timeout counts as alive)."""
        nc = self._nc
        assert nc is not None
        try:
            await nc.request(self.control_of(host, epoch), PING, timeout=self.settings.dead_after)
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
        if not NAME.fullmatch(host) or not epoch.isdigit():
            return None
        return host, int(epoch)

    async def _on_control(self, msg: Msg) -> None:
        if msg.data == PING and msg.reply:
            with contextlib.suppress(Exception):
                await msg.respond(PONG)
        elif msg.data == STALE and not self._leaving:  # our epoch was declared gone: start a new one
            self._spawn(self._resync(rejoin=True))

    async def _tell_stale(self, host: str, epoch: int) -> None:
        """Tell ``host`` that its epoch ``epoch`` is gone for us (it was frozen): it rejoins."""
        nc = self._nc
        if nc is not None and not self._leaving:
            with contextlib.suppress(Exception):
                await nc.publish(self.control_of(host, epoch), STALE)

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

    async def _on_error(self, exc: Exception) -> None:
        logger.debug("cluster: nats-py reports %r", exc)

    # ------------------------------------------------------------------ membership

    async def _timer(self) -> None:
        membership = self.membership
        while True:
            deadline = membership.next_deadline()
            now = self._loop.time()
            wait = self.settings.heartbeat_interval if deadline is None else deadline - now
            due = now + max(0.0, min(wait, self.settings.heartbeat_interval))
            await asyncio.sleep(due - now)
            now = self._loop.time()
            if now - due > self.settings.suspect_after:  # we did not run (frozen?): judge nobody by it
                logger.warning("cluster: this host did not run for %.1fs; its peers are probed, not ended", now - due)
                membership.stalled(now)
            membership.handle_timer(now)
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
                logger.debug("cluster: host %s is back under its retired epoch %d: told", event.host, event.epoch)
                self._spawn(self._tell_stale(event.host, event.epoch))
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
        peer = self.hub.add_peer(f"host {host}", self._sink(host, epoch), host)
        self._peers[(host, epoch)] = peer
        self._by_subject[self.subject_of(host, epoch)] = (host, epoch)
        logger.info("cluster: host %s (epoch %d) joined", host, epoch)

        def apply(engine: HostEngine) -> None:
            for agent_type, (record, _) in self._types.items():
                if (record.host, record.epoch) == (host, epoch) and not record.shared:
                    engine.peer_registered(peer, agent_type)
            for sub, _ in self._subs.values():
                if (sub.host, sub.epoch) == (host, epoch):
                    engine.peer_subscribed(peer, sub.subscription)
            self._apply_pools_of(engine, peer, host, epoch)

        self.hub.drive(now, apply)

    def _gone(self, host: str, epoch: int, reason: GoneReason) -> None:
        logger.warning("cluster: host %s (epoch %d) is gone (%s)", host, epoch, reason.value)
        self._end_peer(host, epoch)
        if reason in (GoneReason.LINK_LOST, GoneReason.REJOINED):
            return
        # Its records are void already; the survivors delete them (the first one wins, the others
        # see a newer revision and stop).
        self._spawn(self._clean(host, epoch))


__all__ = ["ClusterLink", "ClusterSettings", "default_host_name"]
