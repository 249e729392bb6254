"""Host engines of a cluster wired frame for frame, as the cluster driver wires them over NATS,
for the cluster state machines: :func:`pump` carries every frame until nothing moves."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from sansio_runtime import ClientId, HostEngine, Send


def pump(
    engines: Mapping[str, HostEngine],
    peer: Mapping[str, Mapping[str, ClientId]],
    alive: set[str],
    registry: Callable[[str], None],
    to_worker: Callable[[str, ClientId, Any], None],
) -> None:
    """Until nothing moves: ``registry(host)`` takes each engine's requests for the cluster; a frame
    for another host is received there (if both are alive; never ``agent.event``); a frame for a
    worker goes to ``to_worker(host, client, message)``."""
    moved, rounds = True, 0
    while moved:
        moved, rounds = False, rounds + 1
        assert rounds < 60, "frames keep circulating between the hosts (a relay loop)"
        for name, engine in engines.items():
            registry(name)
            for out in engine.data_to_send():
                assert isinstance(out, Send), out
                moved = True
                target = next((b for b, c in peer[name].items() if c == out.client), None)
                if target is None:
                    to_worker(name, out.client, json.loads(out.data))
                    continue
                assert b'"agent.event"' not in out.data, "a peer was sent agent.event"
                if target in alive and name in alive:
                    engines[target].receive(peer[target][name], out.data, 0.0)
