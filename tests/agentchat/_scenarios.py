"""The teams of the AgentChat tests: the same agents, with the same replayed model answers, built in
the test process (the reference, on AgentChat's in-process runtime) and in worker processes.

A *scenario* names a team type and its agents; its agents' model answers are fixed here, so a
worker process that builds ``make_agent(scenario, name)`` gets the same agent the reference has.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncGenerator, Sequence
from typing import Any, Literal

from autogen_agentchat.agents import AssistantAgent, BaseChatAgent
from autogen_agentchat.base import ChatAgent, Response, TaskResult, Team
from autogen_agentchat.conditions import HandoffTermination, MaxMessageTermination, TextMentionTermination
from autogen_agentchat.messages import BaseAgentEvent, BaseChatMessage, BaseTextChatMessage, TextMessage
from autogen_agentchat.teams import (
    DiGraphBuilder,
    GraphFlow,
    MagenticOneGroupChat,
    RoundRobinGroupChat,
    SelectorGroupChat,
    Swarm,
)
from autogen_core import AgentRuntime, CancellationToken, FunctionCall
from autogen_core.models import CreateResult, LLMMessage, ModelInfo, RequestUsage
from autogen_ext.models.replay import ReplayChatCompletionClient
from pydantic import BaseModel

NAMES = ("alice", "bob", "carol")
TEAM_TYPES = ("round_robin", "selector", "swarm", "graph", "magentic_one")
PLACEMENTS: dict[str, list[list[str]]] = {
    "one": [["alice", "bob", "carol"]],
    "two": [["alice", "carol"], ["bob"]],
    "three": [["alice"], ["bob"], ["carol"]],
}
"""Which worker serves which participants: all on one, spread over two, one each on three."""

MODEL_INFO = ModelInfo(vision=False, function_calling=True, json_output=True, family="unknown", structured_output=True)


def _call(name: str) -> CreateResult:
    return CreateResult(
        finish_reason="function_calls",
        content=[FunctionCall(id=f"call-{name}", name=name, arguments="{}")],
        usage=RequestUsage(prompt_tokens=0, completion_tokens=0),
        cached=False,
    )


def _ledger(next_speaker: str, instruction: str, *, done: bool = False) -> str:
    return json.dumps(
        {
            "is_request_satisfied": {"reason": "r", "answer": done},
            "is_in_loop": {"reason": "r", "answer": False},
            "is_progress_being_made": {"reason": "r", "answer": True},
            "next_speaker": {"reason": "r", "answer": next_speaker},
            "instruction_or_question": {"reason": "r", "answer": instruction},
        }
    )


ANSWERS: dict[str, dict[str, list[str | CreateResult]]] = {
    "round_robin": {
        "alice": ["alice: one", "alice: four", "alice: seven", "alice: ten"],
        "bob": ["bob streams two", "bob streams five", "bob streams eight", "bob streams eleven"],
        "carol": ["carol: three", "carol: six DONE", "carol: nine", "carol: twelve"],
    },
    "selector": {
        "alice": ["alice: two", "alice: five"],
        "bob": ["bob streams three", "bob streams six"],
        "carol": ["carol: one", "carol: four DONE", "carol: seven"],
    },
    "swarm": {
        "alice": [_call("transfer_to_bob"), "alice: again"],
        "bob": ["bob streams a look", _call("transfer_to_carol")],
        "carol": ["carol: finished", _call("transfer_to_user")],
    },
    "graph": {  # alice fans out to bob and carol, who run at the same time
        "alice": ["alice: plan", "alice: plan again"],
        "bob": ["bob streams part one", "bob streams part one again"],
        "carol": ["carol: part two", "carol: part two again"],
    },
    "magentic_one": {
        "alice": ["alice: found the facts", "alice: more facts"],
        "bob": ["bob streams the draft", "bob streams another draft"],
        "carol": ["carol: checked it", "carol: checked again"],
    },
}
SELECTOR_ANSWERS = ["carol", "alice", "bob", "carol", "alice", "bob", "carol"]
MAGENTIC_ANSWERS: list[str | CreateResult] = [
    "Facts: none yet.",
    "Plan: alice finds facts, bob drafts.",
    _ledger("alice", "find the facts"),
    _ledger("bob", "write the draft"),
    _ledger("carol", "check it"),
    _ledger("alice", "nothing", done=True),
    "The final answer: done.",
]


def make_agent(scenario: str, name: str, *, phase: int = 1) -> ChatAgent:
    """Participant ``name`` of ``scenario``; ``phase`` 2 answers with the answers after phase 1's."""
    answers = ANSWERS[scenario][name]
    if phase == 2:
        answers = answers[2:]
    handoffs: list[str] = []
    if scenario == "swarm":
        handoffs = {"alice": ["bob"], "bob": ["carol"], "carol": ["user"]}[name]
    return AssistantAgent(
        name,
        model_client=ReplayChatCompletionClient(answers, model_info=MODEL_INFO),
        description=f"{name}, who answers from a script",
        handoffs=handoffs,  # type: ignore[arg-type]
        model_client_stream=name == "bob",  # bob streams model tokens: ModelClientStreamingChunkEvent
    )


def make_team(
    scenario: str, participants: Sequence[ChatAgent], runtime: AgentRuntime | None = None, *, max_messages: int = 12
) -> Team:
    """The team of ``scenario`` around ``participants`` (in NAMES order), on ``runtime``."""
    agents = list(participants)
    limit = MaxMessageTermination(max_messages)
    done = TextMentionTermination("DONE") | limit
    if scenario == "round_robin":
        return RoundRobinGroupChat(agents, termination_condition=done, runtime=runtime)
    if scenario == "selector":
        return SelectorGroupChat(
            agents,
            model_client=ReplayChatCompletionClient(SELECTOR_ANSWERS, model_info=MODEL_INFO),
            termination_condition=done,
            runtime=runtime,
            emit_team_events=True,  # SelectSpeakerEvent and the selector's own streamed SelectorEvent
            model_client_streaming=True,
        )
    if scenario == "swarm":
        return Swarm(agents, termination_condition=HandoffTermination(target="user") | limit, runtime=runtime)
    if scenario == "graph":
        alice, bob, carol = agents
        builder = DiGraphBuilder()
        builder.add_node(alice).add_node(bob).add_node(carol)
        builder.add_edge(alice, bob).add_edge(alice, carol)
        return GraphFlow(agents, graph=builder.build(), termination_condition=limit, runtime=runtime)
    if scenario == "magentic_one":
        return MagenticOneGroupChat(
            agents,
            model_client=ReplayChatCompletionClient(MAGENTIC_ANSWERS, model_info=MODEL_INFO),
            termination_condition=limit,
            runtime=runtime,
        )
    raise ValueError(scenario)


# ---------------------------------------------------------------------------- special agents


class Verdict(BaseTextChatMessage):
    """A custom chat message type (teams list it in custom_message_types)."""

    score: int
    type: Literal["Verdict"] = "Verdict"


class VerdictAgent(BaseChatAgent):
    """Answers every turn with a Verdict scoring the number of messages it has seen."""

    def __init__(self, name: str) -> None:
        super().__init__(name, "gives verdicts")
        self._seen = 0

    @property
    def produced_message_types(self) -> Sequence[type[BaseChatMessage]]:
        return (Verdict,)

    async def on_messages(self, messages: Sequence[BaseChatMessage], cancellation_token: CancellationToken) -> Response:
        self._seen += len(messages)
        return Response(chat_message=Verdict(content=f"seen {self._seen}", score=self._seen, source=self.name))

    async def on_reset(self, cancellation_token: CancellationToken) -> None:
        self._seen = 0


class Plan(BaseModel):
    steps: list[str]
    urgent: bool


class PausableAgent(BaseChatAgent):
    """Waits while paused before it answers; tells in every answer how often it was paused and resumed."""

    def __init__(self, name: str) -> None:
        super().__init__(name, "pausable")
        self._running = asyncio.Event()
        self._running.set()
        self._turns = self._pauses = self._resumes = 0

    @property
    def produced_message_types(self) -> Sequence[type[BaseChatMessage]]:
        return (TextMessage,)

    async def on_messages(self, messages: Sequence[BaseChatMessage], cancellation_token: CancellationToken) -> Response:
        await self._running.wait()
        self._turns += 1
        text = f"{self.name}: turn {self._turns}, paused {self._pauses}x, resumed {self._resumes}x"
        return Response(chat_message=TextMessage(content=text, source=self.name))

    async def on_pause(self, cancellation_token: CancellationToken) -> None:
        self._pauses += 1
        self._running.clear()

    async def on_resume(self, cancellation_token: CancellationToken) -> None:
        self._resumes += 1
        self._running.set()

    async def on_reset(self, cancellation_token: CancellationToken) -> None:
        self._turns = 0


class SlowAgent(BaseChatAgent):
    """Says on stdout that its turn started, then takes a minute (for killing its worker mid-turn)."""

    def __init__(self, name: str) -> None:
        super().__init__(name, "slow")

    @property
    def produced_message_types(self) -> Sequence[type[BaseChatMessage]]:
        return (TextMessage,)

    async def on_messages(self, messages: Sequence[BaseChatMessage], cancellation_token: CancellationToken) -> Response:
        print("turn-started", flush=True)
        sys.stdout.flush()
        await asyncio.sleep(60)
        return Response(chat_message=TextMessage(content="too late", source=self.name))

    async def on_reset(self, cancellation_token: CancellationToken) -> None:
        pass


class DripReplayClient(ReplayChatCompletionClient):
    """Streams each answer a token at a time, ``delay`` seconds apart (a model that thinks)."""

    def __init__(self, answers: Sequence[str], delay: float) -> None:
        super().__init__(list(answers), model_info=MODEL_INFO)
        self._delay = delay

    async def create_stream(  # type: ignore[override]
        self, messages: Sequence[LLMMessage], **kwargs: Any
    ) -> AsyncGenerator[str | CreateResult, None]:
        async for chunk in super().create_stream(messages, **kwargs):
            if isinstance(chunk, str):
                await asyncio.sleep(self._delay)
            yield chunk


def make_special(kind: str, name: str) -> ChatAgent:
    """The agents of the lifecycle tests, by kind."""
    if kind == "verdict":
        return VerdictAgent(name)
    if kind == "structured":
        return AssistantAgent(
            name,
            model_client=ReplayChatCompletionClient(
                [Plan(steps=["a", "b"], urgent=True).model_dump_json(), Plan(steps=[], urgent=False).model_dump_json()],
                model_info=MODEL_INFO,
            ),
            output_content_type=Plan,
        )
    if kind == "pausable":
        return PausableAgent(name)
    if kind == "slow":
        return SlowAgent(name)
    if kind == "drip":
        return AssistantAgent(
            name,
            model_client=DripReplayClient(["one two three four five six"], delay=0.15),
            model_client_stream=True,
        )
    if kind.startswith("scripted-"):  # scripted-<scenario>[-phase2]
        _, scenario, *rest = kind.split("-")
        return make_agent(scenario, name, phase=2 if rest == ["phase2"] else 1)
    raise ValueError(kind)


# ---------------------------------------------------------------------------- comparing streams

_VOLATILE = {"id", "created_at", "full_message_id"}


def normalize(value: Any) -> Any:
    """A stream item, a message or a saved state as plain JSON data, without ids and timestamps."""
    if isinstance(value, TaskResult):
        return {"TaskResult": [normalize(m) for m in value.messages], "stop_reason": value.stop_reason}
    if isinstance(value, (BaseChatMessage, BaseAgentEvent)):
        return {"class": type(value).__name__, **normalize(value.model_dump(mode="json"))}
    if isinstance(value, BaseModel):
        return normalize(value.model_dump(mode="json"))
    if isinstance(value, dict):
        return {k: normalize(v) for k, v in value.items() if k not in _VOLATILE}
    if isinstance(value, (list, tuple)):
        return [normalize(v) for v in value]
    if hasattr(value, "isoformat"):
        return "<time>"
    return value
