"""The exceptions an A2A call raises, and the reading of a2a-sdk's and httpx's errors into them.

Every one is an :class:`A2ACallError` naming the remote agent's URL, with a one-line message that
says what happened and what to do. They also subclass the built-in exception that fits (a refused
connection is a ``ConnectionError``, a missing task a ``LookupError``, ...), so generic ``except``
clauses keep working. Across our runtime a caller in another process receives them as
``io_backends.RemoteHandlerError`` whose ``exception_type`` is the class name below and whose
message is the same line.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

import httpx
from a2a.client import A2AClientError, A2AClientTimeoutError, AgentCardResolutionError
from a2a.utils.errors import JSON_RPC_ERROR_CODE_MAP, A2AError


class A2ACallError(Exception):
    """A call to a remote A2A agent failed; :attr:`url` is the agent's."""

    def __init__(self, message: str, *, url: str) -> None:
        super().__init__(message)
        self.url = url


class A2AUnreachableError(A2ACallError, ConnectionError):
    """The agent's server cannot be reached, or the connection broke before the answer."""


class A2ATimeoutError(A2ACallError, TimeoutError):
    """The agent's server did not answer (or went silent in a stream) within the read timeout."""


class A2AHttpError(A2ACallError):
    """The server answered with an HTTP error status instead of A2A; :attr:`status_code` is it."""

    def __init__(self, message: str, *, url: str, status_code: int) -> None:
        super().__init__(message, url=url)
        self.status_code = status_code


class A2AAuthError(A2AHttpError, PermissionError):
    """The server refused the credentials (HTTP 401 or 403)."""


class A2AAgentCardError(A2ACallError, ValueError):
    """The agent card cannot be read, or it offers no interface this client speaks."""


class A2AProtocolError(A2ACallError):
    """The agent answered with a JSON-RPC error: :attr:`code` and :attr:`reason` are A2A's
    (``-32001``/``TASK_NOT_FOUND``, ...), :attr:`remote_message` is the agent's own text."""

    code: int = 0
    reason: ClassVar[str] = "UNKNOWN_ERROR"

    def __init__(self, message: str, *, url: str, code: int, remote_message: str, data: Any = None) -> None:
        super().__init__(message, url=url)
        self.code = code
        self.remote_message = remote_message
        self.data = data


class A2ATaskNotFoundError(A2AProtocolError, LookupError):
    """-32001: the agent does not know the task (it expired, or belongs to another user)."""

    reason = "TASK_NOT_FOUND"


class A2ATaskNotCancelableError(A2AProtocolError):
    """-32002: the task is in a state that cannot be cancelled (it has already ended)."""

    reason = "TASK_NOT_CANCELABLE"


class A2AUnsupportedOperationError(A2AProtocolError):
    """-32004 (or -32003 for push notifications): the agent does not offer this operation."""

    reason = "UNSUPPORTED_OPERATION"


class A2AContentTypeNotSupportedError(A2AProtocolError, ValueError):
    """-32005: the agent does not accept the message's media types."""

    reason = "CONTENT_TYPE_NOT_SUPPORTED"


class A2AVersionNotSupportedError(A2AProtocolError):
    """-32009: the agent does not speak the A2A version this client sent."""

    reason = "VERSION_NOT_SUPPORTED"


class A2AInvalidRequestError(A2AProtocolError, ValueError):
    """-32600, -32601, -32602, -32700: the agent could not read the request, or does not have the method."""

    reason = "INVALID_REQUEST"


class A2ARemoteInternalError(A2AProtocolError):
    """-32603: the agent failed while handling the message (its executor raised)."""

    reason = "INTERNAL_ERROR"


class A2AInvalidAgentResponseError(A2AProtocolError):
    """-32006, or an answer this client cannot make sense of."""

    reason = "INVALID_AGENT_RESPONSE"


class A2ATaskFailedError(A2ACallError):
    """The agent ended the task ``failed`` or ``rejected``; :attr:`state` says which and the message
    is the agent's own explanation."""

    def __init__(self, message: str, *, url: str, task_id: str, state: str, remote_message: str) -> None:
        super().__init__(message, url=url)
        self.task_id = task_id
        self.state = state
        self.remote_message = remote_message


class A2ATaskCanceledError(A2ACallError):
    """The agent (or another client) cancelled the task before it finished."""

    def __init__(self, message: str, *, url: str, task_id: str) -> None:
        super().__init__(message, url=url)
        self.task_id = task_id


# code -> (class, what the caller should do)
_BY_CODE: dict[int, tuple[type[A2AProtocolError], str]] = {
    -32001: (A2ATaskNotFoundError, "start a new conversation (another AgentId key) or check the task id"),
    -32002: (A2ATaskNotCancelableError, "the task has already ended"),
    -32003: (A2AUnsupportedOperationError, "the agent does not send push notifications"),
    -32004: (A2AUnsupportedOperationError, "check the agent card for what it offers"),
    -32005: (A2AContentTypeNotSupportedError, "send the media types in the card's defaultInputModes"),
    -32006: (A2AInvalidAgentResponseError, "the remote agent is faulty; report it to its owner"),
    -32007: (A2AUnsupportedOperationError, "the agent has no extended card"),
    -32008: (A2AUnsupportedOperationError, "the agent requires an A2A extension this client does not declare"),
    -32009: (A2AVersionNotSupportedError, "the agent speaks another A2A version; check its card's protocolVersion"),
    -32600: (A2AInvalidRequestError, "the agent could not read the request; check the A2A versions match"),
    -32601: (A2AInvalidRequestError, "the agent does not have this method; check the A2A versions match"),
    -32602: (A2AInvalidRequestError, "the agent refused the message's parameters"),
    -32700: (A2AInvalidRequestError, "the agent could not parse the request"),
    -32603: (A2ARemoteInternalError, "the remote agent failed; retry, or report it to its owner"),
}
_SDK_CODES: dict[type[A2AError], int] = dict(JSON_RPC_ERROR_CODE_MAP)
_UNKNOWN_CODE = re.compile(r"^JSON-RPC Error (-?\d+): (.*)$", re.DOTALL)


def protocol_error(code: int, remote_message: str, *, url: str, data: Any = None) -> A2AProtocolError:
    """The exception for a JSON-RPC error answer ``{code, message, data}`` from the agent at ``url``."""
    cls, advice = _BY_CODE.get(code, (A2AProtocolError, "see the agent's documentation for this code"))
    reason = cls.reason if cls is not A2AProtocolError else f"code {code}"
    text = remote_message.strip() or reason
    return cls(
        f"the A2A agent at {url} answered {code} {reason}: {one_line(text)}; {advice}",
        url=url,
        code=code,
        remote_message=remote_message,
        data=data,
    )


def from_sdk_error(exc: BaseException, *, url: str, card_declares: str = "") -> A2ACallError:
    """The :class:`A2ACallError` for an exception a2a-sdk's client (or httpx under it) raised.

    ``card_declares`` is what the agent card says about authentication, for the advice of a 401.
    """
    if isinstance(exc, A2ACallError):
        return exc
    if isinstance(exc, AgentCardResolutionError):
        return _card_error(exc, url=url, card_declares=card_declares)
    if isinstance(exc, A2AClientTimeoutError) or isinstance(exc, httpx.TimeoutException):
        return A2ATimeoutError(
            f"the A2A agent at {url} did not answer in time: raise read_timeout= on A2ARemote, or check the agent",
            url=url,
        )
    if isinstance(exc, A2AClientError):
        cause = exc.__cause__
        if isinstance(cause, httpx.HTTPStatusError):
            return _http_error(cause.response.status_code, url=url, card_declares=card_declares)
        if isinstance(cause, httpx.TimeoutException):
            return from_sdk_error(cause, url=url)
        if isinstance(cause, httpx.RequestError):
            return _unreachable(cause, url=url)
        match = _UNKNOWN_CODE.match(str(exc))
        if match:
            return protocol_error(int(match.group(1)), match.group(2), url=url)
        return A2AInvalidAgentResponseError(
            f"the A2A agent at {url} sent an answer this client cannot read: {one_line(str(exc))}",
            url=url,
            code=-32006,
            remote_message=str(exc),
        )
    if isinstance(exc, A2AError):
        return protocol_error(_SDK_CODES.get(type(exc), -32603), str(exc), url=url, data=exc.data)
    if isinstance(exc, httpx.RequestError):
        return _unreachable(exc, url=url)
    return A2ACallError(f"the call to the A2A agent at {url} failed: {type(exc).__name__}: {exc}", url=url)


def _card_error(exc: AgentCardResolutionError, *, url: str, card_declares: str) -> A2ACallError:
    cause = exc.__cause__
    if exc.status_code is not None:
        if exc.status_code == 404:
            return A2AHttpError(
                f"no A2A agent card at {url} (HTTP 404): give the agent's base URL (its card is served at "
                "/.well-known/agent-card.json) or the card's own URL",
                url=url,
                status_code=404,
            )
        return _http_error(exc.status_code, url=url, card_declares=card_declares, what="its agent card")
    if isinstance(cause, httpx.TimeoutException):
        return from_sdk_error(cause, url=url)
    if isinstance(cause, httpx.RequestError):
        return _unreachable(cause, url=url)
    return A2AAgentCardError(
        f"the agent card at {url} cannot be read: {one_line(exc.message)}; check the URL points to an A2A agent",
        url=url,
    )


def _http_error(status: int, *, url: str, card_declares: str, what: str = "the request") -> A2AHttpError:
    if status in (401, 403):
        asks = f" (its card asks for {card_declares})" if card_declares else ""
        advice = "pass bearer_token= (or headers=) to A2ARemote, or check the credentials"
        return A2AAuthError(
            f"the A2A agent at {url} refused {what} with HTTP {status}{asks}: {advice}", url=url, status_code=status
        )
    return A2AHttpError(
        f"the A2A agent at {url} answered {what} with HTTP {status} instead of A2A: check the URL and the server",
        url=url,
        status_code=status,
    )


def _unreachable(exc: BaseException, *, url: str) -> A2AUnreachableError:
    detail = one_line(str(exc)) or type(exc).__name__
    return A2AUnreachableError(
        f"cannot reach the A2A agent at {url} ({detail}): check the URL and that the agent is running", url=url
    )


def one_line(text: str) -> str:
    """``text`` with every run of whitespace (newlines included) made one space."""
    return " ".join(text.split())
