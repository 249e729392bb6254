"""HttpAgentServer: the host process's server, a listening socket in front of an :class:`HttpAgentService`.

``start()`` binds before it returns and serves on the running asyncio loop (the asyncio driver,
:mod:`._asyncio`); ``await serve()`` does the same under any anyio backend, asyncio or trio (the
anyio driver, :mod:`._anyio`). :class:`HttpWorkerAgentRuntimeHost` is the same server under the
gRPC runtime's name and parameters.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import math
import signal
import socket
import ssl
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import anyio
import anyio.abc
from anyio.streams.tls import TLSStream

from sansio_runtime import (
    DEFAULT_MAX_AGENT_TYPES_PER_CONNECTION,
    DEFAULT_MAX_BATCH_LENGTH,
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MAX_SUBSCRIPTIONS_PER_CONNECTION,
    HostStats,
)

from ..sansio import Authenticator
from ..sansio._address import is_loopback, split_host_port
from ..sansio._grpc_options import HOST_OPTIONS as HOST_GRPC_OPTIONS
from ..sansio._grpc_options import ChannelArgumentType
from ..sansio._grpc_options import translate as translate_grpc_options
from ..sansio._limits import (
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
    DEFAULT_MAX_OUTBOUND_BYTES,
    DEFAULT_REQUEST_BODY_TIMEOUT,
    DEFAULT_REQUEST_HEAD_TIMEOUT,
)
from ._anyio import STREAM_ERRORS
from ._asyncio import AsyncioDriver
from ._errors import HostBindError
from ._service import HttpAgentService

if TYPE_CHECKING:
    from ..cluster._link import ClusterLink, ClusterSettings

logger = logging.getLogger("io_backends.host")

ACCEPT_RETRY_DELAY = 0.1
"""How long the anyio driver waits after accept() failed for want of resources (EMFILE, ...)."""
_ACCEPT_CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_ACCEPT_LOG_INTERVAL = 10.0


def _bind_failure(address: str, port: int, exc: OSError) -> str:
    """Why a host cannot listen on ``address:port``, and what to do about it, in one line."""
    where = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return (
            f"cannot listen on {where}: the port is already in use (is another host running?); "
            "stop that process or choose another port"
        )
    if exc.errno == errno.EACCES:
        return f"cannot listen on {where}: permission denied (ports below 1024 need privileges); choose another port"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on {where}: {address} is not an address of this machine; use 127.0.0.1 or 0.0.0.0"
    return f"cannot listen on {where}: {exc.strerror or exc}"


def _on_asyncio() -> bool:
    """Whether the caller runs in an asyncio task (and not, say, under trio)."""
    try:
        return asyncio.current_task() is not None
    except RuntimeError:  # no asyncio loop running in this thread
        return False


def _cluster_settings(
    url: str | None, name: str, host_name: str | None, replicas: int | None
) -> ClusterSettings | None:
    if url is None:
        return None
    try:
        from ..cluster._link import ClusterSettings
    except ImportError as exc:
        raise ImportError(
            "HttpAgentServer(cluster=...) needs the cluster extra: pip install 'autogen-http-runtime-ng[cluster]'"
        ) from exc
    return ClusterSettings(url=url, name=name, host_name=host_name, replicas=replicas)


class HttpAgentServer:
    """The host process's server: binds a TCP port and runs an :class:`HttpAgentService` on it.

    ``start()`` binds before it returns (so ``port=0`` can be read back from :attr:`port`) and
    serves on the running asyncio loop, like ``GrpcWorkerAgentRuntimeHost.start()``. Under any
    anyio backend (asyncio or trio) use ``await server.serve()`` instead.
    """

    def __init__(
        self,
        address: str = "127.0.0.1",
        port: int = 9000,
        *,
        service: HttpAgentService | None = None,
        ssl_context: ssl.SSLContext | None = None,
        max_message_size: int | None = None,
        auth_token: str | None = None,
        authenticator: Authenticator | None = None,
        backlog: int = 512,
        max_batch_length: int = DEFAULT_MAX_BATCH_LENGTH,
        max_agent_types_per_connection: int = DEFAULT_MAX_AGENT_TYPES_PER_CONNECTION,
        max_subscriptions_per_connection: int = DEFAULT_MAX_SUBSCRIPTIONS_PER_CONNECTION,
        max_outbound_bytes: int = DEFAULT_MAX_OUTBOUND_BYTES,
        request_head_timeout: float | None = DEFAULT_REQUEST_HEAD_TIMEOUT,
        request_body_timeout: float | None = DEFAULT_REQUEST_BODY_TIMEOUT,
        idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_connections_per_address: int = DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
        extra_grpc_config: ChannelArgumentType | None = None,
        cluster: str | None = None,
        cluster_name: str = "agrt",
        host_name: str | None = None,
        cluster_replicas: int | None = None,
    ) -> None:
        """The limits and timeouts are :class:`HttpAgentService`'s (ignored when ``service`` is given).

        ``cluster="nats://127.0.0.1:4222"``: this host joins the other hosts on that NATS server
        (several URLs separated by commas) with the same ``cluster_name`` and they act as one
        runtime (docs/CLUSTER.md; needs the ``cluster`` extra and the asyncio driver).
        ``host_name``: this host's name in the cluster, unique there (default ``<hostname>-<port>``).
        ``cluster_replicas``: how many NATS servers keep the registry's buckets when this host makes
        them (1-5; default 3 if ``cluster`` lists several servers, else 1).
        """
        host, address_port = split_host_port(address)  # gRPC style "host:port" (or "[::]:port")
        self.address = host
        self._requested_port = port if address_port is None else address_port
        grpc = translate_grpc_options(extra_grpc_config, used=HOST_GRPC_OPTIONS, role="the host")
        if service is not None and (extra_grpc_config is not None or max_message_size is not None):
            raise TypeError("pass the limits to the HttpAgentService given as service=, not to HttpAgentServer")
        self.service = service or HttpAgentService(
            max_message_size=max_message_size or grpc.max_receive or DEFAULT_MAX_MESSAGE_SIZE,
            auth_token=auth_token,
            authenticator=authenticator,
            keepalive_interval=10.0 if grpc.keepalive_interval is None else grpc.keepalive_interval,
            keepalive_timeout=10.0 if grpc.keepalive_timeout is None else grpc.keepalive_timeout,
            max_batch_length=max_batch_length,
            max_agent_types_per_connection=max_agent_types_per_connection,
            max_subscriptions_per_connection=max_subscriptions_per_connection,
            max_outbound_bytes=max_outbound_bytes,
            request_head_timeout=request_head_timeout,
            request_body_timeout=request_body_timeout,
            idle_timeout=idle_timeout,
            max_connections=max_connections,
            max_connections_per_address=max_connections_per_address,
        )
        self._ssl_context = ssl_context
        self._backlog = backlog
        self._cluster = _cluster_settings(cluster, cluster_name, host_name, cluster_replicas)
        self.cluster_link: ClusterLink | None = None  # this host's link to its cluster, once serving
        self._socket: socket.socket | None = None
        self._port: int | None = None
        self._accept_scope: anyio.CancelScope | None = None
        self._grace = 5.0
        self._started = False
        self._stopped = anyio.Event()
        self._stop_requested: anyio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        """The bound port (useful with ``port=0``). Raises if the server is not bound yet."""
        if self._port is None:
            raise RuntimeError("the server is not started")
        return self._port

    @property
    def stats(self) -> HostStats:
        """The host's counters, and each shared agent type's workers and keys (``shared_types``)."""
        return self.service.engine.stats

    def bind(self) -> int:
        """Bind the listening socket now (``start()`` and ``serve()`` do it if it was not done) and
        return the port.

        Raises :class:`HostBindError` (an ``OSError``) with a one-line explanation when the port is
        in use, needs privileges, or the address is not this machine's.
        """
        if self._socket is None:
            self._socket = self._bind()
        return self.port

    def _bind(self) -> socket.socket:
        if self.service.requires_token and self._ssl_context is None and not is_loopback(self.address):
            logger.warning(
                "the host on %s requires a token but serves plain HTTP: the token travels in clear text to "
                "anyone on the path; pass ssl_context= (or --certfile/--keyfile) to serve https/wss",
                self.address,
            )
        family = socket.AF_INET6 if ":" in self.address else socket.AF_INET
        try:
            sock = socket.create_server((self.address, self._requested_port), family=family, backlog=self._backlog)
        except OSError as exc:
            raise HostBindError(exc.errno, _bind_failure(self.address, self._requested_port, exc)) from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._port = sock.getsockname()[1]
        return sock

    def start(self) -> None:
        """Bind now and serve in a task on the running asyncio loop."""
        if self._started:
            raise RuntimeError("the server is already started")
        loop = asyncio.get_running_loop()
        self.bind()
        assert self._socket is not None
        self._started = True
        self._stop_requested = anyio.Event()
        self._task = loop.create_task(self._serve_asyncio(self._socket, anyio.TASK_STATUS_IGNORED))

    async def serve(self, *, task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED) -> None:
        """Bind and serve until :meth:`stop` (anyio-native; ``await tg.start(server.serve)`` gives the port)."""
        if self._started:
            raise RuntimeError("the server is already started")
        self.bind()
        assert self._socket is not None
        self._started = True
        if _on_asyncio():
            self._stop_requested = anyio.Event()
            await self._serve_asyncio(self._socket, task_status)
        else:
            await self._serve_anyio(self._socket, task_status)

    async def _serve_asyncio(self, sock: socket.socket, task_status: anyio.abc.TaskStatus[int]) -> None:
        """Serve with the asyncio driver (a protocol per socket, no task per connection)."""
        service = self.service
        loop = asyncio.get_running_loop()
        service.clock = loop.time
        driver = AsyncioDriver(service)
        server: asyncio.Server | None = None
        link: ClusterLink | None = None
        try:
            if self._cluster is not None:
                from ..cluster._link import ClusterLink

                link = ClusterLink(service.hub, driver.flush, self._cluster, port=self.port)
                await link.start()  # before the first worker is accepted
                self.cluster_link = link
            handshake_timeout = None if self._ssl_context is None else service.request_head_timeout
            server = await loop.create_server(
                driver.protocol,
                sock=sock,
                ssl=self._ssl_context,
                backlog=self._backlog,
                ssl_handshake_timeout=handshake_timeout,  # a silent TLS client is dropped like a silent one
            )
            task_status.started(self.port)
            assert self._stop_requested is not None
            await self._stop_requested.wait()
        finally:
            with anyio.CancelScope(shield=True):
                if server is not None:
                    server.close()
                else:
                    sock.close()
                if link is not None:
                    await link.leave()  # the other hosts end us now: their calls here fail at once
                service.hub.close_all(loop.time())
                driver.flush()
                with anyio.move_on_after(self._grace):
                    await service.wait_idle()
                for protocol in list(driver.protocols.values()):
                    protocol.abort()
                with anyio.move_on_after(1.0):
                    await service.wait_idle()  # the aborted connections' connection_lost
                if link is not None:
                    await link.stop()
                driver.close()
                self._stopped.set()

    async def _serve_anyio(self, sock: socket.socket, task_status: anyio.abc.TaskStatus[int]) -> None:
        if self._cluster is not None:
            sock.close()
            raise RuntimeError("a clustered host runs on asyncio only (nats-py is asyncio-only): serve it there")
        try:
            listener = await anyio.abc.SocketListener.from_socket(sock)
            async with anyio.create_task_group() as tg:
                tg.start_soon(self.service.run_timers)
                self._accept_scope = anyio.CancelScope()
                task_status.started(self.port)
                with self._accept_scope:
                    await self._accept_anyio(listener, tg)
                with anyio.CancelScope(shield=True):
                    await listener.aclose()
                    self.service.close_all()
                    with anyio.move_on_after(self._grace):
                        await self.service.wait_idle()
                tg.cancel_scope.cancel()
        finally:
            self._stopped.set()

    async def _accept_anyio(self, listener: anyio.abc.SocketListener, tg: anyio.abc.TaskGroup) -> None:
        """Accept connections until cancelled. When the process is out of descriptors (EMFILE) or
        memory, wait a moment and try again: the connections being served go on, and new ones are
        taken as soon as descriptors free up (asyncio's own server loop does the same)."""
        last_logged = -math.inf
        while True:
            try:
                stream = await listener.accept()
            except ConnectionAbortedError:
                continue
            except (OSError, anyio.BrokenResourceError) as exc:
                # anyio's trio backend reports accept()'s OSError as the cause of a BrokenResourceError.
                cause = exc if isinstance(exc, OSError) else exc.__cause__
                if not isinstance(cause, OSError) or cause.errno not in _ACCEPT_CAPACITY_ERRNOS:
                    raise
                if time.monotonic() - last_logged >= _ACCEPT_LOG_INTERVAL:
                    last_logged = time.monotonic()
                    logger.error(
                        "cannot accept connections: %s; retrying every %.1fs (raise the open-files limit, "
                        "ulimit -n, or lower max_connections)",
                        cause,
                        ACCEPT_RETRY_DELAY,
                    )
                await anyio.sleep(ACCEPT_RETRY_DELAY)
                continue
            tg.start_soon(self._handle_anyio, stream)

    async def _handle_anyio(self, stream: anyio.abc.SocketStream) -> None:
        if self._ssl_context is None:
            await self.service.handle_connection(stream)
            return
        handshake_timeout = self.service.request_head_timeout
        tls: TLSStream | None = None
        with anyio.move_on_after(math.inf if handshake_timeout is None else handshake_timeout):
            try:
                tls = await TLSStream.wrap(
                    stream, server_side=True, ssl_context=self._ssl_context, standard_compatible=False
                )
            except (*STREAM_ERRORS, ssl.SSLError) as exc:
                logger.info("TLS handshake failed: %s", exc)
        if tls is None:
            await anyio.aclose_forcefully(stream)
            return
        await self.service.handle_connection(tls, can_half_close=False)

    async def stop(self, grace: float = 5) -> None:
        """Stop accepting, close every connection (1001), wait up to ``grace`` seconds, then end."""
        if not self._started:
            raise RuntimeError("the server is not started")
        self._grace = grace
        if self._accept_scope is not None:
            self._accept_scope.cancel()
        elif self._stop_requested is not None:
            self._stop_requested.set()
        await self._stopped.wait()

    async def stop_when_signal(
        self, grace: float = 5, signals: Sequence[signal.Signals] = (signal.SIGTERM, signal.SIGINT)
    ) -> None:
        """Wait for one of ``signals``, then :meth:`stop`."""
        with anyio.open_signal_receiver(*signals) as received:
            async for signum in received:
                logger.info("received %s: shutting down", signal.Signals(signum).name)
                break
        await self.stop(grace=grace)

    async def __aenter__(self) -> HttpAgentServer:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


class HttpWorkerAgentRuntimeHost(HttpAgentServer):
    """The host under the gRPC runtime's name, with ``GrpcWorkerAgentRuntimeHost``'s parameters
    by name and position: ``HttpWorkerAgentRuntimeHost(address="localhost:50051")``.

    ``address`` is ``"host:port"`` (``"[::]:50051"`` for IPv6; port 0 picks one, read it back from
    :attr:`port` after ``start()``). ``extra_grpc_config`` is read as for gRPC:
    ``grpc.max_receive_message_length`` is the host's message size limit,
    ``grpc.keepalive_time_ms`` / ``grpc.keepalive_timeout_ms`` its keepalive; other options are
    ignored with a warning. The keywords are :class:`HttpAgentServer`'s.
    """

    def __init__(
        self,
        address: str,
        extra_grpc_config: ChannelArgumentType | None = None,
        *,
        ssl_context: ssl.SSLContext | None = None,
        max_message_size: int | None = None,
        auth_token: str | None = None,
        authenticator: Authenticator | None = None,
        backlog: int = 512,
    ) -> None:
        if split_host_port(address)[1] is None:
            raise ValueError(f"address {address!r} needs a port, as for GrpcWorkerAgentRuntimeHost: 'localhost:50051'")
        super().__init__(
            address,
            ssl_context=ssl_context,
            max_message_size=max_message_size,
            auth_token=auth_token,
            authenticator=authenticator,
            backlog=backlog,
            extra_grpc_config=extra_grpc_config,
        )
