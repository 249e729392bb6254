"""A host process, participant worker processes, and the team's own worker (this test process)."""

from __future__ import annotations

import contextlib
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import pytest

from io_backends import HttpWorkerAgentRuntime

from ._scenarios import PLACEMENTS, TEAM_TYPES

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 60.0  # seconds for a process to say it is ready (a loaded 2-core machine imports slowly)


class Process:
    """A child process whose stdout lines are read as they come."""

    def __init__(self, args: list[str]) -> None:
        self.popen = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, prefix: str, timeout: float = START_TIMEOUT) -> str:
        """The first line starting with ``prefix`` (others are skipped)."""
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise TimeoutError(f"{self.popen.args!r} printed no {prefix!r} line in {timeout}s") from None
            if line is None:
                raise RuntimeError(f"{self.popen.args!r} exited ({self.popen.wait()}) before printing {prefix!r}")
            if line.startswith(prefix):
                return line

    def kill(self) -> None:
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(timeout=10)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


def start_workers(address: str, *spec_lists: list[str]) -> list[Process]:
    """One worker process for each list of ``TEAM:KIND:NAMES`` specs, started together; ready when returned."""
    procs = [Process([sys.executable, "-m", "tests.agentchat._worker", address, *specs]) for specs in spec_lists]
    try:
        for proc in procs:
            proc.wait_for("ready")
    except BaseException:
        for proc in procs:
            proc.stop()
        raise
    return procs


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def host_address() -> Iterator[str]:
    """A host in its own process, for the whole session."""
    host = Process([sys.executable, "-m", "io_backends", "--port", "0", "--log-level", "WARNING"])
    try:
        line = host.wait_for("autogen-http-host listening on")
        yield f"http://127.0.0.1:{int(line.rsplit(':', 1)[1])}"
    finally:
        host.stop()


@pytest.fixture(scope="session")
def scenario_workers(host_address: str) -> Iterator[list[Process]]:
    """Three worker processes serving every scenario's participants, placed as PLACEMENTS says:
    team ``<scenario>-<placement>``'s participants are on workers 0 (one), 0-1 (two), 0-2 (three)."""
    specs: list[list[str]] = [[], [], []]
    for scenario in TEAM_TYPES:
        for placement, groups in PLACEMENTS.items():
            for i, names in enumerate(groups):
                specs[i].append(f"{scenario}-{placement}:scripted-{scenario}:{','.join(names)}")
    with stopped_at_exit(start_workers(host_address, *specs)) as procs:
        yield procs


@pytest.fixture
def workers() -> Iterator[list[Process]]:
    """Processes a test starts with ``workers.extend(start_workers(...))``; stopped at teardown."""
    with stopped_at_exit([]) as procs:
        yield procs


@contextlib.contextmanager
def stopped_at_exit(procs: list[Process]) -> Iterator[list[Process]]:
    try:
        yield procs
    finally:
        for proc in procs:
            proc.stop()


@pytest.fixture
async def runtime(host_address: str) -> AsyncIterator[HttpWorkerAgentRuntime]:
    """The worker the team runs on: this test process."""
    worker = HttpWorkerAgentRuntime(host_address)
    with anyio.fail_after(30):
        await worker.start()
    try:
        yield worker
    finally:
        with anyio.fail_after(10), contextlib.suppress(RuntimeError):
            await worker.stop()
