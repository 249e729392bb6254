"""The seed's demo in one command: a host, the "reverse" and "upper" workers, then the orchestrator.

Each party is its own process, as in a real deployment. Exits 0 only when both answers are right.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
EXPECTED = ("→ reverse → !emitnur PTTH detubirtsid olleH", "→ upper → HELLO DISTRIBUTED HTTP RUNTIME!")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_agent_types(port: int, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as response:
                if json.load(response)["agent_types"] >= count:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"the host did not see {count} agent types within {timeout}s")


def main() -> int:
    port = int(os.environ.get("DEMO_PORT", free_port()))
    env = {**os.environ, "AUTOGEN_HTTP_HOST": f"http://127.0.0.1:{port}"}
    py = sys.executable
    host = subprocess.Popen([py, str(HERE / "run_server.py"), "--port", str(port)], env=env)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        wait_for_agent_types(port, 0, timeout=30)  # the host is up
        workers += [
            subprocess.Popen([py, str(HERE / "workers" / name)], env=env)
            for name in ("reverse_agent.py", "upper_agent.py")
        ]
        wait_for_agent_types(port, 2, timeout=30)
        result = subprocess.run(
            [py, str(HERE / "orchestrator.py")], env=env, capture_output=True, text=True, timeout=60
        )
        sys.stdout.write(result.stdout)
        sys.stderr.write(result.stderr)
        lines = result.stdout.splitlines()
        ok = result.returncode == 0 and all(line in lines for line in EXPECTED)
        print("demo:", "OK" if ok else "FAILED", flush=True)
        return 0 if ok else 1
    finally:
        for proc in [*workers, host]:
            proc.send_signal(signal.SIGTERM)
        for proc in [*workers, host]:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    sys.exit(main())
