"""Host processes of a test cluster: ``python -m io_backends --cluster ...`` in a subprocess each."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class HostProcess:
    """One clustered host (``autogen-http-host``) in its own process, on a free loopback port."""

    def __init__(
        self, nats_url: str, name: str, *, cluster_name: str = "agrt", extra_args: tuple[str, ...] = ()
    ) -> None:
        self.name = name
        self.extra_args = extra_args
        self.nats_url = nats_url
        self.cluster_name = cluster_name
        self.port = 0
        self.proc: subprocess.Popen[str] | None = None
        self.output: list[str] = []

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> HostProcess:
        self.spawn()
        return self.wait_ready(timeout)

    def spawn(self) -> None:
        args = [sys.executable, "-m", "io_backends", "--port", str(self.port), "--log-level", "WARNING"]
        args += ["--cluster", self.nats_url, "--cluster-name", self.cluster_name, "--host-name", self.name]
        args += self.extra_args  # (argparse keeps the last of a repeated option: these win)
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)

    def wait_ready(self, timeout: float = 30.0) -> HostProcess:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        seen: list[str] = []
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            if "listening on" in line:
                self.port = int(line.split("listening on ")[1].split()[0].rsplit(":", 1)[1])
                self.output = seen
                threading.Thread(target=self._drain, daemon=True).start()  # a full pipe would block the host
                return self
        self.kill()
        raise RuntimeError(f"host {self.name} did not start: {''.join(seen)[-2000:]}")

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        with contextlib.suppress(ValueError, OSError):
            for line in self.proc.stdout:
                self.output.append(line)

    def kill(self) -> None:
        """SIGKILL: no goodbye, sockets closed by the kernel."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@contextmanager
def hosts(nats_url: str, *names: str, cluster_name: str = "agrt") -> Iterator[list[HostProcess]]:
    """Start one host process per name (in parallel), stop every one at the end."""
    with running([HostProcess(nats_url, n, cluster_name=cluster_name) for n in names]) as started:
        yield started


@contextmanager
def running(started: list[HostProcess]) -> Iterator[list[HostProcess]]:
    """Start the host processes (in parallel), stop every one at the end."""
    try:
        for h in started:
            h.spawn()
        for h in started:
            h.wait_ready()
        yield started
    finally:
        for h in started:
            h.stop()
