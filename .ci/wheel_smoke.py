"""Smoke test of the installed wheel, run by .ci/run as a user meets the package.

Run it with the python of a fresh virtual environment that has only the built wheel installed
(no extras, no checkout on the path), from a directory outside the checkout:

    /tmp/venv/bin/python /path/to/.ci/wheel_smoke.py [--backend trio]

It checks that the packages import from the installed wheel and ship ``py.typed``, that
``autogen-http-host --help`` works, then starts a host with the command line, two worker
processes (one hosting an agent, one calling it and publishing to it), and stops them all.
Every process it starts is stopped; every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import select
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from autogen_core import (
    AgentId,
    MessageContext,
    RoutedAgent,
    TopicId,
    TypeSubscription,
    message_handler,
    try_get_known_serializers_for_type,
)

import autogen_http_runtime.runtimes.http
import io_backends
import sansio_runtime
from io_backends import HttpWorkerAgentRuntime

CHECKOUT = Path(__file__).resolve().parents[1]
HOST_COMMAND = str(Path(sys.executable).with_name("autogen-http-host"))
TIMEOUT = 60.0


@dataclass
class Shout:
    text: str


def fail(message: str) -> None:
    print(f"wheel smoke: FAILED: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def check_installed() -> None:
    for module in (io_backends, sansio_runtime, autogen_http_runtime):
        path = Path(module.__file__ or "").resolve()
        if CHECKOUT in path.parents:
            fail(f"{module.__name__} was imported from the checkout ({path}), not from the installed wheel")
        if not (path.parent / "py.typed").is_file():
            fail(f"{module.__name__} ships no py.typed ({path.parent})")
    assert autogen_http_runtime.runtimes.http.HttpWorkerAgentRuntime is io_backends.HttpWorkerAgentRuntime
    print(f"wheel smoke: packages import from {Path(io_backends.__file__ or '').parent.parent}", flush=True)


def check_help() -> None:
    result = subprocess.run([HOST_COMMAND, "--help"], capture_output=True, text=True, timeout=TIMEOUT)
    if result.returncode != 0 or "--backend" not in result.stdout or "[trio]" not in result.stdout:
        fail(f"autogen-http-host --help: exit {result.returncode}\n{result.stdout}{result.stderr}")
    if importlib.util.find_spec("trio") is None:
        result = subprocess.run(
            [HOST_COMMAND, "--backend", "trio", "--port", "0"], capture_output=True, text=True, timeout=TIMEOUT
        )
        lines = result.stderr.strip().splitlines()
        if result.returncode == 0 or len(lines) != 1 or "autogen-http-runtime-ng[trio]" not in lines[0]:
            fail(f"--backend trio without trio should fail in one line naming the extra: {result.stderr!r}")
    print("wheel smoke: autogen-http-host --help OK", flush=True)


def start_host(backend: str) -> tuple[subprocess.Popen[str], int]:
    host = subprocess.Popen(
        [HOST_COMMAND, "--port", "0", "--backend", backend, "--log-level", "WARNING"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert host.stdout is not None
    line = host.stdout.readline()
    if "listening on 127.0.0.1:" not in line:
        host.kill()
        fail(f"the host did not start: {line!r}")
    return host, int(line.rsplit(":", 1)[1])


def stop(process: subprocess.Popen[str], name: str) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        code = process.wait(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        fail(f"{name} did not stop on SIGTERM")
    if code != 0:
        fail(f"{name} exited with {code}")


def run_processes(backend: str) -> None:
    host, port = start_host(backend)
    me = [sys.executable, str(Path(__file__).resolve())]
    callee: subprocess.Popen[str] | None = None
    try:
        callee = subprocess.Popen([*me, "--role", "callee", "--port", str(port)], stdout=subprocess.PIPE, text=True)
        assert callee.stdout is not None
        if callee.stdout.readline().strip() != "ready":
            fail("the callee worker did not start")
        caller = subprocess.run(
            [*me, "--role", "caller", "--port", str(port)], capture_output=True, text=True, timeout=TIMEOUT
        )
        if caller.returncode != 0 or "HELLO FROM THE WHEEL" not in caller.stdout:
            fail(f"the call failed (exit {caller.returncode}):\n{caller.stdout}{caller.stderr}")
        check_http_endpoints(port)
        # Both events are delivered asynchronously (the POST is answered 204 once the host has
        # routed the CloudEvent): wait for the callee to print them before stopping it.
        rest = read_until(callee.stdout, ("event: published", "event: from a cloudevent"), TIMEOUT)
        stop(callee, "the callee worker")
        if "event: published" not in rest or "event: from a cloudevent" not in rest:
            fail(f"the callee did not receive the published event and the CloudEvent within {TIMEOUT}s: {rest!r}")
        stop(host, "the host")
        print(f"wheel smoke: host ({backend}) + two workers + a call and an event OK", flush=True)
    finally:
        for process in (callee, host):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()


def read_until(stream: IO[str], wanted: tuple[str, ...], timeout: float) -> str:
    """What ``stream`` gives until every line in ``wanted`` came, or ``timeout`` seconds passed."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while not all(w in "".join(seen) for w in wanted):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([stream], [], [], left)[0]:
            break
        line = stream.readline()
        if not line:
            break
        seen.append(line)
    return "".join(seen)


def http(
    port: int, method: str, path: str, body: bytes | None = None, content_type: str = ""
) -> tuple[int, str, bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method=method)
    if content_type:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", ""), error.read()


def check_http_endpoints(port: int) -> None:
    """/v1/status, the page (package data), /metrics without its extra, and a CloudEvent in."""
    status, _, body = http(port, "GET", "/v1/status")
    document = json.loads(body)
    if status != 200 or [w["agent_types"] for w in document["workers"]] != [["upper"]]:
        fail(f"GET /v1/status: {status} {body[:300]!r}")
    status, content_type, body = http(port, "GET", "/ui")
    if status != 200 or not content_type.startswith("text/html") or b"v1/status" not in body:
        fail(f"GET /ui: {status} {content_type} (is index.html in the wheel?)")
    status, _, body = http(port, "GET", "/metrics")
    if status != 501 or b"autogen-http-runtime-ng[metrics]" not in body:
        fail(f"GET /metrics without prometheus-client should answer 501 naming the extra: {status} {body!r}")
    event = {"specversion": "1.0", "id": "w-1", "source": "default", "type": "news", "dataschema": "Shout"}
    event["data"] = {"text": "from a cloudevent"}  # type: ignore[assignment]
    status, _, body = http(port, "POST", "/v1/events", json.dumps(event).encode(), "application/cloudevents+json")
    if status != 204:
        fail(f"POST /v1/events: {status} {body!r}")
    print("wheel smoke: /v1/status, /ui, /metrics (501 without its extra), /v1/events OK", flush=True)


class Upper(RoutedAgent):
    def __init__(self) -> None:
        super().__init__("upper")

    @message_handler
    async def on_shout(self, message: Shout, ctx: MessageContext) -> Shout | None:
        if ctx.topic_id is not None:  # the published event
            print(f"event: {message.text}", flush=True)
            return None
        return Shout(message.text.upper())


async def callee(port: int) -> None:
    runtime = HttpWorkerAgentRuntime(f"127.0.0.1:{port}")
    runtime.add_message_serializer(try_get_known_serializers_for_type(Shout))
    await Upper.register(runtime, "upper", Upper, skip_class_subscriptions=True)
    await runtime.add_subscription(TypeSubscription("news", "upper"))
    await runtime.start()
    print("ready", flush=True)
    await runtime.stop_when_signal()


async def caller(port: int) -> None:
    runtime = HttpWorkerAgentRuntime(f"127.0.0.1:{port}", call_timeout=TIMEOUT)
    runtime.add_message_serializer(try_get_known_serializers_for_type(Shout))
    await runtime.start()
    try:
        answer = await runtime.send_message(Shout("hello from the wheel"), AgentId("upper", "default"))
        assert isinstance(answer, Shout), answer
        print(answer.text, flush=True)
        await runtime.publish_message(Shout("published"), TopicId("news", "default"))
    finally:
        await runtime.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--role", choices=("check", "callee", "caller"), default="check")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--backend", default="asyncio")
    args = parser.parse_args()
    if args.role == "callee":
        asyncio.run(callee(args.port))
    elif args.role == "caller":
        asyncio.run(caller(args.port))
    else:
        started = time.monotonic()
        if Path.cwd().resolve() == CHECKOUT or CHECKOUT in Path.cwd().resolve().parents:
            fail(f"run this from a directory outside the checkout, not {os.getcwd()}")
        check_installed()
        check_help()
        run_processes(args.backend)
        print(f"wheel smoke: OK in {time.monotonic() - started:.1f}s", flush=True)


if __name__ == "__main__":
    main()
