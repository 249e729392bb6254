"""io_backends: thin anyio backends (h11 + wsproto over raw sockets) that drive ``sansio_runtime``.

* :class:`HttpAgentServer` / :class:`HttpAgentService`: the host; :class:`HttpWorkerAgentRuntimeHost`
  is the host under the gRPC runtime's name and parameters.
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
from ._grpc_compat import GrpcOptionIgnoredWarning
from ._runtime import HttpWorkerAgentRuntime
from ._server import Authenticator, HttpAgentServer, HttpAgentService, HttpWorkerAgentRuntimeHost

__all__ = [
    "AgentNotFoundError",
    "AgentTypeAlreadyRegisteredError",
    "AgentTypeNotFoundError",
    "Authenticator",
    "CallDeadlineExceededError",
    "ForbiddenError",
    "GrpcOptionIgnoredWarning",
    "HostBindError",
    "HostConnectionError",
    "HostRejectedError",
    "HostTlsError",
    "HttpAgentServer",
    "HttpAgentService",
    "HttpWorkerAgentRuntime",
    "HttpWorkerAgentRuntimeHost",
    "PayloadTooLargeError",
    "RemoteCallError",
    "RemoteHandlerError",
    "SubscriptionError",
    "TargetDisconnectedError",
    "UnreadablePayloadError",
]
