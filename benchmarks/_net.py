"""Loopback helpers: pick a free port, wait until a server accepts connections."""

from __future__ import annotations

import asyncio
import socket
import time

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1 (for servers that cannot report an ephemeral port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


async def wait_port_open(port: int, timeout_s: float = 15.0) -> None:
    """Poll ``127.0.0.1:port`` until it accepts a TCP connection; raise TimeoutError otherwise."""
    deadline = time.monotonic() + timeout_s
    last_error: OSError | None = None
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(LOOPBACK, port), 1.0)
        except (OSError, asyncio.TimeoutError) as exc:
            last_error = exc if isinstance(exc, OSError) else None
            await asyncio.sleep(0.02)
            continue
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass
        return
    raise TimeoutError(f"nothing listening on {LOOPBACK}:{port} after {timeout_s:.0f}s ({last_error})")
