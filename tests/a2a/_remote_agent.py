"""A remote A2A agent built with a2a-sdk's own server (its AgentExecutor, request handler and
Starlette routes), served by uvicorn in a process of its own.

``python tests/a2a/_remote_agent.py [--token T] [--no-streaming] [--protocol 1.0|0.3]`` binds a free
loopback port, prints ``LISTENING <port>`` and serves until SIGTERM. What it does is chosen by the
first word of the message's text (or by a data part's ``"op"``):

* ``hello …``      answers with a Message: ``you said: hello …``
* ``context``      a Message: ``context=<contextId> turn=<n>`` (``n`` counts the messages seen in it)
* ``chunks``       a Task whose text artifact arrives in three appended chunks
* ``{"op": "forecast", "city": c}``  a Task with a data artifact and a text artifact
* ``slow``         a Task that works until it is cancelled (or 30 s pass)
* ``ask``          a Task in ``input-required``; the follow-up message in the task completes it
* ``crash``        the executor raises (a JSON-RPC error answers)
* ``crash-late``   the executor starts a Task, then raises (in a stream: an error event after events)
* ``fail`` / ``reject``  the Task ends FAILED / REJECTED with a status message

Test-only routes: ``GET /test/log`` (JSON: tasks started, cancels seen, Authorization headers seen).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import socket
import sys
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from a2a.helpers import new_data_part, new_text_message, new_text_part
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    HTTPAuthSecurityScheme,
    SecurityRequirement,
    SecurityScheme,
    StringList,
    Task,
    TaskState,
    TaskStatus,
)
from google.protobuf import json_format
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

SLOW_LIMIT = 30.0


class Log:
    """What the tests read back through ``GET /test/log``."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.cancelled: list[str] = []
        self.authorization: list[str] = []
        self.turns: dict[str, int] = {}


class DemoExecutor(AgentExecutor):
    def __init__(self, log: Log) -> None:
        self.log = log

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        message = context.message
        assert message is not None and context.task_id is not None and context.context_id is not None
        text = context.get_user_input().strip()
        data = [json_format.MessageToDict(p)["data"] for p in message.parts if p.HasField("data")]
        op = data[0].get("op") if data and isinstance(data[0], dict) else text.split(" ", 1)[0]
        task_id, context_id = context.task_id, context.context_id
        updater = TaskUpdater(event_queue, task_id, context_id)
        current = context.current_task

        if current is not None and current.status.state == TaskState.TASK_STATE_INPUT_REQUIRED:
            await updater.add_artifact([new_text_part(f"weather in {text}: sunny")], name="answer")
            await updater.complete()
            return
        if op == "context":
            turn = self.log.turns[context_id] = self.log.turns.get(context_id, 0) + 1
            await event_queue.enqueue_event(
                new_text_message(f"context={context_id} turn={turn}", context_id=context_id)
            )
            return
        if op == "crash":
            raise RuntimeError("the model backend is down")
        if op not in ("forecast", "chunks", "slow", "ask", "fail", "reject", "crash-late"):
            await event_queue.enqueue_event(new_text_message(f"you said: {text}", context_id=context_id))
            return

        await event_queue.enqueue_event(
            Task(id=task_id, context_id=context_id, status=TaskStatus(state=TaskState.TASK_STATE_SUBMITTED))
        )
        await updater.start_work(updater.new_agent_message([new_text_part("working on it")]))
        self.log.started.append(task_id)
        if op == "forecast":
            city = data[0].get("city", "?")
            await updater.add_artifact([new_data_part({"city": city, "high": 21, "unit": "C"})], name="forecast")
            await updater.add_artifact([new_text_part(f"{city}: 21 C")], name="summary")
            await updater.complete()
        elif op == "chunks":
            await updater.add_artifact([new_text_part("one ")], artifact_id="a1", name="story")
            await updater.add_artifact([new_text_part("two ")], artifact_id="a1", append=True)
            await updater.add_artifact([new_text_part("three")], artifact_id="a1", append=True, last_chunk=True)
            await updater.complete()
        elif op == "slow":
            await asyncio.sleep(SLOW_LIMIT)
            await updater.complete(updater.new_agent_message([new_text_part("slow work finished")]))
        elif op == "crash-late":
            raise RuntimeError("the model backend went down mid-task")
        elif op == "ask":
            await updater.requires_input(updater.new_agent_message([new_text_part("which city?")]))
        elif op == "fail":
            await updater.failed(updater.new_agent_message([new_text_part("no forecast for Atlantis")]))
        else:
            await updater.reject(updater.new_agent_message([new_text_part("I only do weather")]))

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        assert context.task_id is not None and context.context_id is not None
        self.log.cancelled.append(context.task_id)
        await TaskUpdater(event_queue, context.task_id, context.context_id).cancel()


class BearerAuth:
    """Refuses the JSON-RPC endpoint without ``Authorization: Bearer <token>`` (the card stays public)."""

    def __init__(self, app: ASGIApp, token: str | None, log: Log) -> None:
        self.app, self.token, self.log = app, token, log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            header = dict(scope["headers"]).get(b"authorization", b"").decode()
            self.log.authorization.append(header)
            if self.token is not None and header != f"Bearer {self.token}":
                response = JSONResponse({"error": "missing or wrong bearer token"}, status_code=401)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def make_card(url: str, *, streaming: bool, protocol: str, token: str | None) -> AgentCard:
    card = AgentCard(
        name="weather",
        description="Answers weather questions (a2a-sdk test server).",
        version="1.0.0",
        supported_interfaces=[AgentInterface(url=url, protocol_binding="JSONRPC", protocol_version=protocol)],
        capabilities=AgentCapabilities(streaming=streaming),
        default_input_modes=["text/plain", "application/json"],
        default_output_modes=["text/plain", "application/json"],
        skills=[
            AgentSkill(
                id="forecast",
                name="Forecast",
                description="Tomorrow's forecast for a city.",
                tags=["weather"],
                examples=['{"op": "forecast", "city": "Paris"}'],
            )
        ],
    )
    if token is not None:
        card.security_schemes["bearer"].CopyFrom(
            SecurityScheme(http_auth_security_scheme=HTTPAuthSecurityScheme(scheme="Bearer"))
        )
        card.security_requirements.append(SecurityRequirement(schemes={"bearer": StringList()}))
    return card


def make_app(url: str, *, streaming: bool = True, protocol: str = "1.0", token: str | None = None) -> ASGIApp:
    log = Log()
    card = make_card(url, streaming=streaming, protocol=protocol, token=token)
    handler = DefaultRequestHandler(agent_executor=DemoExecutor(log), task_store=InMemoryTaskStore(), agent_card=card)

    async def read_log(request: Request) -> Response:
        return JSONResponse({"started": log.started, "cancelled": log.cancelled, "authorization": log.authorization})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await handler.aclose()

    routes: list[Any] = [
        *create_agent_card_routes(card),
        *create_jsonrpc_routes(handler, rpc_url="/", enable_v0_3_compat=True),
        Route("/test/log", read_log, methods=["GET"]),
    ]
    return BearerAuth(Starlette(routes=routes, lifespan=lifespan), token, log)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--token")
    parser.add_argument("--no-streaming", action="store_true")
    parser.add_argument("--protocol", default="1.0")
    parser.add_argument(
        "--log-level", default="CRITICAL", help="of the a2a-sdk loggers (the crash test logs tracebacks)"
    )
    args = parser.parse_args()
    logging.getLogger("a2a").setLevel(args.log_level)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    app = make_app(
        f"http://127.0.0.1:{port}/", streaming=not args.no_streaming, protocol=args.protocol, token=args.token
    )
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2, lifespan="on")
    print(f"LISTENING {port}", flush=True)
    uvicorn.Server(config).run(sockets=[sock])
    sys.exit(0)


if __name__ == "__main__":
    main()
