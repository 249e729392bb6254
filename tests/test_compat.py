"""io_backends/_compat.py holds every private name of autogen-core and asyncio the package uses.

Each test here checks one of them has the shape our code relies on (the names, signatures and
attributes used, and what they do where that matters), and fails with one line saying what changed
and where to look. The last tests make sure no other module reaches past _compat.
"""

from __future__ import annotations

import ast
import asyncio
import dataclasses
import inspect
import json
import typing
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from autogen_core import AgentId, TopicId

from io_backends import _compat

PACKAGE = Path(_compat.__file__).resolve().parent
FIX = "update io_backends/_compat.py and what uses it"


def changed(what: str) -> str:
    return f"{what} changed: {FIX}"


def parameters(func: Callable[..., object]) -> dict[str, inspect.Parameter]:
    return dict(inspect.signature(func).parameters)


def accepts(func: Callable[..., object], *names: str, keyword_only: tuple[str, ...] = ()) -> bool:
    """Whether ``func`` takes ``names`` (positionally, in that order) and ``keyword_only`` by keyword."""
    params = parameters(func)
    positional = [
        n for n, p in params.items() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and n != "self"
    ]
    if positional[: len(names)] != list(names):
        return False
    return all(n in params and params[n].kind is not inspect.Parameter.POSITIONAL_ONLY for n in keyword_only)


# ---------------------------------------------------------------------------------- autogen-core: serialization


@dataclasses.dataclass
class _Probe:
    text: str
    n: int


def test_serialization_registry_has_the_methods_the_worker_overrides_and_calls() -> None:
    registry_cls = _compat.SerializationRegistry
    assert parameters(registry_cls.__init__).keys() == {"self"}, changed(
        "autogen_core._serialization.SerializationRegistry() (no arguments)"
    )
    expected = {
        "add_serializer": (("serializer",), ()),
        "is_registered": (("type_name", "data_content_type"), ()),
        "type_name": (("message",), ()),
        "serialize": (("message",), ("type_name", "data_content_type")),
        "deserialize": (("payload",), ("type_name", "data_content_type")),
    }
    for name, (positional, keywords) in expected.items():
        method = getattr(registry_cls, name, None)
        assert callable(method), changed(f"SerializationRegistry.{name} (gone)")
        assert accepts(method, *positional, keyword_only=keywords), changed(
            f"SerializationRegistry.{name}{inspect.signature(method)}"
        )


def test_serialization_registry_round_trips_and_says_when_it_has_no_serializer() -> None:
    registry = _compat.SerializationRegistry()
    serializer = _compat.DataclassJsonMessageSerializer(_Probe)
    registry.add_serializer([serializer])
    name = registry.type_name(_Probe("x", 1))
    assert name == serializer.type_name == "_Probe", changed("SerializationRegistry.type_name")
    assert registry.is_registered(name, "application/json"), changed("SerializationRegistry.is_registered")
    data = registry.serialize(_Probe("x", 1), type_name=name, data_content_type="application/json")
    assert registry.deserialize(data, type_name=name, data_content_type="application/json") == _Probe("x", 1), changed(
        "SerializationRegistry.serialize/deserialize"
    )
    assert not registry.is_registered(name, "application/x-protobuf"), changed("SerializationRegistry.is_registered")
    with pytest.raises(ValueError):
        registry.serialize(_Probe("x", 1), type_name="Nobody", data_content_type="application/json")


def test_the_dataclass_serializer_writes_json_dumps_of_asdict_and_keeps_cls() -> None:
    """The worker's fast path writes dataclasses with msgspec only where that is exactly what
    autogen's DataclassJsonMessageSerializer writes: json.dumps(asdict(message))."""
    serializer = _compat.DataclassJsonMessageSerializer(_Probe)
    assert getattr(serializer, "cls", None) is _Probe, changed("DataclassJsonMessageSerializer.cls")
    assert serializer.data_content_type == "application/json", changed("DataclassJsonMessageSerializer's media type")
    message = _Probe('héllo "q" \n', 3)
    assert serializer.serialize(message) == json.dumps(dataclasses.asdict(message)).encode(), changed(
        "DataclassJsonMessageSerializer.serialize (no longer json.dumps(asdict(message)))"
    )


def test_the_pydantic_serializer_keeps_cls() -> None:
    pydantic = pytest.importorskip("pydantic")

    class Model(pydantic.BaseModel):  # type: ignore[misc,name-defined]
        text: str

    serializer = _compat.PydanticJsonMessageSerializer(Model)
    assert getattr(serializer, "cls", None) is Model, changed("PydanticJsonMessageSerializer.cls")
    assert serializer.type_name == "Model", changed("PydanticJsonMessageSerializer.type_name")
    assert serializer.deserialize(serializer.serialize(Model(text="t"))) == Model(text="t"), changed(
        "PydanticJsonMessageSerializer.serialize/deserialize"
    )


# ---------------------------------------------------------------------------------- autogen-core: telemetry


def test_trace_helper_takes_a_provider_and_a_config_and_has_tracer_and_trace_block() -> None:
    assert accepts(_compat.TraceHelper.__init__, "tracer_provider", "instrumentation_builder_config"), changed(
        f"autogen_core._telemetry.TraceHelper{inspect.signature(_compat.TraceHelper.__init__)}"
    )
    assert accepts(
        _compat.TraceHelper.trace_block,
        "operation",
        "destination",
        "parent",
        keyword_only=("attributes", "extraAttributes"),
    ), changed(f"TraceHelper.trace_block{inspect.signature(_compat.TraceHelper.trace_block)}")
    assert accepts(_compat.MessageRuntimeTracingConfig.__init__, "runtime_name"), changed(
        "autogen_core._telemetry.MessageRuntimeTracingConfig(runtime_name)"
    )
    helper = _compat.TraceHelper(None, _compat.MessageRuntimeTracingConfig("Worker Runtime"))
    assert hasattr(helper, "tracer"), changed("TraceHelper.tracer")
    with helper.trace_block("send", AgentId("a", "b"), None, attributes={}, extraAttributes={"message_type": "x"}):
        pass


def test_the_messaging_types_still_name_what_the_worker_passes() -> None:
    operations = set(typing.get_args(_compat.MessagingOperation))
    assert {"create", "send", "publish", "process"} <= operations, changed(
        f"autogen_core MessagingOperation (now {sorted(operations)})"
    )
    destinations = set(typing.get_args(_compat.MessagingDestination))
    assert {AgentId, TopicId, str} <= destinations, changed(f"autogen_core MessagingDestination (now {destinations})")
    keys = set(typing.get_type_hints(_compat.ExtraMessageRuntimeAttributes))
    assert "message_type" in keys, changed(f"autogen_core ExtraMessageRuntimeAttributes (keys now {sorted(keys)})")


def test_get_telemetry_grpc_metadata_is_a_call_with_no_arguments_giving_a_dict() -> None:
    params = parameters(_compat.get_telemetry_grpc_metadata)
    assert all(p.default is not inspect.Parameter.empty for p in params.values()), changed(
        f"autogen_core get_telemetry_grpc_metadata{inspect.signature(_compat.get_telemetry_grpc_metadata)}"
    )
    assert isinstance(_compat.get_telemetry_grpc_metadata(), dict), changed("get_telemetry_grpc_metadata's result")


# ---------------------------------------------------------------------------------- asyncio


def test_ready_callbacks_is_the_queue_call_soon_adds_to_on_asyncio_s_own_loop() -> None:
    loop = asyncio.new_event_loop()
    try:
        ready = _compat.ready_callbacks(loop)
        assert ready is not None, changed(f"asyncio's {type(loop).__name__}._ready (gone, or no longer Sized)")
        before = len(ready)
        loop.call_soon(lambda: None)
        loop.call_soon(lambda: None)
        assert len(ready) == before + 2, changed("asyncio's loop._ready (call_soon no longer adds to it)")
        loop.run_until_complete(asyncio.sleep(0))
        assert len(ready) == 0, changed("asyncio's loop._ready (running the loop no longer empties it)")
    finally:
        loop.close()


def test_ready_callbacks_is_none_on_a_loop_that_does_not_say() -> None:
    class Opaque:
        _ready = object()  # there, but not Sized

    assert _compat.ready_callbacks(Opaque()) is None  # type: ignore[arg-type]
    assert _compat.ready_callbacks(object()) is None  # type: ignore[arg-type]
    uvloop = pytest.importorskip("uvloop")
    loop = uvloop.new_event_loop()
    try:
        assert _compat.ready_callbacks(loop) is None
    finally:
        loop.close()


def test_compat_exports_exactly_what_it_defines() -> None:
    assert sorted(_compat.__all__) == sorted(
        name for name in vars(_compat) if not name.startswith("_") and name not in ("annotations", "asyncio", "Sized")
    )


# ---------------------------------------------------------------------------------- nobody else reaches past _compat

# agentchat/_internals.py holds AgentChat's privates; tests/agentchat/test_contract.py checks them.
EXEMPT = {PACKAGE / "_compat.py", PACKAGE / "agentchat" / "_internals.py"}
PRIVATE_OWNERS = ("autogen_core", "asyncio")


def sources() -> Iterator[Path]:
    for path in sorted(PACKAGE.rglob("*.py")):
        if path not in EXEMPT:
            yield path


def private_uses(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """Imports of autogen-core's or asyncio's private modules and names, attribute reads of a private
    name on one of those modules, and ``._ready`` (or ``getattr(x, "_ready")``) on anything but self."""
    aliases: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")[0]
                if top in PRIVATE_OWNERS:
                    aliases.add(alias.asname or top)
                    if any(part.startswith("_") for part in alias.name.split(".")):
                        yield node.lineno, f"import {alias.name}"
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            parts = node.module.split(".")
            if parts[0] in PRIVATE_OWNERS:
                if any(p.startswith("_") for p in parts):
                    yield node.lineno, f"from {node.module} import ..."
                for alias in node.names:
                    if alias.name.startswith("_"):
                        yield node.lineno, f"from {node.module} import {alias.name}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            base = node.value
            if isinstance(base, ast.Name) and base.id in aliases:
                yield node.lineno, f"{base.id}.{node.attr}"
            elif node.attr == "_ready" and not (isinstance(base, ast.Name) and base.id == "self"):
                yield node.lineno, f"{ast.unparse(node)}"
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "hasattr", "setattr")
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and node.args[1].value == "_ready"
        ):
            yield node.lineno, ast.unparse(node)


def test_no_module_but_compat_uses_autogen_core_or_asyncio_privates() -> None:
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {what}"
        for path in sources()
        for line, what in private_uses(ast.parse(path.read_text(encoding="utf-8")))
    ]
    assert not found, "private autogen-core/asyncio names outside io_backends/_compat.py: " + "; ".join(found)


@pytest.mark.parametrize(
    "source",
    [
        "from autogen_core._serialization import SerializationRegistry",
        "import autogen_core._telemetry",
        "from autogen_core import _type_prefix_subscription",
        "import autogen_core\nautogen_core._serialization",
        "import asyncio as aio\naio._get_running_loop()",
        "from asyncio.base_events import _run_until_complete_cb",
        "loop._ready",
        "len(self.loop._ready)",
        "getattr(loop, '_ready', None)",
    ],
)
def test_the_check_sees_each_kind_of_private_use(source: str) -> None:
    assert list(private_uses(ast.parse(source)))


@pytest.mark.parametrize(
    "source",
    ["from autogen_core import AgentId", "import asyncio\nasyncio.get_running_loop()", "self._ready = []"],
)
def test_the_check_lets_public_names_and_our_own_attributes_be(source: str) -> None:
    assert not list(private_uses(ast.parse(source)))
