"""What the hosts of a cluster write to NATS: names, the registry's keys and values, presence
messages (docs/PROTOCOL.md section 11), and how a host joins (:class:`ClusterSettings`)."""

from __future__ import annotations

import base64
import hashlib
import re
import socket
from dataclasses import dataclass

import msgspec

from sansio_runtime import SubscriptionSpec
from sansio_runtime._membership import DEFAULT_DEAD_AFTER, DEFAULT_HEARTBEAT_INTERVAL, DEFAULT_SUSPECT_AFTER

NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
DELETED = ("DEL", "PURGE")
PING, PONG, STALE = b"ping", b"pong", b"stale"


def default_host_name(port: int) -> str:
    """``<hostname>-<port>``, cut to the characters a NATS subject token may hold."""
    base = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())[:50] or "host"
    return f"{base}-{port}"


def key_of(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


def text_of(key: str) -> str:
    return base64.urlsafe_b64decode(key + "=" * (-len(key) % 4)).decode()


def pool_key(agent_type: str, host: str) -> str:
    """The key of ``host``'s entry in the pool of the shared type ``agent_type`` (``<c>_pool``)."""
    return f"{key_of(agent_type)}.{host}"


def placement_key(agent_type: str, key: str) -> str:
    """The key of ``AgentId(agent_type, key)``'s entry in ``<c>_placements``: hex BLAKE2b-128 of
    ``type NUL key`` (any length, any character; the value holds both in full)."""
    text = f"{agent_type}\0{key}".encode("utf-8", "surrogatepass")
    return hashlib.blake2b(text, digest_size=16).hexdigest()


class TypeRecord(msgspec.Struct, frozen=True):
    """The value of an agent type's key in ``<c>_types``: who hosts it (``shared``: who made it a
    shared type; its hosts are then the pool's entries)."""

    host: str
    epoch: int
    shared: bool = False


class PoolRecord(msgspec.Struct, frozen=True):
    """The value of a key in ``<c>_pool``: ``host`` has workers in the pool of shared type ``type``."""

    host: str
    epoch: int
    type: str


class PlacementRecord(msgspec.Struct, frozen=True):
    """The value of a key in ``<c>_placements``: ``AgentId(type, key)`` lives on ``host``."""

    host: str
    epoch: int
    type: str
    key: str


class SubscriptionRecord(msgspec.Struct, frozen=True):
    """The value of a key in ``<c>_subs``: one subscription of a worker of ``host``."""

    host: str
    epoch: int
    subscription: SubscriptionSpec


class Presence(msgspec.Struct, frozen=True):
    """A heartbeat (or a goodbye) on ``<c>.presence``."""

    host: str
    epoch: int
    goodbye: bool = False


@dataclass(frozen=True)
class ClusterSettings:
    """How a host joins its cluster (defaults: docs/CLUSTER.md section 11)."""

    url: str
    """The NATS server(s): ``nats://host:4222``, several separated by commas."""
    name: str = "agrt"
    """The cluster's name: the prefix of every subject and bucket (hosts with other names do not meet)."""
    host_name: str | None = None
    """This host's name, unique in the cluster (default ``<hostname>-<port>``)."""
    heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL
    suspect_after: float = DEFAULT_SUSPECT_AFTER
    dead_after: float = DEFAULT_DEAD_AFTER
    connect_timeout: float = 5.0
    replicas: int | None = None
    """How many NATS servers keep each key-value bucket (1-5; JetStream's stream replicas). None:
    3 when ``url`` lists several servers (a NATS cluster: the buckets survive the loss of one
    server), else 1. Applies when a host creates the buckets; existing ones are used as they are."""

    @property
    def servers(self) -> list[str]:
        """The NATS server URLs in ``url``, in the order given."""
        return [u.strip() for u in self.url.split(",") if u.strip()]

    @property
    def bucket_replicas(self) -> int:
        if self.replicas is not None:
            return self.replicas
        return 3 if len(self.servers) > 1 else 1

    def __post_init__(self) -> None:
        if self.replicas is not None and not 1 <= self.replicas <= 5:
            raise ValueError(f"cluster replicas {self.replicas}: use 1 to 5 (JetStream keeps at most 5 copies)")
        if not NAME.fullmatch(self.name):
            raise ValueError(f"cluster name {self.name!r}: use 1-64 of A-Z a-z 0-9 _ -")
        if self.host_name is not None and not NAME.fullmatch(self.host_name):
            raise ValueError(f"host name {self.host_name!r}: use 1-64 of A-Z a-z 0-9 _ -")


__all__ = [
    "DELETED",
    "NAME",
    "PING",
    "PONG",
    "STALE",
    "ClusterSettings",
    "PlacementRecord",
    "PoolRecord",
    "Presence",
    "SubscriptionRecord",
    "TypeRecord",
    "default_host_name",
    "key_of",
    "placement_key",
    "pool_key",
    "text_of",
]
