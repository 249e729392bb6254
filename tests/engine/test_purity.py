"""The engine does no I/O: importing it pulls in no event loop, socket or autogen module, and its
source neither imports such modules nor reads a clock."""

from __future__ import annotations

import ast
import io
import json
import re
import subprocess
import sys
import tokenize
from pathlib import Path

import pytest

import sansio_runtime

FORBIDDEN = ("asyncio", "anyio", "trio", "socket", "ssl", "selectors", "h11", "wsproto", "autogen_core")
PACKAGE_DIR = Path(sansio_runtime.__file__).resolve().parent
SOURCES = sorted(PACKAGE_DIR.glob("*.py"))

_PROBE = """
import json, sys
{preload}
before = set(sys.modules)
{import_line}
print(json.dumps({{"before": sorted(before), "after": sorted(sys.modules)}}))
"""
# The engine's one dependency, loaded first: on Python 3.10 msgspec's import of uuid loads
# platform, hence subprocess and selectors, which says nothing about the engine.
_DEPENDENCIES = "import msgspec"


def _modules(import_line: str, preload: str = _DEPENDENCIES) -> tuple[set[str], set[str]]:
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE.format(import_line=import_line, preload=preload)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=PACKAGE_DIR.parent,
    )
    data = json.loads(proc.stdout)
    return set(data["before"]), set(data["after"])


def _forbidden(names: set[str]) -> set[str]:
    # Top-level packages only: msgspec imports uuid, which loads the C helper _socket; that is no I/O.
    return {m for m in names if m.split(".", 1)[0] in FORBIDDEN}


def test_import_adds_no_io_modules() -> None:
    _base_before, base_after = _modules("pass")
    before, after = _modules("import sansio_runtime")
    assert "sansio_runtime" in after and "sansio_runtime._host" in after and "sansio_runtime._worker" in after
    added = after - before
    assert _forbidden(added) == set(), f"importing sansio_runtime imported {sorted(_forbidden(added))}"
    # compared with an interpreter that imports only msgspec, no forbidden module appears either
    assert _forbidden(after) <= _forbidden(base_after)


def test_the_probe_can_see_a_forbidden_import() -> None:
    before, after = _modules("import sansio_runtime, asyncio")
    assert "asyncio" in _forbidden(after - before)


def _code_only(source: str) -> str:
    """The source without comments and string literals (docstrings included)."""
    out = []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type in (tokenize.COMMENT, tokenize.STRING):
            continue
        out.append(tok.string)
    return " ".join(out)


def test_sources_found() -> None:
    assert {p.name for p in SOURCES} >= {"__init__.py", "_host.py", "_worker.py", "_wire.py", "_deadlines.py"}


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_no_io_or_clock_imports(path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".", 1)[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imported.add(node.module.split(".", 1)[0])
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "__import__":
            pytest.fail(f"{path.name}: dynamic import")
    assert imported & set(FORBIDDEN) == set()
    assert imported & {"time", "datetime", "threading", "os", "subprocess", "importlib"} == set()


_CLOCK = re.compile(
    r"\btime\s*\.|\bdatetime\s*\.\s*now\b|\bmonotonic\b|\bperf_counter\b|\butcnow\b|\bloop\s*\.\s*time\b"
)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_no_clock_reads(path: Path) -> None:
    code = _code_only(path.read_text())
    assert _CLOCK.findall(code) == []


def test_clock_pattern_catches_clock_reads() -> None:
    for snippet in [
        "now = time.monotonic()",
        "x = datetime.now()",
        "t = time . time ( )",
        "from time import monotonic",
    ]:
        assert _CLOCK.search(_code_only(snippet)), snippet
    assert not _CLOCK.search(_code_only('"""time. is passed in; monotonic clock"""  # time.monotonic()\nx = 1'))
