"""What one A2A request costs in a2a-sdk's own server, next to one call through our host.

    python benchmarks/a2a_expose_cost.py [--requests 300] [--rounds 3]

Two child processes: a2a-sdk's server (``tests/a2a/_remote_agent.py``: Starlette + uvicorn +
``DefaultRequestHandler``, an executor that answers with a Message), and our host with one worker
hosting an agent that answers the same way. This process sends sequential requests over one
keep-alive connection to each, in alternating rounds: ``SendMessage`` to the former, and
``agent.call`` on ``/v1/rpc`` to the latter (which crosses the host twice, to the worker and back).
The figure is the ratio of the two rates measured in the same run; it is an input to the choice of
how to expose agents over A2A (docs/A2A.md, section 5), not a timed test.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]

OURS = textwrap.dedent(
    """
    import asyncio, sys
    from dataclasses import dataclass
    from autogen_core import MessageContext, RoutedAgent, message_handler, try_get_known_serializers_for_type
    from io_backends import HttpAgentServer, HttpWorkerAgentRuntime

    @dataclass
    class Say:
        text: str

    class Echo(RoutedAgent):
        def __init__(self) -> None:
            super().__init__("echo")

        @message_handler
        async def on_say(self, message: Say, ctx: MessageContext) -> Say:
            return Say("you said: " + message.text)

    async def main() -> None:
        host = HttpAgentServer("127.0.0.1", port=0)
        host.start()
        worker = HttpWorkerAgentRuntime(f"http://127.0.0.1:{host.port}")
        worker.add_message_serializer(try_get_known_serializers_for_type(Say))
        await worker.start()
        await Echo.register(worker, "echo", Echo)
        print(f"LISTENING {host.port}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())
    """
)


def _start(args: list[str]) -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("LISTENING "):
        process.kill()
        raise RuntimeError(f"{args} did not start: {line!r}")
    return process, int(line.split()[1])


def _rate(client: httpx.Client, url: str, body: dict[str, object], headers: dict[str, str], n: int) -> float:
    began = time.perf_counter()
    for i in range(n):
        body["id"] = i
        response = client.post(url, json=body, headers=headers)
        assert response.status_code == 200 and "result" in response.json(), response.text
    return n / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sdk, sdk_port = _start([sys.executable, "tests/a2a/_remote_agent.py"])
    ours, our_port = _start([sys.executable, "-c", OURS])
    a2a = {
        "jsonrpc": "2.0",
        "method": "SendMessage",
        "params": {"message": {"messageId": "m", "role": "ROLE_USER", "parts": [{"text": "hello"}]}},
    }
    call = {
        "jsonrpc": "2.0",
        "method": "agent.call",
        "params": {
            "target": {"type": "echo", "key": "k"},
            "data_type": "Say",
            "data_content_type": "application/json",
            "data": {"text": "hello"},
        },
    }
    try:
        with httpx.Client(timeout=30) as client:
            _rate(client, f"http://127.0.0.1:{sdk_port}/", a2a, {"A2A-Version": "1.0"}, 20)  # warm-up
            _rate(client, f"http://127.0.0.1:{our_port}/v1/rpc", call, {}, 20)
            for round_ in range(1, args.rounds + 1):
                sdk_rate = _rate(client, f"http://127.0.0.1:{sdk_port}/", a2a, {"A2A-Version": "1.0"}, args.requests)
                our_rate = _rate(client, f"http://127.0.0.1:{our_port}/v1/rpc", call, {}, args.requests)
                print(
                    f"round {round_}: a2a-sdk SendMessage {sdk_rate:.0f}/s, our agent.call {our_rate:.0f}/s, "
                    f"ratio ours/a2a-sdk {our_rate / sdk_rate:.2f}"
                )
    finally:
        for process in (sdk, ours):
            process.terminate()
            process.wait(10)


if __name__ == "__main__":
    main()
