"""Engines of a cluster wired by hand, frame for frame, as the cluster driver wires them over
NATS: whatever engine A sends to its peer client "B" is received by engine B from its peer client
"A". Each engine is named as its host (``enable_cluster(name)``)."""

from __future__ import annotations

from typing import Any

from sansio_runtime import ClaimAgentType, ClientId, ClientKind, Close, HostEngine, TypeSubscriptionSpec

from ._harness import loads, req


class Cluster:
    """Engines that know each other as peers; :meth:`pump` carries frames between them."""

    def __init__(self, *names: str) -> None:
        self.engines = {n: HostEngine() for n in names}
        for n, e in self.engines.items():
            e.enable_cluster(n)
        # peer[a][b]: engine a's client id for host b
        self.peer = {a: {b: self.engines[a].add_peer(b) for b in names if b != a} for a in names}
        self.local: dict[tuple[str, ClientId], list[Any]] = {}

    def worker(self, host: str) -> ClientId:
        c = self.engines[host].connect(ClientKind.CHANNEL)
        self.local[(host, c)] = []
        return c

    def send(self, host: str, client: ClientId, frame: bytes) -> None:
        self.engines[host].receive(client, frame, 0.0)
        self.pump()

    def pump(self) -> None:
        moved = True
        while moved:
            moved = False
            for name, engine in self.engines.items():
                for out in engine.data_to_send():
                    moved = True
                    if isinstance(out, Close):  # (a one-shot client answered)
                        self.local[(name, out.client)].append({"close": out.code})
                        continue
                    target = next((b for b, c in self.peer[name].items() if c == out.client), None)
                    if target is None:
                        self.local[(name, out.client)].append(loads(out.data))
                    else:
                        self.engines[target].receive(self.peer[target][name], out.data, 0.0)

    def register(self, host: str, worker: ClientId, agent_type: str, id: int = 1) -> int:
        """Register and return the claim the engine asked the driver for."""
        self.send(host, worker, req(id, "runtime.register_agent", {"type": agent_type}))
        claims = [o for o in self.engines[host].cluster_to_send() if isinstance(o, ClaimAgentType)]
        assert [c.agent_type for c in claims] == [agent_type]
        return claims[0].claim

    def take(self, host: str, worker: ClientId) -> list[Any]:
        got, self.local[(host, worker)] = self.local[(host, worker)], []
        return got


def spec(sid: str, topic: str, agent: str) -> TypeSubscriptionSpec:
    return TypeSubscriptionSpec(id=sid, topic_type=topic, agent_type=agent)
