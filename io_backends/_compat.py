"""Every use this project makes of something private to asyncio or autogen-core, in one place.

Each is something no public API offers: the serializer classes autogen-core registers (to read
and substitute them), the tracing helper its runtimes share (so spans are named as gRPC's are),
and asyncio's queue of ready callbacks (to write many answers in one system call). If an
upgrade renames or removes one of them, ``tests/test_compat.py`` fails and says which.
(AgentChat's private names are in ``io_backends/agentchat/_internals.py``, for the same reason.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Sized

from autogen_core._serialization import (
    DataclassJsonMessageSerializer,
    PydanticJsonMessageSerializer,
    SerializationRegistry,
)
from autogen_core._telemetry import MessageRuntimeTracingConfig, TraceHelper, get_telemetry_grpc_metadata
from autogen_core._telemetry._tracing_config import (
    ExtraMessageRuntimeAttributes,
    MessagingDestination,
    MessagingOperation,
)


def ready_callbacks(loop: asyncio.AbstractEventLoop) -> Sized | None:
    """The callbacks asyncio's own loops will run before they next poll (``loop._ready``), or None
    on loops that do not say (uvloop): a send made while others are ready waits to share a write."""
    ready = getattr(loop, "_ready", None)
    return ready if isinstance(ready, Sized) else None


__all__ = [
    "DataclassJsonMessageSerializer",
    "ExtraMessageRuntimeAttributes",
    "MessageRuntimeTracingConfig",
    "MessagingDestination",
    "MessagingOperation",
    "PydanticJsonMessageSerializer",
    "SerializationRegistry",
    "TraceHelper",
    "get_telemetry_grpc_metadata",
    "ready_callbacks",
]
