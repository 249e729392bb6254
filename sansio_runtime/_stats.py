"""The engines' counters, for metrics, status pages and tests."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class HostStats:
    """Counters for metrics and tests."""

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
