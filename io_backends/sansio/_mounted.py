"""A request or a WebSocket that another server parsed, as the hub sees it: the host mounted in an
ASGI application.

When an ASGI server (uvicorn, hypercorn) runs the host, it does the HTTP and WebSocket framing
itself and hands over whole requests and whole messages; the hub (:class:`~._hub.HostHub`) then
routes the engine's output for that client to a :class:`MountedPeer` instead of a
:class:`~._connection.HostConnection`. A peer only queues what the engine says, bounded as the
host's own connections are, and calls ``wake`` so its driver (:mod:`io_backends.host._asgi`)
carries it out::

    peer = MountedPeer(ClientKind.CHANNEL, now, max_outbound_bytes=..., wake=event.set)
    refusal = hub.mount_channel(peer, request, now)     # or hub.mount_rpc(peer, body, now)
    hub.mounted_message(peer, message, now)              # each WebSocket message received
    peer.take_messages()   -> the messages to send, in order
    peer.close_code        -> once set (with close_reason): close the WebSocket with it
    peer.answer            -> (a /v1/rpc body) once set: the engine's RpcAnswer
    hub.mounted_gone(peer, now)                          # the request or WebSocket ended
"""

from __future__ import annotations

from collections.abc import Callable

from sansio_runtime import ClientId, ClientKind, CloseCode

from ._endpoints import RpcAnswer


def _nothing() -> None:
    return None


class MountedPeer:
    """One channel or ``/v1/rpc`` body of the host mounted in another server (see the module docs)."""

    __slots__ = (
        "_queued",
        "accepted_at",
        "answer",
        "bytes_in",
        "bytes_out",
        "client",
        "close_code",
        "close_reason",
        "gone",
        "kind",
        "max_outbound_bytes",
        "messages_in",
        "messages_out",
        "peer",
        "queued_bytes",
        "wake",
    )

    def __init__(
        self,
        kind: ClientKind,
        now: float,
        *,
        max_outbound_bytes: int,
        wake: Callable[[], None] = _nothing,
        peer: str | None = None,
    ) -> None:
        self.kind = kind
        self.accepted_at = now
        self.max_outbound_bytes = max_outbound_bytes
        self.wake = wake
        """Called whenever there is something for the driver to do."""
        self.peer = peer
        """The peer's ``host:port`` as the server saw it (for the status document)."""
        self.client: ClientId | None = None
        """The engine's client, while it is one."""
        self.answer: RpcAnswer | None = None
        self.close_code: CloseCode | None = None
        self.close_reason = ""
        self._queued: list[bytes] = []
        self.queued_bytes = 0
        """Bytes of messages queued and not yet taken by the driver."""
        self.bytes_in = self.bytes_out = self.messages_in = self.messages_out = 0
        self.gone = False
        """(The hub's) the driver said it ended."""

    # ------------------------------------------------------------------ for the driver

    def take_messages(self) -> list[bytes]:
        """The messages to send now, oldest first."""
        queued, self._queued = self._queued, []
        self.queued_bytes = 0
        self.messages_out += len(queued)
        self.bytes_out += sum(map(len, queued))
        return queued

    def received(self, size: int) -> None:
        """(Counted by the hub) one message of ``size`` bytes arrived."""
        self.messages_in += 1
        self.bytes_in += size

    # ------------------------------------------------------------------ for the hub

    def send_message(self, data: bytes) -> bool:
        """Queue one message for the peer; False (and closing with 4008) when the peer does not take
        its messages fast enough, over ``max_outbound_bytes`` queued."""
        if self.close_code is not None:
            return False
        if self.queued_bytes + len(data) > self.max_outbound_bytes:
            self.close(CloseCode.SLOW_CONSUMER, "the peer does not read its messages fast enough")
            return False
        self._queued.append(data)
        self.queued_bytes += len(data)
        self.wake()
        return True

    def close(self, code: CloseCode, reason: str) -> None:
        """Close the channel with ``code`` (what is queued is sent first)."""
        if self.close_code is None:
            self.close_code = code
            self.close_reason = reason
            self.wake()

    def answered(self, answer: RpcAnswer) -> None:
        """The engine's answer to the ``/v1/rpc`` body."""
        self.answer = answer
        self.wake()


__all__ = ["MountedPeer"]
