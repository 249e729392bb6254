"""The host's limits and timeouts default to what docs/PROTOCOL.md section 2.5's table says, read
from the table itself (so the code and the spec cannot drift), for every way a user sets them."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from io_backends import HttpAgentServer, HttpAgentService
from io_backends.sansio import HubSettings
from sansio_runtime import HostEngine

PROTOCOL = Path(__file__).resolve().parents[2] / "docs" / "PROTOCOL.md"
_UNITS = {"": 1, "KiB": 1024, "MiB": 1024 * 1024, "s": 1}


def spec_defaults() -> dict[str, float]:
    """Section 2.5's first table: the setting named in backticks in the first column -> its default."""
    text = PROTOCOL.read_text(encoding="utf-8")
    start = text.index("\n### 2.5 Limits")
    section = text[start : text.index("\n## 3. ", start)]
    defaults: dict[str, float] = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 3:
            continue
        name = re.search(r"\(`([a-z_]+)`", cells[0])
        if name is None:
            continue
        exact = re.search(r"\(([\d,]+)\)", cells[1])  # "4 MiB (4,194,304)"
        if exact is not None:
            defaults[name.group(1)] = int(exact.group(1).replace(",", ""))
            continue
        value = re.fullmatch(r"([\d,.]+) ?(KiB|MiB|s|)", cells[1])
        assert value is not None, f"cannot read the default of {name.group(1)} in: {line}"
        defaults[name.group(1)] = float(value.group(1).replace(",", "")) * _UNITS[value.group(2)]
    return defaults


def test_the_table_names_the_settings() -> None:
    assert set(spec_defaults()) == {
        "max_message_size",
        "max_batch_length",
        "max_pending_calls",
        "max_agent_types_per_connection",
        "max_subscriptions_per_connection",
        "max_outbound_bytes",
        "max_connections",
        "max_connections_per_address",
        "request_head_timeout",
        "request_body_timeout",
        "idle_timeout",
    }, "docs/PROTOCOL.md section 2.5's table changed its settings: update this test's list"


@pytest.mark.parametrize("setting", sorted(spec_defaults()))
def test_each_http_agent_service_argument_defaults_to_the_spec_s_value(setting: str) -> None:
    parameters = inspect.signature(HttpAgentService).parameters
    assert setting in parameters, f"HttpAgentService has no {setting}= (docs/PROTOCOL.md section 2.5 names it)"
    assert parameters[setting].default == spec_defaults()[setting], (
        f"HttpAgentService({setting}=) defaults to {parameters[setting].default}; section 2.5 says "
        f"{spec_defaults()[setting]}"
    )


ENGINE_SETTINGS = (
    "max_message_size",
    "max_batch_length",
    "max_pending_calls",
    "max_agent_types_per_connection",
    "max_subscriptions_per_connection",
)


@pytest.mark.parametrize("setting", sorted(spec_defaults()))
def test_a_default_http_agent_server_runs_with_the_spec_s_values(setting: str) -> None:
    """What a host built with no arguments uses (HttpAgentServer takes some settings from
    gRPC-style options, so its own arguments default to None: the effect is what counts)."""
    service = HttpAgentServer(port=0).service  # not started: nothing is bound
    where = service.engine if setting in ENGINE_SETTINGS else service.hub.settings
    assert getattr(where, setting) == spec_defaults()[setting], setting


def test_the_engine_and_the_hub_default_to_the_spec_s_values_too() -> None:
    spec = spec_defaults()
    engine = HostEngine()
    settings = HubSettings()
    for name in spec:
        assert getattr(engine if name in ENGINE_SETTINGS else settings, name) == spec[name], name
