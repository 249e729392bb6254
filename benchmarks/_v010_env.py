"""The ``v010`` peer's own virtualenv, made on demand at ``.bench-venvs/v010`` (gitignored).

``autogen-http-runtime==0.1.0`` installs the top-level package ``autogen_http_runtime``, the same
name as this project's compatibility shim, so it can never share an environment with our code.
``autogen-core`` is pinned to the version of the benchmarking environment, so every peer runs
the same core.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from _peers import REPO_ROOT

VENV_DIR = REPO_ROOT / ".bench-venvs" / "v010"
REQUIREMENT = "autogen-http-runtime==0.1.0"
READY_MARKER = VENV_DIR / ".bench-ready"
CREATE_TIMEOUT_S = 120.0
INSTALL_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class V010Env:
    python: Path | None
    skip_reason: str | None = None


def _requirements() -> list[str]:
    try:
        return [REQUIREMENT, f"autogen-core=={metadata.version('autogen-core')}"]
    except metadata.PackageNotFoundError:
        return [REQUIREMENT]


def _shown() -> str:
    return os.path.relpath(VENV_DIR, REPO_ROOT)


def _python() -> Path:
    return VENV_DIR / "bin" / "python"


def _ready() -> bool:
    wanted = " ".join(_requirements())
    return _python().exists() and READY_MARKER.exists() and READY_MARKER.read_text().strip() == wanted


def _run(command: list[str], timeout_s: float) -> str | None:
    """Run a provisioning step; return a short failure reason, or None on success."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return f"`{' '.join(command[:4])} …` timed out after {timeout_s:.0f}s"
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"
    if done.returncode != 0:
        errors = [line for line in done.stderr.splitlines() if "ERROR" in line] or done.stderr.splitlines()
        return f"exit {done.returncode}: {(errors[-1] if errors else '').strip()[:300]}"
    return None


def ensure_v010_env(install: bool, log: Callable[[str], None]) -> V010Env:
    """The venv's interpreter, creating and filling the venv first if allowed and needed."""
    if _ready():
        return V010Env(_python())
    if not install:
        return V010Env(
            None,
            f"{_shown()} not provisioned; name v010 in --only (without --no-install) to create it",
        )
    requirements = _requirements()
    log(f"v010: creating {_shown()} and installing {' '.join(requirements)} …")
    READY_MARKER.unlink(missing_ok=True)
    if not _python().exists():
        failure = _run([sys.executable, "-m", "venv", str(VENV_DIR)], CREATE_TIMEOUT_S)
        if failure:
            return V010Env(None, f"python -m venv failed: {failure}")
    pip = [str(_python()), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    failure = _run([*pip, *requirements], INSTALL_TIMEOUT_S)
    if failure:
        return V010Env(None, f"pip install {' '.join(requirements)} failed: {failure}")
    READY_MARKER.write_text(" ".join(requirements) + "\n")
    log("v010: virtualenv ready")
    return V010Env(_python())
