"""The host engine's side of a cluster (docs/CLUSTER.md section 4): other hosts as PEER clients.

:class:`PeerHosts` is a part of :class:`~._host.HostEngine` (a mixin: the state it uses is the
engine's, declared below). The cluster driver tells the engine which hosts are alive
(:meth:`~PeerHosts.add_peer`, :meth:`~PeerHosts.remove_peer`), what each holds (from the
cluster's registry), and how the claims the engine asked for were settled; the engine asks the
driver for claims and releases through :meth:`~PeerHosts.cluster_to_send`.
"""

from __future__ import annotations

import itertools
from collections import deque

from msgspec import Raw, UnsetType

from . import _wire as wire
from ._clients import Client, ClientKind, ClientState
from ._cluster import AgentTypeReleased, ClaimAgentType, ClusterOutput, SubscriptionRemoved
from ._cluster_pools import ClusterPools, HeldPublish
from ._errors import ErrorCode, LocalProtocolError
from ._events import ClientId, HostOutput, Send
from ._params import Rejection, decode_params
from ._peer_pools import PeerPools
from ._registry import Registry
from ._wire import RequestId, SubscriptionSpec


class PeerHosts(PeerPools):
    """Peers, claims and the cluster link's state, for :class:`~._host.HostEngine`."""

    _clients: dict[ClientId, Client]
    _registry: Registry
    _out: list[HostOutput]
    _clustered: bool
    _cluster_link_up: bool
    _cluster_out: list[ClusterOutput]
    _claims: dict[int, tuple[ClientId, RequestId | None, str, bool]]
    _claim_ids: itertools.count[int]
    _peer_names: dict[ClientId, str]
    _peer_hosts: dict[ClientId, str]

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
        self._claims = {}  # claim -> (the worker, its request, the type, shared)
        self._claim_ids = itertools.count(1)
        self._peer_names = {}  # peer -> how error messages name it
        self._peer_hosts = {}  # peer -> its host name in the cluster
        self._peer_by_host: dict[str, ClientId] = {}
        self._cluster_pools: ClusterPools | None = None  # (clustered hosts only)
        self._held_publishes: deque[HeldPublish] = deque()

    def _tell_cluster(self, output: ClusterOutput) -> None:
        if self._clustered:
            self._cluster_out.append(output)

    def _hold_for_claim(self, c: Client, msg_id: RequestId | UnsetType, agent_type: str, shared: bool) -> bytes | None:
        """A registration is held (its type routed here, or its worker in the pool) until its claim
        settles; the worker is answered then."""
        claim = next(self._claim_ids)
        self._claims[claim] = (c.id, None if isinstance(msg_id, UnsetType) else msg_id, agent_type, shared)
        if shared:
            assert self._cluster_pools is not None
            self._cluster_pools.join(agent_type, self._cluster_pools.here)
        self._cluster_out.append(ClaimAgentType(claim, agent_type, shared))
        return None  # (answered when the claim settles)

    def _left_pool(self, agent_type: str) -> None:
        """A worker of ours left ``agent_type``'s pool: if it was the last one here, this host is out
        of the cluster's pool (its keys are free) and the driver is told."""
        pools = self._cluster_pools
        if pools is not None and agent_type not in self._registry.shared:
            pools.leave(agent_type, pools.here)
            self._cluster_out.append(AgentTypeReleased(agent_type))

    def _forward_event(self, publisher: Client, peer: Client, params: Raw) -> None:
        """A publish goes once to each host with a subscriber, as published; that host routes it to
        its own workers. An event from a peer is never relayed to another peer."""
        if publisher.kind is not ClientKind.PEER:
            self._out.append(Send(peer.id, wire.notification(wire.AGENT_PUBLISH, params)))

    def enable_cluster(self, host_name: str = "self") -> None:
        """This host is part of a cluster, as ``host_name``: from now on, what its workers register
        and subscribe is also asked of the driver (:meth:`cluster_to_send`), and a registration is
        answered once its claim settles (:meth:`claim_settled`). Call it before any worker connects."""
        self._clustered = True
        self._cluster_pools = ClusterPools(host_name)

    def cluster_to_send(self) -> list[ClusterOutput]:
        """Take every request for the cluster driver queued so far, oldest first."""
        out, self._cluster_out = self._cluster_out, []
        return out

    def set_cluster_link(self, up: bool) -> None:
        """Whether the driver's link to the cluster is up (only the wording of errors depends on it)."""
        self._cluster_link_up = up

    def add_peer(self, name: str, host: str | None = None) -> ClientId:
        """Another host joined: it is a client now. ``name``: how error messages name it; ``host``:
        its host name in the cluster (default ``name``), as the registry's entries name it."""
        peer = self.connect(ClientKind.PEER)
        self._peer_names[peer] = name
        self._peer_hosts[peer] = host = name if host is None else host
        self._peer_by_host[host] = peer
        return peer

    def remove_peer(self, peer: ClientId, now: float) -> None:
        """The host ``peer`` is gone: calls pending at it fail with TARGET_DISCONNECTED, calls it
        made are cancelled at their targets, its agent types and subscriptions are forgotten."""
        self.disconnect(peer, now)
        self._peer_names.pop(peer, None)
        host = self._peer_hosts.pop(peer, None)
        if host is not None and self._peer_by_host.get(host) == peer:
            del self._peer_by_host[host]
            if self._cluster_pools is not None:
                self._cluster_pools.host_gone(host)

    def peer_registered(self, peer: ClientId, agent_type: str) -> bool:
        """The host ``peer`` hosts ``agent_type`` (by the cluster's registry). False (and nothing
        changes) if a client here holds the type already: the cluster's claim decides between them."""
        self._check_peer(peer)
        owner = self._registry.owner_of(agent_type)
        if owner is not None:
            return owner == peer
        if agent_type in self._registry.shared or (self._cluster_pools and agent_type in self._cluster_pools):
            return False  # shared here: the cluster's claim decides
        self._registry.register_type(peer, agent_type)
        return True

    def peer_joined_pool(self, peer: ClientId, agent_type: str) -> bool:
        """The host ``peer`` has members of the shared type ``agent_type`` (by the cluster's
        registry). False (and nothing changes) if a client here holds the type unshared."""
        self._check_peer(peer)
        owner = self._registry.owner_of(agent_type)
        if (owner is not None and owner not in self._peer_names) or self._cluster_pools is None:
            return False
        self._cluster_pools.join(agent_type, self._peer_hosts[peer])
        return True

    def peer_left_pool(self, peer: ClientId, agent_type: str) -> None:
        """The host ``peer`` has no member of ``agent_type`` left: the keys it held are free."""
        self._check_peer(peer)
        if self._cluster_pools is not None:
            self._cluster_pools.leave(agent_type, self._peer_hosts[peer])

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
        # (an equal one of another host is a twin: the members of a pool spread over hosts each add it)
        twin = self._registry.find_equal_subscription(spec) is not None
        self._registry.add_subscription(peer, spec, twin=twin)
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
        client_id, request_id, agent_type, shared = pending
        c = self._clients.get(client_id)
        registry = self._registry
        holds = (
            registry.shared.is_member(agent_type, client_id) if shared else registry.owner_of(agent_type) == client_id
        )
        if c is None or c.state is not ClientState.OPEN or not holds:
            return
        if won:
            if request_id is not None:
                self._out.append(Send(client_id, wire.response(request_id, None)))
            return
        if shared:
            registry.leave_pool(client_id, agent_type)
            self._left_pool(agent_type)
        else:
            registry.unregister_type(agent_type)
        if request_id is not None:
            message = f"Agent type {agent_type} already registered by {holder} of the cluster"
            error = self._error(request_id, ErrorCode.AGENT_TYPE_ALREADY_REGISTERED, message)
            self._out.append(Send(client_id, error))

    def type_lost(self, agent_type: str, holder: str) -> bool:
        """After a re-sync, the cluster's registry gives ``agent_type``, which a worker of ours
        registered, to ``holder`` (another host took it over while we were cut off). The type is
        taken from our worker, which is told (an error with id null naming the type); the driver
        then applies the holder's entry. False if no worker of ours holds it."""
        owner = self._registry.owner_of(agent_type)
        if owner is None or owner in self._peer_names:
            return False
        self._registry.unregister_type(agent_type)
        message = (
            f"agent type {agent_type} was taken over by {holder} of the cluster while this worker's host was cut "
            "off from it; this worker gets no more calls for it: restart it once the other is gone, or register "
            "another type name"
        )
        data = wire.agent_type_lost_data(agent_type, holder)
        self._out.append(
            Send(owner, wire.error_response(None, int(ErrorCode.AGENT_TYPE_ALREADY_REGISTERED), message, data))
        )
        return True

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
        request = decode_params(wire.REGISTER_AGENT_DECODER, params)
        agent_type = request.type
        owner = self._registry.owner_of(agent_type)
        if owner is not None and owner in self._peer_names:
            raise Rejection(
                ErrorCode.AGENT_TYPE_ALREADY_REGISTERED,
                f"Agent type {agent_type} already registered by {self._peer_names[owner]} of the cluster",
            )
        pools = self._cluster_pools
        if not request.shared and pools is not None and agent_type in pools:
            others = [h for h in pools.hosts(agent_type) if h != pools.here]
            if others:
                raise Rejection(
                    ErrorCode.AGENT_TYPE_ALREADY_REGISTERED,
                    f"Agent type {agent_type} already registered by workers of host {others[0]} of the cluster, "
                    "shared: pass shared_agent_types=True to this worker too, or register another type name",
                )

    def _release_cluster_records(self, c: Client) -> None:
        """Tell the driver what the leaving (local) client held cluster-wide."""
        if not self._clustered or c.id in self._peer_names:
            return
        out = self._cluster_out
        out.extend(AgentTypeReleased(t) for t in self._registry.types_of(c.id))
        out.extend(SubscriptionRemoved(s) for s in self._registry.subscriptions_of(c.id))
        pools, shared = self._cluster_pools, self._registry.shared
        for agent_type in shared.types_of(c.id):
            if pools is not None and shared.members(agent_type) == [c.id]:  # the last one here
                pools.leave(agent_type, pools.here)
                out.append(AgentTypeReleased(agent_type))


__all__ = ["PeerHosts"]
