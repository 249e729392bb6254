"""The AutoGen agent that stands for a remote A2A agent."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from autogen_core import AgentRuntime, AgentType, BaseAgent, MessageContext, MessageSerializer
from autogen_core import try_get_known_serializers_for_type as known_serializers

if TYPE_CHECKING:
    from typing_extensions import Self

from ._messages import A2AMessage, A2AReply, to_a2a_message
from ._remote import A2ARemote

INTERRUPTED = ("input-required", "auth-required")


def a2a_serializers() -> list[MessageSerializer[Any]]:
    """The serializers of :class:`A2AMessage` and :class:`A2AReply`, for a runtime that sends to
    an :class:`A2AAgent` in another process (``runtime.add_message_serializer(a2a_serializers())``).

    ``A2AAgent.register`` adds them to the runtime it registers on.
    """
    return [*known_serializers(A2AMessage), *known_serializers(A2AReply)]


class A2AAgent(BaseAgent):
    """An AutoGen agent whose messages go to a remote A2A agent; its answers are the replies.

    ``remote`` is an :class:`A2ARemote` (share one among the instances of the agent type) or the
    agent's URL (each instance then has a connection pool of its own, closed by :meth:`close`).

    Each instance (one per AgentId key) is one A2A conversation: its ``contextId`` is the key (or
    the one the remote agent answers with, if it picks its own), and when the agent asks for more
    (``input-required``, ``auth-required``) the next message continues that task.

    * What it takes: ``to_a2a(message) -> A2AMessage`` (default: an :class:`A2AMessage` as it is,
      a ``str`` as text, a dataclass, Pydantic model, dict or list as a data part).
    * What it answers: ``from_a2a(reply)`` of the :class:`A2AReply` (default: the reply itself,
      or its ``text`` when the message was a ``str``).
    * Cancelling the call (its cancellation token) cancels the remote task (``CancelTask``).
    * Errors are :class:`A2ACallError` subclasses with one-line messages.

    Register it like any agent::

        remote = A2ARemote("http://127.0.0.1:9999", bearer_token=token)
        await A2AAgent.register(runtime, "weather", lambda: A2AAgent(remote))
    """

    def __init__(
        self,
        remote: A2ARemote | str,
        *,
        description: str | None = None,
        to_a2a: Callable[[Any], A2AMessage] | None = None,
        from_a2a: Callable[[A2AReply], Any] | None = None,
    ) -> None:
        self._owns_remote = isinstance(remote, str)
        self._remote = A2ARemote(remote) if isinstance(remote, str) else remote
        super().__init__(description or f"the A2A agent at {self._remote.url}")
        self._to_a2a = to_a2a or to_a2a_message
        self._from_a2a = from_a2a
        self._context_id: str | None = None  # None: the AgentId key
        self._pending_task: str | None = None  # a task waiting for this conversation's next message

    @property
    def remote(self) -> A2ARemote:
        return self._remote

    @classmethod
    async def register(
        cls,
        runtime: AgentRuntime,
        type: str,
        factory: Callable[[], Self | Awaitable[Self]],
        *,
        skip_class_subscriptions: bool = False,
        skip_direct_message_subscription: bool = False,
    ) -> AgentType:
        """``BaseAgent.register``, adding :func:`a2a_serializers` to ``runtime`` first."""
        runtime.add_message_serializer(a2a_serializers())
        return await super().register(
            runtime,
            type,
            factory,
            skip_class_subscriptions=skip_class_subscriptions,
            skip_direct_message_subscription=skip_direct_message_subscription,
        )

    async def on_message_impl(self, message: Any, ctx: MessageContext) -> Any:
        outgoing = self._to_a2a(message)
        context_id = self._context_id or self.id.key
        task_id, self._pending_task = self._pending_task, None
        reply = await self._remote.send(
            outgoing, context_id=context_id, task_id=task_id, cancellation_token=ctx.cancellation_token
        )
        self._context_id = reply.context_id or context_id
        if reply.state in INTERRUPTED:
            self._pending_task = reply.task_id
        if self._from_a2a is not None:
            return self._from_a2a(reply)
        if isinstance(message, str):
            return reply.text
        return reply

    async def save_state(self) -> Mapping[str, Any]:
        return {"context_id": self._context_id, "pending_task_id": self._pending_task}

    async def load_state(self, state: Mapping[str, Any]) -> None:
        self._context_id = state.get("context_id")
        self._pending_task = state.get("pending_task_id")

    async def close(self) -> None:
        if self._owns_remote:
            await self._remote.aclose()
