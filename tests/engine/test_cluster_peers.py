"""HostEngine in a cluster (docs/CLUSTER.md section 4): other hosts are clients of kind PEER.

Two or three engines are wired by hand here, frame for frame, as the cluster driver wires them
over NATS: whatever engine A sends to its peer client "B" is received by engine B from its peer
client "A".
"""

from __future__ import annotations

import pytest

from sansio_runtime import (
    AgentTypeReleased,
    ErrorCode,
    HostEngine,
    LocalProtocolError,
    Send,
    SubscriptionAdded,
    SubscriptionRemoved,
)

from ._cluster_harness import Cluster, spec
from ._harness import call_params, feed, loads, note, req


def test_a_registration_is_answered_when_its_claim_settles() -> None:
    cl = Cluster("A")
    w = cl.worker("A")
    claim = cl.register("A", w, "echo")
    assert cl.take("A", w) == []  # held
    assert cl.engines["A"].agent_types() == {"echo": w}  # routed here meanwhile
    cl.engines["A"].claim_settled(claim, won=True)
    cl.pump()
    assert cl.take("A", w) == [{"jsonrpc": "2.0", "id": 1, "result": None}]
    assert cl.engines["A"].pending_claims() == []


def test_a_lost_claim_is_refused_and_the_type_is_free_again() -> None:
    cl = Cluster("A", "B")
    w = cl.worker("A")
    claim = cl.register("A", w, "echo")
    cl.engines["A"].claim_settled(claim, won=False, holder="host B")
    cl.pump()
    (answer,) = cl.take("A", w)
    assert answer["error"]["code"] == ErrorCode.AGENT_TYPE_ALREADY_REGISTERED
    assert "host B" in answer["error"]["message"] and "echo" in answer["error"]["message"]
    assert cl.engines["A"].agent_types() == {}
    assert cl.engines["A"].peer_registered(cl.peer["A"]["B"], "echo")  # the winner's entry applies now


def test_a_peer_entry_does_not_displace_a_local_worker_and_a_settled_claim_after_its_worker_left_is_dropped() -> None:
    cl = Cluster("A", "B")
    w = cl.worker("A")
    claim = cl.register("A", w, "echo")
    assert not cl.engines["A"].peer_registered(cl.peer["A"]["B"], "echo")
    assert cl.engines["A"].agent_types() == {"echo": w}
    cl.engines["A"].disconnect(w, 0.0)
    assert cl.engines["A"].cluster_to_send() == [AgentTypeReleased("echo")]
    cl.engines["A"].claim_settled(claim, won=True)
    assert cl.engines["A"].data_to_send() == []


def test_a_call_crosses_to_the_peer_that_hosts_the_type_and_its_answer_comes_back() -> None:
    cl = Cluster("A", "B")
    caller, callee = cl.worker("A"), cl.worker("B")
    cl.engines["B"].claim_settled(cl.register("B", callee, "echo"), won=True)
    cl.pump()
    cl.take("B", callee)
    assert cl.engines["A"].peer_registered(cl.peer["A"]["B"], "echo")
    cl.send("A", caller, req(7, "agent.call", call_params("echo")))
    (incoming,) = cl.take("B", callee)
    assert incoming["method"] == "agent.call" and incoming["params"]["target"] == {"type": "echo", "key": "k"}
    cl.send(
        "B",
        callee,
        b'{"jsonrpc":"2.0","id":%d,"result":{"data_type":"str","data_content_type":"application/json","data":"ho"}}'
        % incoming["id"],
    )
    (answer,) = cl.take("A", caller)
    assert answer["id"] == 7 and answer["result"]["data"] == "ho"
    assert cl.engines["A"].pending_calls() == [] and cl.engines["B"].pending_calls() == []


def test_a_peer_gone_fails_the_calls_pending_at_it_and_cancels_the_calls_it_made() -> None:
    cl = Cluster("A", "B")
    a_worker, b_worker = cl.worker("A"), cl.worker("B")
    cl.engines["A"].claim_settled(cl.register("A", a_worker, "on_a"), won=True)
    cl.engines["B"].claim_settled(cl.register("B", b_worker, "on_b"), won=True)
    cl.pump()
    cl.take("A", a_worker)
    cl.take("B", b_worker)
    cl.engines["A"].peer_registered(cl.peer["A"]["B"], "on_b")
    cl.engines["B"].peer_registered(cl.peer["B"]["A"], "on_a")
    cl.send("A", a_worker, req(1, "agent.call", call_params("on_b")))  # A -> B, pending at B's worker
    cl.send("B", b_worker, req(2, "agent.call", call_params("on_a")))  # B -> A, pending at A's worker
    (incoming_at_a,) = cl.take("A", a_worker)
    cl.take("B", b_worker)
    cl.engines["A"].remove_peer(cl.peer["A"]["B"], 0.0)  # A learns that B is gone
    outs = cl.engines["A"].data_to_send()
    bodies = [loads(o.data) for o in outs if isinstance(o, Send)]
    assert {"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": incoming_at_a["id"]}} in bodies
    (failed,) = [b for b in bodies if "error" in b]
    assert failed["id"] == 1 and failed["error"]["code"] == ErrorCode.TARGET_DISCONNECTED
    assert cl.engines["A"].agent_types() == {"on_a": a_worker}  # B's type is gone with it
    assert cl.engines["A"].pending_calls() == []
    with pytest.raises(LocalProtocolError):
        cl.engines["A"].peer_registered(cl.peer["A"]["B"], "on_b")


def test_a_peer_never_relays_a_call_to_another_peer() -> None:
    cl = Cluster("A", "B", "C")
    cl.engines["A"].peer_registered(cl.peer["A"]["C"], "on_c")
    answer = feed(cl.engines["A"], cl.peer["A"]["B"], req(5, "agent.call", call_params("on_c")))
    (out,) = answer
    assert isinstance(out, Send) and out.client == cl.peer["A"]["B"]
    assert loads(out.data)["error"]["code"] == ErrorCode.AGENT_TYPE_NOT_FOUND


def test_a_publish_reaches_each_host_once_and_peers_deliver_to_their_own_workers_only() -> None:
    cl = Cluster("A", "B", "C")
    pub = cl.worker("A")
    subs = {h: [cl.worker(h), cl.worker(h)] for h in ("A", "B", "C")}
    # Every host's two workers host one type each, subscribed to topic "t"; each host knows the others'.
    for h, workers in subs.items():
        for i, w in enumerate(workers):
            t = f"{h}{i}"
            cl.engines[h].claim_settled(cl.register(h, w, t), won=True)
            cl.send(
                h,
                w,
                req(
                    2,
                    "runtime.add_subscription",
                    {"subscription": {"kind": "type", "id": t, "topic_type": "t", "agent_type": t}},
                ),
            )
            assert cl.engines[h].cluster_to_send() == [SubscriptionAdded(spec(t, "t", t))]
            cl.take(h, w)
            for other in cl.engines:
                if other != h:
                    cl.engines[other].peer_registered(cl.peer[other][h], t)
                    cl.engines[other].peer_subscribed(cl.peer[other][h], spec(t, "t", t))
    for n in range(3):
        event = {"specversion": "1.0", "id": f"e{n}", "source": "s", "type": "t", "data": n}
        cl.send("A", pub, note("agent.publish", event))
    for h, workers in subs.items():
        for i, w in enumerate(workers):
            got = cl.take(h, w)
            assert [m["params"]["event"]["data"] for m in got] == [0, 1, 2], (h, i)  # once each, in order
            assert all(m["params"]["recipients"] == [f"{h}{i}"] for m in got)
    assert cl.engines["A"].stats.event_deliveries == 6  # A's own two workers, 3 events each


def test_a_leaving_worker_releases_its_types_and_subscriptions_cluster_wide() -> None:
    cl = Cluster("A")
    w = cl.worker("A")
    cl.engines["A"].claim_settled(cl.register("A", w, "x"), won=True)
    cl.send(
        "A",
        w,
        req(
            2,
            "runtime.add_subscription",
            {"subscription": {"kind": "type", "id": "s1", "topic_type": "t", "agent_type": "x"}},
        ),
    )
    cl.send("A", w, req(3, "runtime.remove_subscription", {"id": "s1"}))
    cl.send(
        "A",
        w,
        req(
            4,
            "runtime.add_subscription",
            {"subscription": {"kind": "type", "id": "s2", "topic_type": "t", "agent_type": "x"}},
        ),
    )
    assert cl.engines["A"].cluster_to_send() == [
        SubscriptionAdded(spec("s1", "t", "x")),
        SubscriptionRemoved("s1"),
        SubscriptionAdded(spec("s2", "t", "x")),
    ]
    cl.engines["A"].disconnect(w, 0.0)
    assert cl.engines["A"].cluster_to_send() == [AgentTypeReleased("x"), SubscriptionRemoved("s2")]


def test_an_unknown_type_names_the_cluster_and_a_down_link() -> None:
    cl = Cluster("A")
    w = cl.worker("A")
    cl.send("A", w, req(1, "agent.call", call_params("nowhere")))
    (answer,) = cl.take("A", w)
    assert answer["error"]["code"] == ErrorCode.AGENT_TYPE_NOT_FOUND and "cluster" in answer["error"]["message"]
    cl.engines["A"].set_cluster_link(False)
    cl.send("A", w, req(2, "agent.call", call_params("nowhere")))
    (answer,) = cl.take("A", w)
    assert "cluster link is down" in answer["error"]["message"]


def test_a_host_that_is_not_clustered_asks_nothing_of_a_driver() -> None:
    h = HostEngine()
    w = h.connect()
    out = feed(h, w, req(1, "runtime.register_agent", {"type": "x"}))
    assert loads(out[0].data)["result"] is None  # type: ignore[union-attr]
    assert h.cluster_to_send() == []


def test_a_peer_cannot_register_by_frame() -> None:
    cl = Cluster("A", "B")
    (out,) = feed(cl.engines["A"], cl.peer["A"]["B"], req(1, "runtime.register_agent", {"type": "x"}))
    assert loads(out.data)["error"]["code"] == ErrorCode.METHOD_NOT_FOUND  # type: ignore[union-attr]
    assert cl.engines["A"].agent_types() == {}


def test_a_type_lost_after_a_resync_is_taken_from_the_worker_which_is_told() -> None:
    cl = Cluster("A", "B")
    w = cl.worker("A")
    cl.engines["A"].claim_settled(cl.register("A", w, "echo"), won=True)
    cl.pump()
    cl.take("A", w)
    assert cl.engines["A"].type_lost("echo", "host B")
    cl.pump()
    (told,) = cl.take("A", w)
    assert told["id"] is None and told["error"]["code"] == ErrorCode.AGENT_TYPE_ALREADY_REGISTERED
    assert told["error"]["data"] == {"agent_type": "echo", "holder": "host B"}
    assert "restart it" in told["error"]["message"]
    assert cl.engines["A"].agent_types() == {}
    assert cl.engines["A"].peer_registered(cl.peer["A"]["B"], "echo")
    assert not cl.engines["A"].type_lost("echo", "host B")  # (a peer's type is not ours to lose)
