"""The host engine's side of a cluster (docs/CLUSTER.md section 4): other hosts as PEER clients.

:class:`PeerHosts` is a part of :class:`~._host.HostEngine` (a mixin: the state it uses is the
engine's, declared below). The cluster driver tells the engine which hosts are alive
(:meth:`~PeerHosts.add_peer`, :meth:`~PeerHosts.remove_peer`), what each holds (from the
cluster's registry), and how the claims the engine asked for were settled; the engine asks the
driver for claims and releases through :meth:`~PeerHosts.cluster_to_send`.
"""

from __future__ import annotations

import itertools

from msgspec import Raw, UnsetType

from . import _wire as wire
from ._clients import Client, ClientKind, ClientState
from ._cluster import AgentTypeReleased, ClaimAgentType, ClusterOutput, SubscriptionRemoved
from ._errors import ErrorCode, LocalProtocolError
from ._events import ClientId, HostOutput, Send
from ._params import Rejection, decode_params
from ._registry import Registry
from ._wire import RequestId, SubscriptionSpec


class PeerHosts:
    """Peers, claims and the cluster link's state, for :class:`~._host.HostEngine`."""

    _clients: dict[ClientId, Client]
    _registry: Registry
    _out: list[HostOutput]
    _clustered: bool
    _cluster_link_up: bool
    _cluster_out: list[ClusterOutput]
    _claims: dict[int, tuple[ClientId, RequestId | None, str]]
    _claim_ids: itertools.count[int]
    _peer_names: dict[ClientId, str]

    # (the engine's)
    def connect(self, kind: ClientKind = ClientKind.CHANNEL, name: str | None = None) -> ClientId:
        raise NotImplementedError

    def disconnect(self, client: ClientId, now: float) -> None:
        raise NotImplementedError

    def _error(self, msg_id: RequestId | None, code: ErrorCode, message: str) -> bytes:
        raise NotImplementedError

    def _init_peers(self) -> None:
        self._clustered = False
        self._cluster_link_up = True
        self._cluster_out = []
        self._claims = {}  # claim -> (the worker, its request, the type)
        self._claim_ids = itertools.count(1)
        self._peer_names = {}

    def _tell_cluster(self, output: ClusterOutput) -> None:
        if self._clustered:
            self._cluster_out.append(output)

    def _hold_for_claim(self, c: Client, msg_id: RequestId | UnsetType, agent_type: str) -> bytes | None:
        """A registration is held (its type routed here) until its claim settles; the worker is
        answered then. (A shared type's pool is per host: never claimed, docs/CLUSTER.md section 0.)"""
        claim = next(self._claim_ids)
        self._claims[claim] = (c.id, None if isinstance(msg_id, UnsetType) else msg_id, agent_type)
        self._cluster_out.append(ClaimAgentType(claim, agent_type))
        return None  # (answered when the claim settles)

    def _forward_event(self, publisher: Client, peer: Client, params: Raw) -> None:
        """A publish goes once to each host with a subscriber, as published; that host routes it to
        its own workers. An event from a peer is never relayed to another peer."""
        if publisher.kind is not ClientKind.PEER:
            self._out.append(Send(peer.id, wire.notification(wire.AGENT_PUBLISH, params)))

    def enable_cluster(self) -> None:
        """This host is part of a cluster: from now on, what its workers register and subscribe is
        also asked of the driver (:meth:`cluster_to_send`), and a registration is answered once its
        claim settles (:meth:`claim_settled`). Call it before any worker connects."""
        self._clustered = True

    def cluster_to_send(self) -> list[ClusterOutput]:
        """Take every request for the cluster driver queued so far, oldest first."""
        out, self._cluster_out = self._cluster_out, []
        return out

    def set_cluster_link(self, up: bool) -> None:
        """Whether the driver's link to the cluster is up (only the wording of errors depends on it)."""
        self._cluster_link_up = up

    def add_peer(self, name: str) -> ClientId:
        """Another host (``name``: its name and epoch, for error messages) joined: it is a client now."""
        peer = self.connect(ClientKind.PEER)
        self._peer_names[peer] = name
        return peer

    def remove_peer(self, peer: ClientId, now: float) -> None:
        """The host ``peer`` is gone: calls pending at it fail with TARGET_DISCONNECTED, calls it
        made are cancelled at their targets, its agent types and subscriptions are forgotten."""
        self.disconnect(peer, now)
        self._peer_names.pop(peer, None)

    def peer_registered(self, peer: ClientId, agent_type: str) -> bool:
        """The host ``peer`` hosts ``agent_type`` (by the cluster's registry). False (and nothing
        changes) if a client here holds the type already: the cluster's claim decides between them."""
        self._check_peer(peer)
        owner = self._registry.owner_of(agent_type)
        if owner is not None:
            return owner == peer
        self._registry.register_type(peer, agent_type)
        return True

    def peer_unregistered(self, peer: ClientId, agent_type: str) -> None:
        """The host ``peer`` no longer hosts ``agent_type`` (nothing happens if it did not)."""
        self._check_peer(peer)
        if self._registry.owner_of(agent_type) == peer:
            self._registry.unregister_type(agent_type)

    def peer_subscribed(self, peer: ClientId, spec: SubscriptionSpec) -> bool:
        """The host ``peer`` holds subscription ``spec``; False if a subscription with its id exists."""
        self._check_peer(peer)
        if self._registry.subscription_owner(spec.id) is not None:
            return self._registry.subscription_owner(spec.id) == peer
        self._registry.add_subscription(peer, spec)
        return True

    def peer_unsubscribed(self, peer: ClientId, subscription_id: str) -> None:
        """The host ``peer`` no longer holds subscription ``subscription_id``."""
        self._check_peer(peer)
        if self._registry.subscription_owner(subscription_id) == peer:
            self._registry.remove_subscription(subscription_id)

    def claim_settled(self, claim: int, won: bool, holder: str = "another host") -> None:
        """The cluster decided the :class:`ClaimAgentType` ``claim``: ``won``, or held by ``holder``.

        A won claim answers the worker's registration; a lost one takes the type back from the
        worker and answers AGENT_TYPE_ALREADY_REGISTERED. A claim whose worker has left, or has
        unregistered the type meanwhile, is only forgotten (the driver was told of the release).
        """
        pending = self._claims.pop(claim, None)
        if pending is None:
            return
        client_id, request_id, agent_type = pending
        c = self._clients.get(client_id)
        if c is None or c.state is not ClientState.OPEN or self._registry.owner_of(agent_type) != client_id:
            return
        if won:
            if request_id is not None:
                self._out.append(Send(client_id, wire.response(request_id, None)))
            return
        self._registry.unregister_type(agent_type)
        if request_id is not None:
            message = f"Agent type {agent_type} already registered by {holder} of the cluster"
            error = self._error(request_id, ErrorCode.AGENT_TYPE_ALREADY_REGISTERED, message)
            self._out.append(Send(client_id, error))

    def pending_claims(self) -> list[int]:
        """The claims not settled yet."""
        return list(self._claims)

    def is_peer(self, client: ClientId) -> bool:
        return client in self._peer_names

    def _check_peer(self, peer: ClientId) -> None:
        if peer not in self._peer_names or peer not in self._clients:
            raise LocalProtocolError(f"client {peer} is not a connected peer host")

    def _not_found(self, agent_type: str, caller: Client) -> str:
        if caller.kind is ClientKind.PEER:
            return f"agent type {agent_type!r} is not hosted by a worker of this host"
        if self._clustered and not self._cluster_link_up:
            return (
                f"no worker of this host hosts agent type {agent_type!r}, and the cluster link is down: "
                "types on other hosts are unreachable until it is back"
            )
        if self._clustered:
            return f"no connected worker on any host of the cluster hosts agent type {agent_type!r}"
        return f"no connected worker hosts agent type {agent_type!r}"

    def _refuse_a_peers_type(self, params: Raw | UnsetType) -> None:
        """A registration of a type another host holds is refused, naming that host."""
        if not self._peer_names:
            return
        agent_type = decode_params(wire.REGISTER_AGENT_DECODER, params).type
        owner = self._registry.owner_of(agent_type)
        if owner is not None and owner in self._peer_names:
            raise Rejection(
                ErrorCode.AGENT_TYPE_ALREADY_REGISTERED,
                f"Agent type {agent_type} already registered by {self._peer_names[owner]} of the cluster",
            )

    def _release_cluster_records(self, c: Client) -> None:
        """Tell the driver what the leaving (local) client held cluster-wide."""
        if not self._clustered or c.id in self._peer_names:
            return
        out = self._cluster_out
        out.extend(AgentTypeReleased(t) for t in self._registry.types_of(c.id))
        out.extend(SubscriptionRemoved(s) for s in self._registry.subscriptions_of(c.id))


__all__ = ["PeerHosts"]
