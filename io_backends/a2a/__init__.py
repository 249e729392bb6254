"""A2A both ways: remote A2A agents as AutoGen agents, and AutoGen agents as A2A agents.

* :class:`A2AAgent`: an AutoGen agent that forwards each message to a remote A2A agent (A2A 1.0's
  JSON-RPC binding, or 0.3 when that is all the agent offers) and answers with its reply;
  cancellation and the remote's errors are carried over.
* :class:`A2ARemote`: the remote agent (URL, credentials, timeouts), shared by the instances.
* :class:`A2AMessage` / :class:`A2AReply`: the default message and reply types;
  :func:`a2a_serializers` their serializers.
* :class:`A2ACallError` and its subclasses: what a failed call raises.
* :class:`A2AGateway` / :func:`serve_a2a`: agent types behind a host served as A2A agents (cards,
  ``SendMessage``, SSE streaming, ``GetTask``, ``CancelTask``), each described by an
  :class:`ExposedAgent`; also ``python -m io_backends.a2a``.

Built on the official ``a2a-sdk`` client: ``pip install "autogen-http-runtime-ng[a2a]"``.
The mapping between A2A and this runtime's protocol is in ``docs/A2A.md``.
"""

try:
    import a2a.client  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised by installing the wheel without the extra
    raise ImportError('io_backends.a2a needs the A2A SDK: pip install "autogen-http-runtime-ng[a2a]"') from exc

from ._agent import A2AAgent, a2a_serializers
from ._errors import (
    A2AAgentCardError,
    A2AAuthError,
    A2ACallError,
    A2AContentTypeNotSupportedError,
    A2AHttpError,
    A2AInvalidAgentResponseError,
    A2AInvalidRequestError,
    A2AProtocolError,
    A2ARemoteInternalError,
    A2ATaskCanceledError,
    A2ATaskFailedError,
    A2ATaskNotCancelableError,
    A2ATaskNotFoundError,
    A2ATimeoutError,
    A2AUnreachableError,
    A2AUnsupportedOperationError,
    A2AVersionNotSupportedError,
)
from ._exposed import DEFAULT_PROGRESS_TOPIC, ExposedAgent
from ._gateway import A2AGateway, serve_a2a
from ._messages import A2AMessage, A2AReply
from ._remote import A2ARemote

__all__ = [
    "DEFAULT_PROGRESS_TOPIC",
    "A2AAgent",
    "A2AAgentCardError",
    "A2AAuthError",
    "A2ACallError",
    "A2AContentTypeNotSupportedError",
    "A2AGateway",
    "A2AHttpError",
    "A2AInvalidAgentResponseError",
    "A2AInvalidRequestError",
    "A2AMessage",
    "A2AProtocolError",
    "A2ARemote",
    "A2ARemoteInternalError",
    "A2AReply",
    "A2ATaskCanceledError",
    "A2ATaskFailedError",
    "A2ATaskNotCancelableError",
    "A2ATaskNotFoundError",
    "A2ATimeoutError",
    "A2AUnreachableError",
    "A2AUnsupportedOperationError",
    "A2AVersionNotSupportedError",
    "ExposedAgent",
    "a2a_serializers",
    "serve_a2a",
]

for _public in (
    A2AAgent,
    A2ARemote,
    A2AMessage,
    A2AReply,
    A2AGateway,
    ExposedAgent,
    serve_a2a,
    *(v for k, v in dict(globals()).items() if k.endswith("Error")),
):
    _public.__module__ = "io_backends.a2a"  # tracebacks and type names show the import users write
del _public
