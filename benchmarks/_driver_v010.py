"""The ``v010`` peer: the predecessor package ``autogen-http-runtime==0.1.0``.

It installs the same top-level name (``autogen_http_runtime``) as our compatibility shim, so
this module only ever runs inside the separate virtualenv made by ``_v010_env``.
API used: ``HttpAgentServer(address, port)`` with a synchronous ``start()`` that schedules a
uvicorn server on the running loop (it cannot report an ephemeral port) and ``await stop()``;
``HttpWorkerAgentRuntime("http://HOST:PORT")`` with the usual ``AgentRuntime`` methods.
"""

from __future__ import annotations

import logging

from _agents import payload_serializers
from _net import LOOPBACK, free_port, wait_port_open
from _runtime_peer import RuntimeDriver
from autogen_core import AgentRuntime

from autogen_http_runtime.runtimes.http import HttpAgentServer, HttpWorkerAgentRuntime


class V010Driver(RuntimeDriver):
    def __init__(self) -> None:
        self._server: HttpAgentServer | None = None

    async def start_host(self) -> int:
        port = free_port()
        self._server = HttpAgentServer(address=LOOPBACK, port=port)
        self._server.start()
        await wait_port_open(port)
        # uvicorn logs one access line per HTTP request by default; measure the runtime, not that.
        logging.getLogger("uvicorn.access").disabled = True
        return port

    async def stop_host(self) -> None:
        if self._server is not None:
            await self._server.stop()
            self._server = None

    async def start_worker(self, port: int) -> AgentRuntime:
        runtime = HttpWorkerAgentRuntime(f"http://{LOOPBACK}:{port}")
        runtime.add_message_serializer(payload_serializers())
        await runtime.start()
        return runtime

    async def stop_worker(self, runtime: AgentRuntime) -> None:
        assert isinstance(runtime, HttpWorkerAgentRuntime)
        await runtime.stop()
