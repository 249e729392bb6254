"""Shared agent types across the hosts of a cluster (docs/CLUSTER.md section 8), engine level.

The cluster's registry is modelled by :class:`Registry` below (create-if-absent for placements,
and a watch that tells every other engine), as io_backends.cluster does with NATS key-value buckets.
"""

from __future__ import annotations

from typing import Any

from sansio_runtime import (
    AgentTypeReleased,
    ClaimAgentType,
    ClaimPlacement,
    ClientId,
    ClientKind,
    ErrorCode,
    SubscriptionAdded,
)

from ._cluster_harness import Cluster
from ._harness import call_params, note, req

RESULT = b'{"jsonrpc":"2.0","id":%d,"result":{"data_type":"str","data_content_type":"application/json","data":"%s"}}'


class Registry:
    """The cluster's registry, for the engines of ``cl``: settles their claims, tells the others."""

    def __init__(self, cl: Cluster) -> None:
        self.cl = cl
        self.placements: dict[tuple[str, str], str] = {}
        self.claims: list[tuple[str, ClaimPlacement]] = []

    def collect(self) -> None:
        """Take every engine's requests; type claims are settled at once, placements are kept."""
        cl = self.cl
        for host, engine in cl.engines.items():
            for op in engine.cluster_to_send():
                if isinstance(op, ClaimAgentType):
                    engine.claim_settled(op.claim, won=True)
                    for other in cl.engines:
                        if other != host and op.shared:
                            cl.engines[other].peer_joined_pool(cl.peer[other][host], op.agent_type)
                elif isinstance(op, ClaimPlacement):
                    self.claims.append((host, op))
                elif isinstance(op, AgentTypeReleased):
                    for other in cl.engines:
                        if other != host:
                            cl.engines[other].peer_left_pool(cl.peer[other][host], op.agent_type)
                elif isinstance(op, SubscriptionAdded):
                    for other in cl.engines:
                        if other != host:
                            cl.engines[other].peer_subscribed(cl.peer[other][host], op.subscription)
        cl.pump()

    def settle(self, *, watch: bool = True) -> None:
        """Settle every placement claim taken so far: the first proposal for a key wins."""
        while True:
            self.collect()
            if not self.claims:
                return
            claims, self.claims = self.claims, []
            for host, op in claims:
                holder = self.placements.setdefault((op.agent_type, op.key), op.host)
                self.cl.engines[host].placement_settled(op.claim, holder)
                if watch:
                    for other, engine in self.cl.engines.items():
                        if other != host:
                            engine.placement_known(op.agent_type, op.key, holder)
            self.cl.pump()


def pool(cl: Cluster, reg: Registry, hosts: tuple[str, ...], agent_type: str = "T") -> dict[str, ClientId]:
    """A worker on each of ``hosts`` joins the shared type's pool (and subscribes it to topic "t")."""
    members = {}
    for h in hosts:
        w = cl.worker(h)
        cl.send(h, w, req(1, "runtime.register_agent", {"type": agent_type, "shared": True}))
        sub = {"kind": "type", "id": f"{h}-{agent_type}", "topic_type": "t", "agent_type": agent_type}
        cl.send(h, w, req(2, "runtime.add_subscription", {"subscription": sub}))
        reg.collect()
        assert [a.get("result", a.get("error")) for a in cl.take(h, w)] == [None, None]
        members[h] = w
    return members


def answer_calls(cl: Cluster, members: dict[str, ClientId]) -> dict[str, list[str]]:
    """Every member answers the calls it got with its host's name; returns the keys each got."""
    got: dict[str, list[str]] = {}
    for h, w in members.items():
        for m in cl.take(h, w):
            if m.get("method") == "agent.call":
                got.setdefault(h, []).append(m["params"]["target"]["key"])
                cl.send(h, w, RESULT % (m["id"], h.encode()))
    return got


def call(cl: Cluster, host: str, worker: ClientId, key: str, id: int, **extra: Any) -> None:
    params = call_params("T") | {"target": {"type": "T", "key": key}} | extra
    cl.send(host, worker, req(id, "agent.call", params))


def test_a_key_is_placed_once_cluster_wide_and_every_host_routes_to_that_instance() -> None:
    cl = Cluster("A", "B", "C")
    reg = Registry(cl)
    members = pool(cl, reg, ("A", "B"))
    callers = {h: cl.worker(h) for h in ("A", "B", "C")}
    for n, key in enumerate(["k1", "k2", "k3", "k4", "k5", "k6"]):
        for h in ("C", "A", "B"):  # the same key, asked for from every host
            call(cl, h, callers[h], key, n * 10 + ord(h))
        # held until the placement settles: no member saw anything yet
        assert all(not cl.local[(h, w)] for h, w in members.items())
        reg.settle()
        got = answer_calls(cl, members)
        (holder,) = got  # one instance: exactly one member got all three calls
        assert got[holder] == [key] * 3
        for h in ("A", "B", "C"):
            (answer,) = cl.take(h, callers[h])
            assert answer["result"]["data"] == holder
            assert cl.engines[h].placement_of("T", key) == holder
    assert {cl.engines["A"].placement_of("T", k) for k in ["k1", "k2", "k3", "k4", "k5", "k6"]} == {"A", "B"}
    for engine in cl.engines.values():
        assert engine.pending_placements() == [] and engine.pending_calls() == []


def test_two_hosts_proposing_different_holders_follow_the_one_that_won() -> None:
    cl = Cluster("A", "B")
    reg = Registry(cl)
    members = pool(cl, reg, ("A", "B"))
    caller = cl.worker("A")
    reg.placements[("T", "k")] = "B"  # B won the race for k a moment ago (A proposed itself)
    for key_owner in ("A", "B"):
        assert cl.engines[key_owner].placement_of("T", "k") is None
    call(cl, "A", caller, "k", 1)
    reg.settle(watch=False)  # (B learns of it only by its own claim: the watch is late)
    assert answer_calls(cl, members) == {"B": ["k"]}
    assert cl.take("A", caller)[0]["result"]["data"] == "B"


def test_a_publish_reaches_one_instance_of_a_shared_type_across_hosts_in_order() -> None:
    cl = Cluster("A", "B", "C")
    reg = Registry(cl)
    members = pool(cl, reg, ("A", "B", "C"))
    publisher = cl.worker("A")
    sources = [f"s{i}" for i in range(8)]
    for n, source in enumerate(sources * 2):
        event = {"specversion": "1.0", "id": f"e{n}", "source": source, "type": "t", "data": n}
        cl.send("A", publisher, note("agent.publish", event))
    reg.settle()
    seen: dict[str, list[tuple[str, int]]] = {}
    for h, w in members.items():
        for m in cl.take(h, w):
            assert m["method"] == "agent.event" and m["params"]["recipients"] == ["T"]
            seen.setdefault(m["params"]["event"]["source"], []).append((h, m["params"]["event"]["data"]))
    assert sorted(seen) == sorted(sources)
    for n, source in enumerate(sources):
        (holder,) = {h for h, _ in seen[source]}  # one instance per source, cluster-wide
        assert [d for _, d in seen[source]] == [n, n + len(sources)]  # once each, in order
        assert cl.engines["A"].placement_of("T", source) == holder
    assert len({h for s in seen.values() for h, _ in s}) > 1  # spread over the hosts


def test_a_later_publish_waits_behind_one_that_waits_for_its_placement() -> None:
    cl = Cluster("A", "B")
    reg = Registry(cl)
    pool(cl, reg, ("B",))
    other = cl.worker("B")
    cl.send("B", other, req(1, "runtime.register_agent", {"type": "plain"}))
    sub = {"kind": "type", "id": "plain-t", "topic_type": "t", "agent_type": "plain"}
    cl.send("B", other, req(2, "runtime.add_subscription", {"subscription": sub}))
    reg.collect()
    cl.engines["A"].peer_registered(cl.peer["A"]["B"], "plain")
    cl.take("B", other)
    publisher = cl.worker("A")
    for n, source in enumerate(["new", "new", "x"]):
        event = {"specversion": "1.0", "id": f"e{n}", "source": source, "type": "t", "data": n}
        cl.send("A", publisher, note("agent.publish", event))
    assert cl.take("B", other) == []  # nothing overtakes the first publish
    reg.settle()
    assert [m["params"]["event"]["data"] for m in cl.take("B", other)] == [0, 1, 2]


def test_a_hosts_keys_are_free_when_it_goes_and_are_placed_again_on_the_survivors() -> None:
    cl = Cluster("A", "B", "C")
    reg = Registry(cl)
    members = pool(cl, reg, ("A", "B"))
    caller = cl.worker("C")
    keys = [f"k{i}" for i in range(12)]
    for n, key in enumerate(keys):
        call(cl, "C", caller, key, n)
    reg.settle()
    on_a = [k for k in keys if cl.engines["C"].placement_of("T", k) == "A"]
    assert on_a and len(on_a) < len(keys)
    answer_calls(cl, members)
    cl.take("C", caller)
    for h in ("B", "C"):
        cl.engines[h].remove_peer(cl.peer[h]["A"], 0.0)  # A is gone
    del members["A"]
    for k in on_a:
        del reg.placements[("T", k)]  # (the survivors delete its entries)
        assert cl.engines["C"].placement_of("T", k) is None
    for n, key in enumerate(on_a):
        call(cl, "C", caller, key, 100 + n)
    reg.settle()
    assert answer_calls(cl, members) == {"B": on_a}


def test_a_call_fails_with_the_reason_when_its_key_cannot_be_placed() -> None:
    cl = Cluster("A", "B")
    reg = Registry(cl)
    pool(cl, reg, ("B",))
    caller = cl.worker("A")
    call(cl, "A", caller, "k", 1)
    reg.collect()
    ((_, claim),) = reg.claims
    cl.engines["A"].placement_settled(claim.claim, None, "the cluster link is down")
    cl.pump()
    (answer,) = cl.take("A", caller)
    assert answer["error"]["code"] == ErrorCode.AGENT_TYPE_NOT_FOUND
    assert "T/k was not placed: the cluster link is down" in answer["error"]["message"]


def test_a_call_waiting_for_its_placement_can_be_cancelled_and_its_deadline_counts() -> None:
    cl = Cluster("A", "B")
    reg = Registry(cl)
    pool(cl, reg, ("B",))
    caller = cl.worker("A")
    call(cl, "A", caller, "k1", 1)
    cl.send("A", caller, note("$/cancelRequest", {"id": 1}))
    (answer,) = cl.take("A", caller)
    assert answer["id"] == 1 and answer["error"]["code"] == ErrorCode.CANCELLED
    call(cl, "A", caller, "k2", 2, timeout_ms=500)
    reg.collect()
    claim = next(op for _, op in reg.claims if op.key == "k2")
    cl.engines["A"].placement_settled(claim.claim, "B", now=1.0)
    cl.pump()
    answers = {a["id"]: a for a in cl.take("A", caller)}
    assert answers[2]["error"]["code"] == ErrorCode.DEADLINE_EXCEEDED


def test_the_last_member_leaving_a_host_takes_the_host_out_of_the_pool() -> None:
    cl = Cluster("A", "B")
    reg = Registry(cl)
    members = pool(cl, reg, ("A", "B"))
    assert cl.engines["B"].peer_joined_pool(cl.peer["B"]["A"], "T")
    cl.engines["A"].disconnect(members["A"], 0.0)
    ops = cl.engines["A"].cluster_to_send()
    assert AgentTypeReleased("T") in ops
    # a non-shared registration of T on A is refused while B has members
    w = cl.worker("A")
    cl.send("A", w, req(1, "runtime.register_agent", {"type": "T"}))
    (refused,) = cl.take("A", w)
    assert refused["error"]["code"] == ErrorCode.AGENT_TYPE_ALREADY_REGISTERED
    assert "host B" in refused["error"]["message"] and "shared_agent_types=True" in refused["error"]["message"]


def test_a_one_shot_call_to_a_shared_type_waits_for_its_placement() -> None:
    cl = Cluster("A", "B")
    reg = Registry(cl)
    members = pool(cl, reg, ("B",))
    one_shot = cl.engines["A"].connect(ClientKind.ONE_SHOT)
    cl.local[("A", one_shot)] = []
    call(cl, "A", one_shot, "k", 9)
    assert cl.take("A", one_shot) == []  # not answered (nor closed) yet
    reg.settle()
    answer_calls(cl, members)
    answer, closed = cl.take("A", one_shot)
    assert answer["id"] == 9 and answer["result"]["data"] == "B" and "close" in closed
