"""A team's life with participants in other processes: reset, pause/resume, state saved on one set
of workers and loaded on a fresh set, token streaming, custom message types, and workers that are
missing or killed mid-turn."""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest
from autogen_agentchat.base import ChatAgent, TaskResult
from autogen_agentchat.conditions import MaxMessageTermination
from autogen_agentchat.messages import (
    BaseChatMessage,
    ModelClientStreamingChunkEvent,
    StructuredMessage,
    TextMessage,
)
from autogen_agentchat.teams import RoundRobinGroupChat

from io_backends import HttpWorkerAgentRuntime
from io_backends.agentchat import ParticipantUnavailableError, RemoteParticipant

from ._scenarios import Plan, Verdict, make_agent, make_special, make_team, normalize
from .conftest import Process, start_workers
from .test_teams import RUN_TIMEOUT, collect

pytestmark = pytest.mark.anyio


async def remote(runtime: HttpWorkerAgentRuntime, team: str, *names: str) -> list[ChatAgent]:
    return [await RemoteParticipant.lookup(name, team=team, runtime=runtime) for name in names]


def first(stream: list[Any], source: str) -> BaseChatMessage:
    return next(m for m in stream if isinstance(m, BaseChatMessage) and m.source == source)


@pytest.mark.parametrize("placement", ["local", "two"])
async def test_reset_clears_every_participant_and_the_team_runs_again(
    placement: str, runtime: HttpWorkerAgentRuntime, scenario_workers: list[Process]
) -> None:
    local = [make_agent("round_robin", name) for name in ("alice", "bob", "carol")]
    reference = make_team("round_robin", local, max_messages=5)
    expected = [await collect(reference, task="start")]
    await reference.reset()
    expected.append(await collect(reference, task="start"))

    if placement == "local":
        agents = [make_agent("round_robin", name) for name in ("alice", "bob", "carol")]
    else:
        agents = await remote(runtime, "round_robin-two", "alice", "bob", "carol")
    team = make_team("round_robin", agents, runtime, max_messages=5)
    got = [await collect(team, task="start")]
    await team.reset()
    got.append(await collect(team, task="start"))

    assert normalize(got) == normalize(expected)
    # The served agents forgot the first run: alice's prompt is as short as it was the first time.
    assert first(got[1], "alice").models_usage == first(got[0], "alice").models_usage
    assert first(got[1], "alice").to_text() == "alice: seven"


@pytest.mark.parametrize("placement", ["local", "remote"])
async def test_state_saved_on_one_set_of_workers_continues_on_a_fresh_set(
    placement: str, host_address: str, runtime: HttpWorkerAgentRuntime, workers: list[Process]
) -> None:
    """remote: the participants' workers are replaced; local: the team's own worker is."""
    names = ("alice", "bob", "carol")
    reference = make_team("round_robin", [make_agent("round_robin", n) for n in names], max_messages=4)
    await collect(reference, task="start")
    expected_state = await reference.save_state()
    resumed = make_team("round_robin", [make_agent("round_robin", n, phase=2) for n in names], max_messages=4)
    await resumed.load_state(expected_state)
    expected = await collect(resumed)
    expected_final = await resumed.save_state()

    if placement == "local":
        team = make_team("round_robin", [make_agent("round_robin", n) for n in names], runtime, max_messages=4)
        await collect(team, task="start")
        state = await team.save_state()
        await runtime.stop()
        fresh = HttpWorkerAgentRuntime(host_address)
        await fresh.start()
        try:
            phase2 = [make_agent("round_robin", n, phase=2) for n in names]
            team = make_team("round_robin", phase2, fresh, max_messages=4)
            await team.load_state(state)
            got = await collect(team)  # no task: the conversation continues
            final = await team.save_state()
        finally:
            await fresh.stop()
    else:
        first_set = start_workers(
            host_address, ["state:scripted-round_robin:alice,carol"], ["state:scripted-round_robin:bob"]
        )
        workers.extend(first_set)
        team = make_team("round_robin", await remote(runtime, "state", *names), runtime, max_messages=4)
        await collect(team, task="start")
        state = await team.save_state()
        for proc in first_set:
            proc.stop()
        fresh_set = start_workers(
            host_address, ["state:scripted-round_robin-phase2:alice"], ["state:scripted-round_robin-phase2:bob,carol"]
        )
        workers.extend(fresh_set)
        team = make_team("round_robin", await remote(runtime, "state", *names), runtime, max_messages=4)
        await team.load_state(state)
        got = await collect(team)
        final = await team.save_state()

    assert normalize(state) == normalize(expected_state)
    assert normalize(got) == normalize(expected)
    assert normalize(final) == normalize(expected_final)
    assert [m.to_text() for m in got[-1].messages] == ["alice: seven", "bob streams eight", "carol: nine", "alice: ten"]
    # The fresh alice was handed the whole first run: its prompt holds it.
    context = final["agent_states"]["alice"]["agent_state"]["llm_context"]["messages"]
    assert [m["content"] for m in context[:4]] == ["start", "alice: one", "bob streams two", "carol: three"]


@pytest.mark.parametrize("placement", ["local", "remote"])
async def test_pause_holds_the_participants_and_resume_lets_them_go_on(
    placement: str, host_address: str, runtime: HttpWorkerAgentRuntime, workers: list[Process]
) -> None:
    if placement == "local":
        agents = [make_special("pausable", "alice"), make_special("pausable", "bob")]
    else:
        workers.extend(start_workers(host_address, ["pause:pausable:alice"], ["pause:pausable:bob"]))
        agents = await remote(runtime, "pause", "alice", "bob")
    team = RoundRobinGroupChat(agents, termination_condition=MaxMessageTermination(3), runtime=runtime)
    await collect(team, task="first")

    await team.pause()
    stream: list[Any] = []
    with anyio.fail_after(RUN_TIMEOUT):
        async with anyio.create_task_group() as tg:

            async def consume() -> None:
                async for item in team.run_stream(task="second"):
                    stream.append(item)

            tg.start_soon(consume)
            await anyio.sleep(0.5)
            assert [normalize(m)["content"] for m in stream] == ["second"]  # alice waits: paused
            await team.resume()
    result = stream[-1]
    assert isinstance(result, TaskResult)
    assert [m.to_text() for m in result.messages] == [
        "second",
        "alice: turn 2, paused 1x, resumed 1x",
        "bob: turn 2, paused 1x, resumed 1x",
    ]


async def test_model_tokens_stream_from_the_serving_worker_as_they_come(
    host_address: str, runtime: HttpWorkerAgentRuntime, workers: list[Process]
) -> None:
    workers.extend(start_workers(host_address, ["drip:drip:bob"]))
    team = RoundRobinGroupChat(
        await remote(runtime, "drip", "bob"), termination_condition=MaxMessageTermination(2), runtime=runtime
    )
    arrivals: list[tuple[float, Any]] = []
    with anyio.fail_after(RUN_TIMEOUT):
        async for item in team.run_stream(task="go"):
            arrivals.append((time.monotonic(), item))
    chunks = [(t, m) for t, m in arrivals if isinstance(m, ModelClientStreamingChunkEvent)]
    final = next((t, m) for t, m in arrivals if isinstance(m, TextMessage) and m.source == "bob")
    assert "".join(m.content for _, m in chunks) == final[1].content == "one two three four five six"
    # The model takes 0.15 s a token: the first tokens were here long before the answer was done.
    assert final[0] - chunks[0][0] > 0.4
    assert chunks[1][0] - chunks[0][0] > 0.05


async def test_custom_and_structured_message_types_cross_processes_as_themselves(
    host_address: str, runtime: HttpWorkerAgentRuntime, workers: list[Process]
) -> None:
    custom_types: list[Any] = [Verdict, StructuredMessage[Plan]]
    reference = RoundRobinGroupChat(
        [make_special("verdict", "alice"), make_special("structured", "bob")],
        termination_condition=MaxMessageTermination(5),
        custom_message_types=custom_types,
    )
    expected = await collect(reference, task="judge")

    workers.extend(start_workers(host_address, ["custom:verdict:alice"], ["custom:structured:bob"]))
    team = RoundRobinGroupChat(
        await remote(runtime, "custom", "alice", "bob"),
        termination_condition=MaxMessageTermination(5),
        custom_message_types=custom_types,
        runtime=runtime,
    )
    got = await collect(team, task="judge")

    assert normalize(got) == normalize(expected)
    messages = got[-1].messages
    assert [type(m) for m in messages[1:]] == [Verdict, StructuredMessage[Plan], Verdict, StructuredMessage[Plan]]
    assert messages[3].score == 2  # the task and bob's plan
    assert messages[2].content == Plan(steps=["a", "b"], urgent=True)


async def test_a_participant_no_worker_serves_fails_the_run_at_once_with_what_to_do(
    runtime: HttpWorkerAgentRuntime,
) -> None:
    ghost = RemoteParticipant("ghost", team="nobody", runtime=runtime)
    team = RoundRobinGroupChat([ghost], termination_condition=MaxMessageTermination(3), runtime=runtime)
    started = time.monotonic()
    with pytest.raises(RuntimeError, match=r"participant 'ghost' of team 'nobody' is not served by any worker"):
        await collect(team, task="anyone?")
    assert time.monotonic() - started < 5
    with pytest.raises(ParticipantUnavailableError, match=r"serve_participant\(runtime, agent, team='nobody'\)"):
        await RemoteParticipant.lookup("ghost", team="nobody", runtime=runtime, timeout=0.3)


async def test_a_participant_whose_worker_is_killed_mid_turn_fails_the_run_within_seconds(
    host_address: str, runtime: HttpWorkerAgentRuntime, workers: list[Process]
) -> None:
    alice_worker, bob_worker = start_workers(host_address, ["kill:scripted-round_robin:alice"], ["kill:slow:bob"])
    workers.extend([alice_worker, bob_worker])
    team = RoundRobinGroupChat(
        await remote(runtime, "kill", "alice", "bob"), termination_condition=MaxMessageTermination(5), runtime=runtime
    )
    failure: list[BaseException] = []

    async def run() -> None:
        try:
            await collect(team, task="start")
        except Exception as exc:
            failure.append(exc)

    with anyio.fail_after(RUN_TIMEOUT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            await anyio.to_thread.run_sync(bob_worker.wait_for, "turn-started")
            killed_at = time.monotonic()
            bob_worker.kill()
    assert time.monotonic() - killed_at < 5
    assert len(failure) == 1 and isinstance(failure[0], RuntimeError), failure
    assert "ParticipantUnavailableError: the worker serving participant 'bob' of team 'kill' went away" in str(
        failure[0]
    )
    # With bob served anew, a new team runs. (Not the same team object: AgentChat's manager keeps
    # a participant that failed among its "active speakers", through reset() too, and waits for it
    # forever on any runtime it does not own; its embedded runtime stops the run instead.)
    workers.extend(start_workers(host_address, ["kill:scripted-round_robin:bob"]))
    team = RoundRobinGroupChat(
        await remote(runtime, "kill", "alice", "bob"), termination_condition=MaxMessageTermination(3), runtime=runtime
    )
    result = (await collect(team, task="again"))[-1]
    assert isinstance(result, TaskResult)
    assert [m.to_text() for m in result.messages] == ["again", "alice: one", "bob streams two"]
