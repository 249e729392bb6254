"""The agents a worker hosts: their factories, the instances made or registered, and their state.

:class:`LocalAgents` knows nothing of the host; the runtime tells the host about a new agent type
once it is recorded here (a call may arrive as soon as the host has accepted the type).
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, cast

from autogen_core import Agent, AgentId, AgentInstantiationContext, AgentRuntime

AgentFactory = Callable[[], "Agent | Awaitable[Agent]"]
builtin_type = type


class LocalAgents:
    """The agent types of one worker runtime, and their instances (made lazily, once per id)."""

    __slots__ = ("_factories", "_instance_types", "_instances", "_runtime")

    def __init__(self, runtime: AgentRuntime) -> None:
        self._runtime = runtime
        self._factories: dict[str, AgentFactory] = {}
        self._instance_types: dict[str, type[Agent]] = {}
        self._instances: dict[AgentId, Agent] = {}

    def types(self) -> list[str]:
        """The agent types hosted here."""
        return list(self._factories)

    def hosts(self, agent_type: str) -> bool:
        return agent_type in self._factories

    def add_type(self, agent_type: str, factory: AgentFactory) -> None:
        self._factories[agent_type] = factory

    def remove_type(self, agent_type: str) -> None:
        del self._factories[agent_type]

    def check_new_type(self, agent_type: str) -> None:
        if agent_type in self._factories:
            raise ValueError(f"Agent with type {agent_type} already exists.")

    def check_new_instance(self, agent_instance: Agent, agent_id: AgentId) -> bool:
        """Whether ``agent_id``'s type must be added (it has no instances yet); raises if the
        instance cannot be registered (autogen's rules)."""
        if agent_id in self._instances:
            raise ValueError(f"Agent with id {agent_id} already exists.")
        if agent_id.type not in self._factories:
            return True
        if self._instance_types.get(agent_id.type) is None:
            raise ValueError("Agent factories and agent instances cannot be registered to the same type.")
        if self._instance_types[agent_id.type] != builtin_type(agent_instance):
            raise ValueError("Agent instances must be the same object type.")
        return False

    def instances_only(self, agent_type: str, cls: type[Agent]) -> AgentFactory:
        """The factory of a type that only has instances registered (it refuses to make any)."""
        self._instance_types[agent_type] = cls

        def no_factory() -> Agent:
            raise LookupError(
                f"no agent instance with id {agent_type}/<key> is registered here; agent type "
                f"{agent_type!r} only has instances registered with register_agent_instance"
            )

        return no_factory

    def add_instance(self, agent_id: AgentId, agent: Agent) -> None:
        self._instances[agent_id] = agent

    async def get(self, agent_id: AgentId) -> Agent:
        """The agent ``agent_id``, made by its type's factory the first time it is needed."""
        agent = self._instances.get(agent_id)
        if agent is not None:
            return agent
        factory = self._factories.get(agent_id.type)
        if factory is None:
            raise LookupError(f"Agent with name {agent_id.type} not found.")
        with AgentInstantiationContext.populate_context((self._runtime, agent_id)):
            params = len(inspect.signature(factory).parameters)
            if params == 0:
                made = factory()
            elif params == 2:
                warnings.warn("Agent factories that take two arguments are deprecated.", stacklevel=2)
                old_style = cast(Callable[[AgentRuntime, AgentId], "Agent | Awaitable[Agent]"], factory)
                made = old_style(self._runtime, agent_id)
            else:
                raise ValueError("Agent factory must take 0 or 2 arguments.")
            agent = await made if inspect.isawaitable(made) else made
        self._instances[agent_id] = agent
        return agent

    async def local(self, agent_id: AgentId) -> Agent:
        """The agent ``agent_id`` if its type is hosted here; LookupError otherwise."""
        if agent_id.type not in self._factories:
            raise LookupError(f"agent type {agent_id.type!r} is not hosted by this worker")
        return await self.get(agent_id)

    async def save_state(self) -> Mapping[str, Any]:
        """The state of every agent instantiated here, keyed by ``str(AgentId)``."""
        return {str(agent_id): dict(await agent.save_state()) for agent_id, agent in self._instances.items()}

    async def load_state(self, state: Mapping[str, Any]) -> None:
        """Load state saved by :meth:`save_state` into the agents of the types hosted here."""
        for key, agent_state in state.items():
            agent_id = AgentId.from_str(key)
            if agent_id.type in self._factories:
                agent = await self.get(agent_id)
                await agent.load_state(agent_state)


__all__ = ["AgentFactory", "LocalAgents", "builtin_type"]
