"""Every team type, on the HTTP runtime, yields what it yields on AgentChat's in-process runtime.

The team runs in this process (its worker runtime connected to a host in another process); its
participants are local, or served by one, two or three worker processes. The reference is the
same team on AgentChat's embedded in-process runtime, with the same replayed model answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anyio
import pytest
from autogen_agentchat.base import ChatAgent, TaskResult, Team
from autogen_agentchat.messages import ModelClientStreamingChunkEvent

from io_backends import HttpWorkerAgentRuntime
from io_backends.agentchat import RemoteParticipant

from ._scenarios import NAMES, TEAM_TYPES, make_agent, make_team, normalize
from .conftest import Process

pytestmark = pytest.mark.anyio
TASK = "start"
RUN_TIMEOUT = 60.0


async def collect(team: Team, **kwargs: Any) -> list[Any]:
    with anyio.fail_after(RUN_TIMEOUT):
        return [item async for item in team.run_stream(**kwargs)]


async def reference(scenario: str) -> list[Any]:
    """The stream of ``scenario``'s team on AgentChat's own in-process runtime."""
    return await collect(make_team(scenario, [make_agent(scenario, name) for name in NAMES]), task=TASK)


async def participants(scenario: str, placement: str, runtime: HttpWorkerAgentRuntime) -> Sequence[ChatAgent]:
    if placement == "local":
        return [make_agent(scenario, name) for name in NAMES]
    team = f"{scenario}-{placement}"
    return [await RemoteParticipant.lookup(name, team=team, runtime=runtime) for name in NAMES]


def comparable(scenario: str, stream: list[Any]) -> Any:
    """The stream as data to compare. GraphFlow runs bob and carol at the same time, so between
    them only each one's own order is fixed (as with any runtime, in process or not)."""
    items = normalize(stream)
    if scenario != "graph":
        return items
    by_source: dict[str, list[Any]] = {}
    for item in items[:-1]:
        by_source.setdefault(item["source"], []).append(item)
    result = items[-1]
    return by_source, result["stop_reason"], sorted(map(repr, result["TaskResult"]))


@pytest.mark.parametrize("placement", ["local", "one", "two", "three"])
@pytest.mark.parametrize("scenario", TEAM_TYPES)
async def test_run_stream_yields_what_the_in_process_runtime_yields(
    scenario: str, placement: str, runtime: HttpWorkerAgentRuntime, scenario_workers: list[Process]
) -> None:
    expected = await reference(scenario)
    team = make_team(scenario, await participants(scenario, placement, runtime), runtime)
    got = await collect(team, task=TASK)
    assert comparable(scenario, got) == comparable(scenario, expected)
    # The reference itself did what the scenario is about:
    result = expected[-1]
    assert isinstance(result, TaskResult)
    assert any(isinstance(item, ModelClientStreamingChunkEvent) and item.source == "bob" for item in expected)
    assert {m.source for m in result.messages} >= set(NAMES)
    assert (
        result.stop_reason
        == {
            "round_robin": "Text 'DONE' mentioned",
            "selector": "Text 'DONE' mentioned",
            "swarm": "Handoff to user from carol detected.",
            "graph": "Digraph execution is complete",
            "magentic_one": "r",  # the orchestrator's final ledger's reason
        }[scenario]
    )
