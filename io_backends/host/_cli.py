"""``autogen-http-host`` / ``python -m io_backends``: run a host until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import ssl
import sys
from typing import TYPE_CHECKING, NoReturn

import anyio

from sansio_runtime import (
    DEFAULT_MAX_AGENT_TYPES_PER_CONNECTION,
    DEFAULT_MAX_BATCH_LENGTH,
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MAX_SUBSCRIPTIONS_PER_CONNECTION,
)

from ..sansio._limits import (
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_KEEPALIVE_INTERVAL,
    DEFAULT_KEEPALIVE_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
    DEFAULT_MAX_OUTBOUND_BYTES,
    DEFAULT_REQUEST_BODY_TIMEOUT,
    DEFAULT_REQUEST_HEAD_TIMEOUT,
)
from ._errors import HostBindError
from ._server import HttpAgentServer
from ._service import HttpAgentService

logger = logging.getLogger("io_backends.host")

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

OTLP_EXTRA = "autogen-http-runtime-ng[otlp]"
_OTLP_ENVIRONMENT = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def _timeout(text: str) -> float | None:
    seconds = float(text)
    if seconds < 0:
        raise argparse.ArgumentTypeError("a timeout cannot be negative (0 turns it off)")
    return seconds or None


_PROG = "autogen-http-host"
_EPILOG = """\
examples:
  autogen-http-host --port 9000
  autogen-http-host --host 0.0.0.0 --port 9000 --auth-token s3cret --certfile host.pem --keyfile host.key
  autogen-http-host --backend trio        (needs: pip install 'autogen-http-runtime-ng[trio]')

Workers connect with HttpWorkerAgentRuntime("HOST:PORT") (or http://, ws://, https://, wss:// URLs).
"""


def _fail(message: str, status: int = 1) -> NoReturn:
    """One line on stderr and a non-zero exit: what went wrong and what to do about it."""
    print(f"{_PROG}: error: {message}", file=sys.stderr, flush=True)
    sys.exit(status)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=_PROG,
        description="Run an AutoGen HTTP/WebSocket agent host (the router workers connect to).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=9000, help="port to bind (default 9000; 0 picks one)")
    parser.add_argument("--auth-token", default=None, help="require 'Authorization: Bearer TOKEN' from clients")
    parser.add_argument("--certfile", default=None, help="TLS certificate (PEM); serves https/wss when given")
    parser.add_argument("--keyfile", default=None, help="TLS private key (PEM)")
    parser.add_argument(
        "--keepalive-interval",
        type=float,
        default=DEFAULT_KEEPALIVE_INTERVAL,
        help="ping a worker after this many seconds of silence (default 10; 0 turns keepalive off)",
    )
    parser.add_argument(
        "--keepalive-timeout",
        type=float,
        default=DEFAULT_KEEPALIVE_TIMEOUT,
        help="drop a worker silent this many seconds after the ping (default 10)",
    )
    parser.add_argument(
        "--backend",
        choices=("asyncio", "trio"),
        default="asyncio",
        help="event loop to run on (default asyncio); trio needs the trio extra: "
        "pip install 'autogen-http-runtime-ng[trio]'",
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR (default INFO)")
    parser.add_argument(
        "--pool-log-interval",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="log each shared agent type's workers and their keys this often, when they changed (default 10; 0: never)",
    )
    parser.add_argument(
        "--otlp-endpoint",
        default=None,
        metavar="URL",
        help="export the host's spans over OTLP/HTTP to this collector (e.g. http://localhost:4318); "
        "without it, the standard OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT variables turn export on. "
        f"Needs: pip install '{OTLP_EXTRA}'",
    )
    parser.add_argument(
        "--no-status",
        action="store_true",
        help="do not serve GET /v1/status and the /ui page that shows it",
    )
    parser.add_argument("--no-metrics", action="store_true", help="do not serve GET /metrics")
    parser.add_argument("--no-events", action="store_true", help="do not take CloudEvents on POST /v1/events")
    _add_cluster(parser.add_argument_group("cluster (docs/CLUSTER.md; needs the cluster extra)"))
    _add_limits(parser.add_argument_group("limits (docs/PROTOCOL.md section 2.5)"))
    return parser


def _add_cluster(cluster: argparse._ArgumentGroup) -> None:
    cluster.add_argument(
        "--cluster",
        default=None,
        metavar="NATS_URL",
        help="join the hosts on this NATS server (nats://127.0.0.1:4222; several: comma-separated)",
    )
    cluster.add_argument("--cluster-name", default="agrt", help="hosts meet only within one name (default agrt)")
    cluster.add_argument("--host-name", default=None, help="this host's name in the cluster (default HOSTNAME-PORT)")
    cluster.add_argument(
        "--cluster-replicas",
        type=int,
        default=None,
        metavar="N",
        help="NATS servers that keep each registry bucket, 1-5 (default 3 if --cluster lists several servers, else 1)",
    )


def _add_limits(limits: argparse._ArgumentGroup) -> None:
    limits.add_argument(
        "--max-message-size",
        type=int,
        default=DEFAULT_MAX_MESSAGE_SIZE,
        metavar="BYTES",
        help="largest message in bytes (default 4 MiB); workers learn it when they connect",
    )
    limits.add_argument(
        "--max-outbound-bytes",
        type=int,
        default=DEFAULT_MAX_OUTBOUND_BYTES,
        metavar="BYTES",
        help="unsent bytes buffered for one WebSocket before it is closed with 4008 (default 64 MiB)",
    )
    limits.add_argument(
        "--max-batch-length",
        type=int,
        default=DEFAULT_MAX_BATCH_LENGTH,
        metavar="N",
        help="entries in one batch (default 1000)",
    )
    limits.add_argument(
        "--max-agent-types-per-connection",
        type=int,
        default=DEFAULT_MAX_AGENT_TYPES_PER_CONNECTION,
        metavar="N",
        help="(default 10000)",
    )
    limits.add_argument(
        "--max-subscriptions-per-connection",
        type=int,
        default=DEFAULT_MAX_SUBSCRIPTIONS_PER_CONNECTION,
        metavar="N",
        help="(default 50000)",
    )
    limits.add_argument(
        "--max-connections",
        type=int,
        default=DEFAULT_MAX_CONNECTIONS,
        metavar="N",
        help="served at once (default 10000)",
    )
    limits.add_argument(
        "--max-connections-per-address",
        type=int,
        default=DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
        metavar="N",
        help="served at once from one client IP address (default 1000)",
    )
    limits.add_argument(
        "--request-head-timeout",
        type=_timeout,
        default=DEFAULT_REQUEST_HEAD_TIMEOUT,
        metavar="SECONDS",
        help="seconds for a request head, from its first byte (default 20; 0: none)",
    )
    limits.add_argument(
        "--request-body-timeout",
        type=_timeout,
        default=DEFAULT_REQUEST_BODY_TIMEOUT,
        metavar="SECONDS",
        help="seconds for a request body, after its head (default 60; 0: none)",
    )
    limits.add_argument(
        "--idle-timeout",
        type=_timeout,
        default=DEFAULT_IDLE_TIMEOUT,
        metavar="SECONDS",
        help="seconds a keep-alive connection may sit idle, or an answer wait to be read (default 60; 0: none)",
    )


def _ssl_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    if not args.certfile:
        return None
    ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ssl_context.load_cert_chain(args.certfile, args.keyfile)
    except (OSError, ssl.SSLError) as exc:
        _fail(f"cannot load the TLS certificate {args.certfile!r} / key {args.keyfile!r}: {exc}")
    return ssl_context


def _service(
    args: argparse.Namespace, parser: argparse.ArgumentParser, tracer_provider: TracerProvider | None
) -> HttpAgentService:
    try:
        return HttpAgentService(
            max_message_size=args.max_message_size,
            max_outbound_bytes=args.max_outbound_bytes,
            max_batch_length=args.max_batch_length,
            max_agent_types_per_connection=args.max_agent_types_per_connection,
            max_subscriptions_per_connection=args.max_subscriptions_per_connection,
            max_connections=args.max_connections,
            max_connections_per_address=args.max_connections_per_address,
            request_head_timeout=args.request_head_timeout,
            request_body_timeout=args.request_body_timeout,
            idle_timeout=args.idle_timeout,
            auth_token=args.auth_token,
            keepalive_interval=args.keepalive_interval or None,
            keepalive_timeout=args.keepalive_timeout,
            events=not args.no_events,
            status=not args.no_status,
            ui=not args.no_status,
            metrics=False if args.no_metrics else None,
            tracer_provider=tracer_provider,
        )
    except ValueError as exc:
        parser.error(str(exc))


def main(argv: list[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.backend == "trio" and importlib.util.find_spec("trio") is None:
        _fail("--backend trio needs the trio package: pip install 'autogen-http-runtime-ng[trio]'", 2)
    tracer_provider = _otlp_provider(args.otlp_endpoint)
    service = _service(args, parser, tracer_provider)
    if args.cluster is not None and args.backend != "asyncio":
        _fail("--cluster runs on --backend asyncio only (nats-py is asyncio-only)", 2)
    try:
        server = HttpAgentServer(
            args.host,
            args.port,
            service=service,
            ssl_context=_ssl_context(args),
            cluster=args.cluster,
            cluster_name=args.cluster_name,
            host_name=args.host_name,
            cluster_replicas=args.cluster_replicas,
        )
    except (ImportError, ValueError) as exc:
        _fail(str(exc), 2)

    async def run() -> None:
        port = server.bind()  # before any task group: a bind error stays one plain OSError
        try:
            async with anyio.create_task_group() as tg:
                await tg.start(server.serve)
                link = server.cluster_link
                joined = "" if link is None else f" (cluster {args.cluster}, host {link.host})"
                print(f"autogen-http-host listening on {args.host}:{port}{joined}", flush=True)
                if args.pool_log_interval > 0:
                    tg.start_soon(log_pools, service, args.pool_log_interval)
                await server.stop_when_signal()
                tg.cancel_scope.cancel()
        except BaseException as exc:
            unreachable = _find_connection_error(exc)
            if unreachable is not None:
                _fail(str(unreachable))
            raise

    try:
        anyio.run(run, backend=args.backend)
    except HostBindError as exc:  # the port is in use, needs privileges, or the address is not this machine's
        _fail(str(exc))
    finally:
        if tracer_provider is not None:
            tracer_provider.shutdown()  # exports the spans still batched


def _otlp_provider(endpoint: str | None) -> TracerProvider | None:
    """A tracer provider exporting over OTLP/HTTP, when asked for (flag or environment), else None."""
    if endpoint is None and not any(os.environ.get(name) for name in _OTLP_ENVIRONMENT):
        return None
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        _fail(f"OTLP export (--otlp-endpoint, OTEL_EXPORTER_OTLP_*) needs: pip install '{OTLP_EXTRA}'", 2)
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    if endpoint is not None:
        endpoint = endpoint.rstrip("/")
        if not endpoint.endswith("/v1/traces"):
            endpoint += "/v1/traces"  # a collector's base URL, as OTEL_EXPORTER_OTLP_ENDPOINT is
    resource = Resource.create({SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME", "autogen-http-host")})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    return provider


async def log_pools(service: HttpAgentService, interval: float) -> None:
    """Every ``interval`` seconds, log the shared agent types' workers and keys if they changed."""
    last: dict[str, dict[str, int]] = {}
    while True:
        await anyio.sleep(interval)
        pools = service.engine.stats.shared_types
        if pools != last:
            for line in describe_pools(pools, last):
                logger.info("%s", line)
            last = pools


def describe_pools(pools: dict[str, dict[str, int]], before: dict[str, dict[str, int]]) -> list[str]:
    """One line per shared agent type that changed: its workers and how many keys each holds."""
    lines = []
    for agent_type, members in pools.items():
        if members != before.get(agent_type):
            held = ", ".join(f"{name}: {keys} keys" for name, keys in members.items())
            lines.append(f"shared agent type {agent_type!r}: {len(members)} worker(s) ({held})")
    lines += [f"shared agent type {t!r}: no workers left" for t in before if t not in pools]
    return lines


def _find_connection_error(exc: BaseException) -> ConnectionError | None:
    """The ConnectionError (the cluster's NATS is unreachable) in ``exc`` or its group, if any."""
    if isinstance(exc, ConnectionError):
        return exc
    for inner in getattr(exc, "exceptions", ()):
        found = _find_connection_error(inner)
        if found is not None:
            return found
    return None


if __name__ == "__main__":
    main()
