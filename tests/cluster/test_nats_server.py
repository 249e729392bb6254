"""The nats-server harness: starts on a free loopback port, is ready when it says so, stops,
starts again in place with its JetStream store, and forms a routed 3-server cluster."""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

import pytest

from io_backends.cluster import NatsCluster, NatsServer, NatsServerError
from io_backends.cluster import _nats_server as harness

from .conftest import Connect

pytestmark = pytest.mark.anyio


def _accepts(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        try:
            s.connect(("127.0.0.1", port))
        except OSError:
            return False
        return s.recv(4) == b"INFO"  # a NATS server greets every client with INFO


def test_starts_ready_on_a_loopback_port_and_stops() -> None:
    with NatsServer() as server:
        assert server.running and server.url == f"nats://127.0.0.1:{server.port}"
        assert _accepts(server.port)
        varz = server.monitor("varz")
        assert varz["host"] == "127.0.0.1" and varz["port"] == server.port
        assert server.monitor("jsz")["config"], "JetStream is on"
        pid = server.pid
        server.stop()
        assert not server.running and not _accepts(server.port)
        assert pid is not None
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not server.store_dir.exists(), "close() removes the temporary store"


def test_restarts_on_the_same_port_with_the_same_store() -> None:
    with NatsServer() as server:
        port = server.port
        server.stop()
        server.start()
        assert server.port == port and _accepts(port)
        assert (server.store_dir / "jetstream").is_dir()
        server.kill()
        assert not server.running
        server.restart()
        assert server.running and server.port == port


async def test_jetstream_data_survives_a_restart(nats_server: NatsServer, connect: Connect) -> None:
    nc = await connect()
    kv = await nc.jetstream().create_key_value(bucket="kept")
    await kv.put("k", b"v")
    nats_server.restart()
    nc2 = await connect()
    entry = await (await nc2.jetstream().key_value("kept")).get("k")
    assert entry.value == b"v"


def test_a_missing_binary_names_the_cluster_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(harness.sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(NatsServerError, match=r"nats-server was not found.*cluster extra.*\[cluster\]"):
        harness.find_nats_server()


def test_a_server_that_cannot_start_says_why() -> None:
    with NatsServer() as first:
        # the same client port twice: the second server exits, and the error carries its log
        second = NatsServer(port=first.port, startup_timeout=5)
        with pytest.raises(NatsServerError, match=r"exited with code \d+: .*(address already in use|bind)"):
            second.start()
        assert not second.running
        second.close()


def test_readiness_is_bounded(tmp_path: Path) -> None:
    """A binary that never gets ready is given up on after startup_timeout, and killed."""
    fake = tmp_path / "nats-server"
    fake.write_text(f"#!{sys.executable}\nimport time\ntime.sleep(60)\n")
    fake.chmod(0o755)
    server = NatsServer(executable=str(fake), startup_timeout=0.5)
    with pytest.raises(NatsServerError, match=r"not ready after 0.5 s"):
        server.start()
    assert not server.running
    server.close()


def test_stop_escalates_to_sigkill(tmp_path: Path) -> None:
    """A process that ignores SIGTERM is killed after stop_timeout."""
    fake = tmp_path / "stubborn"
    fake.write_text(
        f"#!{sys.executable}\nimport signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(60)\n"
    )
    fake.chmod(0o755)
    server = NatsServer(executable=str(fake), stop_timeout=0.3)
    server.start(wait=False)
    proc = server._proc
    assert proc is not None
    time.sleep(0.3)  # time to install the handler
    server.stop()
    assert proc.returncode == -9
    server.close()


def test_three_server_cluster_is_routed_and_survives_a_member_restart() -> None:
    with NatsCluster(3) as cluster:
        assert len(set(cluster.urls)) == 3 and cluster.url.count(",") == 2
        for server in cluster.servers:
            routes = server.monitor("routez")["routes"]
            assert isinstance(routes, list)
            assert {r["remote_name"] for r in routes} == {s.server_name for s in cluster.servers} - {server.server_name}
        member = cluster.servers[1]
        port = member.port
        member.stop()
        member.start(wait=False)
        cluster.wait_ready()
        assert member.port == port
