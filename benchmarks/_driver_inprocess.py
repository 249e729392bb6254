"""The ``inprocess`` peer: ``SingleThreadedAgentRuntime``, no network at all (the upper bound).

Every "worker" of a topology is the same runtime instance. No message serializer is added:
in-process delivery does not need one, and with one registered this runtime JSON-encodes every
message for its event log even when logging is off (that would charge it for work it skips
in its usual configuration).
"""

from __future__ import annotations

from _runtime_peer import RuntimeDriver
from autogen_core import AgentRuntime, SingleThreadedAgentRuntime


class InProcessDriver(RuntimeDriver):
    def __init__(self) -> None:
        self._runtime: SingleThreadedAgentRuntime | None = None

    async def start_host(self) -> int:
        self._runtime = SingleThreadedAgentRuntime()
        self._runtime.start()
        return 0

    async def stop_host(self) -> None:
        if self._runtime is not None:
            await self._runtime.stop()
            self._runtime = None

    async def start_worker(self, port: int) -> AgentRuntime:
        if self._runtime is None:
            raise RuntimeError("in-process runtime not started")
        return self._runtime

    async def stop_worker(self, runtime: AgentRuntime) -> None:
        """Nothing to do: the shared runtime stops with the "host"."""
