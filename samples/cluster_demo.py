"""Two hosts acting as one over NATS (``make cluster-demo``): a cross-host call, shown step by step.

Starts ``nats-server`` on a free loopback port (JetStream on a temporary directory), then two
hosts in processes of their own (``autogen-http-host --cluster nats://...``), then a worker that
hosts an ``echo`` agent on host B and one on host A that calls it; then two workers, one on each
host, that host ``counter`` together (``shared_agent_types=True``): each ``counter`` instance lives
on one of them, whichever host it is called through. Every process is stopped at the end; exits
0 only when every answer came back right.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from autogen_core import AgentId, MessageContext, RoutedAgent, message_handler, try_get_known_serializers_for_type

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from io_backends import HttpWorkerAgentRuntime  # noqa: E402
from io_backends.cluster import NatsServer  # noqa: E402


@dataclass
class Text:
    text: str


@dataclass
class Count:
    worker: str
    count: int


class Counter(RoutedAgent):
    """Counts the calls it had: one instance per key in the whole cluster keeps one count."""

    def __init__(self, worker: str) -> None:
        super().__init__("counter")
        self.worker = worker
        self.count = 0

    @message_handler
    async def on_text(self, message: Text, ctx: MessageContext) -> Count:
        self.count += 1
        return Count(self.worker, self.count)


class Echo(RoutedAgent):
    def __init__(self) -> None:
        super().__init__("echo")

    @message_handler
    async def on_text(self, message: Text, ctx: MessageContext) -> Text:
        return Text(f"{message.text[::-1]} (answered by a worker of host b)")


def start_host(nats_url: str, name: str) -> tuple[subprocess.Popen[str], int]:
    args = [sys.executable, "-m", "io_backends", "--port", "0", "--cluster", nats_url, "--host-name", name]
    args += ["--log-level", "WARNING"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "listening on" not in line:
        proc.kill()
        raise SystemExit(f"host {name} did not start: {line!r}")
    print(f"  {line.strip()}")
    return proc, int(line.split("listening on ")[1].split()[0].rsplit(":", 1)[1])


async def demo(port_a: int, port_b: int) -> bool:
    callee = HttpWorkerAgentRuntime(f"127.0.0.1:{port_b}")
    caller = HttpWorkerAgentRuntime(f"127.0.0.1:{port_a}")
    for runtime in (callee, caller):
        runtime.add_message_serializer(try_get_known_serializers_for_type(Text))
        await runtime.start()
    try:
        await Echo.register(callee, "echo", Echo)
        print("worker on host b registered agent type 'echo' (claimed cluster-wide)")
        started = time.perf_counter()
        answer = await caller.send_message(Text("hello from host a"), AgentId("echo", "default"))
        took = (time.perf_counter() - started) * 1000
        print(f"worker on host a called echo/default on host b: {answer.text!r} ({took:.1f} ms)")
        return isinstance(answer, Text) and answer.text.startswith("a tsoh morf olleh") and await shared(port_a, port_b)
    finally:
        await caller.stop()
        await callee.stop()


async def shared(port_a: int, port_b: int) -> bool:
    members = {
        name: HttpWorkerAgentRuntime(f"127.0.0.1:{port}", shared_agent_types=True)
        for name, port in (("worker of host a", port_a), ("worker of host b", port_b))
    }
    callers = [HttpWorkerAgentRuntime(f"127.0.0.1:{port}") for port in (port_a, port_b)]
    for runtime in [*members.values(), *callers]:
        for message in (Text, Count):
            runtime.add_message_serializer(try_get_known_serializers_for_type(message))
        await runtime.start()
    try:
        for name, runtime in members.items():
            await Counter.register(runtime, "counter", lambda name=name: Counter(name))  # type: ignore[misc]
        print("a worker on each host registered 'counter' as a shared type")
        ok = True
        for key in ("alice", "dave", "grace"):
            answers = [await c.send_message(Text("hi"), AgentId("counter", key)) for c in (*callers, *callers)]
            seen = ", ".join(f"{a.count} from the {a.worker}" for a in answers)
            print(f"counter/{key}, called through host a, b, a, b: {seen}")
            ok &= [a.count for a in answers] == [1, 2, 3, 4] and len({a.worker for a in answers}) == 1
        return ok
    finally:
        for runtime in [*callers, *members.values()]:
            await runtime.stop()


def main() -> int:
    with NatsServer() as nats:
        print(f"nats-server on {nats.url}")
        hosts = []
        try:
            for name in ("a", "b"):
                hosts.append(start_host(nats.url, name))
            ok = asyncio.run(demo(hosts[0][1], hosts[1][1]))
        finally:
            for proc, _ in hosts:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
    print("cluster demo: ok" if ok else "cluster demo: WRONG ANSWER")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
