"""Which new connections the host takes, without any I/O: a cap on all of them and on those from
one client address. Both host drivers ask :meth:`Admission.admit` for every accepted socket and
write the refusal it returns (an HTTP ``503``, see :func:`refusal_response`) instead of serving a
refused one.
"""

from __future__ import annotations

from ._endpoints import HttpError, raw_response
from ._limits import DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_CONNECTIONS_PER_ADDRESS


class Admission:
    """Counts the connections being served, in all and per client address (None: unknown)."""

    __slots__ = ("_by_address", "_count", "max_connections", "max_connections_per_address")

    def __init__(
        self,
        *,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_connections_per_address: int = DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
    ) -> None:
        if max_connections <= 0 or max_connections_per_address <= 0:
            raise ValueError("connection limits must be positive")
        self.max_connections = max_connections
        self.max_connections_per_address = max_connections_per_address
        self._count = 0
        self._by_address: dict[str, int] = {}

    @property
    def count(self) -> int:
        """Connections admitted and not released yet."""
        return self._count

    def admit(self, address: str | None) -> HttpError | None:
        """None if a new connection from ``address`` may be served (release it later), else why not."""
        if self._count >= self.max_connections:
            return HttpError(503, f"the host serves its maximum of {self.max_connections} connections: retry later")
        if address is not None:
            held = self._by_address.get(address, 0)
            if held >= self.max_connections_per_address:
                return HttpError(503, f"{held} connections from {address} already, the most one address may open")
            self._by_address[address] = held + 1
        self._count += 1
        return None

    def release(self, address: str | None) -> None:
        """An admitted connection from ``address`` ended."""
        self._count -= 1
        if address is not None:
            held = self._by_address[address] - 1
            if held:
                self._by_address[address] = held
            else:
                del self._by_address[address]


def refusal_response(refusal: HttpError) -> bytes:
    """The bytes that answer a refused connection (it is closed after them)."""
    return raw_response(refusal.status, refusal.message, [(b"retry-after", b"1")])


__all__ = ["Admission", "refusal_response"]
