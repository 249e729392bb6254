"""Drop-in for code written against the gRPC runtime: its constructors' parameters by name and
position, its options translated, its error wording, and AutoGen's own gRPC tests, ported with
only the class names changed, over real sockets."""

from __future__ import annotations

import inspect
import warnings
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import pytest
from autogen_core import (
    PROTOBUF_DATA_CONTENT_TYPE,
    AgentId,
    AgentType,
    BaseAgent,
    MessageContext,
    try_get_known_serializers_for_type,
)
from google.protobuf.wrappers_pb2 import StringValue

from io_backends import (
    GrpcOptionIgnoredWarning,
    HttpAgentServer,
    HttpWorkerAgentRuntime,
    HttpWorkerAgentRuntimeHost,
    PayloadTooLargeError,
)
from io_backends.sansio import _grpc_options as _grpc_compat

from ._common import Ask, EchoAgent, all_serializers

pytestmark = pytest.mark.anyio

# GrpcWorkerAgentRuntime's and GrpcWorkerAgentRuntimeHost's parameters in autogen-ext 0.7.5
# (python/packages/autogen-ext/src/autogen_ext/runtimes/grpc/_worker_runtime.py, _worker_runtime_host.py).
GRPC_WORKER_PARAMETERS = ["host_address", "tracer_provider", "extra_grpc_config", "payload_serialization_format"]
GRPC_HOST_PARAMETERS = ["address", "extra_grpc_config"]


def positional(cls: type[Any]) -> list[str]:
    return [
        p.name
        for p in inspect.signature(cls).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]


def test_constructors_take_the_grpc_parameters_by_name_and_position() -> None:
    assert positional(HttpWorkerAgentRuntime) == GRPC_WORKER_PARAMETERS
    assert positional(HttpWorkerAgentRuntimeHost) == GRPC_HOST_PARAMETERS
    assert "extra_grpc_config" in inspect.signature(HttpAgentServer).parameters


def test_constructors_match_the_installed_grpc_runtime() -> None:
    grpc = pytest.importorskip("autogen_ext.runtimes.grpc", reason="autogen-ext[grpc] is in the bench extra")
    assert positional(grpc.GrpcWorkerAgentRuntime) == positional(HttpWorkerAgentRuntime)
    assert positional(grpc.GrpcWorkerAgentRuntimeHost) == positional(HttpWorkerAgentRuntimeHost)


@pytest.fixture
def fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_grpc_compat, "_warned", set())


def test_grpc_options_are_translated_and_the_rest_warned_about_once(fresh_warnings: None) -> None:
    options = [
        ("grpc.max_send_message_length", 1000),
        ("grpc.max_receive_message_length", 8 * 1024 * 1024),
        ("grpc.keepalive_time_ms", 2500),
        ("grpc.keepalive_timeout_ms", 750),
        ("grpc.enable_retries", 1),
        ("grpc.lb_policy_name", "round_robin"),
    ]
    with pytest.warns(GrpcOptionIgnoredWarning) as caught:
        runtime = HttpWorkerAgentRuntime("127.0.0.1:9", None, options)
        HttpWorkerAgentRuntime("127.0.0.1:9", None, options)  # the same options again: no new warning
    assert sorted(str(w.message) for w in caught) == [
        "extra_grpc_config option 'grpc.enable_retries' has no meaning for HttpWorkerAgentRuntime and is "
        "ignored; instead: the worker reconnects by itself (reconnect=, reconnect_initial_delay=, "
        "reconnect_max_delay=)",
        "extra_grpc_config option 'grpc.lb_policy_name' has no meaning for HttpWorkerAgentRuntime and is ignored",
    ]
    assert caught[0].filename == __file__  # the warning points at the user's line
    assert runtime._max_message_size == 1000
    settings = runtime._link.settings
    assert settings.max_receive_size == 8 * 1024 * 1024 + 65536
    assert (settings.keepalive_interval, settings.keepalive_timeout) == (2.5, 0.75)
    unlimited = HttpWorkerAgentRuntime("127.0.0.1:9", extra_grpc_config=[("grpc.max_send_message_length", -1)])
    assert unlimited._max_message_size == 2**31 - 1  # no limit of its own; the host's applies when it connects
    explicit = HttpWorkerAgentRuntime("127.0.0.1:9", None, options, max_message_size=5000)
    assert explicit._max_message_size == 5000


def test_grpc_host_options(fresh_warnings: None) -> None:
    with pytest.warns(GrpcOptionIgnoredWarning, match="'grpc.max_send_message_length' has no meaning for the host"):
        host = HttpWorkerAgentRuntimeHost(
            "127.0.0.1:0", [("grpc.max_receive_message_length", 65536), ("grpc.max_send_message_length", 1)]
        )
    assert host.service.max_message_size == host.service.engine.max_message_size == 65536
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        server = HttpAgentServer(
            extra_grpc_config=[("grpc.keepalive_time_ms", 1000), ("grpc.keepalive_timeout_ms", 500)]
        )
    assert (server.service.keepalive_interval, server.service.keepalive_timeout) == (1.0, 0.5)
    with pytest.raises(ValueError, match="needs a port"):
        HttpWorkerAgentRuntimeHost("localhost")
    with pytest.raises(TypeError, match="pass payload_serialization_format= by name"):
        HttpWorkerAgentRuntime("127.0.0.1:9", None, PROTOBUF_DATA_CONTENT_TYPE)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("address", "host", "port"),
    [("localhost:50051", "localhost", 50051), ("[::]:50051", "::", 50051), ("0.0.0.0:0", "0.0.0.0", 0)],
)
def test_host_addresses_as_grpc_writes_them(address: str, host: str, port: int) -> None:
    server = HttpWorkerAgentRuntimeHost(address)
    assert (server.address, server._requested_port) == (host, port)


# ---------------------------------------------------------------- AutoGen's gRPC tests, ported


class NoopAgent(BaseAgent):
    def __init__(self) -> None:
        super().__init__("A no op agent")

    async def on_message_impl(self, message: Any, ctx: MessageContext) -> Any:
        raise NotImplementedError


@pytest.fixture
async def grpc_style_host() -> AsyncIterator[tuple[HttpWorkerAgentRuntimeHost, str]]:
    host = HttpWorkerAgentRuntimeHost(address="127.0.0.1:0")
    host.start()
    try:
        yield host, f"127.0.0.1:{host.port}"
    finally:
        await host.stop()


WorkerMaker = Callable[..., HttpWorkerAgentRuntime]


@pytest.fixture
async def grpc_style_worker() -> AsyncIterator[WorkerMaker]:
    made: list[HttpWorkerAgentRuntime] = []

    def make(*args: Any, **kwargs: Any) -> HttpWorkerAgentRuntime:
        made.append(HttpWorkerAgentRuntime(*args, **kwargs))
        return made[-1]

    yield make
    for runtime in made:
        if runtime._link.running:
            await runtime.stop()


async def test_agent_types_must_be_unique_multiple_workers(
    grpc_style_host: tuple[HttpWorkerAgentRuntimeHost, str], grpc_style_worker: WorkerMaker
) -> None:
    """autogen-ext's tests/test_worker_runtime.py, test_agent_types_must_be_unique_multiple_workers."""
    _, host_address = grpc_style_host
    with anyio.fail_after(20):
        worker1 = grpc_style_worker(host_address=host_address)
        await worker1.start()
        worker2 = grpc_style_worker(host_address=host_address)
        await worker2.start()
        await worker1.register_factory(
            type=AgentType("name1"), agent_factory=lambda: NoopAgent(), expected_class=NoopAgent
        )
        with pytest.raises(Exception, match="Agent type name1 already registered"):
            await worker2.register_factory(
                type=AgentType("name1"), agent_factory=lambda: NoopAgent(), expected_class=NoopAgent
            )
        await worker2.register_factory(
            type=AgentType("name4"), agent_factory=lambda: NoopAgent(), expected_class=NoopAgent
        )
        await worker1.stop()
        await worker2.stop()


async def test_duplicate_subscription(
    grpc_style_host: tuple[HttpWorkerAgentRuntimeHost, str], grpc_style_worker: WorkerMaker
) -> None:
    """autogen-ext's test_duplicate_subscription, up to where the runtimes differ (see the README:
    a registration the host refused leaves nothing behind here, so the worker can register the type
    once its first owner is gone)."""
    _, host_address = grpc_style_host
    with anyio.fail_after(20):
        worker1 = grpc_style_worker(host_address=host_address)
        worker1_2 = grpc_style_worker(host_address=host_address)
        await worker1.start()
        await NoopAgent.register(worker1, "worker1", lambda: NoopAgent())
        await worker1_2.start()
        with pytest.raises(Exception, match="Agent type worker1 already registered"):
            await NoopAgent.register(worker1_2, "worker1", lambda: NoopAgent())
        await worker1.stop()
        await NoopAgent.register(worker1_2, "worker1", lambda: NoopAgent())  # gRPC: ValueError, it kept the factory


async def test_positional_grpc_arguments_over_real_sockets(
    grpc_style_host: tuple[HttpWorkerAgentRuntimeHost, str], grpc_style_worker: WorkerMaker, fresh_warnings: None
) -> None:
    """``GrpcWorkerAgentRuntime(address, tracer_provider, extra_grpc_config, format)`` positionally:
    the protobuf format is used and the send limit from the gRPC option applies."""
    _, host_address = grpc_style_host
    with anyio.fail_after(20):
        callee = grpc_style_worker(host_address, None, None, PROTOBUF_DATA_CONTENT_TYPE)
        callee.add_message_serializer(all_serializers())
        callee.add_message_serializer(try_get_known_serializers_for_type(StringValue))
        await callee.register_factory("echo", EchoAgent)
        await callee.start()
        caller = grpc_style_worker(
            host_address, None, [("grpc.max_send_message_length", 1024)], PROTOBUF_DATA_CONTENT_TYPE
        )
        caller.add_message_serializer(all_serializers())
        await caller.start()
        answer = await caller.send_message(Ask("abc"), AgentId("echo", "k"))
        assert answer.text == "k:cba"
        with pytest.raises(PayloadTooLargeError, match="max_message_size=1024"):
            await caller.send_message(Ask("x" * 2000), AgentId("echo", "k"))
        assert caller.connected
