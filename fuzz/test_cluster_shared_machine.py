"""Model-based fuzzing of a shared agent type spread over the hosts of a cluster (docs/CLUSTER.md 8).

Three HostEngines are wired frame for frame, as the cluster driver wires them over NATS. A model
of the cluster's registry stands in for the key-value buckets: pool entries are told to every
live host at once; a placement claim is settled whenever the fuzzer likes (claims in any order,
after any other step), the first live proposal for a key wins (create-if-absent, an entry void
once its host is gone), and the other hosts hear of it through the watch, late or not at all.
Workers join and leave the pool on any host, hosts die, callers on every host call keys and
publish events whose source is a key; pool members answer with their own name.

What is checked:

* every call is answered exactly once once the claims are settled (a result, or an error);
* **one instance per key cluster-wide**: while the worker that answered a key lives, every
  other answer for that key comes from it;
* **no event is delivered twice**, and while nothing died or left since it was published, an
  event reaches exactly one instance once every claim has settled;
* no engine keeps a claim, a held call or a held publish once every claim has settled.
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
    ClaimPlacement,
    ClientId,
    ClientKind,
    HostEngine,
    SubscriptionAdded,
    SubscriptionRemoved,
)

from ._cluster_wiring import pump

HOSTS = ("A", "B", "C")
KEYS = ("k0", "k1", "k2", "k3")


@dataclass
class Worker:
    host: str
    client: ClientId
    name: str
    member: bool = False
    answers: dict[int, Any] = field(default_factory=dict)  # request id -> answer
    events: list[str] = field(default_factory=list)


class SharedClusterMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.engines = {h: HostEngine() for h in HOSTS}
        for h, e in self.engines.items():
            e.enable_cluster(h)
        self.peer = {a: {b: self.engines[a].add_peer(b) for b in HOSTS if b != a} for a in HOSTS}
        self.alive = set(HOSTS)
        self.workers: list[Worker] = []
        self.pools: dict[str, bool] = {}  # host -> has members (the pool bucket)
        self.placements: dict[str, str] = {}  # key -> host (the placements bucket)
        self.claims: list[tuple[str, ClaimPlacement]] = []
        self.calls: dict[tuple[int, int], str] = {}  # (worker index, request id) -> key
        self.instance: dict[str, Worker] = {}  # key -> the worker that answered it last
        self.published: dict[str, bool] = {}  # event id -> still undisturbed
        self.next_id = 1

    # ------------------------------------------------------------------ wiring

    def pump(self) -> None:
        pump(self.engines, self.peer, self.alive, self._registry, self._to_worker_of)

    def _to_worker_of(self, host: str, client: ClientId, msg: Any) -> None:
        self._to_worker(next(w for w in self.workers if w.host == host and w.client == client), msg)

    def _to_worker(self, w: Worker, msg: Any) -> None:
        method = msg.get("method")
        if method == "agent.call":
            result = {"data_type": "str", "data_content_type": "application/json", "data": w.name}
            frame = {"jsonrpc": "2.0", "id": msg["id"], "result": result}
            self.engines[w.host].receive(w.client, json.dumps(frame), 0.0)
        elif method == "agent.event":
            assert w.member and msg["params"]["recipients"] == ["T"]
            w.events.append(msg["params"]["event"]["id"])
        elif method is None:
            assert msg["id"] not in w.answers, f"answered twice: {msg}"
            w.answers[msg["id"]] = msg
            key = self.calls.get((self.workers.index(w), msg["id"]))
            if key is not None and "result" in msg:
                self._answered_by(key, msg["result"]["data"])

    def _answered_by(self, key: str, name: str) -> None:
        (member,) = [w for w in self.workers if w.name == name]
        current = self.instance.get(key)
        if current is not None and current is not member and self._lives(current):
            raise AssertionError(f"{key} answered by {name} while {current.name} (its instance) lives")
        self.instance[key] = member

    def _lives(self, w: Worker) -> bool:
        return w.host in self.alive and w.client in set(self.engines[w.host].clients())

    def _registry(self, host: str) -> None:
        """The cluster's registry carries out a host's requests (placements: when settled)."""
        engine = self.engines[host]
        for op in engine.cluster_to_send():
            if host not in self.alive:
                continue
            if isinstance(op, ClaimAgentType):
                assert op.shared
                self.pools[host] = True
                engine.claim_settled(op.claim, won=True)
                for other in self.alive - {host}:
                    self.engines[other].peer_joined_pool(self.peer[other][host], "T")
            elif isinstance(op, AgentTypeReleased):
                self.pools.pop(host, None)
                for key in [k for k, h in self.placements.items() if h == host]:
                    del self.placements[key]  # (its host deletes its placements)
                for other in self.alive - {host}:
                    self.engines[other].peer_left_pool(self.peer[other][host], "T")
            elif isinstance(op, ClaimPlacement):
                self.claims.append((host, op))
            elif isinstance(op, SubscriptionAdded):
                for other in self.alive - {host}:
                    self.engines[other].peer_subscribed(self.peer[other][host], op.subscription)
            elif isinstance(op, SubscriptionRemoved):
                for other in self.alive - {host}:
                    self.engines[other].peer_unsubscribed(self.peer[other][host], op.subscription_id)

    def _live_workers(self) -> list[Worker]:
        return [w for w in self.workers if self._lives(w)]

    def _send(self, w: Worker, method: str, params: Any, rid: int | None = None) -> None:
        frame: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params}
        if rid is not None:
            frame["id"] = rid
        self.engines[w.host].receive(w.client, json.dumps(frame), 0.0)
        self.pump()

    def _disturb(self) -> None:
        for event_id in self.published:
            self.published[event_id] = False

    # ------------------------------------------------------------------ rules

    @initialize()
    def a_caller_on_each_host(self) -> None:
        for h in HOSTS:
            self.connect(h, member=False)

    @rule(host=st.sampled_from(HOSTS), member=st.booleans())
    def connect(self, host: str, member: bool) -> None:
        if host not in self.alive or len(self.workers) > 12:
            return
        name = f"w{len(self.workers)}"
        w = Worker(host, self.engines[host].connect(ClientKind.CHANNEL, name), name)
        self.workers.append(w)
        if member:
            w.member = True
            self._send(w, "runtime.register_agent", {"type": "T", "shared": True}, self._rid())
            sub = {"kind": "type", "id": f"s-{name}", "topic_type": "x", "agent_type": "T"}
            self._send(w, "runtime.add_subscription", {"subscription": sub}, self._rid())

    def _rid(self) -> int:
        self.next_id += 1
        return self.next_id

    @rule(data=st.data(), key=st.sampled_from(KEYS))
    def call(self, data: st.DataObject, key: str) -> None:
        live = self._live_workers()
        if not live:
            return
        w = data.draw(st.sampled_from(live))
        rid = self._rid()
        self.calls[(self.workers.index(w), rid)] = key
        params = {"target": {"type": "T", "key": key}, "data_type": "str", "data_content_type": "application/json"}
        self._send(w, "agent.call", params | {"data": 1}, rid)

    @rule(data=st.data(), key=st.sampled_from(KEYS))
    def publish(self, data: st.DataObject, key: str) -> None:
        live = self._live_workers()
        if not live:
            return
        w = data.draw(st.sampled_from(live))
        event_id = f"e{self._rid()}"
        self.published[event_id] = any(self.pools.values())
        event = {"specversion": "1.0", "id": event_id, "source": key, "type": "x", "data": 0}
        self._send(w, "agent.publish", event)

    @precondition(lambda self: bool(self.claims))
    @rule(data=st.data(), watch=st.booleans())
    def settle(self, data: st.DataObject, watch: bool) -> None:
        self._settle(data.draw(st.integers(0, len(self.claims) - 1)), watch)

    def _settle(self, index: int, watch: bool) -> None:
        host, op = self.claims.pop(index)
        if host not in self.alive:
            return
        holder = self.placements.get(op.key)
        if holder is None or holder not in self.alive or not self.pools.get(holder):
            if op.host in self.alive and self.pools.get(op.host):
                holder = self.placements[op.key] = op.host
            else:
                holder = None
        self.engines[host].placement_settled(op.claim, holder, "the proposed host left")
        if watch and holder is not None:
            for other in self.alive - {host}:
                self.engines[other].placement_known("T", op.key, holder)
        self.pump()

    @rule()
    def settle_all(self) -> None:
        while self.claims:
            self._settle(0, watch=True)
        for engine in (self.engines[h] for h in self.alive):
            assert engine.pending_placements() == []
        for (wi, rid), _ in self.calls.items():
            w = self.workers[wi]
            if self._lives(w):
                assert rid in w.answers, f"call {rid} of {w.name} never answered"
        delivered: dict[str, int] = {}
        for w in self.workers:
            for event_id in w.events:
                delivered[event_id] = delivered.get(event_id, 0) + 1
        for event_id, undisturbed in self.published.items():
            if undisturbed:
                assert delivered.get(event_id) == 1, f"{event_id} delivered {delivered.get(event_id, 0)} times"

    @rule(data=st.data())
    def worker_leaves(self, data: st.DataObject) -> None:
        live = [w for w in self._live_workers() if w.member]
        if not live:
            return
        w = data.draw(st.sampled_from(live))
        self.engines[w.host].disconnect(w.client, 0.0)
        self._disturb()
        self.pump()

    @precondition(lambda self: len(self.alive) > 1)
    @rule(host=st.sampled_from(HOSTS))
    def host_dies(self, host: str) -> None:
        if host not in self.alive:
            return
        self.alive.discard(host)
        self.pools.pop(host, None)
        for other in self.alive:
            self.engines[other].remove_peer(self.peer[other][host], 0.0)
        self._disturb()
        self.pump()

    # ------------------------------------------------------------------ invariants

    @invariant()
    def no_event_twice(self) -> None:
        for w in self.workers:
            assert len(w.events) == len(set(w.events)), f"{w.name} got an event twice"
        seen: set[str] = set()
        for w in self.workers:
            for event_id in w.events:
                assert event_id not in seen, f"{event_id} reached two instances"
                seen.add(event_id)


TestSharedCluster = SharedClusterMachine.TestCase
TestSharedCluster.settings = settings(max_examples=max(10, settings().max_examples // 4), stateful_step_count=40)
