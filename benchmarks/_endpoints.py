"""What a workload drives, and what every peer must provide to be benchmarked."""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

from _config import Mode


class NotApplicable(Exception):
    """The workload or mode does not apply to this peer (e.g. pub/sub on a raw socket)."""


class PeerUnavailable(Exception):
    """The peer cannot run here (missing package, failed install): reported as skipped."""


class RpcClient(Protocol):
    async def call(self, body: str) -> str:
        """One request/response round trip; returns the echoed body."""
        ...


class Publisher(Protocol):
    async def publish(self, body: str) -> None: ...


@dataclass(frozen=True)
class Deliveries:
    count: int
    last_monotonic: float  # time.monotonic() of the latest delivery, 0.0 if none


class DeliveryCounter(Protocol):
    async def snapshot(self) -> Deliveries:
        """Events delivered so far, summed over every subscriber agent."""
        ...


@dataclass(frozen=True)
class PubSubEnds:
    publisher: Publisher
    deliveries: DeliveryCounter


@dataclass(frozen=True)
class RoleSpec:
    """A helper process of ``--mode multiproc``: the host, or a callee worker."""

    role: str  # "host" or "worker"
    peer: str
    port: int = 0  # worker: the host's port
    echo: bool = False  # worker: register the echo agent
    counters: tuple[int, ...] = ()  # worker: indices of the counting subscribers it hosts


class Peer(ABC):
    """A system under test. Each topology is built fresh for one workload and torn down after."""

    name: str
    supports_pubsub: bool = True

    @abstractmethod
    def rpc_topology(self, mode: Mode) -> AbstractAsyncContextManager[RpcClient]:
        """Host + callee worker with the echo agent + caller worker; yields the caller's client."""

    def pubsub_topology(self, mode: Mode, subscribers: int, workers: int) -> AbstractAsyncContextManager[PubSubEnds]:
        """Host + publisher worker + ``workers`` workers sharing ``subscribers`` counting agents."""
        raise NotApplicable(f"{self.name} has no publish/subscribe")

    @abstractmethod
    async def run_role(self, spec: RoleSpec) -> None:
        """Body of a multiproc helper process (see ``_roles``)."""
