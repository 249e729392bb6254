"""io_backends.worker: AutoGen's ``AgentRuntime`` for worker processes, over a WebSocket to a host.

* :class:`HttpWorkerAgentRuntime`: a drop-in for ``GrpcWorkerAgentRuntime`` (change the import
  and the address).
* The exceptions its callers see; each remote one carries the protocol's error code.
"""

from ._errors import (
    AgentNotFoundError,
    AgentTypeAlreadyRegisteredError,
    AgentTypeNotFoundError,
    CallDeadlineExceededError,
    ForbiddenError,
    HostConnectionError,
    HostRejectedError,
    HostTlsError,
    PayloadTooLargeError,
    RemoteCallError,
    RemoteHandlerError,
    SubscriptionError,
    TargetDisconnectedError,
    UnreadablePayloadError,
)
from ._runtime import HttpWorkerAgentRuntime

__all__ = [
    "AgentNotFoundError",
    "AgentTypeAlreadyRegisteredError",
    "AgentTypeNotFoundError",
    "CallDeadlineExceededError",
    "ForbiddenError",
    "HostConnectionError",
    "HostRejectedError",
    "HostTlsError",
    "HttpWorkerAgentRuntime",
    "PayloadTooLargeError",
    "RemoteCallError",
    "RemoteHandlerError",
    "SubscriptionError",
    "TargetDisconnectedError",
    "UnreadablePayloadError",
]
