"""Unit tests of io_backends' parts, on asyncio (what the worker runtime runs on)."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
