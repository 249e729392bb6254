"""The HTTP front fed raw bytes, as h11's own tests do: requests, answers, refusals, timeouts (time
is an input), the admission of connections and the host's bearer token."""

from __future__ import annotations

import json

import h11
import pytest
from wsproto.events import AcceptConnection

from io_backends.sansio import HostHub, HubSettings, Phase
from io_backends.sansio._admission import Admission, refusal_response
from io_backends.sansio._endpoints import HttpError, RpcAnswer
from io_backends.sansio._http import ABORT, CLOSE, NEED_DATA, Action, Authorize, HttpFront, OpenChannel, RpcCall, Send
from sansio_runtime import CloseCode, HostEngine

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
    """Actions until the front needs data, an answer or a reply to OpenChannel (answering Authorize with True)."""
    actions: list[Action] = []
    reply = None
    while True:
        action = f.next_action(reply, now)
        reply = True if isinstance(action, Authorize) else None
        actions.append(action)
        if action is NEED_DATA or action in (CLOSE, ABORT) or isinstance(action, (RpcCall, OpenChannel)):
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


# ---------------------------------------------------------------------------------- requests, fed raw bytes


def sends(actions: list[Action]) -> list[Send]:
    return [a for a in actions if isinstance(a, Send)]


def parse(data: bytes) -> list[h11.Response | h11.Data]:
    """The responses (and their bodies) in ``data``, read by h11's client side."""
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="GET", target="/", headers=[("host", "x")]))
    client.send(h11.EndOfMessage())
    client.receive_data(data)
    out: list[h11.Response | h11.Data] = []
    while True:
        event = client.next_event()
        if event is h11.NEED_DATA or isinstance(event, h11.ConnectionClosed):
            return out
        if isinstance(event, (h11.Response, h11.Data)):
            out.append(event)
        elif isinstance(event, h11.EndOfMessage):
            if client.our_state is h11.MUST_CLOSE or client.their_state is h11.MUST_CLOSE:
                return out
            client.start_next_cycle()
            client.send(h11.Request(method="GET", target="/", headers=[("host", "x")]))
            client.send(h11.EndOfMessage())


def headers_of(data: bytes) -> dict[bytes, bytes]:
    head = data.split(b"\r\n\r\n", 1)[0]
    return {k.strip().lower(): v.strip() for k, _, v in (line.partition(b":") for line in head.split(b"\r\n")[1:])}


def body_of(data: bytes) -> object:
    return json.loads(data.split(b"\r\n\r\n", 1)[1])


def rpc_request(body: bytes, *, extra: bytes = b"") -> bytes:
    return (
        b"POST /v1/rpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + extra
        + b"Content-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


UPGRADE = (
    b"GET /v1/channel HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
)


def test_pipelined_requests_are_answered_in_order() -> None:
    f = front()
    f.receive_data(
        HEALTH + b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n" + b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n" + HEALTH,
        100.0,
    )
    answers = sends(run(f, 100.0))
    assert [status(a) for a in answers] == [200, 404, 200, 200]
    assert body_of(answers[0].data) == {"status": "ok"} and body_of(answers[3].data) == {"status": "ok"}
    assert answers[2].data.endswith(b"\r\n\r\n")  # HEAD: the head only
    assert all(b"connection: close" not in a.data for a in answers)  # keep-alive throughout


def test_healthz_bytes() -> None:
    f = front()
    f.receive_data(HEALTH, 100.0)
    [answer] = sends(run(f, 100.0))
    assert answer.data == (
        b'HTTP/1.1 200 \r\ncontent-length: 15\r\ncontent-type: application/json\r\n\r\n{"status":"ok"}'
    )


@pytest.mark.parametrize(
    ("request_bytes", "code", "body", "allow"),
    [
        (
            b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n",
            404,
            {
                "error": {
                    "status": 404,
                    "message": "no such endpoint: this host serves "
                    "/v1/channel, /v1/rpc, /healthz, /v1/events, /v1/status, /metrics, /ui",
                }
            },
            None,
        ),
        (b"POST /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 405, {"error": {"status": 405, "message": "use GET"}}, b"GET"),
        (b"GET /v1/rpc HTTP/1.1\r\nHost: x\r\n\r\n", 405, {"error": {"status": 405, "message": "use POST"}}, b"POST"),
    ],
)
def test_404_and_405_carry_their_json_bodies_and_keep_the_connection(
    request_bytes: bytes, code: int, body: object, allow: bytes | None
) -> None:
    f = front()
    f.receive_data(request_bytes + HEALTH, 100.0)
    answers = sends(run(f, 100.0))
    assert [status(a) for a in answers] == [code, 200]  # no body announced: the connection goes on
    assert body_of(answers[0].data) == body
    assert headers_of(answers[0].data).get(b"allow") == allow
    assert headers_of(answers[0].data)[b"content-type"] == b"application/json"


def test_head_of_anything_but_healthz_is_405_with_no_body() -> None:
    f = front()
    f.receive_data(b"HEAD /v1/rpc HTTP/1.1\r\nHost: x\r\n\r\n", 100.0)
    [answer] = sends(run(f, 100.0))
    assert status(answer) == 405 and answer.data.endswith(b"content-length: 0\r\nallow: POST\r\n\r\n")


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GARBAGE\r\n\r\n",
        b"GET /healthz HTTP/1.1 extra\r\nHost: x\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\n\r\n",  # HTTP/1.1 without Host
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nbad header line\r\n\r\n",
    ],
)
def test_a_bad_request_gets_400_and_the_connection_closes(request_bytes: bytes) -> None:
    f = front()
    f.receive_data(request_bytes + HEALTH, 100.0)  # what follows a bad request is never served
    actions = run(f, 100.0)
    [answer] = sends(actions)
    assert status(answer) == 400 and headers_of(answer.data)[b"connection"] == b"close"
    error = body_of(answer.data)
    assert isinstance(error, dict) and error["error"]["status"] == 400
    assert actions[-1] is CLOSE


def test_a_request_head_over_max_header_size_gets_431_and_the_connection_closes() -> None:
    f = front()
    f.receive_data(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000, 100.0)  # no end of head yet
    actions = run(f, 100.0)
    [answer] = sends(actions)
    assert status(answer) == 431 and headers_of(answer.data)[b"connection"] == b"close"
    assert actions[-1] is CLOSE


def test_a_request_head_just_under_max_header_size_is_served() -> None:
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: "
    f = front()
    f.receive_data(head + b"a" * (16384 - len(head) - 4) + b"\r\n\r\n", 100.0)
    assert [status(a) for a in sends(run(f, 100.0))] == [200]


def test_an_announced_body_over_max_message_size_gets_413_before_it_is_read() -> None:
    f = front()
    head = b"POST /v1/rpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 4097\r\n\r\n"
    f.receive_data(head, 100.0)  # the head only: the answer must not wait for the body
    actions = run(f, 100.0)
    [answer] = sends(actions)
    assert status(answer) == 413 and headers_of(answer.data)[b"connection"] == b"close"
    assert body_of(answer.data) == {"error": {"status": 413, "message": "body exceeds 4096 bytes"}}
    assert not any(isinstance(a, RpcCall) for a in actions) and actions[-1] is CLOSE


def test_a_chunked_body_over_max_message_size_gets_413_as_soon_as_it_passes_the_limit() -> None:
    f = front()
    head = b"POST /v1/rpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    f.receive_data(head + b"800\r\n" + b"x" * 0x800 + b"\r\n", 100.0)
    assert run(f, 100.0)[-1] is NEED_DATA  # 2 KiB of 4: read on
    f.receive_data(b"801\r\n" + b"x" * 0x801 + b"\r\n", 100.0)  # 4097 bytes: the last chunk never comes
    actions = run(f, 100.0)
    [answer] = sends(actions)
    assert status(answer) == 413 and actions[-1] is CLOSE


def test_a_body_of_exactly_max_message_size_is_handed_over() -> None:
    f = front()
    body = b"[" + b" " * 4094 + b"]"
    f.receive_data(rpc_request(body), 100.0)
    actions = run(f, 100.0)
    assert isinstance(actions[-1], RpcCall) and actions[-1].body == body


def test_an_rpc_answer_is_200_with_the_body_and_a_close_code_maps_to_its_status() -> None:
    f = front()
    body = b'{"jsonrpc":"2.0","id":1,"method":"runtime.get_subscriptions"}'
    f.receive_data(rpc_request(body) + rpc_request(body), 100.0)
    assert isinstance(run(f, 100.0)[-1], RpcCall)
    answer = f.next_action(RpcAnswer(body=b'{"jsonrpc":"2.0","id":1,"result":[]}'), 100.0)
    assert status(answer) == 200 and answer.data.endswith(b'\r\n\r\n{"jsonrpc":"2.0","id":1,"result":[]}')  # type: ignore[union-attr]
    assert isinstance(f.next_action(None, 100.0), Authorize)  # the pipelined second body
    assert isinstance(f.next_action(True, 100.0), RpcCall)
    refused = f.next_action(RpcAnswer(CloseCode.MESSAGE_TOO_BIG), 100.0)
    assert status(refused) == 413
    assert body_of(refused.data) == {"error": {"status": 413, "message": "closed with MESSAGE_TOO_BIG"}}  # type: ignore[union-attr]


def test_a_websocket_upgrade_request_becomes_open_channel_with_the_trailing_bytes() -> None:
    f = front()
    # The first frame ("hi", masked with "abcd") arrives in the same packet as the request.
    frame = b"\x81\x82abcd" + bytes(b ^ m for b, m in zip(b"hi", b"ab", strict=True))
    f.receive_data(UPGRADE + b"\r\n" + frame, 100.0)
    actions = run(f, 100.0)
    assert isinstance(actions[0], Authorize) and actions[0].request.target == b"/v1/channel"
    opened = actions[1]
    assert isinstance(opened, OpenChannel) and opened.request.method == b"GET"
    accept = opened.ws.send(AcceptConnection())
    assert accept.startswith(b"HTTP/1.1 101 ")
    assert b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in accept  # RFC 6455's example key and answer
    assert f.next_action(None, 100.0) is CLOSE  # the front is done: the connection is a WebSocket
    assert f.trailing_data() == frame


def test_a_refused_upgrade_is_answered_with_the_refusal() -> None:
    f = front()
    f.receive_data(UPGRADE + b"\r\n", 100.0)
    assert isinstance(run(f, 100.0)[-1], OpenChannel)
    answer = f.next_action(HttpError(409, "another live connection uses this X-Client-Id", close=True), 100.0)
    assert status(answer) == 409 and headers_of(answer.data)[b"connection"] == b"close"  # type: ignore[union-attr]
    assert f.next_action(None, 100.0) is CLOSE


@pytest.mark.parametrize(
    ("request_bytes", "code"),
    [
        (b"GET /v1/channel HTTP/1.1\r\nHost: x\r\n\r\n", 426),  # no upgrade
        (b"POST /v1/channel HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n", 426),
        pytest.param(
            UPGRADE.replace(b"Sec-WebSocket-Version: 13", b"Sec-WebSocket-Version: 8") + b"\r\n",
            426,
            id="wrong-version",
        ),
        pytest.param(
            UPGRADE.replace(b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", b"") + b"\r\n",
            400,
            id="no-key",
        ),
        pytest.param(
            UPGRADE.replace(b"Connection: Upgrade", b"Connection: keep-alive") + b"\r\n",
            400,
            id="no-connection-upgrade",
        ),
    ],
)
def test_a_channel_request_that_is_no_good_upgrade_is_refused(request_bytes: bytes, code: int) -> None:
    f = front()
    f.receive_data(request_bytes, 100.0)
    actions: list[Action] = []
    reply = None
    while not actions or actions[-1] is not CLOSE:
        action = f.next_action(reply, 100.0)
        reply = True if isinstance(action, Authorize) else None
        assert not isinstance(action, OpenChannel)
        actions.append(action)
    [answer] = sends(actions)
    assert status(answer) == code and headers_of(answer.data)[b"connection"] == b"close"


@pytest.mark.parametrize("request_bytes", [rpc_request(b"{}"), UPGRADE + b"\r\n"])
def test_authorize_false_is_401_with_www_authenticate_and_the_connection_closes(request_bytes: bytes) -> None:
    f = front()
    f.receive_data(request_bytes + HEALTH, 100.0)
    ask = f.next_action(None, 100.0)
    assert isinstance(ask, Authorize)
    answer = f.next_action(False, 100.0)
    assert status(answer) == 401
    assert headers_of(answer.data)[b"www-authenticate"] == b"Bearer"  # type: ignore[union-attr]
    assert headers_of(answer.data)[b"connection"] == b"close"  # type: ignore[union-attr]
    assert body_of(answer.data) == {"error": {"status": 401, "message": "missing or wrong credentials"}}  # type: ignore[union-attr]
    assert f.next_action(None, 100.0) is CLOSE  # the pipelined /healthz is not served


def test_healthz_never_asks_for_credentials() -> None:
    f = front()
    f.receive_data(HEALTH, 100.0)
    assert not any(isinstance(a, Authorize) for a in run(f, 100.0))


# ---------------------------------------------------------------------------------- the host's bearer token


def hub_with_token(token: bytes = b"s3cret") -> HostHub:
    return HostHub(HostEngine(), HubSettings(auth_token=token), health=lambda: b'{"status":"ok"}')


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        b"Bearer wrong",
        b"Bearer ",
        b"Basic s3cret",
        b"Bearer s3cret2",
        b"s3cret",
    ],
)
@pytest.mark.parametrize("request_head", [UPGRADE, rpc_request(b"{}").split(b"\r\n\r\n")[0] + b"\r\n"])
def test_a_missing_or_wrong_bearer_token_gets_401(authorization: bytes | None, request_head: bytes) -> None:
    hub = hub_with_token()
    conn = hub.accept(0.0, "127.0.0.1")
    extra = b"" if authorization is None else b"Authorization: " + authorization + b"\r\n"
    body = b"{}" if b"/v1/rpc" in request_head else b""
    conn.receive_data(request_head + extra + b"\r\n" + body, 0.0)
    out = conn.data_to_send()
    assert status(Send(out)) == 401 and headers_of(out)[b"www-authenticate"] == b"Bearer"
    assert conn.client is None and hub.engine.stats.frames_received == 0  # the engine saw nothing
    assert conn.phase in (Phase.LINGERING, Phase.CLOSED)


@pytest.mark.parametrize("authorization", [b"Bearer s3cret", b"bearer s3cret", b"BEARER   s3cret  "])
def test_the_right_bearer_token_is_let_in(authorization: bytes) -> None:
    hub = hub_with_token()
    channel = hub.accept(0.0, "127.0.0.1")
    channel.receive_data(UPGRADE + b"Authorization: " + authorization + b"\r\n\r\n", 0.0)
    assert channel.data_to_send().startswith(b"HTTP/1.1 101 ") and channel.phase is Phase.CHANNEL
    one_shot = hub.accept(0.0, "127.0.0.1")
    body = b'{"jsonrpc":"2.0","id":1,"method":"runtime.get_subscriptions"}'
    one_shot.receive_data(rpc_request(body, extra=b"Authorization: " + authorization + b"\r\n"), 0.0)
    answer = one_shot.data_to_send()
    assert status(Send(answer)) == 200 and body_of(answer) == {"jsonrpc": "2.0", "id": 1, "result": []}
