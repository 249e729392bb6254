"""An A2A answer as it arrives: a direct message, or a task that is snapshotted, updated and ended.

Pure. :class:`AnswerTracker` reads the A2A 1.0 JSON form of each ``StreamResponse`` (``task``,
``message``, ``statusUpdate``, ``artifactUpdate``) or of a ``Task`` (from ``GetTask`` or
``CancelTask``), keeps the task's state and artifacts as A2A says to combine them (an artifact
update with ``append`` adds parts to the artifact of the same ``artifactId``, any other replaces
it; a task snapshot replaces everything), and says when the answer is complete and what it is.
"""

from __future__ import annotations

from typing import Any, NoReturn

from ._errors import A2AInvalidAgentResponseError, A2ATaskCanceledError, A2ATaskFailedError, one_line
from ._messages import A2AReply, JsonPart, reply_of

COMPLETED = "TASK_STATE_COMPLETED"
FAILED_STATES = frozenset({"TASK_STATE_FAILED", "TASK_STATE_REJECTED"})
CANCELED = "TASK_STATE_CANCELED"
INTERRUPTED_STATES = frozenset({"TASK_STATE_INPUT_REQUIRED", "TASK_STATE_AUTH_REQUIRED"})
TERMINAL_STATES = frozenset({COMPLETED, CANCELED, *FAILED_STATES})
FINAL_STATES = TERMINAL_STATES | INTERRUPTED_STATES
"""States after which the agent does nothing more for this message."""


def short_state(state: str) -> str:
    """``TASK_STATE_INPUT_REQUIRED`` -> ``input-required`` (A2A 0.3's and the spec prose's spelling)."""
    return state.removeprefix("TASK_STATE_").lower().replace("_", "-")


class AnswerTracker:
    """The answer to one ``SendMessage``, from the events that carry it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.task_id: str | None = None
        self.context_id: str | None = None
        self.state: str | None = None
        self.status_message: dict[str, Any] | None = None
        self.message: dict[str, Any] | None = None
        self._artifacts: dict[str, dict[str, Any]] = {}  # artifactId -> artifact, in arrival order

    @property
    def finished(self) -> bool:
        """Whether the answer is complete: a direct message, or the task reached a final state."""
        return self.message is not None or self.state in FINAL_STATES

    def apply(self, event: dict[str, Any]) -> None:
        """Take one ``StreamResponse`` (A2A 1.0 JSON)."""
        if "message" in event:
            if self.task_id is not None:
                self._invalid("a message arrived after the agent had started a task")
            self.message = event["message"]
            self.context_id = self.message.get("contextId") or self.context_id
        elif "task" in event:
            self.apply_task(event["task"])
        elif "statusUpdate" in event:
            update = event["statusUpdate"]
            self._same_task(update.get("taskId"), update.get("contextId"))
            self._status(update.get("status") or {})
        elif "artifactUpdate" in event:
            update = event["artifactUpdate"]
            self._same_task(update.get("taskId"), update.get("contextId"))
            self._artifact(update.get("artifact") or {}, append=bool(update.get("append")))
        else:
            self._invalid(f"an event with none of task, message, statusUpdate, artifactUpdate: {sorted(event)}")

    def apply_task(self, task: dict[str, Any]) -> None:
        """Take a whole ``Task`` (a snapshot: it replaces what was known)."""
        self._same_task(task.get("id"), task.get("contextId"))
        self._artifacts = {}
        for artifact in task.get("artifacts") or []:
            self._artifact(artifact, append=False)
        self._status(task.get("status") or {})

    def reply(self) -> A2AReply:
        """The answer once :attr:`finished`: an :class:`A2AReply`, or the exception a failed or
        cancelled task means."""
        if self.message is not None:
            parts: list[JsonPart] = list(self.message.get("parts") or [])
            return reply_of(parts, task_id=self.message.get("taskId", ""), context_id=self.context_id or "")
        state, task_id = self.state or "TASK_STATE_UNSPECIFIED", self.task_id
        if task_id is None:
            return self._invalid("the answer ended with neither a message nor a task")
        if state not in FINAL_STATES:
            return self._invalid(f"the answer ended while the task was {short_state(state)}")
        said = " ".join(p["text"] for p in (self.status_message or {}).get("parts") or [] if "text" in p)
        if state in FAILED_STATES:
            what = "failed" if state == "TASK_STATE_FAILED" else "rejected"
            raise A2ATaskFailedError(
                f"the A2A agent at {self.url} {what} the task {task_id}: {one_line(said) or '(no reason given)'}",
                url=self.url,
                task_id=task_id,
                state=short_state(state),
                remote_message=said,
            )
        if state == CANCELED:
            raise A2ATaskCanceledError(
                f"the A2A task {task_id} at {self.url} was cancelled by the agent or another client"
                + (f": {one_line(said)}" if said else ""),
                url=self.url,
                task_id=task_id,
            )
        artifacts = list(self._artifacts.values())
        if artifacts and state == COMPLETED:
            parts = [part for artifact in artifacts for part in artifact.get("parts") or []]
        else:
            parts = list((self.status_message or {}).get("parts") or [])
        return reply_of(
            parts,
            artifacts=artifacts,
            state=short_state(state),
            task_id=task_id,
            context_id=self.context_id or "",
        )

    def _same_task(self, task_id: str | None, context_id: str | None) -> None:
        if not task_id:
            self._invalid("a task event without a task id")
        if self.message is not None:
            self._invalid("a task event arrived after the agent answered with a message")
        if self.task_id is None:
            self.task_id = task_id
        elif task_id != self.task_id:
            self._invalid(f"events of two tasks ({self.task_id} and {task_id}) in one answer")
        self.context_id = context_id or self.context_id

    def _status(self, status: dict[str, Any]) -> None:
        self.state = status.get("state") or self.state
        self.status_message = status.get("message")  # a new status replaces the old one, message included

    def _artifact(self, artifact: dict[str, Any], *, append: bool) -> None:
        artifact_id = artifact.get("artifactId") or f"#{len(self._artifacts)}"
        known = self._artifacts.get(artifact_id)
        if append and known is not None:
            known["parts"] = [*(known.get("parts") or []), *(artifact.get("parts") or [])]
        else:
            self._artifacts[artifact_id] = {**artifact, "parts": list(artifact.get("parts") or [])}

    def _invalid(self, what: str) -> NoReturn:
        raise A2AInvalidAgentResponseError(
            f"the A2A agent at {self.url} sent an answer that breaks A2A ({what}): report it to the agent's owner",
            url=self.url,
            code=-32006,
            remote_message=what,
        )
