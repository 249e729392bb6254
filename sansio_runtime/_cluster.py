"""What a clustered host engine asks of the cluster driver (docs/CLUSTER.md section 4).

A host that is part of a cluster sees every other host as one client of kind
:attr:`~._clients.ClientKind.PEER`; the driver tells the engine which agent types and
subscriptions each peer holds (from the cluster's registry) and carries frames between engines.
In the other direction the engine asks the driver, through these outputs (taken with
``HostEngine.cluster_to_send()``), to make what its own workers register known cluster-wide:

* :class:`ClaimAgentType`: a worker of ours registered a type (or joined a shared type's pool);
  the driver claims it cluster-wide (exactly one host wins a type; a shared type is claimed as
  shared, and every host with members joins its pool) and reports with
  ``HostEngine.claim_settled``. The worker is answered only then.
* :class:`ClaimPlacement`: an instance of a shared type is needed and not placed yet; the driver
  places it cluster-wide (create-if-absent: exactly one proposal wins) and reports the host that
  holds it with ``HostEngine.placement_settled``. The calls and events for it wait until then.
* :class:`AgentTypeReleased`: a type of ours left the registry (unregistered, or its worker went).
* :class:`SubscriptionAdded` / :class:`SubscriptionRemoved`: a subscription of one of our workers.

They are queued in the order they happened; the driver carries them out in that order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from ._wire import SubscriptionSpec


@dataclass(frozen=True, slots=True)
class ClaimAgentType:
    """Claim ``agent_type`` for this host cluster-wide; answer with ``claim_settled(claim, ...)``."""

    claim: int
    agent_type: str
    shared: bool = False
    """Claimed as a shared type: this host joins its pool (refused only if the type is another
    host's own)."""


@dataclass(frozen=True, slots=True)
class ClaimPlacement:
    """Place ``AgentId(agent_type, key)`` of a shared type on ``host`` (the engine's proposal)
    unless it is placed already on a live host; answer with ``placement_settled(claim, ...)``."""

    claim: int
    agent_type: str
    key: str
    host: str


@dataclass(frozen=True, slots=True)
class AgentTypeReleased:
    """``agent_type`` is no longer hosted here: give up the cluster's record of it, if we hold one
    (for a shared type: this host's pool entry, and the placements it holds)."""

    agent_type: str


@dataclass(frozen=True, slots=True)
class SubscriptionAdded:
    """One of our workers added ``subscription``: make it known to the other hosts."""

    subscription: SubscriptionSpec


@dataclass(frozen=True, slots=True)
class SubscriptionRemoved:
    """The subscription ``subscription_id`` of one of our workers is gone."""

    subscription_id: str


ClusterOutput = Union[ClaimAgentType, ClaimPlacement, AgentTypeReleased, SubscriptionAdded, SubscriptionRemoved]

__all__ = [
    "AgentTypeReleased",
    "ClaimAgentType",
    "ClaimPlacement",
    "ClusterOutput",
    "SubscriptionAdded",
    "SubscriptionRemoved",
]
