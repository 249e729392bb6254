"""HostHub and HostConnection driven with raw bytes and a fake clock: the host's whole server with no
socket, as a driver sees it (bytes in, bytes out, a phase to act on, one deadline to keep)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Event, Ping, Pong, Request, TextMessage

from io_backends.sansio import HostConnection, HostHub, HubSettings, Phase
from io_backends.sansio._limits import CLOSE_TIMEOUT, LINGER_MAX_BYTES, LINGER_TIMEOUT
from sansio_runtime import CloseCode, HostEngine


def make_hub(**settings: Any) -> HostHub:
    return HostHub(HostEngine(), HubSettings(**settings), health=lambda: b'{"status":"ok"}')


class Worker:
    """One WebSocket client of the hub, speaking through wsproto over a HostConnection."""

    def __init__(self, hub: HostHub, now: float = 0.0, name: str | None = None) -> None:
        self.hub = hub
        self.conn: HostConnection = hub.accept(now, "127.0.0.1")
        self.ws = WSConnection(ConnectionType.CLIENT)
        headers = [] if name is None else [(b"x-client-id", name.encode())]
        self.conn.receive_data(self.ws.send(Request(host="x", target="/v1/channel", extra_headers=headers)), now)
        events = self.events()
        assert len(events) == 1 and isinstance(events[0], AcceptConnection), events
        self.accept = events[0]
        assert self.conn.phase is Phase.CHANNEL

    def events(self) -> list[Event]:
        self.ws.receive_data(self.conn.data_to_send())
        return list(self.ws.events())

    def send(self, message: object, now: float = 0.0) -> None:
        self.conn.receive_data(self.ws.send(TextMessage(json.dumps(message))), now)

    def messages(self) -> list[Any]:
        return [json.loads(e.data) for e in self.events() if isinstance(e, TextMessage)]


def request(id: object, method: str, params: object = None) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": id, "method": method}
    if params is not None:
        message["params"] = params
    return message


CALL = {
    "target": {"type": "echo", "key": "k"},
    "data_type": "str",
    "data_content_type": "application/json",
    "data": "hi",
}


def test_two_workers_upgrade_register_and_call_each_other_through_the_hub() -> None:
    hub = make_hub()
    callee, caller = Worker(hub, name="callee"), Worker(hub)
    headers = dict(callee.accept.extra_headers)
    assert headers[b"x-max-message-size"] == str(hub.engine.max_message_size).encode()
    assert hub.connection_count == 2

    callee.send(request(1, "runtime.register_agent", {"type": "echo"}))
    assert callee.messages() == [{"jsonrpc": "2.0", "id": 1, "result": None}]
    assert hub.engine.agent_types() == {"echo": callee.conn.client}

    caller.send(request(7, "agent.call", CALL), now=1.0)
    [forwarded] = callee.messages()
    assert forwarded["method"] == "agent.call" and forwarded["params"] == CALL
    assert caller.messages() == []  # nothing until the callee answers
    callee.send({"jsonrpc": "2.0", "id": forwarded["id"], "result": {"data": "HI"}}, now=2.0)
    assert caller.messages() == [{"jsonrpc": "2.0", "id": 7, "result": {"data": "HI"}}]
    assert set(hub.take_dirty()) == {callee.conn, caller.conn}


def test_a_one_shot_call_waits_for_a_channel_worker_s_answer() -> None:
    hub = make_hub()
    callee = Worker(hub)
    callee.send(request(1, "runtime.register_agent", {"type": "echo"}))
    callee.messages()
    http = hub.accept(0.0, "127.0.0.1")
    body = json.dumps(request("q", "agent.call", CALL)).encode()
    http.receive_data(
        b"POST /v1/rpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
        + body,
        0.0,
    )
    assert http.data_to_send() == b"" and http.client is not None  # waiting on the call
    assert http.next_deadline() is None  # no timeout while a call runs
    [forwarded] = callee.messages()
    callee.send({"jsonrpc": "2.0", "id": forwarded["id"], "result": {"data": "HI"}}, now=30.0)
    answer = http.data_to_send()
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1]) == {"jsonrpc": "2.0", "id": "q", "result": {"data": "HI"}}
    assert http.client is None and http.phase is Phase.HTTP  # the connection may carry another request


def test_a_silent_channel_is_pinged_after_the_interval_and_dropped_after_the_timeout() -> None:
    hub = make_hub(keepalive_interval=10.0, keepalive_timeout=5.0)
    worker = Worker(hub, now=100.0)
    worker.send(request(1, "runtime.register_agent", {"type": "echo"}), now=100.0)
    worker.messages()
    assert hub.next_deadline() == 110.0
    hub.handle_timer(109.0)
    assert worker.events() == []
    hub.handle_timer(110.0)
    assert worker.events() == [Ping(b"")]
    assert hub.next_deadline() == 115.0
    hub.handle_timer(115.0)  # no answer, nothing at all: given up
    assert worker.conn.phase is Phase.RESET and worker.conn.data_to_send() == b""
    assert hub.engine.agent_types() == {}  # its registration is gone


def test_any_input_answers_the_keepalive() -> None:
    hub = make_hub(keepalive_interval=10.0, keepalive_timeout=5.0)
    worker = Worker(hub, now=0.0)
    hub.handle_timer(10.0)
    [ping] = worker.events()
    worker.conn.receive_data(worker.ws.send(ping.response()), 12.0)  # type: ignore[attr-defined]
    assert worker.conn.phase is Phase.CHANNEL and worker.conn.next_deadline() == 22.0
    # The hub may wake early (a later deadline is found when the earlier one fires): nothing happens.
    hub.handle_timer(15.0)
    assert worker.events() == [] and worker.conn.phase is Phase.CHANNEL
    assert hub.next_deadline() == 22.0
    worker.send(request(1, "runtime.get_subscriptions"), now=20.0)
    assert worker.messages() == [{"jsonrpc": "2.0", "id": 1, "result": []}]
    assert worker.conn.next_deadline() == 30.0
    hub.handle_timer(22.0)
    assert worker.events() == [] and hub.next_deadline() == 30.0
    hub.handle_timer(30.0)
    assert worker.events() == [Ping(b"")] and worker.conn.phase is Phase.CHANNEL


def test_the_peer_s_ping_is_answered_by_the_hub() -> None:
    hub = make_hub()
    worker = Worker(hub)
    worker.conn.receive_data(worker.ws.send(Ping(b"x")), 1.0)
    assert worker.events() == [Pong(b"x")]


def test_a_peer_s_close_is_answered_and_releases_what_it_owned() -> None:
    hub = make_hub()
    worker = Worker(hub)
    worker.send(request(1, "runtime.register_agent", {"type": "echo"}))
    worker.messages()
    worker.conn.receive_data(worker.ws.send(CloseConnection(1000, "bye")), 1.0)
    [answer] = worker.events()
    assert isinstance(answer, CloseConnection) and answer.code == 1000
    assert worker.conn.phase is Phase.CLOSED and worker.conn.client is None
    assert hub.engine.agent_types() == {}
    worker.conn.connection_lost(1.5)
    assert hub.connection_count == 0


@pytest.mark.parametrize("keepalive_interval", [10.0, None])
def test_the_host_s_close_waits_for_the_peer_s_answer_then_gives_up(keepalive_interval: float | None) -> None:
    hub = make_hub(keepalive_interval=keepalive_interval)
    worker = Worker(hub)
    hub.close_all(5.0)
    [close] = worker.events()
    assert isinstance(close, CloseConnection) and close.code == CloseCode.GOING_AWAY
    assert worker.conn.next_deadline() == 5.0 + CLOSE_TIMEOUT
    assert hub.next_deadline() == 5.0 + CLOSE_TIMEOUT
    hub.handle_timer(5.0 + CLOSE_TIMEOUT)  # the peer never answered
    assert worker.conn.phase is Phase.RESET


def test_the_host_s_close_is_answered_by_the_peer_and_the_connection_closes() -> None:
    hub = make_hub()
    worker = Worker(hub)
    hub.close_all(5.0)
    [close] = worker.events()
    assert isinstance(close, CloseConnection)
    worker.conn.receive_data(worker.ws.send(close.response()), 5.5)
    assert worker.conn.phase is Phase.CLOSED


def test_a_worker_that_does_not_read_is_cut_off_with_4008_and_reset_after_the_close_timeout() -> None:
    hub = make_hub(max_outbound_bytes=4000, keepalive_interval=None)
    callee, caller = Worker(hub), Worker(hub)
    callee.send(request(1, "runtime.register_agent", {"type": "echo"}))
    callee.messages()
    for i in range(40):  # the callee reads none of the calls forwarded to it
        caller.send(request(i, "agent.call", CALL), now=1.0)
        if callee.conn.client is None:
            break
    assert callee.conn.client is None and hub.engine.agent_types() == {}  # cut off, released at once
    [close] = [e for e in callee.events() if isinstance(e, CloseConnection)]
    assert close.code == CloseCode.SLOW_CONSUMER
    assert hub.next_deadline() == 1.0 + CLOSE_TIMEOUT


def test_a_protocol_violation_closes_the_channel_and_releases_it_at_once() -> None:
    hub = make_hub()
    worker = Worker(hub)
    worker.send(request(1, "runtime.register_agent", {"type": "echo"}))
    worker.messages()
    worker.conn.receive_data(b"\x81\x05hello", 1.0)  # an unmasked client frame
    [close] = worker.events()
    assert isinstance(close, CloseConnection) and close.code == CloseCode.PROTOCOL_ERROR
    assert hub.engine.agent_types() == {}  # before the closing handshake ends


def phase(conn: HostConnection) -> Phase:
    """(A call, so that mypy does not take the phase for fixed after one assert.)"""
    return conn.phase


def lingering(hub: HostHub, now: float) -> HostConnection:
    """A connection whose request was refused with 413 (announced too large): it lingers."""
    conn = hub.accept(now, "127.0.0.1")
    head = b"POST /v1/rpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 99999999\r\n\r\n"
    conn.receive_data(head + b"x" * 1000, now)
    assert conn.data_to_send().startswith(b"HTTP/1.1 413 ")
    assert conn.phase is Phase.LINGERING
    return conn


def test_lingering_half_closes_once_drains_input_and_closes_at_the_linger_timeout() -> None:
    hub = make_hub()
    conn = lingering(hub, 50.0)
    assert conn.take_half_close() is True and conn.take_half_close() is False
    assert conn.reading  # what comes is read and dropped
    conn.receive_data(b"x" * 10000, 50.5)
    assert conn.data_to_send() == b"" and phase(conn) is Phase.LINGERING
    assert hub.next_deadline() == 50.0 + LINGER_TIMEOUT
    hub.handle_timer(50.0 + LINGER_TIMEOUT)
    assert phase(conn) is Phase.CLOSED


def test_lingering_ends_when_the_peer_closes_its_side() -> None:
    hub = make_hub()
    conn = lingering(hub, 0.0)
    conn.receive_data(b"", 0.1)
    assert conn.phase is Phase.CLOSED


def test_lingering_resets_a_peer_that_keeps_sending() -> None:
    hub = make_hub()
    conn = lingering(hub, 0.0)
    conn.receive_data(b"x" * LINGER_MAX_BYTES, 0.1)
    assert phase(conn) is Phase.LINGERING
    conn.receive_data(b"x", 0.2)
    assert phase(conn) is Phase.RESET


def test_a_connection_over_the_caps_is_answered_503_and_lingers() -> None:
    hub = make_hub(max_connections=1)
    Worker(hub)
    refused = hub.accept(0.0, "127.0.0.2")
    answer = refused.data_to_send()
    assert answer.startswith(b"HTTP/1.1 503 ") and b"retry-after: 1" in answer.lower()
    assert refused.phase is Phase.LINGERING and hub.refused == 1


def test_a_second_channel_with_a_live_client_id_is_refused_with_409() -> None:
    hub = make_hub()
    first = Worker(hub, name="w1")
    second = hub.accept(0.0, "127.0.0.1")
    ws = WSConnection(ConnectionType.CLIENT)
    second.receive_data(ws.send(Request(host="x", target="/v1/channel", extra_headers=[(b"x-client-id", b"w1")])), 0.0)
    answer = second.data_to_send()
    assert answer.startswith(b"HTTP/1.1 409 ") and second.phase is not Phase.CHANNEL
    assert second.client is None and first.conn.phase is Phase.CHANNEL
    first.conn.connection_lost(1.0)  # once the first is gone, the name is free again
    assert Worker(hub, now=2.0, name="w1").conn.phase is Phase.CHANNEL


def test_a_bad_websocket_handshake_is_answered_not_dropped(caplog: pytest.LogCaptureFixture) -> None:
    hub = make_hub()
    conn = hub.accept(0.0, "127.0.0.1")
    head = (
        b"GET /v1/channel HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n"
    )
    conn.receive_data(head, 0.0)
    answer = conn.data_to_send()
    assert answer.startswith((b"HTTP/1.1 400 ", b"HTTP/1.1 426 ")), answer
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
