"""The engines' limits and their defaults, in one place (docs/PROTOCOL.md section 2.5)."""

from __future__ import annotations

from typing import Final

DEFAULT_MAX_MESSAGE_SIZE: Final = 4 * 1024 * 1024
"""Largest message, in bytes of UTF-8 JSON, either side sends or accepts. The host closes a
connection that sends a larger one with 1009; it is also the most the answer to one message (or
one ``/v1/rpc`` body) may take: answers that would not fit are replaced by PAYLOAD_TOO_LARGE."""
DEFAULT_MAX_PENDING_CALLS: Final = 10_000
"""Most ``agent.call`` s one connection may have in flight at the host; more: TOO_MANY_PENDING_CALLS."""
DEFAULT_MAX_BATCH_LENGTH: Final = 1_000
"""Most entries in one JSON-RPC batch; a longer batch is refused whole with BATCH_TOO_LARGE."""
DEFAULT_MAX_AGENT_TYPES_PER_CONNECTION: Final = 10_000
"""Most agent types one connection may register; more are refused with TOO_MANY_AGENT_TYPES."""
DEFAULT_MAX_SUBSCRIPTIONS_PER_CONNECTION: Final = 50_000
"""Most subscriptions one connection may add; more are refused with TOO_MANY_SUBSCRIPTIONS."""
MAX_NAME_LENGTH: Final = 1024
"""Most characters in a name the host keeps: an agent type, a subscription id, a topic type or prefix."""
FORWARDING_ALLOWANCE: Final = 64 * 1024
"""What the host may add around a message when it forwards it (the ``agent.call`` request around a
caller's params, the ``agent.event`` around a publish): a worker accepts frames of up to its
``max_message_size`` plus this."""
