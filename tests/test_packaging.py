"""What a plain install gives: every import the packages make is declared, and the command line
says what to install when an optional part is missing.

The wheel itself is installed into a fresh virtual environment without extras and run from
outside the checkout by ``.ci/wheel_smoke.py`` (from ``.ci/run``); these tests catch the same
class of defect in the source tree, in a second.
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from io_backends.host import _cli as cli

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("sansio_runtime", "io_backends", "autogen_http_runtime")
DISTRIBUTION = "autogen-http-runtime-ng"
EXTRA_PACKAGES = {"io_backends/agentchat": "agentchat", "io_backends/a2a": "a2a", "io_backends/cluster": "cluster"}
"""Subpackages that only work with an extra installed: their imports may come from that extra."""


def _imports(tree: ast.AST, optional: bool = False) -> Iterator[tuple[str, bool, int]]:
    """(top-level module, whether the import is optional, line) for every absolute import.

    An import inside ``try: ... except ImportError`` is optional; one under ``if TYPE_CHECKING:``
    never runs and is skipped.
    """
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from (item for child in node.orelse for item in _imports(child, optional))
            continue
        if isinstance(node, ast.Try):
            catches = {ast.unparse(h.type) for h in node.handlers if h.type is not None}
            guarded = optional or bool(catches & {"ImportError", "ModuleNotFoundError"})
            for child in node.body:
                yield from _imports_of(child, guarded)
            for child in (*node.orelse, *node.finalbody, *node.handlers):
                yield from _imports_of(child, optional)
            continue
        yield from _imports_of(node, optional)


def _imports_of(node: ast.AST, optional: bool) -> Iterator[tuple[str, bool, int]]:
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name.split(".")[0], optional, node.lineno
    elif isinstance(node, ast.ImportFrom):
        if node.level == 0 and node.module is not None:
            yield node.module.split(".")[0], optional, node.lineno
    else:
        yield from _imports(node, optional)


def _declared() -> tuple[set[str], set[str]]:
    """The distributions the package requires, and those only an extra requires (normalized names)."""
    required: set[str] = set()
    extras: set[str] = set()
    for requirement in importlib.metadata.requires(DISTRIBUTION) or []:
        name = _normalize(re.split(r"[\s;<>=!~\[(]", requirement, maxsplit=1)[0])
        (extras if "extra ==" in requirement else required).add(name)
    return required, extras


def _declared_by(extra: str) -> set[str]:
    """The distributions the extra named ``extra`` requires (normalized names)."""
    return {
        _normalize(re.split(r"[\s;<>=!~\[(]", requirement, maxsplit=1)[0])
        for requirement in importlib.metadata.requires(DISTRIBUTION) or []
        if re.search(rf"extra == ['\"]{extra}['\"]", requirement)
    }


def _providers() -> dict[str, set[str]]:
    """Top-level module name -> the installed distributions that provide it (normalized names).

    Read from each distribution's file list: ``packages_distributions()`` of Python 3.10 only
    reads ``top_level.txt``, which many wheels (autogen-core's, opentelemetry's) do not have.
    """
    providers: dict[str, set[str]] = {}
    for dist in importlib.metadata.distributions():
        for file in dist.files or ():
            top = file.parts[0] if len(file.parts) > 1 else file.name.removesuffix(".py")
            if top.endswith((".dist-info", ".egg-info", ".data")) or top in ("..", "__pycache__"):
                continue
            providers.setdefault(top.split(".")[0], set()).add(_normalize(dist.metadata["Name"]))
    return providers


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_import_of_the_packages_is_declared() -> None:
    required, extras = _declared()
    providers = _providers()
    ours = set(PACKAGES)
    problems: list[str] = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            extra = next((e for p, e in EXTRA_PACKAGES.items() if relative.startswith(p + "/")), None)
            available = required | (set() if extra is None else _declared_by(extra))
            for module, optional, line in _imports(ast.parse(path.read_text(), str(path))):
                if module in ours or module in sys.stdlib_module_names or module == "__future__":
                    continue
                where = f"{path.relative_to(ROOT)}:{line} imports {module}"
                # An optional module that is not installed here is looked up by its own name.
                names = providers.get(module, set()) or ({module} if optional else set())
                if not names:
                    problems.append(f"{where}, which no installed distribution provides")
                elif optional and not names & (required | extras):
                    problems.append(f"{where} (optional), provided by {sorted(names)}: declare it in an extra")
                elif not optional and not names & available:
                    place = "[project] dependencies" if extra is None else f"the {extra} extra"
                    problems.append(f"{where}, provided by {sorted(names)}: declare it in {place}")
    assert not problems, "\n".join(problems)


def test_the_import_check_sees_an_undeclared_import(tmp_path: Path) -> None:
    """The check above can fail: a module importing sniffio (not declared) is reported."""
    tree = ast.parse("import asyncio\nimport sniffio\ntry:\n    import websockets\nexcept ImportError:\n    pass\n")
    assert list(_imports(tree)) == [("asyncio", False, 1), ("sniffio", False, 2), ("websockets", True, 4)]
    required, _ = _declared()
    assert "sniffio" not in required


def test_the_typed_marker_ships_with_every_package() -> None:
    for package in PACKAGES:
        assert (ROOT / package / "py.typed").is_file(), package
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'\[tool\.setuptools\.package-data\]\s*\n"\*" = \["py\.typed"\]', pyproject)


def test_trio_extra_is_declared() -> None:
    _, extras = _declared()
    assert "trio" in extras
    assert any(r.startswith("trio") and 'extra == "trio"' in r for r in importlib.metadata.requires(DISTRIBUTION) or [])


def test_backend_trio_without_trio_says_which_extra_to_install() -> None:
    """As a plain install meets it (trio hidden from the import system here): one line, exit 2."""
    script = (
        "import importlib.util, sys\n"
        "real = importlib.util.find_spec\n"
        "importlib.util.find_spec = lambda name, *a: None if name == 'trio' else real(name, *a)\n"
        "from io_backends.__main__ import main\n"
        "main(['--backend', 'trio', '--port', '0'])\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result
    assert result.stderr.count("\n") == 1, result.stderr
    assert "pip install 'autogen-http-runtime-ng[trio]'" in result.stderr


def test_help_names_the_trio_extra(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--backend" in out and "autogen-http-runtime-ng[trio]" in out


def test_otlp_without_the_exporter_says_which_extra_to_install() -> None:
    """``--otlp-endpoint`` as a plain install meets it (the exporter hidden here): one line, exit 2."""
    script = (
        "import sys\n"
        "sys.modules['opentelemetry.exporter.otlp.proto.http.trace_exporter'] = None\n"
        "from io_backends.__main__ import main\n"
        "main(['--otlp-endpoint', 'http://127.0.0.1:4318', '--port', '0'])\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result
    assert result.stderr.count("\n") == 1, result.stderr
    assert "pip install 'autogen-http-runtime-ng[otlp]'" in result.stderr


def test_the_ecosystem_extras_are_declared_and_the_core_needs_none_of_them() -> None:
    required, _ = _declared()
    for extra, distribution in (
        ("asgi", "fastapi"),
        ("asgi", "uvicorn"),
        ("metrics", "prometheus-client"),
        ("otlp", "opentelemetry-exporter-otlp-proto-http"),
    ):
        assert distribution in _declared_by(extra), (extra, distribution)
        assert distribution not in required, distribution
