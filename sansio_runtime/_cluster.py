"""What a clustered host engine asks of the cluster driver (docs/CLUSTER.md section 4).

A host that is part of a cluster sees every other host as one client of kind
:attr:`~._clients.ClientKind.PEER`; the driver tells the engine which agent types and
subscriptions each peer holds (from the cluster's registry) and carries frames between engines.
In the other direction the engine asks the driver, through these outputs (taken with
``HostEngine.cluster_to_send()``), to make what its own workers register known cluster-wide:

* :class:`ClaimAgentType`: a worker of ours registered a type; the driver claims it cluster-wide
  (exactly one host wins) and reports with ``HostEngine.claim_settled``. The worker is answered
  only then.
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


@dataclass(frozen=True, slots=True)
class AgentTypeReleased:
    """``agent_type`` is no longer hosted here: give up the cluster's record of it, if we hold one."""

    agent_type: str


@dataclass(frozen=True, slots=True)
class SubscriptionAdded:
    """One of our workers added ``subscription``: make it known to the other hosts."""

    subscription: SubscriptionSpec


@dataclass(frozen=True, slots=True)
class SubscriptionRemoved:
    """The subscription ``subscription_id`` of one of our workers is gone."""

    subscription_id: str


ClusterOutput = Union[ClaimAgentType, AgentTypeReleased, SubscriptionAdded, SubscriptionRemoved]

__all__ = ["AgentTypeReleased", "ClaimAgentType", "ClusterOutput", "SubscriptionAdded", "SubscriptionRemoved"]
