"""Model-based fuzzing of HostEngines in a cluster (docs/CLUSTER.md section 4).

Three engines know each other as PEER clients and are wired frame for frame, as the cluster
driver wires them over NATS. A model of the cluster's registry stands in for the key-value
bucket: a claim wins if the type is free (or held by a host that is gone), and every engine hears
of the winner's entry (the watch). Workers come and go on each host, register types (claims
settled in any order, won or lost), subscribe, make calls (answered at once, or held), publish;
hosts die (every other engine removes it; its workers vanish).

What is checked:

* each call gets exactly one answer, to its caller under its own id: the target's result, or
  -32001 when no live host holds the type, or -32003 when the target's worker or host went;
* a registration is answered once, when its claim settles: ok if it won, -32002 if it lost;
  no two live hosts ever both route a type to their own worker (uniqueness cluster-wide);
* a publish reaches each subscribed agent type's worker on every live host exactly once;
* a peer is never sent ``agent.event`` (hosts forward ``agent.publish`` once per host) and
  frames from a peer are never relayed to another peer;
* after a host dies, no engine has a pending call involving it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from sansio_runtime import (
    AgentTypeReleased,
    ClaimAgentType,
    ClientId,
    ClientKind,
    ErrorCode,
    HostEngine,
    SubscriptionAdded,
    SubscriptionRemoved,
)

from ._cluster_wiring import pump

HOSTS = ("A", "B", "C")
TYPES = ("t0", "t1")


@dataclass
class Worker:
    host: str
    client: ClientId
    hold: bool  # holds incoming calls instead of answering at once
    inbox: list[Any] = field(default_factory=list)
    held: list[Any] = field(default_factory=list)
    types: set[str] = field(default_factory=set)  # answered ok


@dataclass
class Claim:
    host: str
    claim: int
    agent_type: str
    worker: Worker
    request_id: int


class ClusterMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.engines = {h: HostEngine() for h in HOSTS}
        for e in self.engines.values():
            e.enable_cluster()
        self.peer = {a: {b: self.engines[a].add_peer(b) for b in HOSTS if b != a} for a in HOSTS}
        self.alive = set(HOSTS)
        self.workers: list[Worker] = []
        self.kv: dict[str, str] = {}  # agent type -> host (the registry bucket)
        self.claims: list[Claim] = []
        self.next_id = 1
        self.expect_answers: dict[tuple[int, int], str] = {}  # (worker index, request id) -> what kind
        self.answers: dict[tuple[int, int], list[Any]] = {}
        self.subscribed: dict[str, tuple[Worker, str]] = {}  # agent type -> (worker that subscribed, topic)
        self.events: dict[int, list[str]] = {}  # worker index -> event ids received

    # ------------------------------------------------------------------ wiring

    def _index(self, w: Worker) -> int:
        return self.workers.index(w)

    def pump(self) -> None:
        pump(self.engines, self.peer, self.alive, self._cluster_outputs, self._to_worker_of)

    def _to_worker_of(self, host: str, client: ClientId, msg: Any) -> None:
        self._to_worker(next(w for w in self.workers if w.host == host and w.client == client), msg)

    def _to_worker(self, w: Worker, msg: Any) -> None:
        i = self._index(w)
        if msg.get("method") == "agent.call":
            if w.hold:
                w.held.append(msg)
            else:
                self._answer(w, msg)
        elif msg.get("method") == "agent.event":
            self.events.setdefault(i, []).append(msg["params"]["event"]["id"])
        elif msg.get("method") == "$/cancelRequest":
            w.held = [m for m in w.held if m["id"] != msg["params"]["id"]]
        else:
            key = (i, msg["id"])
            assert key in self.expect_answers, f"unexpected answer {msg}"
            self.answers.setdefault(key, []).append(msg)

    def _answer(self, w: Worker, msg: Any) -> None:
        result = {"data_type": "str", "data_content_type": "application/json", "data": msg["params"]["target"]["type"]}
        self.engines[w.host].receive(w.client, json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": result}), 0.0)

    def _cluster_outputs(self, host: str) -> None:
        for out in self.engines[host].cluster_to_send():
            if isinstance(out, ClaimAgentType):
                owner = self.engines[host].agent_types()[out.agent_type]  # the worker it is held for
                (w,) = [w for w in self.workers if w.host == host and w.client == owner]
                rid = self._pending_registration(w, out.agent_type)
                assert rid is not None
                self.claims.append(Claim(host, out.claim, out.agent_type, w, rid))
            elif isinstance(out, AgentTypeReleased):
                if self.kv.get(out.agent_type) == host:
                    del self.kv[out.agent_type]
                    for other in self.alive - {host}:
                        self.engines[other].peer_unregistered(self.peer[other][host], out.agent_type)
            elif isinstance(out, SubscriptionAdded):
                for other in self.alive - {host}:
                    self.engines[other].peer_subscribed(self.peer[other][host], out.subscription)
            elif isinstance(out, SubscriptionRemoved):
                for other in self.alive - {host}:
                    self.engines[other].peer_unsubscribed(self.peer[other][host], out.subscription_id)

    def _pending_registration(self, w: Worker, agent_type: str) -> int | None:
        i = self._index(w)
        for (wi, rid), kind in self.expect_answers.items():
            if wi == i and kind == f"register:{agent_type}" and (wi, rid) not in self.answers:
                if not any(c.request_id == rid and c.worker is w for c in self.claims):
                    return rid
        return None

    def _live_workers(self) -> list[Worker]:
        return [w for w in self.workers if w.host in self.alive and w.client in self.engines[w.host].clients()]

    # ------------------------------------------------------------------ rules

    @initialize()
    def one_worker_per_host_and_subscriptions(self) -> None:
        for h in HOSTS:
            self.connect(h, hold=h == "C")
        for w, agent_type in zip(self.workers, TYPES, strict=False):
            self._subscribe(w, agent_type, "x")

    @rule(host=st.sampled_from(HOSTS), hold=st.booleans())
    def connect(self, host: str, hold: bool) -> None:
        if host not in self.alive or len(self.workers) > 12:
            return
        self.workers.append(Worker(host, self.engines[host].connect(ClientKind.CHANNEL), hold))

    @rule(data=st.data(), agent_type=st.sampled_from(TYPES))
    def register(self, data: st.DataObject, agent_type: str) -> None:
        live = self._live_workers()
        if not live:
            return
        w = data.draw(st.sampled_from(live))
        rid = self.next_id
        self.next_id += 1
        self.expect_answers[(self._index(w), rid)] = f"register:{agent_type}"
        frame = {"jsonrpc": "2.0", "id": rid, "method": "runtime.register_agent", "params": {"type": agent_type}}
        self.engines[w.host].receive(w.client, json.dumps(frame), 0.0)
        self.pump()

    @rule(data=st.data(), agent_type=st.sampled_from(TYPES))
    def register_and_settle(self, data: st.DataObject, agent_type: str) -> None:
        """The common case: a registration whose claim settles before anything else happens."""
        self.register(data, agent_type)
        if self.claims:
            self._settle(len(self.claims) - 1)

    @precondition(lambda self: bool(self.claims))
    @rule(data=st.data())
    def settle(self, data: st.DataObject) -> None:
        self._settle(data.draw(st.integers(0, len(self.claims) - 1)))

    def _settle(self, index: int) -> None:
        c = self.claims.pop(index)
        if c.host not in self.alive:
            return
        holder = self.kv.get(c.agent_type)
        won = holder is None or holder not in self.alive or holder == c.host
        if won and self.engines[c.host].agent_types().get(c.agent_type) == c.worker.client:
            self.kv[c.agent_type] = c.host
            for other in self.alive - {c.host}:
                self.engines[other].peer_registered(self.peer[other][c.host], c.agent_type)
        self.engines[c.host].claim_settled(c.claim, won, f"host {holder}")
        if not won and holder is not None:
            self.engines[c.host].peer_registered(self.peer[c.host][holder], c.agent_type)
        self.pump()
        answers = self.answers.get((self._index(c.worker), c.request_id), [])
        if c.worker.client in self.engines[c.host].clients():
            if won:
                if answers:
                    assert answers == [{"jsonrpc": "2.0", "id": c.request_id, "result": None}]
                    c.worker.types.add(c.agent_type)
            else:
                assert len(answers) <= 1
                if answers:
                    assert answers[0]["error"]["code"] == ErrorCode.AGENT_TYPE_ALREADY_REGISTERED

    @rule(data=st.data(), agent_type=st.sampled_from(TYPES), topic=st.just("x"))
    def subscribe(self, data: st.DataObject, agent_type: str, topic: str) -> None:
        live = self._live_workers()
        if not live or agent_type in self.subscribed:
            return
        self._subscribe(data.draw(st.sampled_from(live)), agent_type, topic)

    def _subscribe(self, w: Worker, agent_type: str, topic: str) -> None:
        rid = self.next_id
        self.next_id += 1
        self.expect_answers[(self._index(w), rid)] = "subscribe"
        spec = {"kind": "type", "id": f"s-{agent_type}", "topic_type": topic, "agent_type": agent_type}
        frame = {"jsonrpc": "2.0", "id": rid, "method": "runtime.add_subscription", "params": {"subscription": spec}}
        self.engines[w.host].receive(w.client, json.dumps(frame), 0.0)
        self.subscribed[agent_type] = (w, topic)
        self.pump()

    @rule(data=st.data(), agent_type=st.sampled_from(TYPES))
    def call(self, data: st.DataObject, agent_type: str) -> None:
        live = self._live_workers()
        if not live:
            return
        w = data.draw(st.sampled_from(live))
        rid = self.next_id
        self.next_id += 1
        key = (self._index(w), rid)
        self.expect_answers[key] = "call"
        params = {
            "target": {"type": agent_type, "key": "k"},
            "data_type": "str",
            "data_content_type": "application/json",
            "data": 1,
        }
        self.engines[w.host].receive(
            w.client, json.dumps({"jsonrpc": "2.0", "id": rid, "method": "agent.call", "params": params}), 0.0
        )
        self.pump()
        answers = self.answers.get(key, [])
        assert len(answers) <= 1, answers
        if answers and "result" in answers[0]:
            assert answers[0]["result"]["data"] == agent_type

    @rule(data=st.data(), topic=st.just("x"))
    def publish(self, data: st.DataObject, topic: str) -> None:
        live = self._live_workers()
        if not live:
            return
        w = data.draw(st.sampled_from(live))
        event_id = f"e{self.next_id}"
        self.next_id += 1
        before = {i: list(v) for i, v in self.events.items()}
        event = {"specversion": "1.0", "id": event_id, "source": "s", "type": topic, "data": 0}
        self.engines[w.host].receive(
            w.client, json.dumps({"jsonrpc": "2.0", "method": "agent.publish", "params": event}), 0.0
        )
        self.pump()
        # Who should get it: the live worker that hosts each subscribed type of this topic, on
        # whichever host, when the subscription's host and the type's host are both alive.
        expected: dict[int, int] = {}
        for agent_type, (sub_worker, sub_topic) in self.subscribed.items():
            if sub_topic != topic or sub_worker.host not in self.alive:
                continue
            if sub_worker.client not in self.engines[sub_worker.host].clients():
                continue
            owner_host = self.kv.get(agent_type)
            if owner_host is None or owner_host not in self.alive:
                continue
            if any(c.agent_type == agent_type and c.host in self.alive for c in self.claims):
                continue  # being claimed again somewhere: see below
            owner = self.engines[owner_host].agent_types().get(agent_type)
            if owner is None or self.engines[owner_host].is_peer(owner):
                continue
            (hw,) = [x for x in self.workers if x.host == owner_host and x.client == owner]
            expected[self._index(hw)] = 1
        got = {i: v.count(event_id) for i, v in self.events.items() if event_id in v}
        for i in got:
            assert got[i] == 1, f"worker {i} got {event_id} {got[i]} times"
        # Exactly the expected workers, unless a claim is still open somewhere (a type being claimed
        # is routed to its worker on that host meanwhile: it may get the event too, once).
        assert set(expected) <= set(got), (got, expected, before)
        if not any(c.host in self.alive for c in self.claims):
            assert set(got) == set(expected), (got, expected, before)

    @rule(data=st.data())
    def publish_again(self, data: st.DataObject) -> None:
        self.publish(data, "x")

    @precondition(lambda self: any(w.held for w in self.workers))
    @rule(data=st.data())
    def answer_held(self, data: st.DataObject) -> None:
        w = data.draw(st.sampled_from([w for w in self.workers if w.held]))
        msg = w.held.pop(0)
        if w.host in self.alive and w.client in self.engines[w.host].clients():
            self._answer(w, msg)
            self.pump()

    @rule(data=st.data())
    def worker_leaves(self, data: st.DataObject) -> None:
        live = self._live_workers()
        if not live:
            return
        w = data.draw(st.sampled_from(live))
        self.engines[w.host].disconnect(w.client, 0.0)
        w.held.clear()
        for agent_type, (sw, _) in list(self.subscribed.items()):
            if sw is w:
                del self.subscribed[agent_type]
        self.pump()

    @precondition(lambda self: len(self.alive) > 1)
    @rule(host=st.sampled_from(HOSTS))
    def host_dies(self, host: str) -> None:
        if host not in self.alive:
            return
        self.alive.discard(host)
        for other in self.alive:
            self.engines[other].remove_peer(self.peer[other][host], 0.0)
        for w in self.workers:
            if w.host == host:
                w.held.clear()
        for agent_type, (sw, _) in list(self.subscribed.items()):
            if sw.host == host:
                del self.subscribed[agent_type]
        self.pump()
        for other in self.alive:
            dead = self.peer[other][host]
            assert all(dead not in (c.caller, c.target) for c in self.engines[other].pending_calls())

    # ------------------------------------------------------------------ invariants

    @invariant()
    def one_answer_each(self) -> None:
        for key, got in self.answers.items():
            assert len(got) == 1, (key, got)

    @invariant()
    def a_type_is_held_by_one_live_worker_cluster_wide(self) -> None:
        local_holders: dict[str, list[str]] = {}
        for h in self.alive:
            engine = self.engines[h]
            for agent_type, owner in engine.agent_types().items():
                if not engine.is_peer(owner) and agent_type not in {c.agent_type for c in self.claims if c.host == h}:
                    local_holders.setdefault(agent_type, []).append(h)
        for agent_type, holders in local_holders.items():
            assert len(holders) == 1, f"{agent_type} held by workers of {holders}"

    @invariant()
    def calls_end_with_their_hosts(self) -> None:
        """Every call still pending is at a live worker that holds it (or in a peer's hands)."""
        for h in self.alive:
            for call in self.engines[h].pending_calls():
                assert call.target in set(self.engines[h].clients())


TestCluster = ClusterMachine.TestCase
# A quarter of the profile's budget: each step pumps three engines.
TestCluster.settings = settings(max_examples=max(10, settings().max_examples // 4), stateful_step_count=30)
