"""Inside one fresh benchmark child process: run every workload for one peer in one mode.

Talks to the parent through stdout lines only: ``#progress <json>`` while running and one
``#result <json>`` at the end. Everything else (library logs, tracebacks) goes to stderr.
"""

from __future__ import annotations

import asyncio
import json
import platform
import sys
import traceback
from dataclasses import dataclass
from importlib import metadata
from typing import Any, cast

from _config import Mode, WorkloadSpec
from _endpoints import NotApplicable, Peer, PeerUnavailable
from _peers import load_peer, peer_module_origin
from _roles import role_spec_from_json
from _workloads import run_publish, run_rpc

VERSIONED_PACKAGES = (
    "autogen-core",
    "autogen-ext",
    "grpcio",
    "autogen-http-runtime",
    "autogen-http-runtime-ng",
    "websockets",
    "uvloop",
)


@dataclass(frozen=True)
class ChildSpec:
    peer: str
    mode: Mode
    workloads: tuple[WorkloadSpec, ...]

    def to_json(self) -> str:
        return json.dumps({"peer": self.peer, "mode": self.mode, "workloads": [w.to_json() for w in self.workloads]})

    @classmethod
    def from_json(cls, text: str) -> ChildSpec:
        data = json.loads(text)
        workloads = tuple(WorkloadSpec.from_json(w) for w in data["workloads"])
        return cls(peer=data["peer"], mode=cast(Mode, data["mode"]), workloads=workloads)


def emit(tag: str, payload: dict[str, Any]) -> None:
    print(f"#{tag} {json.dumps(payload)}", flush=True)


def _environment(peer: str) -> dict[str, Any]:
    versions: dict[str, str] = {}
    for package in VERSIONED_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "executable": sys.executable,
        "packages": versions,
        "module_origin": peer_module_origin(peer),
    }
    wscore = sys.modules.get("io_backends.sansio._masking")
    if wscore is not None:
        env["frame_masking"] = getattr(wscore, "MASK_IMPLEMENTATION", None)
    return env


async def _run_workload(peer: Peer, mode: Mode, spec: WorkloadSpec) -> dict[str, Any]:
    def progress(done: int, total: int) -> None:
        emit("progress", {"workload": spec.name, "done": done, "total": total})

    if spec.kind == "rpc":
        async with peer.rpc_topology(mode) as client:
            return await run_rpc(client, spec, progress)
    if not peer.supports_pubsub:
        raise NotApplicable(f"{peer.name} has no publish/subscribe")
    async with peer.pubsub_topology(mode, spec.subscribers, spec.subscriber_workers) as ends:
        return await run_publish(ends.publisher, ends.deliveries, spec, progress)


async def run_child(spec: ChildSpec) -> dict[str, Any]:
    result: dict[str, Any] = {"peer": spec.peer, "mode": spec.mode, "status": "ok", "reason": None}
    try:
        peer = load_peer(spec.peer)
    except PeerUnavailable as exc:
        result.update(status="skipped", reason=str(exc), env=_environment(spec.peer))
        return result
    result["env"] = _environment(spec.peer)

    workloads: dict[str, Any] = {}
    for workload in spec.workloads:
        emit("progress", {"workload": workload.name, "done": 0, "total": workload.count})
        budget = workload.budget_s()
        try:
            outcome = await asyncio.wait_for(_run_workload(peer, spec.mode, workload), budget)
            outcome["status"] = "ok"
        except NotApplicable as exc:
            outcome = {"status": "n/a", "reason": str(exc)}
        except asyncio.TimeoutError:
            outcome = {"status": "failed", "reason": f"timed out after {budget:.0f}s"}
        except Exception as exc:
            traceback.print_exc()
            outcome = {"status": "failed", "reason": f"{type(exc).__name__}: {exc}"}
        workloads[workload.name] = outcome
    result["workloads"] = workloads
    return result


def child_main(spec_json: str) -> int:
    spec = ChildSpec.from_json(spec_json)
    result = asyncio.run(run_child(spec))
    emit("result", result)
    return 0


def role_main(spec_json: str) -> int:
    """Entry point of a ``--mode multiproc`` helper process (host or callee worker)."""
    spec = role_spec_from_json(spec_json)
    asyncio.run(load_peer(spec.peer).run_role(spec))
    return 0
