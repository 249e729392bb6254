"""The exceptions a worker's callers see. Each remote error carries the protocol's code and message.

They subclass the built-in exception a local AutoGen runtime would raise in the same situation
(LookupError for an unknown agent type, TimeoutError for a deadline, ...), so existing ``except``
clauses keep working when an application moves from one process to many.
"""

from __future__ import annotations

import builtins
import ssl
from typing import TypeVar

from autogen_core import exceptions as autogen_exceptions

from sansio_runtime import ErrorCode, HandlerErrorData, RpcError, decode_error_data


class HostRejectedError(ConnectionError):
    """The host refused the WebSocket upgrade with an HTTP status (401: wrong or missing token)."""

    def __init__(self, status_code: int, body: str) -> None:
        advice = _ADVICE.get(status_code, "")
        super().__init__(f"the host refused the connection with HTTP {status_code}: {body}".rstrip(": ") + advice)
        self.status_code = status_code
        self.body = body


_ADVICE = {
    401: " (pass the host's token as auth_token=)",
    403: " (the host's authenticator refused these credentials)",
    409: " (another worker is connected with this client_id: give each worker its own)",
}

_E = TypeVar("_E", bound="RemoteCallError")


class RemoteCallError(Exception):
    """A call or runtime request failed on the host or at the target; see :attr:`code`."""

    def __init__(self, code: int, message: str, data: object = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    @classmethod
    def local(cls: type[_E], message: str) -> _E:
        """This error raised by the worker itself, with the code the protocol gives it (section 5)."""
        return cls(_CODE_OF[cls], message)


class AgentTypeNotFoundError(RemoteCallError, LookupError):
    """No connected worker hosts the target agent type."""


class AgentNotFoundError(RemoteCallError, LookupError):
    """The target worker could not find or create the agent."""


class AgentTypeAlreadyRegisteredError(RemoteCallError, ValueError):
    """Another worker (or this one) already registered the agent type."""


class SubscriptionError(RemoteCallError, ValueError):
    """A subscription already exists, does not exist, or belongs to another worker."""


class ForbiddenError(RemoteCallError, PermissionError):
    """The thing belongs to another worker."""


class TargetDisconnectedError(RemoteCallError, ConnectionError):
    """The worker hosting the target went away before it answered."""


class HostConnectionError(RemoteCallError, ConnectionError):
    """This worker is not connected to the host (or lost the connection before the answer)."""


class HostTlsError(HostConnectionError, ssl.SSLError):
    """TLS and the host's address disagree: an ``https://``/``wss://`` address for a host that does not
    serve TLS, a plain address for one that does, or a certificate this worker does not trust."""

    def __str__(self) -> str:
        return self.message


class CallDeadlineExceededError(RemoteCallError, TimeoutError):
    """The call's timeout ran out before the target answered."""


class PayloadTooLargeError(RemoteCallError, ValueError):
    """The message or its answer is over the size limit."""


class UnreadablePayloadError(RemoteCallError, ValueError):
    """A message (at its target) or an answer (here) could not be read: no serializer there has its
    type name and content type, or that serializer failed on it. The message says what to register;
    :attr:`data_type` and :attr:`data_content_type` name the payload."""

    @property
    def data_type(self) -> str | None:
        return self._named("data_type")

    @property
    def data_content_type(self) -> str | None:
        return self._named("data_content_type")

    def _named(self, member: str) -> str | None:
        value = self.data.get(member) if isinstance(self.data, dict) else None
        return value if isinstance(value, str) else None


class RemoteHandlerError(RemoteCallError):
    """The target agent's handler raised. :attr:`exception_type` names what it raised.

    The instance raised to the caller also subclasses the built-in or autogen exception of that
    name when there is one, so ``except ValueError`` catches a remote ``ValueError``.
    """

    exception_type: str = "Exception"


_BY_CODE: dict[int, type[RemoteCallError]] = {
    ErrorCode.AGENT_TYPE_NOT_FOUND: AgentTypeNotFoundError,
    ErrorCode.AGENT_NOT_FOUND: AgentNotFoundError,
    ErrorCode.AGENT_TYPE_ALREADY_REGISTERED: AgentTypeAlreadyRegisteredError,
    ErrorCode.SUBSCRIPTION_ALREADY_EXISTS: SubscriptionError,
    ErrorCode.SUBSCRIPTION_NOT_FOUND: SubscriptionError,
    ErrorCode.FORBIDDEN: ForbiddenError,
    ErrorCode.TARGET_DISCONNECTED: TargetDisconnectedError,
    ErrorCode.CONNECTION_LOST: HostConnectionError,
    ErrorCode.DEADLINE_EXCEEDED: CallDeadlineExceededError,
    ErrorCode.PAYLOAD_TOO_LARGE: PayloadTooLargeError,
    ErrorCode.UNREADABLE_PAYLOAD: UnreadablePayloadError,
}

_CODE_OF: dict[type[RemoteCallError], int] = {
    HostConnectionError: ErrorCode.CONNECTION_LOST,
    HostTlsError: ErrorCode.CONNECTION_LOST,
    PayloadTooLargeError: ErrorCode.PAYLOAD_TOO_LARGE,
}
"""The codes of the errors a worker raises itself (all local: docs/PROTOCOL.md section 5)."""

_handler_error_classes: dict[str, type[RemoteHandlerError]] = {}


def _handler_error_class(exception_type: str) -> type[RemoteHandlerError]:
    cls = _handler_error_classes.get(exception_type)
    if cls is not None:
        return cls
    base = getattr(builtins, exception_type, None) or getattr(autogen_exceptions, exception_type, None)
    cls = RemoteHandlerError
    if isinstance(base, type) and issubclass(base, Exception) and base is not Exception:
        try:
            cls = type(f"Remote{exception_type}", (RemoteHandlerError, base), {"exception_type": exception_type})
        except TypeError:  # an incompatible layout: keep the plain class
            cls = RemoteHandlerError
    _handler_error_classes[exception_type] = cls
    return cls


def error_from_rpc(error: RpcError, handler: HandlerErrorData | None = None) -> RemoteCallError:
    """The exception that represents a JSON-RPC error object (``handler``: what a remote handler
    raised, as the engine read it from a HANDLER_ERROR's data)."""
    data = decode_error_data(error)
    if error.code == ErrorCode.HANDLER_ERROR:
        exception_type = "Exception" if handler is None else handler.exception_type
        message = error.message if handler is None else handler.message
        exc = _handler_error_class(exception_type)(error.code, message, data)
        exc.exception_type = exception_type
        exc.args = (f"{exception_type}: {message}",)
        return exc
    return _BY_CODE.get(error.code, RemoteCallError)(error.code, error.message, data)


for _public in (
    RemoteCallError,
    AgentTypeNotFoundError,
    AgentNotFoundError,
    AgentTypeAlreadyRegisteredError,
    SubscriptionError,
    ForbiddenError,
    TargetDisconnectedError,
    HostConnectionError,
    HostTlsError,
    CallDeadlineExceededError,
    PayloadTooLargeError,
    UnreadablePayloadError,
    RemoteHandlerError,
    HostRejectedError,
):
    _public.__module__ = "io_backends"  # tracebacks name the import users write
