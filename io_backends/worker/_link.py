"""The worker's link to its host: connect, announce, keep alive, reconnect, and carry the engine's frames.

:class:`HostLink` owns the WebSocket to the host and the :class:`~sansio_runtime.WorkerEngine`'s
side of it: it connects (retrying while the host is starting, for ``connect_timeout``), announces
the worker's agent types and subscriptions, hands every frame from the host to the engine and the
engine's events on (answers to the requests it is waiting for; calls and events to the
dispatcher), writes what the engine queues, and when the connection is lost, reconnects with
exponential backoff and jitter and announces everything again.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

import anyio

from sansio_runtime import (
    CallFailed,
    CallSucceeded,
    ErrorCode,
    IncomingCall,
    IncomingCallCancelled,
    IncomingEvent,
    PeerError,
    RequestFailed,
    RequestSucceeded,
    SubscriptionSpec,
    WorkerEngine,
    WorkerEvent,
)

from ..sansio import CHANNEL_PATH, HostAddress
from ..sansio._address import MAX_MESSAGE_SIZE_HEADER
from ..sansio._limits import CLOSE_TIMEOUT, DEFAULT_MAX_OUTBOUND_BYTES, SEND_HIGH_WATER
from ._channel import AsyncioChannel, keep_alive
from ._connect import HandshakeNotAnswered, open_asyncio_channel
from ._errors import HostConnectionError, HostRejectedError, HostTlsError, error_from_rpc
from ._timers import DeadlineTimer

logger = logging.getLogger("io_backends.runtime")

Announcements = Callable[[], tuple[Iterable[str], Iterable[SubscriptionSpec]]]
"""The agent types and subscriptions to announce to the host, as they are when it is called."""


@dataclass(frozen=True, slots=True)
class LinkSettings:
    """How the worker reaches its host (the ``HttpWorkerAgentRuntime`` parameters of the same names)."""

    address: HostAddress
    client_id: str
    auth_token: str | None
    ssl_context: ssl.SSLContext | None
    max_receive_size: int
    connect_timeout: float
    reconnect: bool
    reconnect_initial_delay: float
    reconnect_max_delay: float
    reconnect_wait: float
    keepalive_interval: float | None
    keepalive_timeout: float
    shared_agent_types: bool = False
    """Register every agent type shared, to be hosted with other workers that do the same."""
    fallbacks: tuple[HostAddress, ...] = ()
    """More hosts of the same cluster, tried in turn after ``address`` (docs/CLUSTER.md section 9)."""

    @property
    def addresses(self) -> tuple[HostAddress, ...]:
        return (self.address, *self.fallbacks)


class HostLink:
    """The connection to the host, across reconnections (see the module docs)."""

    def __init__(
        self,
        settings: LinkSettings,
        engine: WorkerEngine,
        announcements: Announcements,
        deliver: Callable[[IncomingCall | IncomingEvent | IncomingCallCancelled], None],
        abandoned: Callable[[], Awaitable[None]],
    ) -> None:
        self._settings = settings
        self.address = settings.address
        """The host connected to (or last tried)."""
        self._engine = engine
        self._announcements = announcements
        self._deliver = deliver
        self._abandoned = abandoned
        self.running = False
        """Started and not stopped: it reconnects when the connection is lost."""
        self.channel: AsyncioChannel | None = None
        self._connected = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self._futures: dict[int, asyncio.Future[WorkerEvent]] = {}
        self._timer = DeadlineTimer(engine.next_deadline, self._on_deadline)

    @property
    def settings(self) -> LinkSettings:
        """What the link was made with (address, limits, reconnection and keepalive timings)."""
        return self._settings

    @property
    def connected(self) -> bool:
        """Whether the worker is connected to the host right now."""
        return self.channel is not None and self.channel.is_open

    # ------------------------------------------------------------------ starting and stopping

    async def start(self) -> None:
        """Connect (retrying for ``connect_timeout``), announce, and keep the connection up from now on."""
        channel = await self._open_first()
        self.running = True
        self.channel = channel
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise(channel))
        try:
            await self.announce()
        except BaseException:
            await self.stop()
            raise
        self._connected.set()

    async def stop(self) -> None:
        """Close the connection (1000) and stop reconnecting; requests in flight fail."""
        self.running = False
        self._connected.set()  # wake calls waiting for a reconnection: they see the runtime stopped
        channel, self.channel = self.channel, None
        if channel is not None:
            channel.close(1000, "worker stopping")
        if self._supervisor is not None:
            with anyio.move_on_after(3):
                await asyncio.shield(self._supervisor)
            self._supervisor.cancel()
            try:
                await self._supervisor
            except asyncio.CancelledError:
                pass
            self._supervisor = None
        self._connected = asyncio.Event()

    async def wait_connected(self) -> None:
        """Return once connected; a call made while disconnected waits up to ``reconnect_wait``."""
        if not self.running:
            raise ValueError("Runtime must be running (call start() first).")
        wait = self._settings.reconnect_wait
        if not self.connected and wait > 0:
            with anyio.move_on_after(wait):
                await self._connected.wait()
        if not self.running:
            raise ValueError("Runtime must be running (call start() first).")
        if not self.connected:
            raise HostConnectionError.local(f"not connected to the host at {self.address.authority} (reconnecting)")

    # ------------------------------------------------------------------ requests and frames

    def request(self, request_id: int) -> asyncio.Future[WorkerEvent]:
        """A future for the answer to the engine's request ``request_id`` (after it is queued)."""
        future: asyncio.Future[WorkerEvent] = asyncio.get_running_loop().create_future()
        self._futures[request_id] = future
        return future

    def forget(self, request_id: int) -> None:
        """No one waits for the answer to ``request_id`` any more."""
        self._futures.pop(request_id, None)

    async def runtime_call(self, request_id: int) -> RequestSucceeded:
        """Send the engine's ``runtime.*`` request and wait for its answer (raised if it failed)."""
        future = self.request(request_id)
        self.flush()
        event = await future
        if isinstance(event, (RequestFailed, CallFailed)):
            raise error_from_rpc(event.error, event.handler_error if isinstance(event, CallFailed) else None)
        assert isinstance(event, RequestSucceeded)
        return event

    def flush(self) -> None:
        """Write every frame the engine has queued."""
        frames = self._engine.data_to_send()
        channel = self.channel
        if channel is not None:
            for frame in frames:
                channel.send_message(frame)
        self._timer.poke()

    async def backpressure(self) -> None:
        """Let a tight loop of sends wait for the socket instead of queueing without bound."""
        channel = self.channel
        if channel is not None and channel.queued_bytes > SEND_HIGH_WATER:
            await channel.drain(SEND_HIGH_WATER)

    async def announce(self) -> None:
        """Tell the host about every agent type and subscription this worker has."""
        engine = self._engine
        agent_types, subscriptions = self._announcements()
        shared = self._settings.shared_agent_types
        waits = [self.request(engine.register_agent(t, shared=shared)) for t in agent_types]
        waits += [self.request(engine.add_subscription(s)) for s in subscriptions]
        self.flush()
        for wait in waits:
            event = await wait
            if isinstance(event, (RequestFailed, CallFailed)):
                raise error_from_rpc(event.error, event.handler_error if isinstance(event, CallFailed) else None)

    def _on_event(self, event: WorkerEvent) -> None:
        if isinstance(event, (CallSucceeded, CallFailed, RequestSucceeded, RequestFailed)):
            future = self._futures.pop(event.request_id, None)
            if future is not None and not future.done():
                future.set_result(event)
        elif isinstance(event, PeerError):
            lost = event.error.code == ErrorCode.AGENT_TYPE_ALREADY_REGISTERED  # (a type taken over, in a cluster)
            level = logging.ERROR if lost else logging.WARNING
            logger.log(level, "the host reported an error: %s (%s)", event.error.message, event.error.code)
        elif self.running:  # (not while stopping: a handler would be cancelled before it starts)
            self._deliver(event)

    def _on_deadline(self, now: float) -> None:
        for event in self._engine.handle_timer(now):
            self._on_event(event)
        self.flush()

    # ------------------------------------------------------------------ the connection's life

    async def _open(self, address: HostAddress | None = None) -> AsyncioChannel:
        """Connect and upgrade; TLS trouble is raised as :class:`HostTlsError`, saying what is wrong."""
        s = self._settings
        address = address or self.address
        headers = [(b"x-client-id", s.client_id.encode())]
        if s.auth_token is not None:
            headers.append((b"authorization", b"Bearer " + s.auth_token.encode()))
        try:
            channel = await open_asyncio_channel(
                address,
                target=address.target(CHANNEL_PATH),
                headers=headers,
                ssl_context=s.ssl_context,
                max_message_size=s.max_receive_size,
                max_outbound_bytes=DEFAULT_MAX_OUTBOUND_BYTES,
                connect_timeout=s.connect_timeout,
            )
        except (ssl.SSLError, HandshakeNotAnswered) as exc:
            raise tls_error(address, exc) from None
        self.address = address
        self._engine.connection_made(announced_limit(channel.response_headers))
        return channel

    async def _open_any(self, after: HostAddress | None) -> AsyncioChannel:
        """Connect to the first host that answers, starting after ``after`` (it is tried last)."""
        addresses = self._settings.addresses
        start = addresses.index(after) + 1 if after in addresses else 0
        order = addresses[start:] + addresses[:start]
        for i, address in enumerate(order):
            try:
                return await self._open(address)
            except (OSError, asyncio.TimeoutError, HostRejectedError) as exc:
                if i == len(order) - 1:
                    raise
                logger.info(
                    "the host at %s did not answer (%s); trying %s", address.authority, exc, order[i + 1].authority
                )
        raise AssertionError("no address")  # (addresses is never empty)

    async def _open_first(self) -> AsyncioChannel:
        """Connect, retrying with backoff while the host is not up yet, for ``connect_timeout``."""
        s = self._settings
        loop = asyncio.get_running_loop()
        started = loop.time()
        delay = s.reconnect_initial_delay
        while True:
            failure: HostRejectedError | OSError | asyncio.TimeoutError
            try:
                return await self._open_any(None)
            except HostRejectedError as exc:
                if exc.status_code != 503:
                    raise  # an answer, not an absence: retrying cannot help (503: the host is full, for now)
                failure = exc
            except HostTlsError:
                raise  # an answer, not an absence: retrying cannot help
            except (OSError, asyncio.TimeoutError) as exc:
                failure = exc
            remaining = started + s.connect_timeout - loop.time()
            if remaining <= 0:  # tried for the whole connect_timeout
                if isinstance(failure, HostRejectedError):
                    raise failure
                raise unreachable(s, failure, loop.time() - started) from None
            await anyio.sleep(min(delay, remaining))
            delay = min(delay * 2, s.reconnect_max_delay)

    async def _supervise(self, channel: AsyncioChannel) -> None:
        """Run the connection; when it is lost, reconnect with backoff and announce everything again."""
        announce = False
        while True:
            await self._run_connection(channel, announce)
            if not self.running or not self._settings.reconnect:
                return
            self._connected.clear()
            reconnected = await self._reconnect_with_backoff()
            if reconnected is None:
                return
            channel, announce = reconnected, True

    async def _reconnect_with_backoff(self) -> AsyncioChannel | None:
        s = self._settings
        delay = s.reconnect_initial_delay
        while self.running:
            await anyio.sleep(delay * random.uniform(0.5, 1.5))
            if not self.running:
                return None
            try:
                # With several hosts: the next one first, the one just lost last.
                channel = await self._open_any(self.address if len(s.addresses) > 1 else None)
            except (OSError, asyncio.TimeoutError, HostRejectedError) as exc:
                where = ", ".join(a.authority for a in s.addresses)
                logger.info("reconnecting to %s failed (%s); next try in about %.1fs", where, exc, delay)
                delay = min(delay * 2, s.reconnect_max_delay)
                continue
            if not self.running:
                await channel.aclose()
                return None
            self.channel = channel
            return channel
        return None

    async def _run_connection(self, channel: AsyncioChannel, announce: bool) -> None:
        engine = self._engine
        loop = asyncio.get_running_loop()
        s = self._settings

        def on_message(message: str | bytes) -> None:
            for event in engine.receive(message, loop.time()):
                self._on_event(event)
            if engine.has_data_to_send:
                self.flush()

        abandoned = False
        try:
            # Timers, keepalive and re-announcing end with the connection.
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._timer.run)
                if s.keepalive_interval is not None:
                    tg.start_soon(keep_alive, channel, s.keepalive_interval, s.keepalive_timeout)
                if announce:
                    tg.start_soon(self._reannounce, channel)
                await channel.serve(on_message, self._connected.clear)  # (calls wait from the moment it ends)
                tg.cancel_scope.cancel()
        except asyncio.CancelledError:
            # Cancelled while running: the event loop is ending (asyncio.run) and stop() was never called.
            abandoned = self.running
            if abandoned:
                self._abandon(channel)
            raise
        finally:
            with anyio.CancelScope(shield=True):
                await channel.aclose()
                if abandoned:
                    with anyio.move_on_after(CLOSE_TIMEOUT):
                        await self._abandoned()
            if self.channel is channel:
                self.channel = None
                logger.warning("lost the connection to the host at %s", self.address.authority)
            for event in engine.connection_lost(channel.close_code):
                self._on_event(event)

    def _abandon(self, channel: AsyncioChannel) -> None:
        """End a link whose event loop is shutting down without a ``stop()``: the connection is
        closed as ``stop()`` would, and the runtime lets its handlers go."""
        self.running = False
        self._connected.set()
        self.channel = None
        channel.close(1000, "worker's event loop shut down")
        logger.warning(
            "the worker connected to %s was not stopped before its event loop ended; call "
            "`await runtime.stop()` before leaving it",
            self.address.authority,
        )

    async def _reannounce(self, channel: AsyncioChannel) -> None:
        try:
            await self.announce()
        except Exception as exc:
            # Typically: the host still holds our old connection's agent types. Try again later.
            logger.warning("re-registering with the host failed (%s); reconnecting", exc)
            channel.close(1000, "re-registration failed")
            return
        logger.info("reconnected to the host at %s", self.address.authority)
        self._connected.set()


def announced_limit(headers: Sequence[tuple[bytes, bytes]]) -> int | None:
    """The message size limit a host announced in its upgrade answer, if it did."""
    for name, value in headers:
        if name.lower() == MAX_MESSAGE_SIZE_HEADER:
            try:
                return int(value)
            except ValueError:
                return None
    return None


def unreachable(settings: LinkSettings, exc: BaseException, tried_for: float) -> HostConnectionError:
    """The one-line error of a host that cannot be reached, and what to do about it."""
    if isinstance(exc, ConnectionRefusedError):
        why = "connection refused"
    elif isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        why = f"no answer within connect_timeout={settings.connect_timeout:g}"
    elif isinstance(exc, OSError) and exc.strerror:
        why = exc.strerror
    else:
        why = str(exc) or type(exc).__name__
    address = settings.address
    if settings.fallbacks:
        where = ", ".join(a.authority for a in settings.addresses)
        return HostConnectionError.local(
            f"cannot reach any of the hosts at {where} (tried for {tried_for:.1f}s: {why}); at least one "
            "must be running (give them more time with connect_timeout=)"
        )
    return HostConnectionError.local(
        f"cannot reach the host at {address.authority} (tried for {tried_for:.1f}s: {why}); a host must be "
        f"running there, e.g. `autogen-http-host --port {address.port}` (give it more time with connect_timeout=)"
    )


_PLAIN_TEXT_ANSWERS = {"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "UNKNOWN_PROTOCOL", "HTTP_REQUEST"}


def tls_error(address: HostAddress, exc: ssl.SSLError | HandshakeNotAnswered) -> HostTlsError:
    """What went wrong with TLS, in words, and what to do about it."""
    where = f"the host at {address.authority}"
    if isinstance(exc, HandshakeNotAnswered):
        how = "answered with TLS" if exc.tls_record else "closed the connection without answering"
        message = (
            f"{where} {how} when asked to upgrade over plain HTTP: it serves TLS, so use an https:// or wss:// "
            "address (with ssl_context= if its certificate is not in the system's trust store)"
        )
    elif isinstance(exc, ssl.SSLCertVerificationError):
        message = (
            f"{where} serves a TLS certificate this worker does not trust ({exc.verify_message}): pass an "
            "ssl_context= that trusts its certificate authority"
        )
    elif exc.reason in _PLAIN_TEXT_ANSWERS:
        message = (
            f"{where} does not serve TLS (it answered the TLS handshake in plain text): use an http:// or ws:// "
            "address, or start the host with TLS (autogen-http-host --certfile/--keyfile, or ssl_context=)"
        )
    else:
        message = f"TLS with {where} failed: {exc.reason or exc}"
    return HostTlsError.local(message)


__all__ = ["Announcements", "HostLink", "LinkSettings", "announced_limit", "tls_error", "unreachable"]
