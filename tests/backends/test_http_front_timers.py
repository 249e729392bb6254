"""The HTTP front's timeouts and the admission of connections, without any I/O: time is an input."""

from __future__ import annotations

import pytest

from io_backends.sansio._admission import Admission, refusal_response
from io_backends.sansio._endpoints import RpcAnswer
from io_backends.sansio._http import ABORT, CLOSE, NEED_DATA, Action, Authorize, HttpFront, RpcCall, Send

HEALTH = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"


def front(now: float = 100.0) -> HttpFront:
    return HttpFront(
        max_header_size=16384,
        max_message_size=4096,
        health=lambda: b'{"status":"ok"}',
        now=now,
        head_timeout=10.0,
        body_timeout=30.0,
        idle_timeout=60.0,
    )


def run(f: HttpFront, now: float) -> list[Action]:
    """Actions until the front needs data (answering Authorize with True)."""
    actions: list[Action] = []
    reply = None
    while True:
        action = f.next_action(reply, now)
        reply = True if isinstance(action, Authorize) else None
        actions.append(action)
        if action is NEED_DATA or action in (CLOSE, ABORT) or isinstance(action, RpcCall):
            return actions


def status(action: Action) -> int:
    assert isinstance(action, Send)
    return int(action.data.split(b" ", 2)[1])


def test_a_new_connection_that_sends_nothing_is_closed_at_the_head_timeout() -> None:
    f = front()
    assert run(f, 100.0) == [NEED_DATA]
    assert f.next_deadline() == 110.0
    assert f.handle_timer(109.9) is False
    assert f.handle_timer(110.0) is True
    assert f.next_action(None, 110.0) is CLOSE  # nothing was asked: no answer
    assert f.next_deadline() is None


def test_a_head_that_trickles_in_gets_408_at_the_head_timeout() -> None:
    f = front()
    run(f, 100.0)
    for i, byte in enumerate(HEALTH[:20]):
        f.receive_data(bytes([byte]), 100.0 + i * 0.4)  # a byte now and then does not move the deadline
        run(f, 100.0 + i * 0.4)
    assert f.next_deadline() == 110.0
    assert f.handle_timer(110.0)
    answer = f.next_action(None, 110.0)
    assert status(answer) == 408 and b"connection: close" in answer.data  # type: ignore[union-attr]
    assert f.next_action(None, 110.0) is CLOSE


def test_keep_alive_idles_for_the_idle_timeout_and_a_new_request_gets_the_head_timeout() -> None:
    f = front()
    f.receive_data(HEALTH, 101.0)
    actions = run(f, 101.0)
    assert status(actions[0]) == 200 and actions[-1] is NEED_DATA
    assert f.next_deadline() == 161.0  # idle: 60 s from the answer
    f.receive_data(HEALTH[:5], 150.0)
    assert f.next_deadline() == 160.0  # a request began: 10 s to finish its head
    f.receive_data(HEALTH[5:], 151.0)
    assert status(run(f, 151.0)[0]) == 200
    assert f.next_deadline() == 211.0
    assert f.handle_timer(211.0) and f.next_action(None, 211.0) is CLOSE


def test_a_body_has_the_body_timeout_from_the_end_of_its_head() -> None:
    f = front()
    head = b"POST /v1/rpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    f.receive_data(head + b"x" * 10, 102.0)
    assert run(f, 102.0)[-1] is NEED_DATA
    assert f.next_deadline() == 132.0
    f.receive_data(b"x" * 10, 131.0)  # more of the body does not move the deadline
    run(f, 131.0)
    assert f.handle_timer(132.0)
    assert status(f.next_action(None, 132.0)) == 408


def test_no_timeout_runs_while_the_driver_works_and_an_unread_answer_ends_in_a_reset() -> None:
    f = front()
    body = b'{"jsonrpc":"2.0","method":"$/cancelRequest","params":{"id":1}}'
    request = b"POST /v1/rpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: "
    f.receive_data(request + str(len(body)).encode() + b"\r\n\r\n" + body, 100.0)
    actions = run(f, 100.0)
    assert isinstance(actions[-1], RpcCall)
    assert f.next_deadline() is None  # the call may take as long as it takes
    answer = f.next_action(RpcAnswer(), 500.0)  # the call was answered (with nothing: a notification)
    assert status(answer) == 204
    assert f.next_deadline() == 560.0  # the peer has the idle timeout to take the answer
    assert f.handle_timer(560.0)
    assert f.next_action(None, 560.0) is ABORT


@pytest.mark.parametrize(
    ("request_bytes", "code"),
    [
        (b"PUT /v1/rpc HTTP/1.1\r\nHost: x\r\nContent-Length: 4000000\r\n\r\n", 405),
        (b"POST /nope HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", 404),
        (b"POST /v1/rpc HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n\r\n", 415),
    ],
)
def test_a_refused_request_is_answered_before_its_body_and_the_connection_closes(
    request_bytes: bytes, code: int
) -> None:
    f = front()
    f.receive_data(request_bytes, 100.0)  # the body never comes
    [answer] = [a for a in run(f, 100.0) if isinstance(a, Send)]
    assert status(answer) == code and b"connection: close" in answer.data.lower()
    assert f.next_action(None, 100.0) is CLOSE


def test_transfer_encoding_and_content_length_together_get_400_and_nothing_more() -> None:
    f = front()
    smuggled = b"POST /v1/rpc HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    f.receive_data(smuggled + HEALTH, 100.0)
    actions = run(f, 100.0)
    assert [status(a) for a in actions[:-1]] == [400]
    assert actions[-1] is CLOSE


def test_admission_caps_connections_in_all_and_per_address() -> None:
    admission = Admission(max_connections=3, max_connections_per_address=2)
    assert admission.admit("10.0.0.1") is None
    assert admission.admit("10.0.0.1") is None
    refused = admission.admit("10.0.0.1")
    assert refused is not None and refused.status == 503 and "10.0.0.1" in refused.message
    assert admission.admit(None) is None  # no address (a Unix socket): only the host-wide cap
    full = admission.admit("10.0.0.2")
    assert full is not None and "maximum of 3" in full.message
    assert b"retry-after: 1" in refusal_response(full)
    admission.release("10.0.0.1")
    assert admission.count == 2
    assert admission.admit("10.0.0.2") is None
