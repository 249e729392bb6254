"""Every code block in the README runs as written.

The convention, which this test enforces: every fenced block names its language; every
```` ```python ```` block is a complete program (imports included, ``asyncio.run(...)`` where it
awaits), run here as is, each in a fresh interpreter, from an empty directory, against the
installed package; it must exit 0 and print no traceback or warning. Examples start their own host
on port 0, so they run anywhere, side by side. ``sh`` blocks may only name ``make`` targets that
exist. (There are no fragments: a block that is not a whole program fails here.)
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
LANGUAGES = {"python", "sh", "text", "diff", "json"}

_FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```\s*$", re.MULTILINE | re.DOTALL)


def blocks() -> list[tuple[str, int, str]]:
    """(language, line number, code) of every fenced block."""
    text = README.read_text()
    return [(m.group(1).strip(), text.count("\n", 0, m.start()) + 1, m.group(2)) for m in _FENCE.finditer(text)]


PYTHON = [(line, code) for language, line, code in blocks() if language == "python"]


def test_every_block_names_a_language_and_there_are_python_ones() -> None:
    found = blocks()
    assert all(language in LANGUAGES for language, _, _ in found), [(lang, line) for lang, line, _ in found]
    assert len(PYTHON) >= 3
    # an unclosed or nested fence would hide the code after it from this test
    assert README.read_text().count("\n```") == 2 * len(found)


@pytest.mark.parametrize(("line", "code"), PYTHON, ids=[f"README.md:{line}" for line, _ in PYTHON])
def test_python_block_runs_as_written(line: int, code: str, tmp_path: Path) -> None:
    script = tmp_path / f"readme_{line}.py"
    script.write_text(code)
    result = subprocess.run(
        [sys.executable, "-X", "dev", "-W", "default", str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result.returncode == 0, f"README.md:{line} exited {result.returncode}:\n{result.stdout}{result.stderr}"
    for noise in ("Traceback", "Warning", "never awaited", "Task was destroyed"):
        assert noise not in result.stderr, f"README.md:{line}:\n{result.stderr}"


def test_make_targets_named_in_shell_blocks_exist() -> None:
    targets = set(re.findall(r"^([A-Za-z][\w-]*):", (ROOT / "Makefile").read_text(), re.MULTILINE))
    for language, line, code in blocks():
        if language == "sh":
            for target in re.findall(r"^make ([\w-]+)", code, re.MULTILINE):
                assert target in targets, f"README.md:{line}: make {target}"
