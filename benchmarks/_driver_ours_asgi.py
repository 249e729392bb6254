"""The ``ours_asgi`` peer: the same runtime, its host mounted in FastAPI under uvicorn.

``HttpAgentService.asgi_app()`` mounted at ``/agents`` in a FastAPI app served by uvicorn (on the
benchmark's asyncio loop, wsproto WebSockets, no access log); workers connect to
``http://127.0.0.1:PORT/agents``. Against ``ours`` in the same run, it prices the ASGI path.
"""

from __future__ import annotations

import asyncio
import socket

import uvicorn
from _agents import payload_serializers
from _driver_ours import OursDriver
from _net import LOOPBACK
from autogen_core import AgentRuntime
from fastapi import FastAPI

from io_backends import HttpWorkerAgentRuntime
from io_backends.host import HttpAgentService

START_TIMEOUT_S = 10.0


class OursAsgiDriver(OursDriver):
    def __init__(self) -> None:
        super().__init__()
        self._uvicorn: uvicorn.Server | None = None
        self._serving: asyncio.Future[None] | None = None
        self._socket: socket.socket | None = None

    async def start_host(self) -> int:
        app = FastAPI()
        app.mount("/agents", HttpAgentService().asgi_app())
        sock = socket.socket()
        sock.bind((LOOPBACK, 0))
        self._socket = sock
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", ws="wsproto")
        self._uvicorn = server = uvicorn.Server(config)
        self._serving = asyncio.ensure_future(server.serve(sockets=[sock]))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT_S
        while not server.started:
            if self._serving.done() or loop.time() > deadline:
                raise RuntimeError("uvicorn did not start")
            await asyncio.sleep(0.01)
        return int(sock.getsockname()[1])

    async def stop_host(self) -> None:
        if self._uvicorn is not None and self._serving is not None:
            self._uvicorn.should_exit = True
            await asyncio.wait_for(self._serving, START_TIMEOUT_S)
            self._uvicorn = self._serving = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    async def start_worker(self, port: int) -> AgentRuntime:
        runtime = HttpWorkerAgentRuntime(f"http://{LOOPBACK}:{port}/agents")
        runtime.add_message_serializer(payload_serializers())
        await runtime.start()
        return runtime
