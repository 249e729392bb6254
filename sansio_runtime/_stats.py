"""The engines' counters, for metrics, status pages and tests."""

from __future__ import annotations

from dataclasses import dataclass, field

from ._events import ClientId
from ._pools import SharedTypes


@dataclass(slots=True)
class HostStats:
    """Counters for metrics and tests, and the pools of the shared agent types."""

    frames_received: int = 0
    calls_forwarded: int = 0
    calls_failed: int = 0
    """Routed calls that ended with an error: the target's, or the host's (deadline, cancelled,
    target gone)."""
    calls_refused: int = 0
    """``agent.call`` s refused before routing (no such agent type, too many in flight, bad params)."""
    events_published: int = 0
    event_deliveries: int = 0
    responses_dropped: int = 0
    """Responses that answered no call pending on the sender (late, foreign or bogus ids)."""
    errors_sent: int = 0
    events_unreadable: int = 0
    """Event deliveries a worker reported it could not read (UNREADABLE_PAYLOAD with id null)."""
    events_unplaced: int = 0
    """Event deliveries to a shared type's instance lost because the cluster could not place it
    (its link was down, docs/CLUSTER.md section 8)."""
    shared: SharedTypes = field(default_factory=SharedTypes, repr=False, compare=False)
    """The host's shared agent types (the engine's own table, read through :attr:`shared_types`)."""

    @property
    def shared_types(self) -> dict[str, dict[str, int]]:
        """Per shared agent type, its workers (by ``X-Client-Id``, in the order they joined) and
        how many agent instances each holds now."""
        shared = self.shared
        return {
            agent_type: {_label(shared, member): keys for member, keys in counts.items()}
            for agent_type, counts in shared.keys_per_member().items()
        }


def _label(shared: SharedTypes, member: ClientId) -> str:
    name = shared.name_of(member)
    return f"connection {member}" if name is None else name


@dataclass(slots=True)
class WorkerStats:
    """Counters of one worker engine (over all its connections), for metrics and tests."""

    calls_received: int = 0
    """``agent.call`` requests the host sent us to handle."""
    events_received: int = 0
    """``agent.event`` deliveries the host sent us."""
    events_dropped: int = 0
    """``agent.event`` deliveries that were not valid events (answered with an id-null error)."""
    calls_unreadable: int = 0
    """Calls answered with UNREADABLE_PAYLOAD: no serializer here could read their message."""
    events_unreadable: int = 0
    """Events whose payload no serializer here could read (reported to the host)."""
    results_unreadable: int = 0
    """Answers to our calls whose payload no serializer here could read."""


__all__ = ["HostStats", "WorkerStats"]
