"""docs/A2A.md section 6 is what a2a-sdk's client and server exchange: capture it again and compare
(ids, times, ports and ETags aside). If a2a-sdk changes its wire, this fails with the difference."""

from __future__ import annotations

import difflib
import re
from pathlib import Path

import pytest

from .capture_wire import capture, render
from .conftest import RemoteAgent

pytestmark = pytest.mark.anyio

DOC = Path(__file__).resolve().parents[2] / "docs" / "A2A.md"
BEGIN, END = "<!-- wire-oracle:begin -->\n", "<!-- wire-oracle:end -->"
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
VARYING = [
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z"), "<time>"),
    (re.compile(r"127\.0\.0\.1:\d+"), "127.0.0.1:<port>"),
    (re.compile(r'W/\\"[0-9a-f]{64}\\"'), "<etag>"),
]


def normalized(text: str) -> str:
    """``text`` with what differs from run to run replaced: each UUID by ``<id-N>`` (N by first
    appearance, so the same id stays the same name), times, ports, ETags."""
    names: dict[str, str] = {}
    text = UUID.sub(lambda m: names.setdefault(m.group(0), f"<id-{len(names) + 1}>"), text)
    for pattern, placeholder in VARYING:
        text = pattern.sub(placeholder, text)
    return text


def documented() -> str:
    doc = DOC.read_text()
    return doc[doc.index(BEGIN) + len(BEGIN) : doc.index(END)]


async def test_the_documented_wire_is_what_a2a_sdk_sends(remote_agent: RemoteAgent, legacy_agent: RemoteAgent) -> None:
    exchanges = await capture(remote_agent.url) + await capture(legacy_agent.url, "v0.3 ")
    fresh = normalized(render(exchanges).rstrip("\n") + "\n")
    expected = normalized(documented())
    if fresh != expected:
        diff = "".join(
            difflib.unified_diff(expected.splitlines(True), fresh.splitlines(True), "docs/A2A.md", "now", n=2)
        )
        pytest.fail(
            "a2a-sdk's wire differs from docs/A2A.md section 6: check the mapping, then regenerate the section with "
            f"python tests/a2a/capture_wire.py\n{diff}"
        )


def test_normalizing_keeps_the_identity_of_ids() -> None:
    a, b = "0f0e5c2a-1111-4222-8333-444455556666", "9f0e5c2a-1111-4222-8333-444455556666"
    assert normalized(f"{a} {b} {a} 127.0.0.1:4242 2026-12-01T22:22:25.922163Z") == (
        "<id-1> <id-2> <id-1> 127.0.0.1:<port> <time>"
    )
