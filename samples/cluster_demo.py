"""Two hosts acting as one over NATS (``make cluster-demo``): a cross-host call, shown step by step.

Starts ``nats-server`` on a free loopback port (JetStream on a temporary directory), then two
hosts in processes of their own (``autogen-http-host --cluster nats://...``), then a worker that
hosts an ``echo`` agent on host B and one on host A that calls it. Every process is stopped at
the end; exits 0 only when the answer came back right.
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
        return isinstance(answer, Text) and answer.text.startswith("a tsoh morf olleh")
    finally:
        await caller.stop()
        await callee.stop()


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
