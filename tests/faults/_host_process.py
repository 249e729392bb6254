"""A host in a process of its own (``python -m io_backends``), to SIGKILL, restart and measure."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

_LISTENING = re.compile(r"listening on .*:(\d+)$")


class HostProcess:
    """One ``autogen-http-host`` process on 127.0.0.1; ``port=0`` picks a free port."""

    def __init__(
        self, args: Sequence[str] = (), *, port: int = 0, backend: str = "asyncio", nofile: int | None = None
    ) -> None:
        self.args = list(args)
        self.backend = backend
        self.nofile = nofile
        self.port = port
        self.proc: subprocess.Popen[str] | None = None
        self.output: list[str] = []

    def start(self, timeout: float = 20.0) -> int:
        """Start the process and return its port once it listens."""
        command = [sys.executable, "-m", "io_backends", "--port", str(self.port), "--backend", self.backend]
        nofile = self.nofile

        def limit_descriptors() -> None:
            if nofile is not None:
                import resource

                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        self.proc = subprocess.Popen(
            [*command, "--log-level", "WARNING", *self.args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            preexec_fn=limit_descriptors if nofile is not None else None,
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.output.append(line.rstrip())
            match = _LISTENING.search(line.rstrip())
            if match:
                self.port = int(match.group(1))
                # Keep reading what it writes, so that a full pipe never blocks it.
                threading.Thread(target=self._drain, daemon=True).start()
                return self.port
        self.kill()
        raise RuntimeError("the host process did not start:\n" + "\n".join(self.output))

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def rss(self) -> int:
        """The process's resident memory, in bytes (``VmRSS`` in /proc/PID/status)."""
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def open_descriptors(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def kill(self) -> None:
        """SIGKILL, and wait until the process is gone."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line.rstrip())


@contextmanager
def host_process(
    *args: str, port: int = 0, backend: str = "asyncio", nofile: int | None = None
) -> Iterator[HostProcess]:
    """A started :class:`HostProcess`, killed at the end whatever happens."""
    host = HostProcess(args, port=port, backend=backend, nofile=nofile)
    host.start()
    try:
        yield host
    finally:
        host.kill()
