"""The ``ours`` peer: this project's ``io_backends`` HTTP/WebSocket runtime.

Expected API (written against the announced interface, not an implementation):

* ``HttpAgentServer(address="127.0.0.1", port=0)``; ``start()`` is synchronous, must be called
  with an asyncio loop running, binds before returning and then serves on that loop;
  ``.port`` is the bound port (an ``int``); ``await stop()``.
* ``HttpWorkerAgentRuntime("127.0.0.1:PORT")``: ``await start()``, ``add_message_serializer``,
  ``register_factory``, ``add_subscription``, ``send_message``, ``publish_message``,
  ``await stop()`` -- the ``GrpcWorkerAgentRuntime`` API.
"""

from __future__ import annotations

from _agents import payload_serializers
from _net import LOOPBACK, wait_port_open
from _runtime_peer import RuntimeDriver
from autogen_core import AgentRuntime

from io_backends import HttpAgentServer, HttpWorkerAgentRuntime

BIND_CHECK_TIMEOUT_S = 2.0


class OursDriver(RuntimeDriver):
    def __init__(self) -> None:
        self._server: HttpAgentServer | None = None

    async def start_host(self) -> int:
        self._server = HttpAgentServer(address=LOOPBACK, port=0)
        self._server.start()
        port = int(self._server.port)
        if port <= 0:
            raise RuntimeError(f"HttpAgentServer.port is {port!r} after start(); expected the bound port")
        # start() promises the socket is bound; a short check turns a broken promise into a clear error.
        await wait_port_open(port, timeout_s=BIND_CHECK_TIMEOUT_S)
        return port

    async def stop_host(self) -> None:
        if self._server is not None:
            await self._server.stop()
            self._server = None

    async def start_worker(self, port: int) -> AgentRuntime:
        runtime = HttpWorkerAgentRuntime(f"{LOOPBACK}:{port}")
        runtime.add_message_serializer(payload_serializers())
        await runtime.start()
        return runtime

    async def stop_worker(self, runtime: AgentRuntime) -> None:
        assert isinstance(runtime, HttpWorkerAgentRuntime)
        await runtime.stop()
