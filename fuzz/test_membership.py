"""Hypothesis state machine of :class:`Membership` (the cluster's presence tracker) against a model.

Heartbeats of a few hosts under a few epochs (our own name among them), goodbyes, failed probes,
time passing with and without the timer being run (late timers too, and timers exactly on a
deadline), our own process stalling (the driver's ``stalled`` before the timer), our link
dropping and coming back, and rejoining under a new epoch, in any order. After every step the
tracker's events equal the model's, and:

* the live peers and their states are the model's; ``next_deadline`` is the model's;
* a peer's epoch joins at most once per epoch of ours, and never again once declared gone
  (silent, goodbye, no responders, replaced): no revival; every gone epoch had joined; each
  host's joined epochs only grow; when our own epoch ends (link lost, rejoin) every peer's
  session ends but its epoch is welcome again;
* after the timer ran at ``now``, no live peer has been silent for ``dead_after``, and every
  peer silent for ``suspect_after`` is SUSPECT and was probed exactly once for that silence;
* after we stalled, no peer is ended for the silence: each is probed and counts as heard;
* while our link is down there are no peers, no heartbeats are due and input is ignored;
* our heartbeats carry our current epoch, at most one per timer run, and the next one is due at
  most an interval after it (a late timer sends one, not a burst, and keeps the schedule).
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from sansio_runtime._membership import (
    GoneReason,
    HostGone,
    HostJoined,
    Membership,
    MembershipEvent,
    NameConflict,
    PeerState,
    ProbeHost,
    SendHeartbeat,
    StaleEpoch,
)

ME = "h0"
HOSTS = [ME, "h1", "h2", "h3"]
EPOCHS = [1, 2, 3, 4]
INTERVAL, SUSPECT, DEAD = 0.25, 0.75, 1.5
STEPS = [0.0, 0.05, 0.1, 0.25, 0.5, 0.74, 0.75, 1.0, 1.5, 3.0]


@dataclass
class ModelPeer:
    epoch: int
    last: float
    suspect: bool = False


class MembershipMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.m = Membership(ME, 10, self.now, heartbeat_interval=INTERVAL, suspect_after=SUSPECT, dead_after=DEAD)
        self.epoch: int | None = 10
        self.highest = 10
        self.next_beat: float | None = INTERVAL
        self.peers: dict[str, ModelPeer] = {}
        self.retired: dict[str, int] = {}
        self.heard: list[tuple[str, int]] = []
        self.joined: set[tuple[str, int]] = set()  # in our current epoch
        self.retired_ever: set[tuple[str, int]] = set()  # gone for the peer's own doing
        self.check([SendHeartbeat(ME, 10)])

    # ------------------------------------------------------------------ checking

    def check(self, expected: list[MembershipEvent], any_order: bool = False) -> None:
        got = self.m.take_events()
        if any_order:
            assert sorted(map(repr, got)) == sorted(map(repr, expected)), (got, expected)
        else:
            assert got == expected, (got, expected)
        for event in got:
            if isinstance(event, HostJoined):
                key = (event.host, event.epoch)
                assert key not in self.joined, f"{key} joined twice in one epoch of ours"
                assert key not in self.retired_ever, f"{key} came back after it was declared gone"
                assert all(e < event.epoch for h, e in self.joined if h == event.host), "epochs must grow"
                self.joined.add(key)
            elif isinstance(event, HostGone):
                key = (event.host, event.epoch)
                assert key in self.joined and key not in self.retired_ever, key
                if event.reason not in (GoneReason.LINK_LOST, GoneReason.REJOINED):
                    self.retired_ever.add(key)
            elif isinstance(event, SendHeartbeat):
                assert event.host == ME and event.epoch == self.epoch
        assert sum(isinstance(e, SendHeartbeat) for e in got) <= 1

    def end(self, host: str, reason: GoneReason, out: list[MembershipEvent]) -> None:
        peer = self.peers.pop(host)
        if reason not in (GoneReason.LINK_LOST, GoneReason.REJOINED):
            self.retired[host] = max(peer.epoch, self.retired.get(host, -1))
        out.append(HostGone(host, peer.epoch, reason))

    # ------------------------------------------------------------------ rules

    @rule(dt=st.sampled_from(STEPS))
    def time_passes(self, dt: float) -> None:
        """Time passes without the timer being run (a late timer later)."""
        self.now += dt

    @rule(dt=st.sampled_from(STEPS))
    def timer(self, dt: float) -> None:
        self.now += dt
        self.run_timer()

    @precondition(lambda self: self.m.next_deadline() is not None)
    @rule()
    def timer_on_the_deadline(self) -> None:
        deadline = self.m.next_deadline()
        assert deadline is not None
        self.now = max(self.now, deadline)
        self.run_timer()

    def run_timer(self) -> None:
        self.m.handle_timer(self.now)
        out: list[MembershipEvent] = []
        for host in list(self.peers):
            peer = self.peers[host]
            if self.now >= peer.last + DEAD:
                self.end(host, GoneReason.SILENT, out)
            elif not peer.suspect and self.now >= peer.last + SUSPECT:
                peer.suspect = True
                out.append(ProbeHost(host, peer.epoch))
        if self.next_beat is not None and self.now >= self.next_beat:
            assert self.epoch is not None
            out.append(SendHeartbeat(ME, self.epoch))
            due = self.next_beat + INTERVAL
            self.next_beat = due if due > self.now else self.now + INTERVAL
        self.check(out, any_order=True)
        if self.epoch is not None:
            for host, peer in self.peers.items():
                assert self.now - peer.last < DEAD
                silent_long = self.now >= peer.last + SUSPECT
                assert self.m.state_of(host) is (PeerState.SUSPECT if silent_long else PeerState.ALIVE)

    @rule(dt=st.sampled_from(STEPS))
    def we_stalled(self, dt: float) -> None:
        """Our process did not run for ``dt``: the driver says so before it runs the timer."""
        self.now += dt
        self.m.stalled(self.now)
        out: list[MembershipEvent] = []
        if self.epoch is not None:
            for host, peer in self.peers.items():
                peer.last, peer.suspect = self.now, False
                out.append(ProbeHost(host, peer.epoch))
        self.check(out, any_order=True)
        self.run_timer()  # (nobody is ended for the silence)
        assert all(isinstance(e, HostGone) is False for e in self.m.take_events())

    @rule(host=st.sampled_from(HOSTS), epoch=st.sampled_from([*EPOCHS, 10]))
    def heartbeat(self, host: str, epoch: int) -> None:
        self.heard.append((host, epoch))
        self.heartbeat_from(host, epoch)

    @precondition(lambda self: bool(self.heard))
    @rule(data=st.data())
    def heartbeat_again(self, data: st.DataObject) -> None:
        """A host heard before, under an epoch heard before (live, gone, or ended by our outage)."""
        host, epoch = data.draw(st.sampled_from(self.heard))
        self.heartbeat_from(host, epoch)

    def heartbeat_from(self, host: str, epoch: int) -> None:
        self.m.heartbeat(host, epoch, self.now)
        out: list[MembershipEvent] = []
        if self.epoch is None:
            pass
        elif host == ME:
            if epoch != self.epoch:
                out.append(NameConflict(ME, epoch))
        elif epoch <= self.retired.get(host, -1) or (host in self.peers and epoch < self.peers[host].epoch):
            out.append(StaleEpoch(host, epoch))
        else:
            if host in self.peers and epoch > self.peers[host].epoch:
                self.end(host, GoneReason.REPLACED, out)
            if host in self.peers:
                self.peers[host].last = self.now
                self.peers[host].suspect = False
            else:
                self.peers[host] = ModelPeer(epoch, self.now)
                out.append(HostJoined(host, epoch))
        self.check(out)

    @rule(host=st.sampled_from(HOSTS), epoch=st.sampled_from(EPOCHS), probe=st.booleans())
    def goodbye_or_failed_probe(self, host: str, epoch: int, probe: bool) -> None:
        if probe:
            self.m.probe_failed(host, epoch, self.now)
        else:
            self.m.goodbye(host, epoch, self.now)
        out: list[MembershipEvent] = []
        if self.epoch is not None and host in self.peers and self.peers[host].epoch == epoch:
            self.end(host, GoneReason.NO_RESPONDERS if probe else GoneReason.GOODBYE, out)
        self.check(out)

    @rule()
    def link_lost(self) -> None:
        self.m.link_lost(self.now)
        out: list[MembershipEvent] = []
        if self.epoch is not None:
            for host in list(self.peers):
                self.end(host, GoneReason.LINK_LOST, out)
        self.epoch = None
        self.next_beat = None
        self.check(out, any_order=True)
        self.joined.clear()

    @rule(step=st.integers(min_value=-1, max_value=2))
    def link_restored(self, step: int) -> None:
        epoch = self.highest + step
        if self.epoch is not None or step <= 0:
            try:
                self.m.link_restored(epoch, self.now)
            except ValueError:
                self.check([])
                return
            raise AssertionError("link_restored must refuse a link that is up, or an epoch not above the last")
        self.m.link_restored(epoch, self.now)
        self.epoch = self.highest = epoch
        self.next_beat = self.now + INTERVAL
        self.check([SendHeartbeat(ME, epoch)])

    @rule(step=st.integers(min_value=0, max_value=2))
    def rejoin(self, step: int) -> None:
        epoch = self.highest + step
        if self.epoch is None or step == 0:
            try:
                self.m.rejoin(epoch, self.now)
            except ValueError:
                self.check([])
                return
            raise AssertionError("rejoin must refuse a down link, or an epoch not above the last")
        self.m.rejoin(epoch, self.now)
        out: list[MembershipEvent] = []
        for host in list(self.peers):
            self.end(host, GoneReason.REJOINED, out)
        self.epoch = self.highest = epoch
        self.next_beat = self.now + INTERVAL
        self.check([*out, SendHeartbeat(ME, epoch)])  # the peers' ends first, then our new beat
        self.joined.clear()

    # ------------------------------------------------------------------ invariants

    @invariant()
    def same_view(self) -> None:
        assert self.m.peers() == {h: p.epoch for h, p in self.peers.items()}
        assert self.m.epoch == self.epoch and self.m.linked == (self.epoch is not None)
        for host in HOSTS:
            peer = self.peers.get(host)
            expected = None if peer is None else (PeerState.SUSPECT if peer.suspect else PeerState.ALIVE)
            assert self.m.state_of(host) is expected
            for epoch in EPOCHS:
                assert self.m.is_live(host, epoch) == (peer is not None and peer.epoch == epoch)

    @invariant()
    def same_deadline(self) -> None:
        candidates = [p.last + (DEAD if p.suspect else SUSPECT) for p in self.peers.values()]
        if self.next_beat is not None:
            candidates.append(self.next_beat)
        assert self.m.next_deadline() == (min(candidates) if candidates else None)

    @invariant()
    def down_means_alone(self) -> None:
        if self.epoch is None:
            assert self.m.peers() == {} and self.m.next_deadline() is None

    @invariant()
    def gone_is_gone(self) -> None:
        live = {(h, e) for h, e in self.m.peers().items()}
        assert not live & self.retired_ever


TestMembership = MembershipMachine.TestCase


def test_parameters_are_checked() -> None:
    import pytest

    for interval, suspect, dead in [(0, 1, 2), (1, 1, 2), (0.5, 2, 2), (1, 0.5, 2)]:
        with pytest.raises(ValueError):
            Membership(ME, 1, 0.0, heartbeat_interval=interval, suspect_after=suspect, dead_after=dead)


def test_a_killed_host_is_gone_at_the_probe_a_frozen_one_at_dead_after() -> None:
    """The two failure bounds of docs/CLUSTER.md with the defaults: a host whose process died is
    gone once it is suspected and the probe finds no one (suspect_after plus one timer); a host
    that froze is gone at dead_after. Driven as a driver would: timer at each next_deadline."""
    m = Membership("a", 1, 0.0)
    m.heartbeat("killed", 1, 0.0)
    m.heartbeat("frozen", 1, 0.0)
    m.take_events()
    now, gone = 0.0, {}
    while len(gone) < 2:
        deadline = m.next_deadline()
        assert deadline is not None
        now = deadline
        m.handle_timer(now)
        for event in m.take_events():
            if isinstance(event, ProbeHost) and event.host == "killed":
                m.probe_failed("killed", 1, now)  # "no responders", within a round trip
            elif isinstance(event, HostGone):
                gone[event.host] = (now, event.reason)
        for event in m.take_events():
            if isinstance(event, HostGone):
                gone[event.host] = (now, event.reason)
    assert gone["killed"] == (m.suspect_after, GoneReason.NO_RESPONDERS)
    assert gone["frozen"] == (m.dead_after, GoneReason.SILENT)


def test_peers_are_welcome_again_after_our_link_comes_back() -> None:
    """Our outage is not our peers' fault: after link_lost and link_restored (or a rejoin) the same
    peer epochs join again, with no StaleEpoch (which would make every host rejoin in turn)."""
    m = Membership("a", 1, 0.0)
    m.heartbeat("b", 7, 0.1)
    m.link_lost(0.2)
    assert [e for e in m.take_events() if isinstance(e, HostGone)] == [HostGone("b", 7, GoneReason.LINK_LOST)]
    m.heartbeat("b", 7, 0.3)  # a late delivery while down: ignored
    m.link_restored(2, 0.5)
    m.heartbeat("b", 7, 0.6)
    assert m.take_events() == [SendHeartbeat("a", 2), HostJoined("b", 7)]
    m.rejoin(3, 0.7)
    m.heartbeat("b", 7, 0.8)
    assert m.take_events() == [HostGone("b", 7, GoneReason.REJOINED), SendHeartbeat("a", 3), HostJoined("b", 7)]
    m.goodbye("b", 7, 0.9)
    m.heartbeat("b", 7, 1.0)
    assert m.take_events() == [HostGone("b", 7, GoneReason.GOODBYE), StaleEpoch("b", 7)]
