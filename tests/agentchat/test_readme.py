"""The README's AgentChat example runs as printed (from outside the checkout, as a user runs it)."""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_agentchat_example_prints_what_the_readme_says() -> None:
    section = README.read_text().split("## AgentChat teams", 1)[1].split("\n## ", 1)[0]
    script, printed = re.findall(r"```(?:python|text)?\n(.*?)```", section, re.DOTALL)[:2]
    with tempfile.TemporaryDirectory() as elsewhere:
        result = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=elsewhere
        )
    assert result.returncode == 0, result.stderr
    assert result.stdout == printed
