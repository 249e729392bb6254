"""Pool worker processes (``_pool_worker.py``) for the tests of shared agent types: started in
parallel, each waited for until it has registered, and all killed at the end (the ``processes``
fixtures of tests/e2e and tests/cluster wrap :func:`pool_processes`)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

POOL_WORKER = Path(__file__).with_name("_pool_worker.py")
PoolProcesses = dict[str, subprocess.Popen[str]]


@contextmanager
def pool_processes() -> Iterator[PoolProcesses]:
    """Worker processes by name; every one still running at the end is killed."""
    procs: PoolProcesses = {}
    try:
        yield procs
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)


def spawn(procs: PoolProcesses, address: str, *names: str) -> None:
    """Start pool workers of the host at ``address`` (``127.0.0.1:port``) and wait until each has
    registered ``counter``."""
    for name in names:
        procs[name] = subprocess.Popen(
            [sys.executable, str(POOL_WORKER), f"http://{address}", name], stdout=subprocess.PIPE, text=True
        )
    for name in names:
        stdout = procs[name].stdout
        assert stdout is not None
        assert stdout.readline().strip() == "ready", f"pool worker {name} did not start"
