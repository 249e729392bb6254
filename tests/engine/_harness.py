"""A tiny in-memory "network": one HostEngine wired to N WorkerEngines by plain function calls.

Frames a worker queues go to ``HostEngine.receive``; every :class:`Send` the host returns goes to the
addressed worker's ``receive``; frames the workers queue in reply are carried on until nothing
moves. :class:`Close` instructions are recorded (and, like a real backend would, the closed client is
then disconnected unless ``auto_disconnect`` is off).
"""

from __future__ import annotations

import json
from typing import Any

from sansio_runtime import (
    ClientId,
    ClientKind,
    Close,
    HostEngine,
    HostOutput,
    Send,
    WorkerEngine,
    WorkerEvent,
)


class Network:
    def __init__(
        self, n_workers: int = 2, *, host: HostEngine | None = None, auto_disconnect: bool = True, **host_kwargs: Any
    ) -> None:
        self.host = host if host is not None else HostEngine(**host_kwargs)
        self.auto_disconnect = auto_disconnect
        self.workers: list[WorkerEngine] = []
        self.ids: list[ClientId] = []
        self.closes: list[Close] = []
        self.host_sends: list[Send] = []  # every frame the host sent, in order
        self.events: list[list[WorkerEvent]] = []  # per worker, everything received so far
        for _ in range(n_workers):
            self.add_worker()

    def add_worker(self, **worker_kwargs: Any) -> int:
        self.workers.append(WorkerEngine(**worker_kwargs))
        self.ids.append(self.host.connect(ClientKind.CHANNEL))
        self.events.append([])
        return len(self.workers) - 1

    def index_of(self, client: ClientId) -> int | None:
        try:
            return self.ids.index(client)
        except ValueError:
            return None

    def deliver(self, outputs: list[HostOutput], now: float, into: list[list[WorkerEvent]]) -> bool:
        """Carry out host outputs; returns whether anything moved."""
        moved = False
        for o in outputs:
            moved = True
            if isinstance(o, Send):
                self.host_sends.append(o)
                i = self.index_of(o.client)
                if i is None:  # a one-shot or raw client: the test reads host_sends itself
                    continue
                evs = self.workers[i].receive(o.data, now)
                into[i].extend(evs)
                self.events[i].extend(evs)
            else:
                self.closes.append(o)
                if self.auto_disconnect:
                    self.deliver(gone(self.host, o.client, now), now, into)
        return moved

    def pump(self, now: float = 0.0) -> list[list[WorkerEvent]]:
        """Move frames until quiescent; returns the events each worker received during this pump."""
        got: list[list[WorkerEvent]] = [[] for _ in self.workers]
        moved = True
        while moved:
            moved = False
            for i, w in enumerate(self.workers):
                if self.host.client_state(self.ids[i]) is None:
                    w.data_to_send()  # connection gone: drop what it queued
                    continue
                for frame in w.data_to_send():
                    moved = True
                    self.deliver(feed(self.host, self.ids[i], frame, now), now, got)
        return got

    def timer(self, now: float) -> list[list[WorkerEvent]]:
        """Fire the host timer and every worker timer at ``now`` and pump."""
        got: list[list[WorkerEvent]] = [[] for _ in self.workers]
        self.deliver(tick(self.host, now), now, got)
        for i, w in enumerate(self.workers):
            evs = w.handle_timer(now)
            got[i].extend(evs)
            self.events[i].extend(evs)
        more = self.pump(now)
        for i, evs in enumerate(more):
            got[i].extend(evs)
        return got

    def disconnect(self, i: int, now: float = 0.0) -> list[list[WorkerEvent]]:
        """Worker ``i``'s connection drops."""
        got: list[list[WorkerEvent]] = [[] for _ in self.workers]
        self.deliver(gone(self.host, self.ids[i], now), now, got)
        lost = self.workers[i].connection_lost()
        got[i].extend(lost)
        self.events[i].extend(lost)
        more = self.pump(now)
        for j, evs in enumerate(more):
            got[j].extend(evs)
        return got


# ---------------------------------------------------------------------------------------------
# One input to the host engine and what it queued, for tests that talk to the host directly


def feed(host: HostEngine, client: ClientId, data: bytes | str, now: float = 0.0) -> list[HostOutput]:
    """``host.receive`` one frame, then take what it queued."""
    host.receive(client, data, now)
    return host.data_to_send()


def gone(host: HostEngine, client: ClientId, now: float = 0.0) -> list[HostOutput]:
    """``host.disconnect``, then take what it queued."""
    host.disconnect(client, now)
    return host.data_to_send()


def tick(host: HostEngine, now: float) -> list[HostOutput]:
    """``host.handle_timer``, then take what it queued."""
    host.handle_timer(now)
    return host.data_to_send()


def shutdown(host: HostEngine, *args: Any) -> list[HostOutput]:
    """``host.close_all``, then take what it queued."""
    host.close_all(*args)
    return host.data_to_send()


# ---------------------------------------------------------------------------------------------
# Raw JSON helpers for tests that talk to the host directly


def req(id: Any, method: str, params: Any = None) -> bytes:
    msg: dict[str, Any] = {"jsonrpc": "2.0", "id": id, "method": method}
    if params is not None:
        msg["params"] = params
    return json.dumps(msg).encode()


def note(method: str, params: Any = None) -> bytes:
    msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        msg["params"] = params
    return json.dumps(msg).encode()


def call_params(agent_type: str = "echo", key: str = "k", data: Any = "hi", **extra: Any) -> dict[str, Any]:
    return {
        "target": {"type": agent_type, "key": key},
        "data_type": "str",
        "data_content_type": "application/json",
        "data": data,
        **extra,
    }


def sends(outputs: list[HostOutput]) -> list[Send]:
    return [o for o in outputs if isinstance(o, Send)]


def closes(outputs: list[HostOutput]) -> list[Close]:
    return [o for o in outputs if isinstance(o, Close)]


def loads(data: bytes) -> Any:
    return json.loads(data)


def only_send(outputs: list[HostOutput], client: ClientId | None = None) -> Any:
    """The decoded body of the single Send in ``outputs`` (to ``client`` if given)."""
    s = sends(outputs)
    assert len(s) == 1, outputs
    if client is not None:
        assert s[0].client == client, outputs
    return json.loads(s[0].data)
