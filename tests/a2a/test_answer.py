"""The pure parts of io_backends.a2a, on plain data: answers from A2A events, messages to parts,
and a2a-sdk's exceptions read into ours. No sockets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from a2a.client import A2AClientError, A2AClientTimeoutError, AgentCardResolutionError
from a2a.utils.errors import InternalError, TaskNotCancelableError, TaskNotFoundError, VersionNotSupportedError
from autogen_core.exceptions import CantHandleException
from hypothesis import given
from hypothesis import strategies as st

from io_backends.a2a import (
    A2AAuthError,
    A2AHttpError,
    A2AInvalidAgentResponseError,
    A2AMessage,
    A2AProtocolError,
    A2ARemoteInternalError,
    A2AReply,
    A2ATaskCanceledError,
    A2ATaskFailedError,
    A2ATaskNotCancelableError,
    A2ATaskNotFoundError,
    A2ATimeoutError,
    A2AUnreachableError,
    A2AVersionNotSupportedError,
)
from io_backends.a2a._answer import AnswerTracker
from io_backends.a2a._errors import from_sdk_error
from io_backends.a2a._messages import message_parts, to_a2a_message, whole_numbers

URL = "http://127.0.0.1:9/"


def _status(state: str, text: str | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"state": state}
    if text is not None:
        status["message"] = {"messageId": "m", "role": "ROLE_AGENT", "parts": [{"text": text}]}
    return {"statusUpdate": {"taskId": "t1", "contextId": "c1", "status": status}}


def _chunk(artifact_id: str, text: str, append: bool = False) -> dict[str, Any]:
    update: dict[str, Any] = {
        "taskId": "t1",
        "contextId": "c1",
        "artifact": {"artifactId": artifact_id, "parts": [{"text": text}]},
    }
    if append:
        update["append"] = True
    return {"artifactUpdate": update}


SUBMITTED = {"task": {"id": "t1", "contextId": "c1", "status": {"state": "TASK_STATE_SUBMITTED"}}}


def _track(*events: dict[str, Any]) -> AnswerTracker:
    tracker = AnswerTracker(URL)
    for event in events:
        tracker.apply(event)
    return tracker


def test_a_direct_message_is_the_answer() -> None:
    tracker = _track(
        {
            "message": {
                "messageId": "m",
                "contextId": "c9",
                "role": "ROLE_AGENT",
                "parts": [{"text": "hi"}, {"data": {"n": 2.0}}],
            }
        }
    )
    assert tracker.finished
    assert tracker.reply() == A2AReply(
        text="hi", data=[{"n": 2}], parts=[{"text": "hi"}, {"data": {"n": 2.0}}], context_id="c9"
    )


def test_the_streamed_events_of_the_wire_oracle_make_one_artifact() -> None:
    """The event sequence a2a-sdk's server streams for "chunks" (docs/A2A.md, send-streaming-message)."""
    tracker = _track(
        SUBMITTED,
        _status("TASK_STATE_WORKING", "working on it"),
        _chunk("a1", "one "),
        _chunk("a1", "two ", append=True),
        _chunk("a1", "three", append=True),
    )
    assert not tracker.finished
    tracker.apply(_status("TASK_STATE_COMPLETED"))
    reply = tracker.reply()
    assert reply.parts == [{"text": "one "}, {"text": "two "}, {"text": "three"}]
    assert (reply.state, reply.task_id, reply.context_id) == ("completed", "t1", "c1")
    assert reply.artifacts == [{"artifactId": "a1", "parts": reply.parts}]


def test_a_completed_task_without_artifacts_answers_with_its_status_message() -> None:
    reply = _track(SUBMITTED, _status("TASK_STATE_WORKING", "working"), _status("TASK_STATE_COMPLETED", "done")).reply()
    assert reply.text == "done"


def test_a_new_status_without_a_message_replaces_the_old_message() -> None:
    reply = _track(SUBMITTED, _status("TASK_STATE_WORKING", "working"), _status("TASK_STATE_COMPLETED")).reply()
    assert reply.parts == [] and reply.text == ""


def test_input_required_is_an_answer_that_keeps_the_task() -> None:
    reply = _track(SUBMITTED, _status("TASK_STATE_INPUT_REQUIRED", "which city?")).reply()
    assert (reply.state, reply.text, reply.task_id) == ("input-required", "which city?", "t1")


@pytest.mark.parametrize(("state", "short"), [("TASK_STATE_FAILED", "failed"), ("TASK_STATE_REJECTED", "rejected")])
def test_a_failed_or_rejected_task_raises_with_the_agents_words(state: str, short: str) -> None:
    tracker = _track(SUBMITTED, _status(state, "no  forecast\nfor Atlantis"))
    with pytest.raises(A2ATaskFailedError) as caught:
        tracker.reply()
    assert str(caught.value) == f"the A2A agent at {URL} {short} the task t1: no forecast for Atlantis"  # one line
    assert (caught.value.state, caught.value.task_id) == (short, "t1")
    assert caught.value.remote_message == "no  forecast\nfor Atlantis"  # the agent's words as they were


def test_a_task_cancelled_by_someone_else_raises() -> None:
    with pytest.raises(A2ATaskCanceledError, match="was cancelled by the agent or another client"):
        _track(SUBMITTED, _status("TASK_STATE_CANCELED")).reply()


def test_a_snapshot_replaces_what_the_events_said() -> None:
    tracker = _track(SUBMITTED, _chunk("a1", "draft"), _chunk("a2", "other"))
    tracker.apply_task(
        {
            "id": "t1",
            "contextId": "c1",
            "status": {"state": "TASK_STATE_COMPLETED"},
            "artifacts": [{"artifactId": "a1", "parts": [{"text": "final"}]}],
        }
    )
    assert tracker.reply().parts == [{"text": "final"}]


def test_an_update_without_append_replaces_the_artifact() -> None:
    tracker = _track(SUBMITTED, _chunk("a1", "draft"), _chunk("a1", "final"), _status("TASK_STATE_COMPLETED"))
    assert tracker.reply().parts == [{"text": "final"}]


@pytest.mark.parametrize(
    ("events", "what"),
    [
        ([SUBMITTED, {"task": {"id": "t2", "status": {"state": "TASK_STATE_WORKING"}}}], "events of two tasks"),
        ([SUBMITTED, {"message": {"messageId": "m", "parts": []}}], "a message arrived after"),
        ([{"message": {"messageId": "m", "parts": []}}, SUBMITTED], "a task event arrived after"),
        ([{"statusUpdate": {"status": {"state": "TASK_STATE_WORKING"}}}], "without a task id"),
        ([{"somethingElse": {}}], "none of task, message"),
    ],
)
def test_answers_that_break_a2a_are_refused(events: list[dict[str, Any]], what: str) -> None:
    with pytest.raises(A2AInvalidAgentResponseError, match=what) as caught:
        _track(*events)
    assert caught.value.code == -32006


def test_an_empty_answer_is_refused() -> None:
    with pytest.raises(A2AInvalidAgentResponseError, match="ended with neither a message nor a task"):
        AnswerTracker(URL).reply()


def test_an_answer_that_ends_while_working_is_refused() -> None:
    tracker = _track(SUBMITTED, _status("TASK_STATE_WORKING"))
    with pytest.raises(A2AInvalidAgentResponseError, match="ended while the task was working"):
        tracker.reply()


@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.booleans(), st.text(max_size=3)), max_size=30))
def test_artifact_updates_combine_as_a2a_says(updates: list[tuple[str, bool, str]]) -> None:
    """Model: append adds to the artifact of that id (or starts it), anything else replaces it;
    the answer lists the artifacts' parts in the order the artifacts first appeared."""
    tracker = _track(SUBMITTED)
    model: dict[str, list[str]] = {}
    for artifact_id, append, text in updates:
        tracker.apply(_chunk(artifact_id, text, append=append))
        model[artifact_id] = [*model.get(artifact_id, []), text] if append and artifact_id in model else [text]
    tracker.apply(_status("TASK_STATE_COMPLETED", "status text"))
    reply = tracker.reply()
    if model:
        assert [p["text"] for p in reply.parts] == [t for texts in model.values() for t in texts]
        assert [a["artifactId"] for a in reply.artifacts] == list(model)
    else:
        assert reply.text == "status text"


# ---------------------------------------------------------------------------------- messages


@dataclass
class Query:
    city: str
    days: int = 1


class FakeModel:
    """Stands for a Pydantic model (duck-typed by ``model_dump``)."""

    def model_dump(self, mode: str) -> dict[str, Any]:
        assert mode == "json"
        return {"kind": "model"}


@pytest.mark.parametrize(
    ("message", "parts"),
    [
        (
            A2AMessage("hi", data=[1, {"a": None}], parts=[{"url": "https://x/y.png", "mediaType": "image/png"}]),
            [{"text": "hi"}, {"data": 1}, {"data": {"a": None}}, {"url": "https://x/y.png", "mediaType": "image/png"}],
        ),
        ("plain", [{"text": "plain"}]),
        (Query("Paris"), [{"data": {"city": "Paris", "days": 1}}]),
        (FakeModel(), [{"data": {"kind": "model"}}]),
        ({"op": "x"}, [{"data": {"op": "x"}}]),
        ([1, 2], [{"data": [1, 2]}]),
    ],
)
def test_what_an_autogen_agent_sends_becomes_parts(message: object, parts: list[dict[str, Any]]) -> None:
    assert message_parts(to_a2a_message(message)) == parts


def test_an_unsupported_message_says_what_to_send() -> None:
    with pytest.raises(CantHandleException, match="cannot send a int to an A2A agent: send an A2AMessage"):
        to_a2a_message(3)


def test_an_empty_message_is_refused() -> None:
    with pytest.raises(ValueError, match="needs at least one part"):
        message_parts(A2AMessage())


def test_whole_numbers_come_back_as_int() -> None:
    assert whole_numbers({"a": [1.0, 2.5, {"b": 3.0}], "c": True, "d": "4.0"}) == {
        "a": [1, 2.5, {"b": 3}],
        "c": True,
        "d": "4.0",
    }


# ---------------------------------------------------------------------------------- errors


def _caused(exc: Exception, cause: BaseException) -> Exception:
    exc.__cause__ = cause
    return exc


REQUEST = httpx.Request("POST", URL)


@pytest.mark.parametrize(
    ("sdk_error", "ours", "text"),
    [
        (TaskNotFoundError(), A2ATaskNotFoundError, "answered -32001 TASK_NOT_FOUND: Task not found; start a new"),
        (TaskNotCancelableError(), A2ATaskNotCancelableError, "answered -32002 TASK_NOT_CANCELABLE"),
        (
            VersionNotSupportedError("no 2.0 here"),
            A2AVersionNotSupportedError,
            "-32009 VERSION_NOT_SUPPORTED: no 2.0 here",
        ),
        (
            InternalError("boom"),
            A2ARemoteInternalError,
            "answered -32603 INTERNAL_ERROR: boom; the remote agent failed",
        ),
        (A2AClientError("JSON-RPC Error -32099: odd"), A2AProtocolError, "answered -32099 code -32099: odd"),
        (A2AClientTimeoutError("Client Request timed out"), A2ATimeoutError, "did not answer in time"),
        (
            _caused(
                A2AClientError("HTTP Error 401: x"),
                httpx.HTTPStatusError("x", request=REQUEST, response=httpx.Response(401, request=REQUEST)),
            ),
            A2AAuthError,
            "refused the request with HTTP 401: pass bearer_token=",
        ),
        (
            _caused(
                A2AClientError("HTTP Error 502: x"),
                httpx.HTTPStatusError("x", request=REQUEST, response=httpx.Response(502, request=REQUEST)),
            ),
            A2AHttpError,
            "answered the request with HTTP 502 instead of A2A",
        ),
        (
            _caused(A2AClientError("Network communication error"), httpx.ConnectError("refused")),
            A2AUnreachableError,
            "cannot reach",
        ),
        (
            _caused(A2AClientError("Network communication error"), httpx.ReadTimeout("slow")),
            A2ATimeoutError,
            "did not answer",
        ),
        (
            A2AClientError("Invalid JSON-RPC response: expected an object"),
            A2AInvalidAgentResponseError,
            "cannot read: Invalid",
        ),
        (
            AgentCardResolutionError("Failed to fetch", status_code=403),
            A2AAuthError,
            "refused its agent card with HTTP 403",
        ),
        (
            _caused(AgentCardResolutionError("Network"), httpx.ConnectError("refused")),
            A2AUnreachableError,
            "cannot reach",
        ),
        (
            AgentCardResolutionError("Failed to validate agent card structure"),
            ValueError,
            "cannot be read: Failed to validate",
        ),
    ],
)
def test_sdk_errors_become_ours(sdk_error: Exception, ours: type[Exception], text: str) -> None:
    error = from_sdk_error(sdk_error, url=URL)
    assert isinstance(error, ours), repr(error)
    assert text in str(error)
    assert "\n" not in str(error) and error.url == URL


def test_the_card_s_auth_scheme_is_named_in_the_advice() -> None:
    cause = httpx.HTTPStatusError("x", request=REQUEST, response=httpx.Response(401, request=REQUEST))
    error = from_sdk_error(
        _caused(A2AClientError("HTTP Error 401"), cause), url=URL, card_declares="'bearer' (http auth Bearer)"
    )
    assert "(its card asks for 'bearer' (http auth Bearer)): pass bearer_token=" in str(error)
    assert isinstance(error, PermissionError) and isinstance(error, A2AAuthError) and error.status_code == 401
