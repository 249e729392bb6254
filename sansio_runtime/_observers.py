"""What the host engine tells observers of the calls it routes (metrics, tracing).

The engine calls a :class:`CallObserver` directly, from its own thread of control: an observer
must be quick and must not call back into the engine.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import msgspec
from msgspec import Raw, UnsetType

from . import _wire as wire
from ._calls import CallEnd


class CallObserver(Protocol):
    """What ``HostEngine.call_observer`` is told of ``agent.call`` s, for metrics and tracing."""

    def call_started(self, host_id: int, target_type: str, metadata: Mapping[str, str] | None) -> None:
        """A call was routed, under ``host_id``; ``metadata`` is the caller's (trace context)."""

    def call_ended(self, host_id: int, duration: float, error_code: int | None, how: CallEnd) -> None:
        """A routed call ended after ``duration`` seconds of the engine's clock, with ``error_code``
        (None: a result, or no one left to hear it: ``how`` is ``CALLER_GONE``)."""

    def call_refused(self, error_code: int) -> None:
        """An ``agent.call`` was refused before it was routed."""


def call_metadata(raw: Raw | UnsetType) -> dict[str, str] | None:
    """A call's ``metadata`` if it is a string map (the target refuses it otherwise), else None."""
    if isinstance(raw, UnsetType):
        return None
    try:
        return wire.METADATA_DECODER.decode(raw)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None


__all__ = ["CallObserver", "call_metadata"]
