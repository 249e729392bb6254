"""The host engine's side of shared agent types across a cluster (docs/CLUSTER.md section 8).

:class:`PeerPools` is a part of :class:`~._host.HostEngine` (a mixin, like :mod:`._peers`): it
routes calls and events for shared types whose pools span several hosts. Which hosts have members,
and which host holds each instance, is :class:`~._cluster_pools.ClusterPools`; this module turns
that into routing:

* a call to ``AgentId(T, k)`` goes to the host holding ``k`` (this one: to the member of the local
  pool holding it, as on one host); if ``k`` is not placed, the call waits while the engine asks
  the driver to place it (:class:`~._cluster.ClaimPlacement`), and goes on when it settles;
* a publish reaches each shared type's instance on the host holding its key: locally if here, by
  forwarding the publish to that host otherwise (once per host, with its other subscribers). A
  publish that needs a placement waits, and every later publish waits behind it, so that each
  subscriber sees one publisher's events in order;
* a publish forwarded by another host is delivered to the instances held here only (the
  publisher's host forwards it to every other holder).
"""

from __future__ import annotations

import itertools
from collections import deque

from msgspec import Raw

from . import _wire as wire
from ._clients import Client, ClientKind, ClientState
from ._cluster import ClaimPlacement, ClusterOutput
from ._cluster_pools import ClusterPools, HeldCall, HeldPublish, Waiting
from ._errors import ErrorCode
from ._events import ClientId, HostOutput, Send
from ._params import Rejection, check_placed_key
from ._registry import Registry
from ._stats import HostStats
from ._wire import CallRouting, RequestId


class PeerPools:
    """Calls and events for shared types placed across hosts, for :class:`~._host.HostEngine`."""

    _clients: dict[ClientId, Client]
    _registry: Registry
    _out: list[HostOutput]
    _now: float
    stats: HostStats
    _cluster_out: list[ClusterOutput]
    _claim_ids: itertools.count[int]
    _cluster_pools: ClusterPools | None
    _held_publishes: deque[HeldPublish]
    _peer_by_host: dict[str, ClientId]

    # (the engine's)
    def _error(self, msg_id: RequestId | None, code: ErrorCode, message: str) -> bytes:
        raise NotImplementedError

    def _reply_to(self, caller: Client, request_id: RequestId, frame: bytes) -> None:
        raise NotImplementedError

    def _open_call(
        self, c: Client, msg_id: RequestId, target: ClientId, deadline: float | None, params: Raw, call: CallRouting
    ) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------ calls

    def _cluster_target(
        self, c: Client, msg_id: RequestId, params: Raw, call: CallRouting, deadline: float | None
    ) -> ClientId | None:
        """Where a call to a shared type spread over the cluster goes; None: it waits for a claim."""
        pools = self._cluster_pools
        assert pools is not None
        agent_type, key = call.target.type, call.target.key
        check_placed_key(agent_type, key)
        host = pools.holder(agent_type, key)
        if host is None:
            self._ask_placement(agent_type, key).calls.append(HeldCall(c.id, msg_id, params, call, deadline))
            if c.kind is ClientKind.ONE_SHOT:
                c.awaiting += 1  # (its HTTP answer waits for this call's)
            return None
        return self._target_on(c, agent_type, key, host)

    def _target_on(self, c: Client, agent_type: str, key: str, host: str) -> ClientId:
        """The client a call to ``AgentId(agent_type, key)``, placed on ``host``, is sent to."""
        pools = self._cluster_pools
        assert pools is not None
        if host == pools.here:
            member = self._registry.shared.place(agent_type, key)
            if member is None:
                raise Rejection(
                    ErrorCode.AGENT_TYPE_NOT_FOUND,
                    f"agent {agent_type}/{key} is placed on this host, which has no worker of the type left",
                )
            return member
        if c.kind is ClientKind.PEER:  # (a peer never relays)
            raise Rejection(ErrorCode.AGENT_TYPE_NOT_FOUND, f"agent {agent_type}/{key} is placed on host {host}")
        peer = self._peer_by_host.get(host)
        if peer is None:
            raise Rejection(
                ErrorCode.AGENT_TYPE_NOT_FOUND,
                f"agent {agent_type}/{key} is placed on host {host}, which this host cannot reach now",
            )
        return peer

    def _ask_placement(self, agent_type: str, key: str) -> Waiting:
        """The claim placing the key: the one in flight, or a new one (proposing a host)."""
        pools = self._cluster_pools
        assert pools is not None
        claim = pools.claim_for(agent_type, key)
        if claim is not None:
            waiting = pools.waiting(claim)
            assert waiting is not None
            return waiting
        claim = next(self._claim_ids)
        proposal = pools.propose(agent_type, key)
        assert proposal is not None  # (only asked for types with a pool)
        self._cluster_out.append(ClaimPlacement(claim, agent_type, key, proposal))
        return pools.open_claim(claim, agent_type, key, proposal)

    def _resume_call(self, held: HeldCall, host: str | None, why: str) -> None:
        c = self._clients.get(held.caller)
        if c is None or c.state is ClientState.CLOSING:
            return  # (the caller left: nobody to answer)
        target = held.call.target
        try:
            if held.deadline is not None and self._now >= held.deadline:
                raise Rejection(ErrorCode.DEADLINE_EXCEEDED, "the call's timeout_ms ran out while it was being placed")
            if host is None:
                raise Rejection(
                    ErrorCode.AGENT_TYPE_NOT_FOUND, f"agent {target.type}/{target.key} was not placed: {why}"
                )
            to = self._target_on(c, target.type, target.key, host)
        except Rejection as rej:
            self.stats.calls_refused += 1
            self._reply_to(c, held.request_id, self._error(held.request_id, rej.code, rej.message))
            return
        if c.kind is ClientKind.ONE_SHOT:
            c.awaiting -= 1  # (counted again as the call opens)
        self._open_call(c, held.request_id, to, held.deadline, held.params, held.call)

    def _cancel_held(self, c: Client, request_id: RequestId) -> bool:
        """Cancel a call still waiting for its placement (it never reached a target)."""
        pools = self._cluster_pools
        if pools is None:
            return False
        for claim in pools.claims():
            waiting = pools.waiting(claim)
            assert waiting is not None
            for held in waiting.calls:
                if held.caller == c.id and held.request_id == request_id:
                    waiting.calls.remove(held)
                    error = self._error(request_id, ErrorCode.CANCELLED, "cancelled by the caller")
                    self._reply_to(c, request_id, error)
                    return True
        return False

    # ------------------------------------------------------------------ the driver's answers

    def placement_settled(self, claim: int, host: str | None, why: str = "", now: float | None = None) -> None:
        """The cluster decided the :class:`ClaimPlacement` ``claim``: the key is on ``host``
        (None: it could not be placed, ``why``). The calls and events waiting for it go on."""
        pools = self._cluster_pools
        if pools is None:
            return
        if now is not None:
            self._now = now
        waiting = pools.close_claim(claim)
        if waiting is None:
            return
        agent_type, key = waiting.agent_type, waiting.key
        if host is None and not pools.has_host(agent_type, waiting.proposal) and agent_type in pools:
            # The host it proposed left the pool meanwhile: propose again among those left (bounded:
            # each retry needs another host to leave).
            self._ask_placement(agent_type, key).calls.extend(waiting.calls)
            return
        if host is not None and not pools.assign(agent_type, key, host):
            placed = pools.holder(agent_type, key)
            why = f"the cluster placed it on host {host}, which has no worker of the type any more"
            host = placed  # (placed meanwhile by the registry's watch, or not at all)
        for held in waiting.calls:
            self._resume_call(held, host, why)
        self._drain_publishes(give_up=None if host is not None else (agent_type, key))

    def placement_known(self, agent_type: str, key: str, host: str) -> bool:
        """The cluster's registry places ``AgentId(agent_type, key)`` on ``host`` (its watch). False,
        and nothing changes, if that host has no members of the type here or the key is elsewhere."""
        pools = self._cluster_pools
        return pools is not None and pools.assign(agent_type, key, host)

    def placement_released(self, agent_type: str, key: str, host: str) -> None:
        """The registry's placement of ``AgentId(agent_type, key)`` on ``host`` is gone."""
        if self._cluster_pools is not None:
            self._cluster_pools.release(agent_type, key, host)

    def placements_here(self) -> list[tuple[str, str]]:
        """Every ``(type, key)`` placed on this host (to claim again under a new epoch)."""
        pools = self._cluster_pools
        return [] if pools is None else pools.placed_on(pools.here)

    def placement_of(self, agent_type: str, key: str) -> str | None:
        """The host holding ``AgentId(agent_type, key)`` of a shared type, as this host knows it."""
        pools = self._cluster_pools
        return None if pools is None else pools.holder(agent_type, key)

    def pending_placements(self) -> list[int]:
        """The placement claims not settled yet."""
        pools = self._cluster_pools
        return [] if pools is None else pools.claims()

    # ------------------------------------------------------------------ events

    def _cluster_publish(self, c: Client, params: Raw, event: wire.EventRouting) -> None:
        held = HeldPublish(c.kind is ClientKind.PEER, params, event.type, event.source)
        if self._held_publishes or not self._try_publish(held, None):
            self._held_publishes.append(held)

    def _drain_publishes(self, give_up: tuple[str, str] | None) -> None:
        """Deliver the publishes held for placements, oldest first, until one must wait again."""
        queue = self._held_publishes
        while queue:
            if not self._try_publish(queue[0], give_up):
                return
            queue.popleft()
            give_up = None

    def _try_publish(self, held: HeldPublish, give_up: tuple[str, str] | None) -> bool:
        """Deliver ``held`` if every shared instance it reaches is placed (False: it waits; a key in
        ``give_up`` could not be placed: its instance misses the event, and it is counted)."""
        pools = self._cluster_pools
        assert pools is not None
        shared = [t for t in self._registry.types_subscribed_to(held.topic_type) if t in pools]
        missing = False
        for agent_type in shared:
            if pools.holder(agent_type, held.source) is None and (agent_type, held.source) != give_up:
                self._ask_placement(agent_type, held.source)
                missing = True
        if missing:
            return False
        self._deliver(held, shared)
        return True

    def _deliver(self, held: HeldPublish, shared: list[str]) -> None:
        pools = self._cluster_pools
        assert pools is not None
        by_client = {client: list(types) for client, types in self._registry.routes_for(held.topic_type)}
        for agent_type in shared:
            host = pools.holder(agent_type, held.source)
            member: ClientId | None = None
            if host is None:
                self.stats.events_unplaced += 1
            elif host == pools.here:
                member = self._registry.shared.place(agent_type, held.source)
                if member is None:
                    self.stats.events_unplaced += 1
            elif not held.from_peer:
                member = self._peer_by_host.get(host)
                agent_type = ""  # (the holder's host routes the forwarded publish itself)
            if member is not None:
                types = by_client.setdefault(member, [])
                if agent_type:
                    types.append(agent_type)
        for client_id, types in by_client.items():
            target = self._clients.get(client_id)
            if target is None or target.state is not ClientState.OPEN:
                continue
            if target.kind is ClientKind.PEER:
                if not held.from_peer:  # (once per host; that host routes it to its own workers)
                    self._out.append(Send(client_id, wire.notification(wire.AGENT_PUBLISH, held.params)))
            elif types:
                types.sort()
                delivery = wire.EventDelivery(types, held.params)
                self._out.append(Send(client_id, wire.notification(wire.AGENT_EVENT, delivery)))
                self.stats.event_deliveries += 1


__all__ = ["PeerPools"]
