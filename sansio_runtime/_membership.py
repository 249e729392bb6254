"""Which other hosts of a cluster are alive, as a pure state machine (docs/CLUSTER.md, 3).

Each host of a cluster publishes a heartbeat every ``heartbeat_interval`` seconds on the
cluster's presence subject, naming itself and its *epoch*; every host feeds the heartbeats it
hears into its :class:`Membership` and learns, as events, when another host joins and when one is
gone. Nothing here knows NATS, a socket or a clock: the driver passes the time in, calls
:meth:`Membership.handle_timer` when :meth:`Membership.next_deadline` comes, and carries out the
events of :meth:`Membership.take_events` (aioquic's and h11's way).

**Hosts and epochs.** A host is named by a string that stays the same across its restarts (its
address, say) and an integer *epoch* that grows with each incarnation: each start, and each
time its link to NATS comes back. An epoch declared gone (silent, said goodbye, nobody at its
subject, replaced by a newer one) never comes back: a heartbeat of it (or of an epoch older than
the one we know) is answered with :class:`StaleEpoch`, telling that host to join again under a
new epoch. So everything tied to an epoch (calls in flight to it, its registrations) is settled
once, when it goes, and never revived. When *our* epoch ends (our link dropped, or we rejoin),
every peer's session with us ends too, but their epochs are not retired: they did nothing wrong,
and the same epochs are welcome when we are back.

**A peer's life**, written once in :data:`PEER_TRANSITIONS`::

    (unknown) --heartbeat--> ALIVE --silent for suspect_after--> SUSPECT
    SUSPECT --heartbeat--> ALIVE
    ALIVE | SUSPECT --silent for dead_after | goodbye | probe found no one | newer epoch
                      --> GONE (forgotten; its epoch retired)
    ALIVE | SUSPECT --our link lost | we rejoined--> GONE (forgotten; its epoch not retired)

A peer becoming SUSPECT yields :class:`ProbeHost`: the driver asks the host directly (a NATS
request to its own subject). An answer counts as a heartbeat; "no responders" means its process
is gone (its subscription went with its connection) and ends it at once, long before
``dead_after``. A frozen host (no FIN, no answers) is ended by ``dead_after``.

**Our own link.** When the driver's NATS connection drops, :meth:`Membership.link_lost` ends
every peer at once (cross-host calls fail at once) and our own epoch with it; when it is back,
:meth:`Membership.link_restored` starts a new epoch, larger than every one before, and the
first heartbeat is due at once. Peers see the new epoch replace the old one.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Union

from ._deadlines import DeadlineHeap

DEFAULT_HEARTBEAT_INTERVAL = 0.25
"""Seconds between two heartbeats of a host."""
DEFAULT_SUSPECT_AFTER = 0.75
"""A peer silent this long is probed (three heartbeats missed)."""
DEFAULT_DEAD_AFTER = 1.5
"""A peer silent this long is gone, whatever the probe said (six heartbeats missed)."""


class PeerState(enum.Enum):
    """Where a known peer is in its life (a gone peer is forgotten)."""

    ALIVE = "alive"
    """Heard from within ``suspect_after``."""
    SUSPECT = "suspect"
    """Silent for ``suspect_after``; probed; gone at ``dead_after`` unless heard from."""


class GoneReason(enum.Enum):
    """Why a peer's epoch ended."""

    SILENT = "silent"
    """No heartbeat (nor probe answer) for ``dead_after``."""
    GOODBYE = "goodbye"
    """It said it was leaving (a host shutting down)."""
    NO_RESPONDERS = "no responders"
    """The probe found nobody listening on its subject: its connection to NATS is gone."""
    REPLACED = "replaced"
    """A heartbeat of a newer epoch of the same host: the old one restarted or rejoined."""
    LINK_LOST = "link lost"
    """Our own link to NATS is down: no peer can be reached."""
    REJOINED = "rejoined"
    """We started a new epoch (told that ours was declared gone): what we shared with each peer
    under the old one is void."""


_OUR_DOING = frozenset({GoneReason.LINK_LOST, GoneReason.REJOINED})
"""Reasons that end a peer's session with us, not the peer's epoch: it is not retired, and the
same epoch is welcome again once we are back."""


PEER_TRANSITIONS: dict[PeerState | None, frozenset[PeerState | None]] = {
    None: frozenset({PeerState.ALIVE}),
    PeerState.ALIVE: frozenset({PeerState.ALIVE, PeerState.SUSPECT, None}),
    PeerState.SUSPECT: frozenset({PeerState.ALIVE, None}),
}
"""The peer state table (``None``: not known, or gone)."""


@dataclass(frozen=True, slots=True)
class HostJoined:
    """Host ``host`` is alive under ``epoch`` (first heard, or a new epoch of it)."""

    host: str
    epoch: int


@dataclass(frozen=True, slots=True)
class HostGone:
    """Host ``host``'s epoch ``epoch`` is over: fail every call pending at it, release what it owned."""

    host: str
    epoch: int
    reason: GoneReason


@dataclass(frozen=True, slots=True)
class ProbeHost:
    """``host`` has been silent for ``suspect_after``: ask it directly. Report the outcome with
    :meth:`Membership.heartbeat` (it answered) or :meth:`Membership.probe_failed` (no responders)."""

    host: str
    epoch: int


@dataclass(frozen=True, slots=True)
class StaleEpoch:
    """A heartbeat of ``host`` under ``epoch``, an epoch already gone or superseded: tell that host
    to join again under a new epoch (it must not go on serving as this one)."""

    host: str
    epoch: int


@dataclass(frozen=True, slots=True)
class NameConflict:
    """Another process heartbeats under our own host name (with ``epoch``): two hosts were given
    one name. Refuse to go on, naming the setting to change."""

    host: str
    epoch: int


@dataclass(frozen=True, slots=True)
class SendHeartbeat:
    """Publish our heartbeat now: this host, under ``epoch``."""

    host: str
    epoch: int


MembershipEvent = Union[HostJoined, HostGone, ProbeHost, StaleEpoch, NameConflict, SendHeartbeat]


@dataclass(slots=True)
class _Peer:
    epoch: int
    state: PeerState
    last_heard: float


class Membership:
    """The live peers of one host, from the heartbeats it hears. Pure: time is passed in.

    ``host`` and ``epoch`` are our own; ``epoch`` must be larger than any epoch this host name
    had before (a clock reading in nanoseconds at start does, when clocks are sane).
    """

    def __init__(
        self,
        host: str,
        epoch: int,
        now: float,
        *,
        heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL,
        suspect_after: float = DEFAULT_SUSPECT_AFTER,
        dead_after: float = DEFAULT_DEAD_AFTER,
    ) -> None:
        if not 0 < heartbeat_interval < suspect_after < dead_after:
            raise ValueError("need 0 < heartbeat_interval < suspect_after < dead_after")
        self.host = host
        self.heartbeat_interval = heartbeat_interval
        self.suspect_after = suspect_after
        self.dead_after = dead_after
        self._epoch: int | None = epoch
        self._highest_epoch = epoch
        self._peers: dict[str, _Peer] = {}
        self._retired: dict[str, int] = {}  # host -> the highest epoch of it that is gone
        self._deadlines: DeadlineHeap[str] = DeadlineHeap()  # peer -> when its state next changes
        self._next_beat: float | None = now + heartbeat_interval
        self._events: list[MembershipEvent] = []
        self._beat()  # the first heartbeat is due at once

    # ------------------------------------------------------------------ reading

    @property
    def epoch(self) -> int | None:
        """Our current epoch; None while our link is down."""
        return self._epoch

    @property
    def linked(self) -> bool:
        """Whether our link to NATS is up (as the driver last said)."""
        return self._epoch is not None

    def peers(self) -> dict[str, int]:
        """The live peers (alive or suspect) and their epochs."""
        return {host: p.epoch for host, p in self._peers.items()}

    def state_of(self, host: str) -> PeerState | None:
        """``host``'s state, or None if it is not a live peer."""
        peer = self._peers.get(host)
        return None if peer is None else peer.state

    def is_live(self, host: str, epoch: int) -> bool:
        """Whether ``host`` is a live peer under exactly ``epoch``."""
        peer = self._peers.get(host)
        return peer is not None and peer.epoch == epoch

    def take_events(self) -> list[MembershipEvent]:
        """Every event queued so far, oldest first."""
        events, self._events = self._events, []
        return events

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timer` next has work (our heartbeat, or a peer's timeout), or None."""
        peer = self._deadlines.next_deadline()
        if self._next_beat is None:
            return peer
        return self._next_beat if peer is None else min(peer, self._next_beat)

    # ------------------------------------------------------------------ input

    def heartbeat(self, host: str, epoch: int, now: float) -> None:
        """We heard from ``host`` under ``epoch`` (a heartbeat, or the answer to a probe)."""
        if self._epoch is None:
            return  # our link is down: a late delivery, nothing to learn from it
        if host == self.host:
            if epoch != self._epoch:
                self._events.append(NameConflict(host, epoch))
            return
        if epoch <= self._retired.get(host, -1):
            self._events.append(StaleEpoch(host, epoch))
            return
        peer = self._peers.get(host)
        if peer is not None and epoch < peer.epoch:
            self._events.append(StaleEpoch(host, epoch))
            return
        if peer is not None and epoch > peer.epoch:
            self._end(host, GoneReason.REPLACED)
            peer = None
        if peer is None:
            self._peers[host] = _Peer(epoch, PeerState.ALIVE, now)
            self._events.append(HostJoined(host, epoch))
        else:
            self._move(peer, PeerState.ALIVE)
            peer.last_heard = now
        self._deadlines.set(host, now + self.suspect_after)

    def goodbye(self, host: str, epoch: int, now: float) -> None:
        """``host`` said its epoch ``epoch`` is ending (it shuts down, or leaves the cluster)."""
        if self._epoch is not None and self.is_live(host, epoch):
            self._end(host, GoneReason.GOODBYE)

    def probe_failed(self, host: str, epoch: int, now: float) -> None:
        """The probe of ``host`` found nobody listening ("no responders"). Only that: a probe that
        timed out, or could not be sent because our own link is down, is not reported."""
        if self._epoch is not None and self.is_live(host, epoch):
            self._end(host, GoneReason.NO_RESPONDERS)

    def handle_timer(self, now: float) -> None:
        """Time is ``now``: peers silent too long are suspected or gone; our heartbeat may be due."""
        for host in self._deadlines.expire(now):
            peer = self._peers[host]
            # (the same sums as the deadlines, so that a timer exactly on time does what it is for)
            if now >= peer.last_heard + self.dead_after:
                self._end(host, GoneReason.SILENT)
            elif peer.state is PeerState.ALIVE:
                self._move(peer, PeerState.SUSPECT)
                self._events.append(ProbeHost(host, peer.epoch))
                self._deadlines.set(host, peer.last_heard + self.dead_after)
        if self._next_beat is not None and now >= self._next_beat:
            self._beat()
            # The next beat is one interval after this one was due, or from now if we are late
            # by more than an interval (a stalled loop should not fire a burst of beats).
            due = self._next_beat + self.heartbeat_interval
            self._next_beat = due if due > now else now + self.heartbeat_interval

    def stalled(self, now: float) -> None:
        """Our own process did not run for a while (frozen, a long pause): our peers' silence
        meanwhile is no evidence against them, and must not end them (ending them would retire
        their epochs, and the host that was frozen would win its claims back). Each live peer
        counts as heard from now and is probed at once (:class:`ProbeHost`): one that died
        meanwhile is found within a round trip, one that froze too is gone ``dead_after`` from
        now. The driver calls it before :meth:`handle_timer` when its timer ran more than
        ``suspect_after`` late."""
        if self._epoch is None:
            return
        for host, peer in self._peers.items():
            if peer.state is PeerState.SUSPECT:
                self._move(peer, PeerState.ALIVE)
            peer.last_heard = now
            self._deadlines.set(host, now + self.suspect_after)
            self._events.append(ProbeHost(host, peer.epoch))

    def link_lost(self, now: float) -> None:
        """Our link to NATS is down: every peer is gone (LINK_LOST), and so is our epoch."""
        if self._epoch is None:
            return
        for host in list(self._peers):
            self._end(host, GoneReason.LINK_LOST)
        self._epoch = None
        self._next_beat = None

    def link_restored(self, epoch: int, now: float) -> None:
        """Our link is back; we go on under ``epoch``, which must be larger than every epoch we had.

        Our first heartbeat is due at once; peers are learned afresh from theirs.
        """
        if self._epoch is not None:
            raise ValueError("link_restored without link_lost")
        if epoch <= self._highest_epoch:
            raise ValueError(f"epoch {epoch} must be larger than {self._highest_epoch}, the last one")
        self._epoch = self._highest_epoch = epoch
        self._next_beat = now + self.heartbeat_interval
        self._beat()

    def rejoin(self, epoch: int, now: float) -> None:
        """Start a new epoch while linked (after :class:`StaleEpoch` told us ours was declared
        gone). Every peer's session with our old epoch ends (REJOINED: our calls to them are void,
        as theirs to us already are); peers are learned afresh, our first heartbeat is due at once."""
        if self._epoch is None:
            raise ValueError("rejoin while the link is down: wait for link_restored")
        if epoch <= self._highest_epoch:
            raise ValueError(f"epoch {epoch} must be larger than {self._highest_epoch}, the last one")
        for host in list(self._peers):
            self._end(host, GoneReason.REJOINED)
        self._epoch = self._highest_epoch = epoch
        self._next_beat = now + self.heartbeat_interval
        self._beat()

    # ------------------------------------------------------------------ internals

    def _beat(self) -> None:
        assert self._epoch is not None
        self._events.append(SendHeartbeat(self.host, self._epoch))

    def _end(self, host: str, reason: GoneReason) -> None:
        peer = self._peers.pop(host)
        self._deadlines.discard(host)
        if reason not in _OUR_DOING:
            self._retired[host] = max(peer.epoch, self._retired.get(host, -1))
        self._events.append(HostGone(host, peer.epoch, reason))

    @staticmethod
    def _move(peer: _Peer, new: PeerState) -> None:
        assert new in PEER_TRANSITIONS[peer.state], (peer.state, new)
        peer.state = new


__all__ = [
    "DEFAULT_DEAD_AFTER",
    "DEFAULT_HEARTBEAT_INTERVAL",
    "DEFAULT_SUSPECT_AFTER",
    "PEER_TRANSITIONS",
    "GoneReason",
    "HostGone",
    "HostJoined",
    "Membership",
    "MembershipEvent",
    "NameConflict",
    "PeerState",
    "ProbeHost",
    "SendHeartbeat",
    "StaleEpoch",
]
