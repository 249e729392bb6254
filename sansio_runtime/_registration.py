"""The ``runtime.*`` requests a worker makes of the host: check each one, then record it.

Every function takes the params as received and either changes the :class:`~._registry.Registry`
or raises :class:`~._params.Rejection` with the error that answers the request (docs/PROTOCOL.md
sections 4.1 to 4.4). Ownership (section 7.4) is checked here: only the client that registered a
type or added a subscription may take it back.
"""

from __future__ import annotations

from msgspec import Raw, UnsetType

from . import _wire as wire
from ._errors import ErrorCode
from ._events import ClientId
from ._params import Rejection, check_name_lengths, decode_params
from ._registry import Registry


def register_agent(
    registry: Registry, client: ClientId, name: str | None, params: Raw | UnsetType, *, max_types: int
) -> tuple[str, bool]:
    """Record ``client`` as the host of an agent type, alone or (``shared``) in the type's pool.

    Returns the type, and whether ``client`` joined its pool (True) or hosts it alone."""
    request = decode_params(wire.REGISTER_AGENT_DECODER, params)
    agent_type = request.type
    if not agent_type:
        raise Rejection(ErrorCode.INVALID_PARAMS, "type must be a non-empty string")
    check_name_lengths(agent_type)
    owner = registry.owner_of(agent_type)
    if owner is not None:
        whose = "this connection" if owner == client else "another worker"
        advice = "" if owner == client or not request.shared else _NOT_SHARED_ADVICE
        raise Rejection(  # (the gRPC host's wording: code and tests match "Agent type X already registered")
            ErrorCode.AGENT_TYPE_ALREADY_REGISTERED, f"Agent type {agent_type} already registered by {whose}{advice}"
        )
    shared = registry.shared
    if agent_type in shared:
        if shared.is_member(agent_type, client):
            raise Rejection(
                ErrorCode.AGENT_TYPE_ALREADY_REGISTERED,
                f"Agent type {agent_type} already registered by this connection (shared)",
            )
        if not request.shared:
            raise Rejection(
                ErrorCode.AGENT_TYPE_ALREADY_REGISTERED,
                f"Agent type {agent_type} already registered by other workers, shared: pass "
                "shared_agent_types=True to this worker too, or register another type name",
            )
    held = registry.count_types_of(client)
    if held >= max_types:
        raise Rejection(
            ErrorCode.TOO_MANY_AGENT_TYPES,
            f"this connection already has {held} agent types, the most one connection may "
            "register: unregister some, or raise the host's max_agent_types_per_connection",
        )
    if request.shared:
        registry.join_pool(client, agent_type, name)
        return agent_type, True
    registry.register_type(client, agent_type)
    return agent_type, False


_NOT_SHARED_ADVICE = (
    ", not shared: start every worker of the type with shared_agent_types=True, or register another type name"
)


def unregister_agent(registry: Registry, client: ClientId, params: Raw | UnsetType) -> tuple[str, bool]:
    """Take back an agent type; returns it, and whether ``client`` left its pool (True) or
    hosted it alone."""
    agent_type = decode_params(wire.REGISTER_AGENT_DECODER, params).type
    shared = registry.shared
    if agent_type in shared:
        if not shared.is_member(agent_type, client):
            raise Rejection(ErrorCode.FORBIDDEN, f"agent type {agent_type!r} is shared by other workers, not this one")
        registry.leave_pool(client, agent_type)
        return agent_type, True
    owner = registry.owner_of(agent_type)
    if owner is None:
        raise Rejection(ErrorCode.AGENT_TYPE_NOT_FOUND, f"agent type {agent_type!r} is not registered")
    if owner != client:
        raise Rejection(ErrorCode.FORBIDDEN, f"agent type {agent_type!r} belongs to another worker")
    registry.unregister_type(agent_type)
    return agent_type, False


def add_subscription(
    registry: Registry, client: ClientId, params: Raw | UnsetType, *, max_subscriptions: int
) -> wire.SubscriptionSpec:
    spec = decode_params(wire.ADD_SUBSCRIPTION_DECODER, params).subscription
    if not spec.id or not spec.agent_type:
        raise Rejection(ErrorCode.INVALID_PARAMS, "subscription id and agent_type must be non-empty")
    topic = spec.topic_type if isinstance(spec, wire.TypeSubscriptionSpec) else spec.topic_type_prefix
    check_name_lengths(spec.id, spec.agent_type, topic)
    existing = registry.find_equal_subscription(spec)
    twin = existing is not None and _may_twin(registry, client, spec)
    if existing is not None and not twin:
        raise Rejection(ErrorCode.SUBSCRIPTION_ALREADY_EXISTS, f"subscription {existing!r} already exists")
    held = registry.count_subscriptions_of(client)
    if held >= max_subscriptions:
        raise Rejection(
            ErrorCode.TOO_MANY_SUBSCRIPTIONS,
            f"this connection already has {held} subscriptions, the most one connection may "
            "add: remove some, or raise the host's max_subscriptions_per_connection",
        )
    registry.add_subscription(client, spec, twin=twin)
    return spec


def _may_twin(registry: Registry, client: ClientId, spec: wire.SubscriptionSpec) -> bool:
    """Whether ``spec``, equal to subscriptions that exist, may be added beside them: each member of
    a shared type's pool keeps its own copy of the type's subscriptions (under its own id), so that
    they last as long as any member does."""
    if registry.subscription_owner(spec.id) is not None or not registry.shared.is_member(spec.agent_type, client):
        return False
    return all(registry.subscription_owner(i) != client for i in registry.equal_subscription_ids(spec))


def remove_subscription(registry: Registry, client: ClientId, params: Raw | UnsetType) -> str:
    subscription_id = decode_params(wire.REMOVE_SUBSCRIPTION_DECODER, params).id
    owner = registry.subscription_owner(subscription_id)
    if owner is None:
        raise Rejection(ErrorCode.SUBSCRIPTION_NOT_FOUND, f"no subscription has id {subscription_id!r}")
    if owner != client:
        raise Rejection(ErrorCode.FORBIDDEN, f"subscription {subscription_id!r} belongs to another worker")
    registry.remove_subscription(subscription_id)
    return subscription_id


__all__ = ["add_subscription", "register_agent", "remove_subscription", "unregister_agent"]
