"""io_backends.sansio does no I/O, as the engine does not: importing it loads no event loop, socket
or autogen module, its sources import none, read no clock, and reach no other part of io_backends."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import io_backends

from ..engine.test_purity import _CLOCK, FORBIDDEN, _code_only

PACKAGE = Path(io_backends.__file__).resolve().parent
SANSIO = PACKAGE / "sansio"
SOURCES = sorted(SANSIO.glob("*.py"))
ALLOWED_HERE = {"h11", "wsproto"}  # the HTTP and WebSocket state machines, themselves sans-IO
NOT_HERE = {*FORBIDDEN, "time", "datetime", "threading", "subprocess", "importlib"} - ALLOWED_HERE

# io_backends' own __init__ loads the drivers (asyncio, anyio); the probe stands a bare package in
# its place, so what is measured is io_backends.sansio and what it imports.
_PROBE = """
import json, sys, types
import msgspec
package = types.ModuleType("io_backends")
package.__path__ = [{package!r}]
sys.modules["io_backends"] = package
before = set(sys.modules)
{import_line}
print(json.dumps(sorted(set(sys.modules) - before)))
"""


def imported_by(import_line: str) -> set[str]:
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE.format(package=str(PACKAGE), import_line=import_line)],
        # The optional C masking (the speedups extra) comes from the websockets package, whose
        # __init__ imports its own asyncio client; that says nothing about this layer.
        env={**os.environ, "AUTOGEN_HTTP_PURE_PYTHON": "1"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=PACKAGE.parent,
    )
    return set(json.loads(proc.stdout))


def forbidden(modules: set[str]) -> set[str]:
    return {m for m in modules if m.split(".", 1)[0] in FORBIDDEN and m.split(".", 1)[0] not in ALLOWED_HERE}


def test_importing_io_backends_sansio_loads_no_io_module() -> None:
    added = imported_by("import io_backends.sansio")
    assert "io_backends.sansio._hub" in added and "io_backends.sansio._websocket" in added
    assert forbidden(added) == set(), f"importing io_backends.sansio imported {sorted(forbidden(added))}"
    assert {m for m in added if m.startswith("io_backends.")} <= {
        f"io_backends.sansio{'' if p.stem == '__init__' else '.' + p.stem}" for p in SOURCES
    }


def test_the_probe_sees_a_forbidden_import() -> None:
    assert "asyncio" in forbidden(imported_by("import io_backends.sansio, asyncio"))


def test_sources_found() -> None:
    assert {p.name for p in SOURCES} >= {"__init__.py", "_http.py", "_websocket.py", "_hub.py", "_connection.py"}


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_no_io_or_clock_imports_and_nothing_from_the_drivers(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".", 1)[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module:
                imported.add(node.module.split(".", 1)[0])
                assert not node.module.startswith("io_backends."), f"{path.name}: from {node.module} import ..."
            assert node.level <= 1, f"{path.name}: imports from outside io_backends.sansio (level {node.level})"
    assert imported & NOT_HERE == set()


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_no_clock_reads(path: Path) -> None:
    assert _CLOCK.findall(_code_only(path.read_text(encoding="utf-8"))) == []
