"""The ``grpc`` peer: AutoGen's own ``GrpcWorkerAgentRuntimeHost`` / ``GrpcWorkerAgentRuntime``."""

from __future__ import annotations

from _agents import payload_serializers
from _net import LOOPBACK, free_port, wait_port_open
from _runtime_peer import RuntimeDriver
from autogen_core import AgentRuntime
from autogen_ext.runtimes.grpc import GrpcWorkerAgentRuntime, GrpcWorkerAgentRuntimeHost

HOST_STOP_GRACE_S = 1


class GrpcDriver(RuntimeDriver):
    def __init__(self) -> None:
        self._host: GrpcWorkerAgentRuntimeHost | None = None

    async def start_host(self) -> int:
        # The host does not report an ephemeral port, so pick a free one first.
        port = free_port()
        self._host = GrpcWorkerAgentRuntimeHost(address=f"{LOOPBACK}:{port}")
        self._host.start()  # schedules serving on the running loop
        await wait_port_open(port)
        return port

    async def stop_host(self) -> None:
        if self._host is not None:
            await self._host.stop(grace=HOST_STOP_GRACE_S)
            self._host = None

    async def start_worker(self, port: int) -> AgentRuntime:
        runtime = GrpcWorkerAgentRuntime(host_address=f"{LOOPBACK}:{port}")
        runtime.add_message_serializer(payload_serializers())
        await runtime.start()
        return runtime

    async def stop_worker(self, runtime: AgentRuntime) -> None:
        assert isinstance(runtime, GrpcWorkerAgentRuntime)
        await runtime.stop()
