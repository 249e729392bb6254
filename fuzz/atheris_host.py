"""Coverage-guided fuzzing of the host's input path with atheris (``make fuzz`` runs it, bounded).

Each input is split into chunks and served as one connection: raw HTTP, or (when the first byte
is odd) a WebSocket upgrade followed by the input as frame bytes. Any exception escaping the
harness (including the host's own invariant checks in ``run_connection``) is a crash.

    python fuzz/atheris_host.py -atheris_runs=20000
"""

from __future__ import annotations

import sys
from pathlib import Path

import anyio
import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

with atheris.instrument_imports():
    import h11  # noqa: F401
    import wsproto  # noqa: F401

    import io_backends  # noqa: F401
    import sansio_runtime  # noqa: F401

from fuzz._byte_harness import client_frames, run_connection, upgrade_request

_SEEDS = client_frames(['{"jsonrpc":"2.0","id":1,"method":"runtime.register_agent","params":{"type":"a"}}'])
runs = 0


def test_one_input(data: bytes) -> None:
    global runs
    runs += 1
    if not data:
        return
    provider = atheris.FuzzedDataProvider(data)
    websocket = provider.ConsumeBool()
    cuts = sorted(provider.ConsumeIntInRange(0, 512) for _ in range(provider.ConsumeIntInRange(0, 4)))
    body = provider.ConsumeBytes(4096)
    chunks = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
    if websocket:
        chunks = [upgrade_request(), _SEEDS, *chunks]
    anyio.run(run_connection, chunks)


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    try:
        atheris.Fuzz()
    finally:
        print(f"atheris: {runs} inputs ran without a crash", flush=True)


if __name__ == "__main__":
    main()
