"""Who hosts which agent type, who listens to which topic, and who owns each of those entries.

The host engine checks a request (names, limits, permissions) and then records it here; the
registry keeps the indexes consistent and answers the routing question of a publish
(:meth:`Registry.routes_for`) from a cache that any change empties.
"""

from __future__ import annotations

from collections.abc import Iterator

from ._events import ClientId
from ._subscriptions import SubscriptionIndex
from ._wire import SubscriptionSpec

_ROUTE_CACHE_SIZE = 4096

Routes = list[tuple[ClientId, list[str]]]
"""The clients a publish reaches, each with the agent types it is for there (sorted)."""


class Registry:
    """Agent types and subscriptions, each owned by the client that added it."""

    __slots__ = ("_agent_types", "_routes", "_subscription_owner", "_subscriptions", "_subscriptions_of", "_types_of")

    def __init__(self) -> None:
        self._agent_types: dict[str, ClientId] = {}  # agent type -> the client hosting it
        self._types_of: dict[ClientId, set[str]] = {}
        self._subscriptions = SubscriptionIndex()
        self._subscription_owner: dict[str, ClientId] = {}
        self._subscriptions_of: dict[ClientId, set[str]] = {}
        self._routes: dict[str, Routes] = {}

    # ------------------------------------------------------------------ agent types

    def owner_of(self, agent_type: str) -> ClientId | None:
        """The client hosting ``agent_type``, or None."""
        return self._agent_types.get(agent_type)

    def count_types_of(self, client: ClientId) -> int:
        return len(self._types_of.get(client, ()))

    def register_type(self, client: ClientId, agent_type: str) -> None:
        self._agent_types[agent_type] = client
        self._types_of.setdefault(client, set()).add(agent_type)
        self._routes.clear()

    def unregister_type(self, agent_type: str) -> None:
        client = self._agent_types.pop(agent_type)
        self._types_of[client].discard(agent_type)
        self._routes.clear()

    def agent_types(self) -> dict[str, ClientId]:
        """Every registered agent type and the client hosting it."""
        return dict(self._agent_types)

    # ------------------------------------------------------------------ subscriptions

    def find_equal_subscription(self, spec: SubscriptionSpec) -> str | None:
        """The id of a subscription equal to ``spec`` by id, or by kind, topic and agent type."""
        return self._subscriptions.find_equal(spec)

    def subscription_owner(self, subscription_id: str) -> ClientId | None:
        return self._subscription_owner.get(subscription_id)

    def count_subscriptions_of(self, client: ClientId) -> int:
        return len(self._subscriptions_of.get(client, ()))

    def add_subscription(self, client: ClientId, spec: SubscriptionSpec) -> None:
        self._subscriptions.add(spec)
        self._subscription_owner[spec.id] = client
        self._subscriptions_of.setdefault(client, set()).add(spec.id)
        self._routes.clear()

    def remove_subscription(self, subscription_id: str) -> None:
        self._subscriptions.remove(subscription_id)
        client = self._subscription_owner.pop(subscription_id)
        self._subscriptions_of[client].discard(subscription_id)
        self._routes.clear()

    def subscriptions(self) -> Iterator[SubscriptionSpec]:
        """Every subscription, in the order they were added."""
        return iter(self._subscriptions)

    # ------------------------------------------------------------------ clients and routes

    def release(self, client: ClientId) -> None:
        """Forget every agent type and subscription ``client`` owns."""
        types = self._types_of.pop(client, None)
        subscriptions = self._subscriptions_of.pop(client, None)
        if not types and not subscriptions:
            return
        for agent_type in types or ():
            del self._agent_types[agent_type]
        for subscription_id in subscriptions or ():
            self._subscriptions.remove(subscription_id)
            del self._subscription_owner[subscription_id]
        self._routes.clear()

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


__all__ = ["Registry", "Routes"]
