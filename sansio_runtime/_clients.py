"""The host's clients: how each is attached, where it is in its life, and the table of allowed moves.

A client is one WebSocket on ``/v1/channel`` (long-lived; it may host agents) or one ``POST
/v1/rpc`` body (it makes calls and publishes, is answered once, and is gone). Its life is written
as a table, :data:`CLIENT_TRANSITIONS`, which a reader can take for the spec.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from ._errors import LocalProtocolError
from ._events import ClientId


class ClientKind(enum.Enum):
    """How a client is attached."""

    CHANNEL = "channel"
    """A WebSocket at ``/v1/channel``: long-lived, may host agents, receives calls and events."""
    ONE_SHOT = "one_shot"
    """One ``POST /v1/rpc`` body: answered once (after every call in it finished), then closed."""

    PEER = "peer"
    """Another host of the cluster (docs/CLUSTER.md): hosts that host's agent types and
    subscriptions (told by the driver, never registered by frames), makes the calls its workers
    make to ours and answers ours to its. Its calls and events reach local clients only."""


class ClientState(enum.Enum):
    """Where a client is in its life. Allowed moves are in :data:`CLIENT_TRANSITIONS`."""

    OPEN = "open"
    """Frames are accepted."""
    ANSWERING = "answering"
    """(One-shot only) its one body was received; waiting for the calls in it to finish."""
    CLOSING = "closing"
    """The engine emitted :class:`Close`; the client owns nothing any more and input is ignored."""


CLIENT_TRANSITIONS: dict[tuple[ClientKind, ClientState], frozenset[ClientState]] = {
    (ClientKind.CHANNEL, ClientState.OPEN): frozenset({ClientState.CLOSING}),
    (ClientKind.CHANNEL, ClientState.CLOSING): frozenset(),
    (ClientKind.ONE_SHOT, ClientState.OPEN): frozenset({ClientState.ANSWERING, ClientState.CLOSING}),
    (ClientKind.ONE_SHOT, ClientState.ANSWERING): frozenset({ClientState.CLOSING}),
    (ClientKind.ONE_SHOT, ClientState.CLOSING): frozenset(),
    (ClientKind.PEER, ClientState.OPEN): frozenset({ClientState.CLOSING}),
    (ClientKind.PEER, ClientState.CLOSING): frozenset(),
}
"""The client state table. ``disconnect`` may happen in any state and simply forgets the client."""


class ClientNameInUse(Exception):
    """Another live client already uses this name (``HostEngine.connect``)."""


@dataclass(slots=True, eq=False)
class Client:
    """One client as the host engine keeps it (what it owns is in the registry, its calls in the call table)."""

    id: ClientId
    kind: ClientKind
    name: str | None = None
    state: ClientState = ClientState.OPEN
    # One-shot clients only: the answers gathered for the HTTP response (and their bytes), the
    # calls still out, and whether the body was a batch.
    replies: list[bytes] = field(default_factory=list)
    reply_bytes: int = 0
    awaiting: int = 0
    batch: bool = False

    def begin_answering(self, replies: list[bytes], batch: bool) -> None:
        """(One-shot) its body was read: these are its answers so far; the rest come as calls end."""
        self.move_to(ClientState.ANSWERING)
        self.batch = batch
        self.replies.extend(replies)
        self.reply_bytes = sum(len(r) + 1 for r in replies)

    def gather(self, reply: bytes) -> None:
        """(One-shot) the answer of one of its calls."""
        self.replies.append(reply)
        self.reply_bytes += len(reply) + 1
        self.awaiting -= 1

    def take_answer(self) -> bytes | None:
        """(One-shot) its whole HTTP answer, once every call in its body has ended; None if nothing
        needed an answer. The client is then closing."""
        body = (b"[" + b",".join(self.replies) + b"]" if self.batch else self.replies[0]) if self.replies else None
        self.replies = []
        self.move_to(ClientState.CLOSING)
        return body

    def move_to(self, new: ClientState) -> None:
        if new not in CLIENT_TRANSITIONS[(self.kind, self.state)]:
            raise LocalProtocolError(f"client {self.id}: {self.kind.value} cannot go {self.state.value} -> {new.value}")
        self.state = new


__all__ = ["CLIENT_TRANSITIONS", "Client", "ClientKind", "ClientNameInUse", "ClientState"]
