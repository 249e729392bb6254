"""Parent side: run each peer+mode in a fresh child process, bounded in time, and collect results."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from _child import ChildSpec
from _config import Mode, WorkloadSpec, child_budget_s
from _peers import REPO_ROOT
from _progress import Progress

SCRIPT = Path(__file__).resolve().with_name("throughput.py")
STDERR_TAIL_LINES = 6
STDERR_TAIL_CHARS = 600


@dataclass(frozen=True)
class PlannedRun:
    peer: str
    mode: Mode
    repeat: int
    python: Path | None  # None: skipped before starting
    skip_reason: str | None = None

    @property
    def label(self) -> str:
        return f"{self.peer} ({self.mode}, run {self.repeat + 1})"


def _stderr_tail(stream: IO[bytes]) -> str:
    stream.seek(0)
    lines = [line.strip() for line in stream.read().decode(errors="replace").splitlines() if line.strip()]
    return " | ".join(lines[-STDERR_TAIL_LINES:])[-STDERR_TAIL_CHARS:]


def _kill_group(pid: int) -> None:
    """Kill the child's process group: the child and the helper processes it started, nothing else."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _child_env(peer: str) -> dict[str, str]:
    env = dict(os.environ)
    if peer == "v010":
        env.pop("PYTHONPATH", None)  # nothing may shadow the venv's autogen_http_runtime
    return env


async def _run_child(run: PlannedRun, workloads: tuple[WorkloadSpec, ...], progress: Progress) -> dict[str, Any]:
    assert run.python is not None
    spec = ChildSpec(peer=run.peer, mode=run.mode, workloads=workloads)
    timeout_s = child_budget_s(workloads)
    failed: dict[str, Any] = {"peer": run.peer, "mode": run.mode, "status": "failed"}
    with tempfile.TemporaryFile() as stderr:
        process = await asyncio.create_subprocess_exec(
            str(run.python),
            str(SCRIPT),
            "--_child",
            spec.to_json(),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            cwd=str(REPO_ROOT),
            env=_child_env(run.peer),
            start_new_session=True,  # its own process group, so a timeout can end all of it
        )
        assert process.stdout is not None
        result: dict[str, Any] | None = None
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                raw = await asyncio.wait_for(process.stdout.readline(), max(0.01, deadline - time.monotonic()))
                if not raw:
                    break
                line = raw.decode(errors="replace").rstrip("\n")
                if line.startswith("#progress "):
                    update = json.loads(line[len("#progress ") :])
                    progress.update(update["workload"], update["done"], update["total"])
                elif line.startswith("#result "):
                    result = json.loads(line[len("#result ") :])
            code = await asyncio.wait_for(process.wait(), max(0.01, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            _kill_group(process.pid)
            await process.wait()
            return {**failed, "reason": f"timed out after {timeout_s:.0f}s; stderr: {_stderr_tail(stderr)}"}
        except BaseException:  # e.g. Ctrl-C: the child has its own session and would outlive us
            _kill_group(process.pid)
            raise
        if result is None or code != 0:
            _kill_group(process.pid)  # helper processes a crashed child may have left behind
        if result is None:
            return {**failed, "reason": f"exited with code {code} without a result; stderr: {_stderr_tail(stderr)}"}
        if code != 0:
            result.setdefault("warnings", []).append(f"child exit code {code}")
        return result


async def run_all(
    runs: list[PlannedRun], workloads: tuple[WorkloadSpec, ...], progress: Progress
) -> list[dict[str, Any]]:
    """Run the children one after another (never in parallel: the machine has 2 noisy cores)."""
    results: list[dict[str, Any]] = []
    for run in runs:
        progress.run_started(run.label)
        started = time.monotonic()
        if run.python is None:
            result: dict[str, Any] = {
                "peer": run.peer,
                "mode": run.mode,
                "status": "skipped",
                "reason": run.skip_reason,
            }
        else:
            result = await _run_child(run, workloads, progress)
        result["repeat"] = run.repeat
        result["wall_s"] = time.monotonic() - started
        status = result["status"] + (f": {result['reason']}" if result.get("reason") else "")
        progress.run_finished(status)
        results.append(result)
    return results


def current_python() -> Path:
    return Path(sys.executable)
