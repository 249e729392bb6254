"""Deterministic work per call: Python bytecodes executed per sequential ``send_message``, by function.

A noisy, shared machine makes timings swing by tens of percent; what the interpreter executes
does not. This runs a host and two workers of the tree it is started from in one process, makes
``--calls`` sequential calls of ``--size`` bytes from one worker to an echo agent on the other
(after a warm-up), and counts every bytecode executed meanwhile (``sys.settrace`` opcode events),
per function. Compare two trees, or a tree before and after a change::

    python benchmarks/callcount.py --json /tmp/before.json
    ...change...
    python benchmarks/callcount.py --json /tmp/after.json --diff /tmp/before.json

Work done in C (msgspec, sockets, the frame masking) is not counted: for that, count machine
instructions, e.g. ``valgrind --tool=cachegrind --cache-sim=no`` of two runs with different
``--calls``, subtracted. Counts move a little with time-based checks (the tracer provider is
looked at once a second), by a few bytecodes per call at most.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import sysconfig
from collections import Counter
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

from _agents import ECHO_ID, ECHO_TYPE, EchoAgent, Payload, payload_serializers  # noqa: E402
from _net import LOOPBACK  # noqa: E402

from io_backends import HttpAgentServer, HttpWorkerAgentRuntime  # noqa: E402

WARMUP_CALLS = 300


class OpcodeCounter:
    """Bytecodes executed, by code object, while installed."""

    def __init__(self) -> None:
        self.counts: Counter[CodeType] = Counter()

    def _trace(self, frame: FrameType, event: str, arg: object) -> Any:
        if event == "call":
            frame.f_trace_opcodes = True
            frame.f_trace_lines = False
        elif event == "opcode":
            self.counts[frame.f_code] += 1
        return self._trace

    def start(self) -> None:
        sys.settrace(self._trace)
        frame: FrameType | None = sys._getframe(1)
        while frame is not None:  # frames already running (the event loop's) are counted too
            frame.f_trace, frame.f_trace_opcodes, frame.f_trace_lines = self._trace, True, False
            frame = frame.f_back

    def stop(self) -> None:
        sys.settrace(None)
        frame: FrameType | None = sys._getframe(1)
        while frame is not None:
            frame.f_trace = None
            frame = frame.f_back

    def per_function(self, calls: int) -> dict[str, float]:
        prefixes = (str(BENCH_DIR.parent) + "/", sysconfig.get_paths()["stdlib"] + "/")
        out: dict[str, float] = {}
        for code, count in self.counts.items():
            where = code.co_filename.split("site-packages/")[-1]
            for prefix in prefixes:
                where = where.removeprefix(prefix)
            key = f"{where}:{code.co_name}"
            out[key] = out.get(key, 0.0) + count / calls
        return out


async def measure(calls: int, size: int) -> dict[str, float]:
    server = HttpAgentServer(address=LOOPBACK, port=0)
    server.start()
    workers = [HttpWorkerAgentRuntime(f"{LOOPBACK}:{server.port}") for _ in range(2)]
    for worker in workers:
        worker.add_message_serializer(payload_serializers())
        await worker.start()
    caller, callee = workers
    await EchoAgent.register(callee, ECHO_TYPE, lambda: EchoAgent())
    message = Payload("x" * size)
    counter = OpcodeCounter()
    try:
        for _ in range(WARMUP_CALLS):
            await caller.send_message(message, ECHO_ID)
        counter.start()
        try:
            for _ in range(calls):
                await caller.send_message(message, ECHO_ID)
        finally:
            counter.stop()
    finally:
        for worker in workers:
            await worker.stop()
        await server.stop()
    return counter.per_function(calls)


def report(counts: dict[str, float], top: int, baseline: dict[str, float] | None) -> str:
    total = sum(counts.values())
    if baseline is None:
        lines = [f"{total:.0f} bytecodes per call"]
        lines += [f"{v:9.1f}  {k}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])[:top]]
        return "\n".join(lines)
    before = sum(baseline.values())
    lines = [f"{before:.0f} -> {total:.0f} bytecodes per call ({(total / before - 1) * 100:+.1f}%)"]
    changed = sorted(set(counts) | set(baseline), key=lambda k: -abs(counts.get(k, 0.0) - baseline.get(k, 0.0)))
    for key in changed[:top]:
        old, new = baseline.get(key, 0.0), counts.get(key, 0.0)
        if abs(new - old) >= 0.5:
            lines.append(f"{old:9.1f} {new:9.1f} {new - old:+9.1f}  {key}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--calls", type=int, default=500, help="calls counted (default 500)")
    parser.add_argument("--size", type=int, default=100, help="message body in bytes (default 100)")
    parser.add_argument("--top", type=int, default=40, help="functions listed (default 40)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the counts per function")
    parser.add_argument("--diff", type=Path, metavar="PATH", help="compare with counts written by --json")
    args = parser.parse_args(argv)
    if args.calls < 1:
        parser.error("--calls must be at least 1")
    counts = asyncio.run(measure(args.calls, args.size))
    if args.json:
        args.json.write_text(json.dumps(counts, indent=0) + "\n")
    baseline = json.loads(args.diff.read_text()) if args.diff else None
    print(report(counts, args.top, baseline))
    return 0


if __name__ == "__main__":
    sys.exit(main())
