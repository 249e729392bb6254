"""``--mode multiproc`` plumbing: helper processes (host, callee workers) and the line protocol
the benchmark child uses to drive them.

A helper is started as ``throughput.py --_role '<RoleSpec json>'`` with the child's interpreter.
It prints ``READY <json>`` on stdout once serving (the host includes its ``port``), then answers
``count`` lines on stdin with ``COUNT <json>`` (delivered events in that process) and shuts down
on ``stop`` or end of input. Its stderr goes wherever the child's stderr goes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from _endpoints import Deliveries, RoleSpec

SCRIPT = Path(__file__).resolve().with_name("throughput.py")
READY_TIMEOUT_S = 30.0
REPLY_TIMEOUT_S = 10.0
EXIT_TIMEOUT_S = 15.0


def role_spec_to_json(spec: RoleSpec) -> str:
    return json.dumps(dataclasses.asdict(spec))


def role_spec_from_json(text: str) -> RoleSpec:
    data = json.loads(text)
    data["counters"] = tuple(data.get("counters", ()))
    return RoleSpec(**data)


# --- helper-process side -------------------------------------------------------------------


class RoleChannel:
    """The helper's end of the protocol: stdin commands in, protocol lines out."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader

    @classmethod
    async def open(cls) -> RoleChannel:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        return cls(reader)

    @staticmethod
    def send(tag: str, **info: Any) -> None:
        print(f"{tag} {json.dumps(info)}", flush=True)

    async def serve(self, deliveries: Callable[[], Deliveries] | None = None) -> None:
        """Answer ``count`` until ``stop`` or end of input."""
        while True:
            line = (await self._reader.readline()).decode().strip()
            if line in ("", "stop"):
                return
            if line == "count":
                snap = deliveries() if deliveries is not None else Deliveries(0, 0.0)
                self.send("COUNT", count=snap.count, last_monotonic=snap.last_monotonic)


# --- benchmark-child side ------------------------------------------------------------------


class RoleProcess:
    """A running helper process, seen from the benchmark child."""

    def __init__(self, spec: RoleSpec, process: asyncio.subprocess.Process) -> None:
        self.spec = spec
        self._process = process
        self._lock = asyncio.Lock()
        self.info: dict[str, Any] = {}

    async def _expect(self, tag: str, timeout_s: float) -> dict[str, Any]:
        assert self._process.stdout is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"{self.spec.role} helper: no {tag} within {timeout_s:.0f}s")
            raw = await asyncio.wait_for(self._process.stdout.readline(), remaining)
            if not raw:
                code = await asyncio.wait_for(self._process.wait(), EXIT_TIMEOUT_S)
                raise RuntimeError(f"{self.spec.role} helper exited with code {code} before {tag}")
            line = raw.decode(errors="replace").strip()
            if line.startswith(tag + " "):
                info: dict[str, Any] = json.loads(line[len(tag) + 1 :])
                return info

    async def count(self) -> Deliveries:
        assert self._process.stdin is not None
        async with self._lock:
            self._process.stdin.write(b"count\n")
            await self._process.stdin.drain()
            info = await self._expect("COUNT", REPLY_TIMEOUT_S)
        return Deliveries(int(info["count"]), float(info["last_monotonic"]))

    async def _shutdown(self) -> None:
        process = self._process
        if process.returncode is None and process.stdin is not None:
            try:
                process.stdin.write(b"stop\n")
                await process.stdin.drain()
                process.stdin.close()
            except (BrokenPipeError, ConnectionResetError):
                pass
        try:
            await asyncio.wait_for(process.wait(), EXIT_TIMEOUT_S)
        except asyncio.TimeoutError:
            process.kill()  # only this helper, which we started
            await process.wait()

    @classmethod
    @asynccontextmanager
    async def spawn(cls, spec: RoleSpec) -> AsyncIterator[RoleProcess]:
        async with cls.spawn_all([spec]) as (helper,):
            yield helper

    @classmethod
    @asynccontextmanager
    async def spawn_all(cls, specs: Sequence[RoleSpec]) -> AsyncIterator[list[RoleProcess]]:
        """Start helpers side by side, wait until all are READY; stop them all side by side on exit."""
        helpers: list[RoleProcess] = []
        try:
            for spec in specs:
                process = await asyncio.create_subprocess_exec(
                    sys.executable,
                    str(SCRIPT),
                    "--_role",
                    role_spec_to_json(spec),
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                )
                helpers.append(cls(spec, process))
            infos = await asyncio.gather(*(h._expect("READY", READY_TIMEOUT_S) for h in helpers))
            for helper, info in zip(helpers, infos, strict=True):
                helper.info = info
            yield helpers
        finally:
            await asyncio.gather(*(h._shutdown() for h in helpers))


class RemoteDeliveries:
    """Delivered-event counts summed over several callee helper processes."""

    def __init__(self, helpers: Sequence[RoleProcess]) -> None:
        self._helpers = list(helpers)

    async def snapshot(self) -> Deliveries:
        snaps = [await helper.count() for helper in self._helpers]
        return Deliveries(sum(s.count for s in snaps), max((s.last_monotonic for s in snaps), default=0.0))
