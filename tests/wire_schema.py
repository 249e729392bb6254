"""Every frame the engines produce during the test suite matches ``docs/protocol.schema.json``.

A pytest plugin (loaded by the repository's root ``conftest.py``): it wraps the input methods of
:class:`HostEngine` (checking what each one queued) and :meth:`WorkerEngine.data_to_send`, and validates
every distinct frame they produce as it is produced (in a test that makes more than 300
distinct frames, one in 100 of the rest), the host's against ``#/$defs/HostToWorker`` and the
worker's against ``#/$defs/WorkerToHost``. A frame that does not match fails the test that made
it, naming the frame and why. (Not while ``tracemalloc`` traces: a memory test would be slowed
tenfold.)

One allowance: the host forwards what it does not read byte for byte (a call's params, an
event, a target's answer). When a test feeds the host a frame that itself breaks the schema
(fuzzing does), a forwarded frame carrying it may break the schema too; such a relay is only
checked when the frame that caused it was valid. Everything the host builds itself (its own
answers and errors, cancellations, batch answers) is always checked, whatever the input.
"""

from __future__ import annotations

import functools
import inspect
import json
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from sansio_runtime import HostEngine, Send, WorkerEngine

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "docs" / "protocol.schema.json"
SCHEMA: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())


def validator(definition: str) -> jsonschema.protocols.Validator:
    return jsonschema.Draft202012Validator({"$ref": f"#/$defs/{definition}", "$defs": SCHEMA["$defs"]})


HOST_TO_WORKER = validator("HostToWorker")
WORKER_TO_HOST = validator("WorkerToHost")


@dataclass(frozen=True, slots=True)
class Produced:
    """One frame an engine produced; ``cause`` is the frame the host was handling, if any."""

    by_host: bool
    frame: bytes
    cause: bytes | str | None


FULL_BUDGET = 300
"""Distinct frames validated per test; beyond that one in SAMPLE_EVERY (a flood of events stays cheap)."""
SAMPLE_EVERY = 100

_found: list[str] = []
_seen: set[tuple[bool, int, int]] = set()  # (by host, length, hash): frames themselves are not kept
_budget = {"distinct": 0}
stats = {"produced": 0, "validated": 0, "relays_of_invalid_input": 0}


def _check(item: Produced) -> None:
    """Validate one frame as it is produced (nothing is kept: memory tests see no growth)."""
    stats["produced"] += 1
    if tracemalloc.is_tracing():
        return  # a memory test: validating under tracemalloc would cost it seconds
    key = (item.by_host, len(item.frame), hash(item.frame))
    if key in _seen:
        return
    _budget["distinct"] += 1
    if _budget["distinct"] > FULL_BUDGET and _budget["distinct"] % SAMPLE_EVERY:
        return
    if len(_seen) < 200_000:
        _seen.add(key)
    _found.extend(problems([item]))


def _record_host(method: Callable[..., Any]) -> Callable[..., Any]:
    """Check what one input to the host queued (the queue grows by exactly that, until taken)."""

    @functools.wraps(method)
    def recording(self: HostEngine, *args: Any, **kwargs: Any) -> Any:
        queue = self._out
        before = len(queue)
        result = method(self, *args, **kwargs)
        cause = args[1] if method.__name__ == "receive" and len(args) > 1 else None
        for item in queue[before:]:
            if isinstance(item, Send) and not self.is_peer(item.client):  # (to a peer host: docs/CLUSTER.md)
                _check(Produced(True, item.data, cause))
        return result

    return recording


def _record_worker(method: Callable[[WorkerEngine], list[bytes]]) -> Callable[[WorkerEngine], list[bytes]]:
    @functools.wraps(method)
    def recording(self: WorkerEngine) -> list[bytes]:
        frames = method(self)
        for frame in frames:
            _check(Produced(False, frame, None))
        return frames

    return recording


def install() -> list[str]:
    """Wrap the engines' producing methods; returns the names wrapped."""
    wrapped = []
    for name, method in inspect.getmembers(HostEngine, inspect.isfunction):
        if not name.startswith("_") and name != "data_to_send":  # every input that may queue output
            setattr(HostEngine, name, _record_host(method))
            wrapped.append(f"HostEngine.{name}")
    WorkerEngine.data_to_send = _record_worker(WorkerEngine.data_to_send)  # type: ignore[method-assign]
    wrapped.append("WorkerEngine.data_to_send")
    return wrapped


def _is_response(message: Any) -> bool:
    return isinstance(message, dict) and "method" not in message and ("result" in message or "error" in message)


def _is_relay(frame: Any, cause: bytes | str) -> bool:
    """Whether the host forwarded (part of) ``frame`` unread from ``cause``: a call or an event it
    routed, or a target's answer it relays (alone, or gathered into a /v1/rpc body)."""
    if isinstance(frame, dict) and frame.get("method") in ("agent.call", "agent.event"):
        return True
    try:
        received = _loads(cause)
    except (ValueError, RecursionError):
        return False
    answers = frame if isinstance(frame, list) else [frame]
    causes = received if isinstance(received, list) else [received]
    return any(_is_response(m) for m in answers) and any(_is_response(m) for m in causes)


def _int(text: str) -> int:
    """JSON integers as Python reads them, and a stand-in for one too long for int() (payload data)."""
    return int(text) if len(text) < 4000 else 1


def _loads(data: bytes | str) -> Any:
    return json.loads(data, parse_int=_int)


def _valid(check: jsonschema.protocols.Validator, data: bytes | str) -> bool:
    try:
        return bool(check.is_valid(_loads(data)))
    except (ValueError, RecursionError):
        return False


def problems(produced: list[Produced]) -> Iterator[str]:
    """Why each of ``produced`` that breaks the schema does (see the module's docstring)."""
    for item in produced:
        check = HOST_TO_WORKER if item.by_host else WORKER_TO_HOST
        try:
            frame = _loads(item.frame)
            valid = check.is_valid(frame)
        except RecursionError:
            continue  # a forwarded frame nested deeper than Python's json and jsonschema follow (fuzzing)
        except ValueError as exc:
            yield f"{'host' if item.by_host else 'worker'} frame is not JSON ({exc}): {item.frame[:300]!r}"
            continue
        stats["validated"] += 1
        if valid:
            continue
        cause = item.cause
        if item.by_host and cause is not None and _is_relay(frame, cause) and not _valid(WORKER_TO_HOST, cause):
            stats["relays_of_invalid_input"] += 1
            continue
        error = jsonschema.exceptions.best_match(check.iter_errors(frame))
        where = "#/$defs/HostToWorker" if item.by_host else "#/$defs/WorkerToHost"
        yield (
            f"{'HostEngine' if item.by_host else 'WorkerEngine'} produced a frame that does not match "
            f"docs/protocol.schema.json {where}: {item.frame[:300]!r}: {error.message if error else '?'}"
        )


def pytest_configure(config: pytest.Config) -> None:
    install()


@pytest.fixture(autouse=True)
def _frames_match_the_wire_schema() -> Iterator[None]:
    del _found[:]
    _budget["distinct"] = 0
    yield
    found = _found[:]
    del _found[:]
    assert not found, "\n".join(found[:5])


def pytest_terminal_summary(terminalreporter: Any) -> None:
    terminalreporter.write_line(
        f"wire schema: {stats['produced']} frames produced by the engines, {stats['validated']} distinct ones "
        f"validated against docs/protocol.schema.json ({stats['relays_of_invalid_input']} relays of invalid "
        "test input not held to it)"
    )
