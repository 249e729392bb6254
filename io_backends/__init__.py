"""io_backends: thin anyio backends (h11 + wsproto over raw sockets) that drive ``sansio_runtime``.

* :class:`HttpAgentServer` / :class:`HttpAgentService`: the host.
* :class:`HttpWorkerAgentRuntime`: autogen-core's ``AgentRuntime`` for worker processes, a drop-in
  for ``GrpcWorkerAgentRuntime``.
"""

from ._errors import (
    AgentNotFoundError,
    AgentTypeAlreadyRegisteredError,
    AgentTypeNotFoundError,
    CallDeadlineExceededError,
    ForbiddenError,
    HostBindError,
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
from ._server import Authenticator, HttpAgentServer, HttpAgentService

__all__ = [
    "AgentNotFoundError",
    "AgentTypeAlreadyRegisteredError",
    "AgentTypeNotFoundError",
    "Authenticator",
    "CallDeadlineExceededError",
    "ForbiddenError",
    "HostBindError",
    "HostConnectionError",
    "HostRejectedError",
    "HostTlsError",
    "HttpAgentServer",
    "HttpAgentService",
    "HttpWorkerAgentRuntime",
    "PayloadTooLargeError",
    "RemoteCallError",
    "RemoteHandlerError",
    "SubscriptionError",
    "TargetDisconnectedError",
    "UnreadablePayloadError",
]
