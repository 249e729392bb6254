"""The host without any I/O: the engine, every accepted connection, and the deadlines of both.

:class:`HostHub` is what a host driver drives (see :mod:`._connection` for the loop). It admits
connections, hands each channel's messages to the :class:`~sansio_runtime.HostEngine`, and
carries the engine's instructions to the connections they are for: a message to a channel's
WebSocket, the answer of a ``/v1/rpc`` body to the connection waiting on it, a close. Whatever
changed is listed by :meth:`HostHub.take_dirty` for the driver to write and act on; the driver
keeps one timer, for :meth:`HostHub.next_deadline`.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import h11
import msgspec
from wsproto import WSConnection
from wsproto.events import AcceptConnection

from sansio_runtime import (
    ClientId,
    ClientKind,
    ClientNameInUse,
    Close,
    CloseCode,
    ClusterOutput,
    DeadlineHeap,
    HostEngine,
    Send,
)

from ._admission import Admission, refusal_response
from ._connection import HostConnection, Phase
from ._endpoints import (
    ALL_ENDPOINTS,
    DUPLICATE_CLIENT,
    Endpoint,
    HttpError,
    RpcAnswer,
    bearer_token_matches,
    channel_accept_headers,
)
from ._endpoints import client_name as requested_client_name
from ._exchange import PUBLISH_ENVELOPE, Response, json_response
from ._http import HttpFront
from ._limits import (
    CLOSE_TIMEOUT,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_KEEPALIVE_INTERVAL,
    DEFAULT_KEEPALIVE_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
    DEFAULT_MAX_HEADER_SIZE,
    DEFAULT_MAX_OUTBOUND_BYTES,
    DEFAULT_REQUEST_BODY_TIMEOUT,
    DEFAULT_REQUEST_HEAD_TIMEOUT,
    LINGER_TIMEOUT,
)
from ._mounted import MountedPeer
from ._status import HostCounters, HostSnapshot, WorkerSnapshot

Authenticator = Callable[[h11.Request], "bool | Awaitable[bool]"]
"""Decides whether a request to any endpoint but /healthz may proceed (True) or gets 401 (False)."""

Views = Callable[[Endpoint, h11.Request, float], Response]
"""Answers ``GET /v1/status``, ``/metrics`` and ``/ui`` at a time (the host's service provides it)."""


class _PublishAnswer(msgspec.Struct):
    error: msgspec.Raw | None = None


_PUBLISH_ANSWER = msgspec.json.Decoder(_PublishAnswer)


@dataclass(frozen=True, slots=True)
class HubSettings:
    """The host's limits and timeouts outside the engine (defaults: :mod:`._limits`; None: no timeout)."""

    max_outbound_bytes: int = DEFAULT_MAX_OUTBOUND_BYTES
    max_header_size: int = DEFAULT_MAX_HEADER_SIZE
    request_head_timeout: float | None = DEFAULT_REQUEST_HEAD_TIMEOUT
    request_body_timeout: float | None = DEFAULT_REQUEST_BODY_TIMEOUT
    idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    max_connections_per_address: int = DEFAULT_MAX_CONNECTIONS_PER_ADDRESS
    keepalive_interval: float | None = DEFAULT_KEEPALIVE_INTERVAL
    keepalive_timeout: float = DEFAULT_KEEPALIVE_TIMEOUT
    auth_token: bytes | None = None
    authenticator: Authenticator | None = None
    endpoints: frozenset[Endpoint] = field(default=ALL_ENDPOINTS)
    """The endpoints served (``/v1/events``, ``/v1/status``, ``/metrics`` and ``/ui`` can be left out)."""

    def __post_init__(self) -> None:
        for name in ("request_head_timeout", "request_body_timeout", "idle_timeout"):
            timeout = getattr(self, name)
            if timeout is not None and timeout <= 0:
                raise ValueError(f"{name} must be positive (or None for no timeout)")


class HostHub:
    """The engine and the connections around it, bytes in and out (see the module docs)."""

    def __init__(
        self,
        engine: HostEngine,
        settings: HubSettings,
        health: Callable[[], bytes],
        views: Views | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self._views = views
        self.max_outbound_bytes = settings.max_outbound_bytes
        self.keepalive = (settings.keepalive_interval, settings.keepalive_timeout)
        self._health = health
        self._admission = Admission(
            max_connections=settings.max_connections, max_connections_per_address=settings.max_connections_per_address
        )
        self._connections: set[HostConnection] = set()
        self._by_client: dict[ClientId, HostConnection] = {}
        self._mounted: dict[ClientId, MountedPeer] = {}
        self._one_shot_bodies: dict[ClientId, bytes] = {}
        self._peers: dict[ClientId, Callable[[Send | Close], None]] = {}  # other hosts (io_backends.cluster)
        self._cluster_sink: Callable[[list[ClusterOutput]], None] | None = None
        self._deadlines: DeadlineHeap[HostConnection] = DeadlineHeap()
        self._dirty: dict[HostConnection, None] = {}
        self._ready: deque[HostConnection] = deque()
        self._depth = 0
        self.refused = 0
        """Connections refused by the caps since the host started."""
        self.started_at: float | None = None
        """When the first connection came (the hub's clock): the status document's uptime starts there."""
        self.opened: Counter[str] = Counter()
        """Requests and channels served since the host started, by kind: channel, rpc, events."""
        self._gone_bytes = [0, 0]  # bytes in and out of connections that are gone
        self._gone_messages = [0, 0]
        self._publishing: ClientId | None = None
        self._published: list[bytes] = []

    # ------------------------------------------------------------------ for drivers

    @property
    def connection_count(self) -> int:
        """Accepted connections not gone yet (refused ones included while they are answered)."""
        return len(self._connections)

    @property
    def mounted_count(self) -> int:
        """Channels and ``/v1/rpc`` bodies of servers the host is mounted in (ASGI) not gone yet."""
        return len(self._mounted)

    def connections(self) -> list[HostConnection]:
        """The accepted connections not gone yet."""
        return list(self._connections)

    def accept(
        self, now: float, address: str | None, *, can_half_close: bool = True, peer: str | None = None
    ) -> HostConnection:
        """A socket was accepted at ``now`` from ``address`` (None: unknown). ``can_half_close``: the
        driver can shut the socket's sending side and go on reading (TLS cannot). ``peer``: the
        peer's ``host:port``, as the status document shows it."""
        if self.started_at is None:
            self.started_at = now
        conn = HostConnection(self, self._new_front(now), now, address, can_half_close)
        conn.peer = peer
        self._connections.add(conn)
        refusal = self._admission.admit(address)
        if refusal is not None:
            self.refused += 1
            conn.admitted = False
            conn.refuse(refusal_response(refusal), now)
        self._touched(conn)
        return conn

    def take_dirty(self) -> list[HostConnection]:
        """The connections something happened to since the last call: write and act on each."""
        dirty = list(self._dirty)
        self._dirty.clear()
        return dirty

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timer` next has work (the engine's calls or a connection's), or None."""
        ours = self._deadlines.next_deadline()
        engine = self.engine.next_deadline()
        if ours is None:
            return engine
        return ours if engine is None or ours < engine else engine

    def handle_timer(self, now: float) -> None:
        """The clock is at ``now``: calls past their deadline fail, connections time out."""
        self._depth += 1
        try:
            self.engine.handle_timer(now)
            self._apply(now)
            for conn in self._deadlines.expire(now):
                conn.handle_timer(now)
                self._touched(conn)
        finally:
            self._depth -= 1
        self._settle(now)

    def close_all(self, now: float, code: CloseCode = CloseCode.GOING_AWAY, reason: str = "host shutting down") -> None:
        """Close every channel and answer every ``/v1/rpc`` body (a host shutdown)."""
        self._depth += 1
        try:
            self.engine.close_all(code, reason)
            self._apply(now)
        finally:
            self._depth -= 1
        self._settle(now)

    # ------------------------------------------------------------------ for connections

    def enter(self, conn: HostConnection, now: float) -> None:
        self._depth += 1

    def leave(self, conn: HostConnection, now: float) -> None:
        self._depth -= 1
        self._touched(conn)
        self._settle(now)

    def ready(self, conn: HostConnection) -> None:
        """``conn`` can go on (its ``/v1/rpc`` answer came): it does once the current input is handled."""
        self._ready.append(conn)

    def forget(self, conn: HostConnection) -> None:
        """``conn``'s socket is gone."""
        if conn in self._connections:
            self._gone_bytes[0] += conn.bytes_in
            self._gone_bytes[1] += conn.bytes_out
            self._gone_messages[0] += conn.messages_in
            self._gone_messages[1] += conn.messages_out
            self._connections.discard(conn)
            self._deadlines.discard(conn)
            self._dirty.pop(conn, None)
            if conn.admitted:
                self._admission.release(conn.address)

    def give_up_after(self, conn: HostConnection) -> float:
        """How long a closed connection may take to take its last bytes before it is reset."""
        if conn.phase is Phase.CHANNEL or conn.client is not None:
            return CLOSE_TIMEOUT
        idle = self.settings.idle_timeout
        return LINGER_TIMEOUT if idle is None else idle

    def authorize(self, request: h11.Request) -> bool | Awaitable[bool]:
        """The verdict on a request's credentials (awaitable when the authenticator is async)."""
        token = self.settings.auth_token
        if token is not None and not bearer_token_matches(request, token):
            return False
        authenticator = self.settings.authenticator
        return True if authenticator is None else authenticator(request)

    def start_one_shot(self, conn: HostConnection, body: bytes, now: float) -> None:
        """Run a ``/v1/rpc`` body for ``conn``; ``conn.answered`` follows, at once or when its calls end."""
        client = self.engine.connect(ClientKind.ONE_SHOT)
        conn.client = client
        self._by_client[client] = conn
        self.opened["rpc"] += 1
        self.engine.receive(client, body, now)
        self._apply(now)

    def publish(self, events: tuple[bytes, ...], now: float) -> HttpError | None:
        """Publish each of ``events`` (``agent.publish`` params: one CloudEvent each) through the
        engine, as a ``/v1/rpc`` body of one ``agent.publish`` would; None once all are, or the
        refusal of the first one the engine refused (those before it are published)."""
        engine = self.engine
        self.opened["events"] += 1
        for index, params in enumerate(events):
            client = engine.connect(ClientKind.ONE_SHOT)
            self._publishing = client
            try:
                engine.receive(client, PUBLISH_ENVELOPE + params + b"}", now)
                self._apply(now)
            finally:
                self._publishing = None
                engine.disconnect(client, now)
            answers, self._published = self._published, []
            refusal = _publish_refusal(answers, index, len(events))
            if refusal is not None:
                return refusal
        return None

    def view(self, endpoint: Endpoint, request: h11.Request, now: float) -> Response:
        """The answer of a read-only endpoint at ``now``."""
        if endpoint is Endpoint.HEALTH:
            return json_response(200, self._health())
        if self._views is None:
            return json_response(404, b'{"error":{"status":404,"message":"not served by this host"}}')
        return self._views(endpoint, request, now)

    def snapshot(self, now: float, wall_clock: float) -> HostSnapshot:
        """What ``GET /v1/status`` shows, as of ``now`` (the hub's clock) and ``wall_clock`` (Unix seconds)."""
        engine = self.engine
        stats = engine.stats
        owned: dict[ClientId, list[str]] = {}
        agent_types = engine.agent_types()
        for agent_type, owner in agent_types.items():
            owned.setdefault(owner, []).append(agent_type)
        subscriptions = [(spec, engine.subscription_owner(spec.id)) for spec in engine.subscriptions()]
        subscribed: Counter[ClientId] = Counter(owner for _, owner in subscriptions if owner is not None)
        pending: Counter[ClientId] = Counter(call.caller for call in engine.pending_calls())
        workers = []
        bytes_in, bytes_out = self._gone_bytes
        messages_in, messages_out = self._gone_messages
        peers: list[tuple[HostConnection | MountedPeer, bool, str | None]] = [
            (conn, conn.phase is Phase.CHANNEL, conn.peer or conn.address) for conn in self._connections
        ]
        peers.extend((peer, peer.kind is ClientKind.CHANNEL, peer.peer) for peer in self._mounted.values())
        for peer, is_channel, address in peers:
            bytes_in += peer.bytes_in
            bytes_out += peer.bytes_out
            messages_in += peer.messages_in
            messages_out += peer.messages_out
            client = peer.client
            if not is_channel or client is None:
                continue
            workers.append(
                WorkerSnapshot(
                    id=int(client),
                    name=engine.client_name(client),
                    address=address or "unknown",
                    connected_at=wall_clock - (now - peer.accepted_at),
                    agent_types=sorted(owned.get(client, ())),
                    subscriptions=subscribed[client],
                    pending_calls=pending[client],
                    messages_in=peer.messages_in,
                    messages_out=peer.messages_out,
                    bytes_in=peer.bytes_in,
                    bytes_out=peer.bytes_out,
                )
            )
        counters = HostCounters(
            calls_routed=stats.calls_forwarded,
            calls_failed=stats.calls_failed + stats.calls_refused,
            events_published=stats.events_published,
            event_deliveries=stats.event_deliveries,
            events_dropped=stats.events_unreadable + stats.events_unplaced,
            messages_in=messages_in,
            messages_out=messages_out,
            bytes_in=bytes_in,
            bytes_out=bytes_out,
        )
        return HostSnapshot(
            counters=counters,
            workers=workers,
            agent_types={agent_type: int(owner) for agent_type, owner in agent_types.items()},
            subscriptions=((spec, int(owner)) for spec, owner in subscriptions if owner is not None),
            subscriptions_total=len(subscriptions),
            connections=len(self._connections) + len(self._mounted),
        )

    def open_kinds(self) -> list[str]:
        """The kind of each connection that is a channel or waits on a ``/v1/rpc`` answer."""
        kinds = []
        for conn in self._connections:
            if conn.phase is Phase.CHANNEL:
                kinds.append("channel")
            elif conn.client is not None:
                kinds.append("rpc")
        kinds.extend("channel" if p.kind is ClientKind.CHANNEL else "rpc" for p in self._mounted.values())
        return kinds

    def traffic(self) -> tuple[int, int]:
        """Bytes received from and sent to peers since the host started."""
        bytes_in, bytes_out = self._gone_bytes
        peers: list[HostConnection | MountedPeer] = [*self._connections, *self._mounted.values()]
        for peer in peers:
            bytes_in += peer.bytes_in
            bytes_out += peer.bytes_out
        return bytes_in, bytes_out

    def open_channel(self, conn: HostConnection, request: h11.Request, now: float) -> HttpError | None:
        """Make ``conn``'s upgrade a client of the engine; the refusal if its X-Client-Id is in use."""
        try:
            client = self.engine.connect(ClientKind.CHANNEL, requested_client_name(request))
        except ClientNameInUse:
            return DUPLICATE_CLIENT
        conn.client = client
        self._by_client[client] = conn
        self.opened["channel"] += 1
        return None

    # ------------------------------------------------------------------ for servers the host is mounted in

    def mount_channel(self, peer: MountedPeer, request: h11.Request, now: float) -> HttpError | None:
        """Make an authorized WebSocket another server accepts a channel client of the engine; the
        refusal if its X-Client-Id is in use."""
        if self.started_at is None:
            self.started_at = now
        try:
            client = self.engine.connect(ClientKind.CHANNEL, requested_client_name(request))
        except ClientNameInUse:
            return DUPLICATE_CLIENT
        peer.client = client
        self._mounted[client] = peer
        self.opened["channel"] += 1
        return None

    def mounted_message(self, peer: MountedPeer, message: str | bytes, now: float) -> None:
        """One WebSocket message from a mounted channel, for the engine."""
        client = peer.client
        if client is None:
            return  # closed already: what still arrives is dropped
        peer.received(len(message))
        self.engine.receive(client, message, now)
        self._apply(now)

    def mount_rpc(self, peer: MountedPeer, body: bytes, now: float) -> None:
        """Run a ``/v1/rpc`` body another server read; ``peer.answered`` follows, at once or later."""
        if self.started_at is None:
            self.started_at = now
        client = self.engine.connect(ClientKind.ONE_SHOT)
        peer.client = client
        peer.received(len(body))
        self._mounted[client] = peer
        self.opened["rpc"] += 1
        self.engine.receive(client, body, now)
        self._apply(now)

    def mounted_gone(self, peer: MountedPeer, now: float) -> None:
        """A mounted request or WebSocket ended: its client is gone for the engine. Idempotent."""
        if not peer.gone:
            peer.gone = True
            self._gone_bytes[0] += peer.bytes_in
            self._gone_bytes[1] += peer.bytes_out
            self._gone_messages[0] += peer.messages_in
            self._gone_messages[1] += peer.messages_out
        client = peer.client
        if client is None:
            return
        peer.client = None
        self._mounted.pop(client, None)
        self._one_shot_bodies.pop(client, None)
        self.engine.disconnect(client, now)
        self._apply(now)

    def _to_mounted(self, peer: MountedPeer, out: Send | Close, now: float) -> None:
        client = out.client
        if isinstance(out, Close):
            self._mounted.pop(client, None)
            peer.client = None
            self.engine.disconnect(client, now)  # it is closing: this only forgets it
            if peer.kind is ClientKind.CHANNEL:
                peer.close(out.code, out.reason)
            else:
                peer.answered(RpcAnswer(out.code, self._one_shot_bodies.pop(client, None)))
        elif peer.kind is not ClientKind.CHANNEL:
            self._one_shot_bodies[client] = out.data
        elif not peer.send_message(out.data) and peer.client is not None:  # cut off (4008)
            self._mounted.pop(client, None)
            peer.client = None
            self.engine.disconnect(client, now)
            self._apply(now)

    def channel_accept(self, ws: WSConnection) -> bytes:
        """The ``101`` that opens a channel; it announces the host's message size limit to the worker."""
        return ws.send(AcceptConnection(extra_headers=channel_accept_headers(self.engine.max_message_size)))

    def channel_message(self, conn: HostConnection, message: str | bytes, now: float) -> None:
        """One WebSocket message from ``conn``'s client, for the engine."""
        assert conn.client is not None
        self.engine.receive(conn.client, message, now)
        self._apply(now)

    def release_client(self, conn: HostConnection, now: float) -> None:
        """``conn``'s client is gone for the engine (its calls end, what it owned is released)."""
        client = conn.client
        if client is None:
            return
        conn.client = None
        self._by_client.pop(client, None)
        self._one_shot_bodies.pop(client, None)
        self.engine.disconnect(client, now)
        self._apply(now)

    # ------------------------------------------------------------------ for the cluster driver

    def set_cluster_sink(self, sink: Callable[[list[ClusterOutput]], None] | None) -> None:
        """Where the engine's requests for the cluster go (``HostEngine.cluster_to_send``), as they come."""
        self._cluster_sink = sink

    def add_peer(self, name: str, sink: Callable[[Send | Close], None], host: str | None = None) -> ClientId:
        """Another host joined (docs/CLUSTER.md): a client of the engine whose output goes to ``sink``
        (``host``: its name in the cluster; ``name``: how error messages name it)."""
        peer = self.engine.add_peer(name, host)
        self._peers[peer] = sink
        return peer

    def peer_frame(self, peer: ClientId, data: bytes, now: float) -> None:
        """One frame from another host."""
        self.drive(now, lambda engine: engine.receive(peer, data, now))

    def remove_peer(self, peer: ClientId, now: float) -> None:
        """Another host is gone: its calls end, what it held is released."""
        if self._peers.pop(peer, None) is not None:
            self.drive(now, lambda engine: engine.remove_peer(peer, now))

    def drive(self, now: float, action: Callable[[HostEngine], object]) -> None:
        """Give the engine one input (``action``), then carry out what it queued."""
        self._depth += 1
        try:
            action(self.engine)
            self._apply(now)
        finally:
            self._depth -= 1
        self._settle(now)

    # ------------------------------------------------------------------ internals

    def _new_front(self, now: float) -> HttpFront:
        s = self.settings
        return HttpFront(
            max_header_size=s.max_header_size,
            max_message_size=self.engine.max_message_size,
            health=self._health,
            now=now,
            head_timeout=s.request_head_timeout,
            body_timeout=s.request_body_timeout,
            idle_timeout=s.idle_timeout,
            max_batch_length=self.engine.max_batch_length,
            enabled=s.endpoints,
        )

    def _apply(self, now: float) -> None:
        """Carry out what the engine queued (and what that queued in turn)."""
        engine = self.engine
        by_client = self._by_client
        outputs = engine.data_to_send()
        while outputs:
            for out in outputs:
                conn = by_client.get(out.client)
                if conn is None:
                    peer = self._mounted.get(out.client)
                    if peer is not None:
                        self._to_mounted(peer, out, now)
                    elif out.client == self._publishing and isinstance(out, Send):
                        self._published.append(out.data)
                    else:
                        sink = self._peers.get(out.client)  # a peer host of the cluster
                        if sink is not None:
                            sink(out)
                    continue
                if isinstance(out, Close):
                    if conn.phase is Phase.CHANNEL:
                        conn.close_channel(out.code, out.reason, now)
                    else:
                        body = self._one_shot_bodies.pop(out.client, None)
                        self._answer(conn, out.client, RpcAnswer(out.code, body), now)
                elif conn.phase is Phase.CHANNEL:
                    conn.send_message(out.data, now)
                else:
                    self._one_shot_bodies[out.client] = out.data
                self._touched(conn)  # (a close it started has a deadline now)
            outputs = engine.data_to_send()
        if self._cluster_sink is not None:
            requests = engine.cluster_to_send()
            if requests:
                self._cluster_sink(requests)

    def _answer(self, conn: HostConnection, client: ClientId, answer: RpcAnswer, now: float) -> None:
        """The engine ended a ``/v1/rpc`` body: forget its client and hand ``conn`` the answer."""
        self._by_client.pop(client, None)
        self.engine.disconnect(client, now)  # it is closing: this only forgets it
        conn.client = None
        conn.answered(answer)

    def _touched(self, conn: HostConnection) -> None:
        """Something happened to ``conn``: the driver must look at it, and its deadline may be earlier."""
        if conn not in self._connections:
            return
        self._dirty[conn] = None
        deadline = conn.next_deadline()
        if deadline is None:
            self._deadlines.discard(conn)
            return
        scheduled = self._deadlines.get(conn)
        if scheduled is None or deadline < scheduled:  # a later one is found when the earlier fires
            self._deadlines.set(conn, deadline)

    def _settle(self, now: float) -> None:
        """Once the outermost input is handled: let connections whose answers came go on."""
        if self._depth:
            return
        ready = self._ready
        while ready:
            conn = ready.popleft()
            self._depth += 1
            try:
                conn.resume(now)
            finally:
                self._depth -= 1
            self._touched(conn)


def _publish_refusal(answers: list[bytes], index: int, count: int) -> HttpError | None:
    """The refusal in the engine's answer to one event's ``agent.publish``, if it refused it."""
    where = f"event {index} of {count}: " if count > 1 else ""
    if not answers:
        return HttpError(500, f"{where}the engine did not answer the publish")
    answer = _PUBLISH_ANSWER.decode(answers[0])
    if answer.error is None:
        return None
    message = msgspec.json.decode(answer.error).get("message", "refused")
    before = f" (the {index} before it were published)" if index else ""
    return HttpError(400, f"{where}{message}{before}")


__all__ = ["Authenticator", "HostHub", "HubSettings", "Views"]
