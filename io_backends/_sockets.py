"""The two socket options every driver sets, host and worker alike."""

from __future__ import annotations

import socket
import struct

_RESET_ON_CLOSE = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST


def set_no_delay(sock: socket.socket | None) -> None:
    """Send small frames at once (no Nagle delay) on a TCP socket; anything else is left alone."""
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def reset_on_close(sock: socket.socket | None) -> None:
    """Make the next close() a TCP reset: what the kernel still holds for a peer that does not read
    is discarded at once instead of being retried for minutes."""
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET_ON_CLOSE)
        except OSError:
            pass


__all__ = ["reset_on_close", "set_no_delay"]
