"""A remote A2A agent as this process reaches it: a2a-sdk's client over one shared httpx pool.

:class:`A2ARemote` resolves the agent card once (lazily; a failed resolution is retried on the
next call), picks the card's JSON-RPC interface (A2A 1.0, or 0.3 through a2a-sdk's compatibility
transport when that is all the card offers) and sends each message:

* when the card says ``capabilities.streaming``: ``SendStreamingMessage``, reading the SSE events;
* otherwise ``SendMessage`` with ``returnImmediately`` and then ``GetTask`` (with a growing delay)
  until the task ends, so a long task can still be cancelled;
* a stream that ends before the task does is followed the same way, with ``GetTask``.

A cancellation token that fires while a task runs sends ``CancelTask`` for it (if the agent has
not named the task yet, the first event is awaited for up to ``cancel_timeout`` to learn it), then
the call raises ``asyncio.CancelledError``, as AutoGen expects of a cancelled handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import logging
import ssl
import uuid
from collections.abc import Awaitable, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

import httpx
from a2a.client import A2ACardResolver, Client, ClientCallInterceptor, ClientConfig, ClientFactory
from a2a.types import AgentCard, CancelTaskRequest, GetTaskRequest, SendMessageRequest
from a2a.utils.errors import A2AError
from autogen_core import CancellationToken
from google.protobuf import json_format

from ._answer import AnswerTracker
from ._errors import A2AAgentCardError, A2ATaskNotCancelableError, from_sdk_error
from ._messages import A2AMessage, A2AReply, message_parts

logger = logging.getLogger("io_backends.a2a")

T = TypeVar("T")
CARD_PATH = "/.well-known/agent-card.json"
JSONRPC = "JSONRPC"


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """httpx's default TLS context (certifi's CAs), built once per process rather than per A2ARemote."""
    return httpx.create_ssl_context()


class _CancelRequested(Exception):
    """The call's cancellation token fired."""


class A2ARemote:
    """A remote A2A agent at ``url`` (its base URL, or its agent card's URL ending in ``.json``).

    Share one among the :class:`A2AAgent` instances that talk to the same agent: they share its
    card and connection pool. Close it with :meth:`aclose` (or ``async with``) when done.

    * ``bearer_token``: sent as ``Authorization: Bearer …`` with every request; ``headers``: more
      headers (an API key, ...); ``interceptors``: a2a-sdk client interceptors (its
      ``AuthInterceptor`` with a ``CredentialService``, ...).
    * ``streaming``: ``None`` (default) streams when the card says the agent can; ``False`` never.
    * ``connect_timeout`` / ``read_timeout``: seconds, per HTTP request (in a stream: between two
      events; a2a-sdk's servers send a keep-alive every 15 s).
    * ``cancel_timeout``: how long a cancellation waits to learn the task's id and for ``CancelTask``.
    * ``poll_interval`` / ``max_poll_interval``: the first and the longest delay between ``GetTask``
      calls while a task runs without a stream.
    * ``card``: an ``a2a.types.AgentCard`` to use instead of fetching it; ``httpx_client``: a client
      of your own (this object then leaves it open and ignores ``bearer_token``, ``headers`` and
      the timeouts: configure them on it).
    """

    def __init__(
        self,
        url: str,
        *,
        bearer_token: str | None = None,
        headers: Mapping[str, str] | None = None,
        interceptors: Sequence[ClientCallInterceptor] = (),
        streaming: bool | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        cancel_timeout: float = 5.0,
        poll_interval: float = 0.1,
        max_poll_interval: float = 2.0,
        card: AgentCard | None = None,
        httpx_client: httpx.AsyncClient | None = None,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"an A2A agent's URL starts with http:// or https://, not {url!r}")
        self.url = url
        self._headers = dict(headers or {})
        if bearer_token is not None:
            self._headers["Authorization"] = f"Bearer {bearer_token}"
        self._interceptors = list(interceptors)
        self._streaming = streaming
        self._timeout = httpx.Timeout(read_timeout, connect=connect_timeout)
        self._cancel_timeout = cancel_timeout
        self._poll_interval = poll_interval
        self._max_poll_interval = max(poll_interval, max_poll_interval)
        self._card = card
        self._owns_http = httpx_client is None
        # Made now, not on the first call: its first construction imports httpcore and builds a TLS
        # context, which would block an event loop for a few hundred ms inside a handler.
        self._http: httpx.AsyncClient | None = httpx_client or httpx.AsyncClient(
            headers=self._headers, timeout=self._timeout, verify=_tls_context()
        )
        self._client: Client | None = None
        self._streams = False
        self._lock: asyncio.Lock | None = None
        self._closed = False

    # ------------------------------------------------------------------ lifetime

    async def __aenter__(self) -> A2ARemote:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections (those of an ``httpx_client`` given by the caller stay open)."""
        self._closed = True
        self._client = None
        if self._owns_http and self._http is not None:
            http, self._http = self._http, None
            await http.aclose()

    # ------------------------------------------------------------------ the card

    async def card(self) -> AgentCard:
        """The agent card (fetched on first use)."""
        await self._connect()
        assert self._card is not None
        return self._card

    async def _connect(self) -> tuple[Client, bool]:
        if self._closed:
            raise RuntimeError(f"this A2ARemote for {self.url} is closed")
        if self._client is not None:
            return self._client, self._streams
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._client is None:
                http = self._http
                assert http is not None  # (None only once closed)
                if self._card is None:
                    base, path = (self.url, "") if self.url.endswith(".json") else (self.url, CARD_PATH)
                    try:
                        self._card = await A2ACardResolver(http, base, path).get_agent_card()
                    except A2AError as exc:
                        raise from_sdk_error(exc, url=self.url) from exc
                card = self._card
                offered = sorted({i.protocol_binding for i in card.supported_interfaces})
                if JSONRPC not in offered:
                    raise A2AAgentCardError(
                        f"the agent card at {self.url} offers no JSON-RPC interface (it offers "
                        f"{', '.join(offered) or 'none'}): this client speaks A2A's JSON-RPC binding",
                        url=self.url,
                    )
                versions = {i.protocol_version for i in card.supported_interfaces if i.protocol_binding == JSONRPC}
                if not any(v.startswith("1.") for v in versions):
                    # a2a-sdk will speak 0.3: import its compatibility transport (~0.3 s) off the event loop
                    await asyncio.to_thread(importlib.import_module, "a2a.compat.v0_3.jsonrpc_transport")
                self._streams = self._streaming is not False and card.capabilities.streaming
                config = ClientConfig(httpx_client=http, streaming=self._streams, supported_protocol_bindings=[JSONRPC])
                self._client = ClientFactory(config).create(card, interceptors=self._interceptors)
        assert self._client is not None
        return self._client, self._streams

    def _card_declares(self) -> str:
        """What the card says about authentication, for the advice of a refusal."""
        if self._card is None:
            return ""
        schemes = []
        for name, scheme in self._card.security_schemes.items():
            kind = scheme.WhichOneof("scheme") or "scheme"
            detail = scheme.http_auth_security_scheme.scheme if kind == "http_auth_security_scheme" else ""
            schemes.append(f"{name!r} ({kind.removesuffix('_security_scheme').replace('_', ' ')} {detail})".strip())
        return ", ".join(s.replace(" )", ")") for s in schemes)

    # ------------------------------------------------------------------ one message

    async def send(
        self,
        message: A2AMessage,
        *,
        context_id: str,
        task_id: str | None = None,
        cancellation_token: CancellationToken | None = None,
    ) -> A2AReply:
        """Send ``message`` in ``context_id`` (continuing ``task_id`` when given) and return the answer.

        Raises an :class:`A2ACallError` subclass when the agent cannot be reached, refuses, errs or
        fails the task; ``asyncio.CancelledError`` when ``cancellation_token`` fires first.
        """
        request = self._request(message, context_id=context_id, task_id=task_id)
        if cancellation_token is not None and cancellation_token.is_cancelled():
            raise asyncio.CancelledError  # cancelled before it was sent: nothing to cancel remotely
        cancel_requested = asyncio.Event()
        if cancellation_token is not None:
            loop = asyncio.get_running_loop()

            def on_cancel() -> None:
                with contextlib.suppress(RuntimeError):  # the loop has closed: nothing waits any more
                    loop.call_soon_threadsafe(cancel_requested.set)

            cancellation_token.add_callback(on_cancel)
        tracker = AnswerTracker(self.url)
        client: Client | None = None
        try:
            client, streams = await self._connect()
            if not streams:
                request.configuration.return_immediately = True
            await self._first_answer(client, request, tracker, cancel_requested)
            delay = self._poll_interval
            while not tracker.finished:
                if tracker.task_id is None:
                    tracker.reply()  # raises: the agent ended the answer without naming a task
                await self._unless_cancelled(asyncio.sleep(delay), cancel_requested)
                task = await self._unless_cancelled(
                    client.get_task(GetTaskRequest(id=tracker.task_id)), cancel_requested
                )
                tracker.apply_task(json_format.MessageToDict(task))
                delay = min(delay * 2, self._max_poll_interval)
            return tracker.reply()
        except _CancelRequested:
            if client is not None:
                await self._cancel(client, tracker)
            raise asyncio.CancelledError from None
        except asyncio.CancelledError:
            if client is not None:
                await asyncio.shield(self._cancel(client, tracker))
            raise
        except (A2AError, httpx.HTTPError) as exc:
            raise from_sdk_error(exc, url=self.url, card_declares=self._card_declares()) from exc

    def _request(self, message: A2AMessage, *, context_id: str, task_id: str | None) -> SendMessageRequest:
        wire: dict[str, Any] = {
            "messageId": uuid.uuid4().hex,
            "role": "ROLE_USER",
            "contextId": context_id,
            "parts": message_parts(message),
        }
        if task_id:
            wire["taskId"] = task_id
        if message.metadata:
            wire["metadata"] = message.metadata
        try:
            return json_format.ParseDict({"message": wire}, SendMessageRequest())
        except json_format.ParseError as exc:
            raise ValueError(
                f"the A2AMessage cannot be sent as A2A ({exc}): its parts must be A2A 1.0 JSON parts"
            ) from exc

    async def _first_answer(
        self, client: Client, request: SendMessageRequest, tracker: AnswerTracker, cancel_requested: asyncio.Event
    ) -> None:
        """Read the answer to ``SendMessage`` (one response) or ``SendStreamingMessage`` (its events)
        until it is complete, it ends, or the cancellation token fires."""
        task_named = asyncio.Event()

        async def consume() -> None:
            async with contextlib.aclosing(client.send_message(request)) as events:  # type: ignore[type-var]
                async for event in events:
                    tracker.apply(json_format.MessageToDict(event))
                    if tracker.task_id is not None:
                        task_named.set()
                    if tracker.finished:
                        return

        consumer = asyncio.ensure_future(consume())
        cancelled = asyncio.ensure_future(cancel_requested.wait())
        named = asyncio.ensure_future(task_named.wait())
        try:
            await asyncio.wait({consumer, cancelled}, return_when=asyncio.FIRST_COMPLETED)
            if not consumer.done():
                if tracker.task_id is None:  # learn which task to cancel: the first event names it
                    await asyncio.wait(
                        {consumer, named}, timeout=self._cancel_timeout, return_when=asyncio.FIRST_COMPLETED
                    )
                raise _CancelRequested
            consumer.result()
            if cancel_requested.is_set():
                raise _CancelRequested
        finally:
            cancelled.cancel()
            named.cancel()
            if not consumer.done():
                consumer.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await consumer

    async def _unless_cancelled(self, awaitable: Awaitable[T], cancel_requested: asyncio.Event) -> T:
        """``await awaitable``, unless the cancellation token fires first (then :class:`_CancelRequested`)."""
        work = asyncio.ensure_future(awaitable)
        cancelled = asyncio.ensure_future(cancel_requested.wait())
        try:
            await asyncio.wait({work, cancelled}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            cancelled.cancel()
            if not work.done():
                work.cancel()
        if not work.done() or work.cancelled():
            raise _CancelRequested
        return work.result()

    async def _cancel(self, client: Client, tracker: AnswerTracker) -> None:
        """``CancelTask`` for the task of ``tracker`` if it is still running (bounded; never raises)."""
        if tracker.finished:
            return
        if tracker.task_id is None:
            logger.warning(
                "a call to the A2A agent at %s was cancelled before the agent named its task; "
                "the agent may finish the work unseen",
                self.url,
            )
            return
        try:
            await asyncio.wait_for(client.cancel_task(CancelTaskRequest(id=tracker.task_id)), self._cancel_timeout)
        except Exception as exc:  # the caller is gone: say it, do not raise
            error = from_sdk_error(exc, url=self.url) if not isinstance(exc, asyncio.TimeoutError) else exc
            if isinstance(error, A2ATaskNotCancelableError):
                return  # it ended meanwhile
            logger.warning("could not cancel the A2A task %s at %s: %s", tracker.task_id, self.url, error)
        else:
            logger.debug("cancelled the A2A task %s at %s", tracker.task_id, self.url)
