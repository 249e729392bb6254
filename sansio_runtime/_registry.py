"""Who hosts which agent type, who listens to which topic, and who owns each of those entries.

The host engine checks a request (names, limits, permissions) and then records it here; the
registry keeps the indexes consistent and answers the routing question of a publish
(:meth:`Registry.routes_for`, and :meth:`Registry.shared_for` for shared agent types) from caches
that any change empties. Shared agent types and their pools are in :attr:`Registry.shared`
(:mod:`._pools`); an agent type is either owned by one client or shared, never both.
"""

from __future__ import annotations

from collections.abc import Iterator

from ._events import ClientId
from ._pools import SharedTypes
from ._subscriptions import SubscriptionIndex
from ._wire import SubscriptionSpec

_ROUTE_CACHE_SIZE = 4096

Routes = list[tuple[ClientId, list[str]]]
"""The clients a publish reaches, each with the agent types it is for there (sorted)."""


class Registry:
    """Agent types and subscriptions, each owned by the client that added it."""

    __slots__ = (
        "_agent_types",
        "_routes",
        "_shared_routes",
        "_subscription_owner",
        "_subscriptions",
        "_subscriptions_of",
        "_types_of",
        "shared",
    )

    def __init__(self) -> None:
        self._agent_types: dict[str, ClientId] = {}  # agent type -> the client hosting it
        self._types_of: dict[ClientId, set[str]] = {}
        self._subscriptions = SubscriptionIndex()
        self._subscription_owner: dict[str, ClientId] = {}
        self._subscriptions_of: dict[ClientId, set[str]] = {}
        self._routes: dict[str, Routes] = {}
        self.shared = SharedTypes()
        """The shared agent types: their pools, and where each of their instances is placed."""
        self._shared_routes: dict[str, list[str]] = {}  # topic type -> shared types it reaches (sorted)

    # ------------------------------------------------------------------ agent types

    def owner_of(self, agent_type: str) -> ClientId | None:
        """The client hosting ``agent_type``, or None."""
        return self._agent_types.get(agent_type)

    def count_types_of(self, client: ClientId) -> int:
        """How many agent types ``client`` hosts, its own and shared ones."""
        return len(self._types_of.get(client, ())) + self.shared.count_types_of(client)

    def register_type(self, client: ClientId, agent_type: str) -> None:
        self._agent_types[agent_type] = client
        self._types_of.setdefault(client, set()).add(agent_type)
        self._forget_routes()

    def unregister_type(self, agent_type: str) -> None:
        client = self._agent_types.pop(agent_type)
        self._types_of[client].discard(agent_type)
        self._forget_routes()

    def agent_types(self) -> dict[str, ClientId]:
        """Every agent type registered by one client (not shared), and that client."""
        return dict(self._agent_types)

    def join_pool(self, client: ClientId, agent_type: str, name: str | None) -> None:
        """``client`` hosts ``agent_type`` as a shared type, with the other members of its pool."""
        if self.shared.join(agent_type, client, name):
            self._forget_routes()

    def leave_pool(self, client: ClientId, agent_type: str) -> None:
        if self.shared.leave(agent_type, client):
            self._forget_routes()

    # ------------------------------------------------------------------ subscriptions

    def find_equal_subscription(self, spec: SubscriptionSpec) -> str | None:
        """The id of a subscription equal to ``spec`` by id, or by kind, topic and agent type."""
        return self._subscriptions.find_equal(spec)

    def subscription_owner(self, subscription_id: str) -> ClientId | None:
        return self._subscription_owner.get(subscription_id)

    def count_subscriptions_of(self, client: ClientId) -> int:
        return len(self._subscriptions_of.get(client, ()))

    def equal_subscription_ids(self, spec: SubscriptionSpec) -> list[str]:
        """The ids of the subscriptions with the same kind, topic and agent type as ``spec``."""
        return self._subscriptions.equal_ids(spec)

    def add_subscription(self, client: ClientId, spec: SubscriptionSpec, *, twin: bool = False) -> None:
        """Record a subscription; ``twin``: one equal to existing ones, added by a pool member."""
        self._subscriptions.add(spec, twin=twin)
        self._subscription_owner[spec.id] = client
        self._subscriptions_of.setdefault(client, set()).add(spec.id)
        self._forget_routes()

    def remove_subscription(self, subscription_id: str) -> None:
        self._subscriptions.remove(subscription_id)
        client = self._subscription_owner.pop(subscription_id)
        self._subscriptions_of[client].discard(subscription_id)
        self._forget_routes()

    def subscriptions(self) -> Iterator[SubscriptionSpec]:
        """Every subscription, in the order they were added."""
        return iter(self._subscriptions)

    # ------------------------------------------------------------------ clients and routes

    def release(self, client: ClientId) -> None:
        """Forget every agent type and subscription ``client`` owns, and take it out of every pool."""
        if self.shared.release(client):
            self._forget_routes()
        types = self._types_of.pop(client, None)
        subscriptions = self._subscriptions_of.pop(client, None)
        if not types and not subscriptions:
            return
        for agent_type in types or ():
            del self._agent_types[agent_type]
        for subscription_id in subscriptions or ():
            self._subscriptions.remove(subscription_id)
            del self._subscription_owner[subscription_id]
        self._forget_routes()

    def types_of(self, client: ClientId) -> list[str]:
        """The agent types ``client`` hosts (sorted)."""
        return sorted(self._types_of.get(client, ()))

    def subscriptions_of(self, client: ClientId) -> list[str]:
        """The ids of the subscriptions ``client`` owns (sorted)."""
        return sorted(self._subscriptions_of.get(client, ()))

    def routes_for(self, topic_type: str) -> Routes:
        """Which clients a publish on ``topic_type`` reaches, and for which of their agent types."""
        routes = self._routes.get(topic_type)
        if routes is None:
            by_client: dict[ClientId, list[str]] = {}
            for agent_type in sorted(self._subscriptions.match(topic_type)):
                owner = self._agent_types.get(agent_type)
                if owner is not None:
                    by_client.setdefault(owner, []).append(agent_type)
            routes = list(by_client.items())
            if len(self._routes) >= _ROUTE_CACHE_SIZE:
                self._routes.clear()
            self._routes[topic_type] = routes
        return routes

    def shared_for(self, topic_type: str) -> list[str]:
        """The shared agent types a publish on ``topic_type`` reaches (sorted); each reaches one
        instance, on the member of its pool holding the event's topic source as key."""
        found = self._shared_routes.get(topic_type)
        if found is None:
            shared = self.shared
            found = sorted(t for t in self._subscriptions.match(topic_type) if t in shared)
            if len(self._shared_routes) >= _ROUTE_CACHE_SIZE:
                self._shared_routes.clear()
            self._shared_routes[topic_type] = found
        return found

    def types_subscribed_to(self, topic_type: str) -> list[str]:
        """Every agent type a subscription matches ``topic_type`` for, whoever hosts it (sorted)."""
        return sorted(self._subscriptions.match(topic_type))

    def _forget_routes(self) -> None:
        self._routes.clear()
        self._shared_routes.clear()


__all__ = ["Registry", "Routes"]
