"""Nothing fails silently: a payload nobody can read is an error to someone, over real sockets.

A call whose message the target cannot deserialize fails at the caller with
:class:`UnreadablePayloadError` (-32015), naming the type, the content type and the serializer to
register; so does an answer the caller cannot read; an event no serializer can read is logged
once per type and content type at WARNING and counted by the worker and the host. Content types
compare as ``docs/PROTOCOL.md`` section 3.2 says.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import anyio
import pytest
from autogen_core import (
    AgentId,
    MessageContext,
    RoutedAgent,
    TopicId,
    TypeSubscription,
    message_handler,
    try_get_known_serializers_for_type,
)

from io_backends import HttpAgentServer, UnreadablePayloadError
from sansio_runtime import ErrorCode

from ._common import Answer, Ask, EchoAgent, Note, http_call, wait_until
from .conftest import WorkerFactory

pytestmark = pytest.mark.anyio


@dataclass
class Secret:
    """A message type only some workers have a serializer for."""

    text: str


class Keeper(RoutedAgent):
    """Handles Secret (if it ever gets one) and Note."""

    def __init__(self) -> None:
        super().__init__("keeper")
        self.secrets: list[Secret] = []
        self.notes: list[Note] = []

    @message_handler
    async def on_secret(self, message: Secret, ctx: MessageContext) -> Answer:
        self.secrets.append(message)
        return Answer("kept")

    @message_handler
    async def on_note(self, message: Note, ctx: MessageContext) -> None:
        self.notes.append(message)


async def test_call_the_target_cannot_deserialize_fails_at_the_caller(make_worker: WorkerFactory) -> None:
    with anyio.fail_after(20):
        callee = await make_worker()  # Ask, Answer, Note, ... but not Secret
        await callee.register_factory("keeper", Keeper)
        caller = await make_worker()
        caller.add_message_serializer(try_get_known_serializers_for_type(Secret))
        with pytest.raises(UnreadablePayloadError) as caught:
            await caller.send_message(Secret("s"), AgentId("keeper", "k"))
        error = caught.value
        assert error.code == ErrorCode.UNREADABLE_PAYLOAD == -32015
        assert (error.data_type, error.data_content_type) == ("Secret", "application/json")
        message = str(error)
        assert "the worker hosting 'keeper' has no serializer for type 'Secret' (application/json)" in message
        assert "add_message_serializer(try_get_known_serializers_for_type(Secret))" in message
        assert isinstance(error, ValueError)
        assert callee.stats.calls_unreadable == 1 and callee.stats.calls_received == 1
        keeper = await callee.try_get_underlying_agent_instance(AgentId("keeper", "k"), Keeper)
        assert keeper.secrets == []
        # the connection and the agent are fine: a message it can read still gets through
        assert await caller.send_message(Ask("x"), AgentId("keeper", "k")) is None  # Keeper has no Ask handler


async def test_answer_the_caller_cannot_read_is_raised_not_returned(make_worker: WorkerFactory) -> None:
    with anyio.fail_after(20):
        callee = await make_worker()
        callee.add_message_serializer(try_get_known_serializers_for_type(Secret))
        await callee.register_factory("keeper", Keeper)
        caller = await make_worker(serializers=False)  # it can send Secret but cannot read Answer
        caller.add_message_serializer(try_get_known_serializers_for_type(Secret))
        with pytest.raises(UnreadablePayloadError) as caught:
            await caller.send_message(Secret("s"), AgentId("keeper", "k"))
        message = str(caught.value)
        assert "cannot read the answer of keeper/k" in message
        assert "this worker has no serializer for type 'Answer' (application/json)" in message
        assert "try_get_known_serializers_for_type(Answer)" in message
        assert caller.stats.results_unreadable == 1
        keeper = await callee.try_get_underlying_agent_instance(AgentId("keeper", "k"), Keeper)
        assert keeper.secrets == [Secret("s")]  # it was delivered and handled; only the answer is unreadable


async def test_event_nobody_can_read_is_warned_once_and_counted(
    make_worker: WorkerFactory, server: HttpAgentServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="io_backends.runtime")
    with anyio.fail_after(20):
        subscriber = await make_worker()  # no serializer for Secret
        await subscriber.register_factory("keeper", Keeper)
        await subscriber.add_subscription(TypeSubscription("vault", "keeper"))
        publisher = await make_worker()
        publisher.add_message_serializer(try_get_known_serializers_for_type(Secret))
        for i in range(3):
            await publisher.publish_message(Secret(f"s{i}"), TopicId("vault", "k"))
        await publisher.publish_message(Note("after"), TopicId("vault", "k"))
        keeper = await subscriber.try_get_underlying_agent_instance(AgentId("keeper", "k"), Keeper)
        assert await wait_until(lambda: keeper.notes == [Note("after")], 10)
        assert keeper.secrets == []
        assert subscriber.stats.events_unreadable == 3 and subscriber.stats.events_received == 4
        engine = server.service.engine
        assert await wait_until(lambda: engine.stats.events_unreadable == 3, 5), engine.stats
        status, health = await http_call(server.port, "GET", "/healthz")
        assert status == 200 and health["events_unreadable"] == 3
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "Secret" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    text = warnings[0].getMessage()
    assert "dropped event" in text and "on topic vault/k" in text
    assert "this worker has no serializer for type 'Secret' (application/json)" in text
    assert "try_get_known_serializers_for_type(Secret)" in text


def _rpc_call(data_type: str, content_type: str, data: object) -> dict[str, object]:
    return {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "agent.call",
        "params": {
            "target": {"type": "echo", "key": "k"},
            "data_type": data_type,
            "data_content_type": content_type,
            "data": data,
            "timeout_ms": 10_000,
        },
    }


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "Application/JSON", "application/json; charset=utf-8", "application/vnd.ask+json"],
)
async def test_json_content_types_compare_as_the_spec_says(
    make_worker: WorkerFactory, server: HttpAgentServer, content_type: str
) -> None:
    """A foreign client's JSON content type, in any case, with parameters or as ``+json``, is read
    by the type's application/json serializer (before: autogen's registry missed it and the agent
    got an UnknownPayload, answering a silent None)."""
    with anyio.fail_after(20):
        callee = await make_worker()
        await callee.register_factory("echo", EchoAgent)
        status, body = await http_call(server.port, "POST", "/v1/rpc", _rpc_call("Ask", content_type, {"text": "abc"}))
    assert status == 200, body
    assert body["result"] == {"data_type": "Answer", "data_content_type": "application/json", "data": {"text": "k:cba"}}


async def test_a_misspelled_type_name_is_an_error_with_a_suggestion(
    make_worker: WorkerFactory, server: HttpAgentServer
) -> None:
    with anyio.fail_after(20):
        callee = await make_worker()
        await callee.register_factory("echo", EchoAgent)
        _, misspelled = await http_call(
            server.port, "POST", "/v1/rpc", _rpc_call("ask", "application/json", {"text": "a"})
        )
        _, wrong_format = await http_call(
            server.port, "POST", "/v1/rpc", _rpc_call("Ask", "application/x-protobuf", {"text": "a"})
        )
        _, bad_fields = await http_call(server.port, "POST", "/v1/rpc", _rpc_call("Ask", "application/json", {"t": 1}))
    for body in (misspelled, wrong_format, bad_fields):
        assert body["error"]["code"] == ErrorCode.UNREADABLE_PAYLOAD, body
    assert "no serializer for type 'ask'" in misspelled["error"]["message"]
    assert "but has one for 'Ask': is the type name misspelled?" in misspelled["error"]["message"]
    assert misspelled["error"]["data"] == {"data_type": "ask", "data_content_type": "application/json"}
    assert (
        "has serializers for type 'Ask' only as application/json, not as 'application/x-protobuf'"
        in (wrong_format["error"]["message"])
    )
    assert "cannot read the payload: TypeError" in bad_fields["error"]["message"]


async def test_a_call_whose_source_is_not_an_autogen_agent_id_is_invalid_params(
    make_worker: WorkerFactory, server: HttpAgentServer
) -> None:
    """docs/PROTOCOL.md 3.3: names outside AutoGen's rules get -32602 from a Python target."""
    with anyio.fail_after(20):
        callee = await make_worker()
        await callee.register_factory("echo", EchoAgent)
        call = _rpc_call("Ask", "application/json", {"text": "a"})
        call["params"]["source"] = {"type": "not a type!", "key": "k"}  # type: ignore[index]
        _, body = await http_call(server.port, "POST", "/v1/rpc", call)
    assert body["error"]["code"] == ErrorCode.INVALID_PARAMS, body
    assert "not a valid AutoGen agent id" in body["error"]["message"]
