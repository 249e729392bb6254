"""io_backends: the HTTP/WebSocket agent runtime's host and worker, around the ``sansio_runtime`` engine.

* :class:`HttpAgentServer` / :class:`HttpAgentService`: the host (:mod:`io_backends.host`);
  :class:`HttpWorkerAgentRuntimeHost` is the host under the gRPC runtime's name and parameters.
* :class:`HttpWorkerAgentRuntime`: autogen-core's ``AgentRuntime`` for worker processes, a drop-in
  for ``GrpcWorkerAgentRuntime`` (:mod:`io_backends.worker`).
* :mod:`io_backends.sansio`: the protocol layers both use, with no I/O (HTTP, WebSocket, endpoints).
"""

from .host import Authenticator, HostBindError, HttpAgentServer, HttpAgentService, HttpWorkerAgentRuntimeHost
from .sansio._grpc_options import GrpcOptionIgnoredWarning
from .worker import (
    AgentNotFoundError,
    AgentTypeAlreadyRegisteredError,
    AgentTypeNotFoundError,
    CallDeadlineExceededError,
    ForbiddenError,
    HostConnectionError,
    HostRejectedError,
    HostTlsError,
    HttpWorkerAgentRuntime,
    PayloadTooLargeError,
    RemoteCallError,
    RemoteHandlerError,
    SubscriptionError,
    TargetDisconnectedError,
    UnreadablePayloadError,
)

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
