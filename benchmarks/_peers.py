"""The peer registry: names, and how a child process loads one (imports happen only here, lazily,
so a missing package makes that one peer "skipped" instead of breaking the benchmark)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from _endpoints import Peer, PeerUnavailable

REPO_ROOT = Path(__file__).resolve().parent.parent
PEER_NAMES: tuple[str, ...] = ("ours", "ours_pure", "ours_asgi", "grpc", "v010", "inprocess", "rawsocket")
PEER_DESCRIPTIONS: dict[str, str] = {
    "ours": "io_backends HttpAgentServer + HttpWorkerAgentRuntime (this project), with whatever speedups are installed",
    "ours_pure": "the same, with AUTOGEN_HTTP_PURE_PYTHON=1: no optional C speedups (plain `pip install`)",
    "ours_asgi": "the same host as an ASGI app (HttpAgentService.asgi_app()) mounted in FastAPI under uvicorn",
    "grpc": "autogen_ext GrpcWorkerAgentRuntimeHost + GrpcWorkerAgentRuntime",
    "v010": "autogen-http-runtime==0.1.0 from PyPI, in its own virtualenv",
    "inprocess": "autogen_core SingleThreadedAgentRuntime, no network (upper bound)",
    "rawsocket": "asyncio TCP ping-pong, length-prefixed frames (floor, RPC only)",
}


def _unavailable(exc: BaseException) -> PeerUnavailable:
    return PeerUnavailable(f"{type(exc).__name__}: {exc}")


def load_peer(name: str) -> Peer:
    """Import and build peer ``name`` inside a benchmark child; PeerUnavailable if it cannot run."""
    if name == "rawsocket":
        from _rawsocket import RawSocketPeer

        return RawSocketPeer()

    from _runtime_peer import RuntimePeer

    if name == "inprocess":
        from _driver_inprocess import InProcessDriver

        return RuntimePeer(name, InProcessDriver, multiproc=False)
    if name == "grpc":
        try:
            from _driver_grpc import GrpcDriver
        except ImportError as exc:
            raise _unavailable(exc) from exc
        return RuntimePeer(name, GrpcDriver)
    if name == "ours_asgi":
        if str(REPO_ROOT) not in sys.path:
            sys.path.insert(0, str(REPO_ROOT))
        try:
            from _driver_ours_asgi import OursAsgiDriver
        except ImportError as exc:  # fastapi and uvicorn: the asgi extra
            raise _unavailable(exc) from exc
        return RuntimePeer(name, OursAsgiDriver)
    if name in ("ours", "ours_pure"):
        if name == "ours_pure":
            os.environ["AUTOGEN_HTTP_PURE_PYTHON"] = "1"  # read when io_backends is imported, below
        # Benchmark the working tree, not whatever io_backends might be installed.
        if str(REPO_ROOT) not in sys.path:
            sys.path.insert(0, str(REPO_ROOT))
        try:
            from _driver_ours import OursDriver
        except ImportError as exc:
            raise _unavailable(exc) from exc
        return RuntimePeer(name, OursDriver)
    if name == "v010":
        try:
            from _driver_v010 import V010Driver
        except ImportError as exc:
            raise _unavailable(exc) from exc
        origin = peer_module_origin(name) or "?"
        if not origin.startswith(sys.prefix):
            # Same top-level name as our shim: make sure we did not pick up the wrong one.
            raise PeerUnavailable(f"autogen_http_runtime came from {origin}, not from {sys.prefix}")
        return RuntimePeer(name, V010Driver)
    raise ValueError(f"unknown peer {name!r}; choose from {', '.join(PEER_NAMES)}")


def peer_module_origin(name: str) -> str | None:
    """Where the package under test was imported from (recorded in results; checks venv isolation)."""
    modules = {
        "ours": "io_backends",
        "ours_pure": "io_backends",
        "ours_asgi": "io_backends",
        "grpc": "autogen_ext",
        "v010": "autogen_http_runtime",
    }
    module = modules.get(name)
    loaded = sys.modules.get(module) if module else None
    if loaded is None:
        return None
    origin: str | None = getattr(loaded, "__file__", None)
    if origin is None:  # a namespace package (e.g. a directory without __init__.py)
        origin = ", ".join(getattr(loaded, "__path__", []))
    return origin
