"""The endpoints' policy over parsed request heads: routes, refusals, credentials, and the HTTP status
of each close code, checked against docs/PROTOCOL.md itself (so the code and the spec cannot drift)."""

from __future__ import annotations

import re
from pathlib import Path

import h11
import pytest

import sansio_runtime
from io_backends.sansio import http_status_for
from io_backends.sansio._endpoints import (
    Endpoint,
    HttpError,
    RpcAnswer,
    bearer_token_matches,
    channel_refusal,
    client_name,
    route,
    rpc_body_refusal,
    rpc_response,
)
from sansio_runtime import CloseCode

PROTOCOL = Path(__file__).resolve().parents[2] / "docs" / "PROTOCOL.md"


def section_6() -> str:
    text = PROTOCOL.read_text(encoding="utf-8")
    start = text.index("\n## 6. ")
    return text[start : text.index("\n## 7. ", start)]


def spec_close_code_table() -> dict[int, tuple[str, int]]:
    """Section 6's table: close code -> (its name, the /v1/rpc status: the first number in the last column)."""
    rows: dict[int, tuple[str, int]] = {}
    for line in section_6().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].isdigit():
            status = re.match(r"\d{3}", cells[3])
            assert status is not None, f"no HTTP status in the last column of: {line}"
            rows[int(cells[0])] = (cells[1], int(status.group()))
    return rows


def spec_status_for_other_codes() -> int:
    found = re.search(r"Any other close code maps to `(\d{3})`", section_6())
    assert found is not None, "docs/PROTOCOL.md section 6 no longer says what other close codes map to"
    return int(found.group(1))


def test_the_spec_table_lists_every_close_code_by_its_name() -> None:
    table = spec_close_code_table()
    assert len(table) >= 10, f"parsed only {len(table)} rows of section 6's table: has its layout changed?"
    assert {code: name for code, (name, _) in table.items()} == {c.value: c.name for c in CloseCode}


@pytest.mark.parametrize("code", list(CloseCode), ids=lambda c: c.name)
def test_http_status_for_each_close_code_is_the_spec_s(code: CloseCode) -> None:
    _, status = spec_close_code_table()[code.value]
    assert http_status_for(code) == status, f"{code.name}: docs/PROTOCOL.md section 6 says {status}"


@pytest.mark.parametrize("code", [1005, 1006, 1010, 3000, 4000, 4999])
def test_http_status_for_any_other_code_is_the_spec_s(code: int) -> None:
    assert http_status_for(code) == spec_status_for_other_codes()  # type: ignore[arg-type]


def test_a_normal_end_is_200_with_a_body_and_204_without() -> None:
    assert re.search(r"^\| 1000 \| NORMAL \|.*\| 200 \(204 if no body\) \|$", section_6(), re.MULTILINE)
    assert rpc_response(RpcAnswer(CloseCode.NORMAL, b"[]")) == (200, b"[]")
    assert rpc_response(RpcAnswer()) == (204, b"")


@pytest.mark.parametrize("code", [c for c in CloseCode if c is not CloseCode.NORMAL], ids=lambda c: c.name)
def test_a_closed_rpc_body_is_answered_with_the_code_s_status_and_a_json_error(code: CloseCode) -> None:
    status, body = rpc_response(RpcAnswer(code, b"ignored"))
    assert status == spec_close_code_table()[code.value][1]
    assert body == b'{"error":{"status":%d,"message":"closed with %s"}}' % (status, code.name.encode())


def test_the_engine_no_longer_has_http_status_for_and_says_where_it_went() -> None:
    with pytest.raises(AttributeError, match=r"io_backends\.sansio\.http_status_for"):
        sansio_runtime.http_status_for  # noqa: B018
    assert not hasattr(sansio_runtime, "http_status_for")
    with pytest.raises(AttributeError, match="has no attribute 'nothing_here'"):
        sansio_runtime.nothing_here  # noqa: B018


# ---------------------------------------------------------------------------------- credentials


def request(method: bytes = b"GET", target: bytes = b"/v1/channel", *headers: tuple[bytes, bytes]) -> h11.Request:
    return h11.Request(method=method, target=target, headers=[(b"host", b"x"), *headers])


def with_authorization(value: bytes) -> h11.Request:
    """A request head with ``Authorization: <value>`` as it comes off the wire, parsed by h11 (which
    drops the whitespace around a header's value)."""
    server = h11.Connection(h11.SERVER)
    server.receive_data(b"GET /v1/channel HTTP/1.1\r\nHost: x\r\nAuthorization: " + value + b"\r\n\r\n")
    parsed = server.next_event()
    assert isinstance(parsed, h11.Request)
    return parsed


@pytest.mark.parametrize(
    "value",
    [b"Bearer s3cret", b"bearer s3cret", b"BEARER s3cret", b"BeArEr s3cret", b"Bearer   s3cret  ", b"  Bearer s3cret"],
)
def test_bearer_scheme_is_case_insensitive_and_spaces_around_the_token_do_not_matter(value: bytes) -> None:
    assert bearer_token_matches(with_authorization(value), b"s3cret")


@pytest.mark.parametrize(
    "value",
    [
        b"Bearer wrong",
        b"Bearer s3cret2",  # a longer token with the right prefix
        b"Bearer s3cre",  # a prefix of the token
        b"Bearer S3CRET",  # the token itself is case-sensitive
        b"Bearer",  # no token
        b"Bearer ",  # an empty token
        b"Bearer    ",
        b"",
        b"Bearers3cret",
        b"Basic s3cret",
        b"s3cret",
        b"Bearer s3 cret",
    ],
)
def test_a_wrong_or_empty_token_or_another_scheme_does_not_match(value: bytes) -> None:
    assert not bearer_token_matches(with_authorization(value), b"s3cret")


def test_no_authorization_header_does_not_match() -> None:
    assert not bearer_token_matches(request(), b"s3cret")


def test_an_empty_configured_token_never_matches() -> None:
    assert not bearer_token_matches(with_authorization(b"Bearer "), b"")
    assert not bearer_token_matches(with_authorization(b"Bearer"), b"")
    assert not bearer_token_matches(with_authorization(b""), b"")
    assert not bearer_token_matches(request(), b"")


def test_the_first_authorization_header_is_the_one_checked() -> None:
    twice = request(b"GET", b"/v1/channel", (b"authorization", b"Bearer wrong"), (b"authorization", b"Bearer s3cret"))
    assert not bearer_token_matches(twice, b"s3cret")


# ---------------------------------------------------------------------------------- routes and refusals


@pytest.mark.parametrize(
    ("method", "target", "endpoint"),
    [
        (b"GET", b"/v1/channel", Endpoint.CHANNEL),
        (b"POST", b"/v1/channel", Endpoint.CHANNEL),  # refused later: not an upgrade (426)
        (b"GET", b"/v1/channel?client=a", Endpoint.CHANNEL),
        (b"POST", b"/v1/rpc", Endpoint.RPC),
        (b"PUT", b"/v1/rpc", Endpoint.RPC),  # refused later: not a POST (405)
        (b"POST", b"/v1/rpc?x=1", Endpoint.RPC),
        (b"GET", b"/healthz", Endpoint.HEALTH),
        (b"HEAD", b"/healthz", Endpoint.HEALTH),
        (b"GET", b"/healthz?verbose", Endpoint.HEALTH),
    ],
)
def test_route_finds_the_endpoint(method: bytes, target: bytes, endpoint: Endpoint) -> None:
    assert route(request(method, target)) is endpoint


@pytest.mark.parametrize(
    ("method", "target", "status", "allow"),
    [
        (b"GET", b"/", 404, None),
        (b"GET", b"/v1/rpc/", 404, None),
        (b"GET", b"/V1/RPC", 404, None),
        (b"GET", b"/v1", 404, None),
        (b"POST", b"/healthz", 405, b"GET"),
        (b"DELETE", b"/healthz", 405, b"GET"),
        (b"HEAD", b"/v1/rpc", 405, b"GET, POST"),
        (b"HEAD", b"/v1/channel", 405, b"GET, POST"),
        (b"HEAD", b"/nope", 405, b"GET, POST"),
    ],
)
def test_route_refuses_unknown_paths_and_wrong_methods(
    method: bytes, target: bytes, status: int, allow: bytes | None
) -> None:
    refusal = route(request(method, target))
    assert isinstance(refusal, HttpError) and refusal.status == status
    assert dict(refusal.headers or []).get(b"allow") == allow
    assert not refusal.close  # the connection may go on (unless the request has a body)


def test_route_refuses_transfer_encoding_with_content_length_and_closes() -> None:
    smuggled = request(b"POST", b"/v1/rpc", (b"content-length", b"5"), (b"transfer-encoding", b"chunked"))
    refusal = route(smuggled)
    assert isinstance(refusal, HttpError) and refusal.status == 400 and refusal.close


@pytest.mark.parametrize(
    ("content_type", "length", "status"),
    [
        (b"application/json", b"10", None),
        (b"application/json; charset=utf-8", b"10", None),
        (b"Application/JSON", b"10", None),
        (b"application/json", b"4096", None),
        (b"application/json", b"4097", 413),
        (b"text/plain", b"10", 415),
        (b"application/jsonx", b"10", 415),
        (None, b"10", 415),
    ],
)
def test_rpc_body_refusal(content_type: bytes | None, length: bytes, status: int | None) -> None:
    headers = [(b"content-length", length)]
    if content_type is not None:
        headers.append((b"content-type", content_type))
    refusal = rpc_body_refusal(request(b"POST", b"/v1/rpc", *headers), 4096)
    assert (refusal and refusal.status) == status
    if status == 413:
        assert refusal is not None and refusal.close and "4096" in refusal.message


def test_channel_refusal_wants_a_get_with_upgrade_websocket() -> None:
    assert channel_refusal(request(b"GET", b"/v1/channel", (b"upgrade", b"WebSocket"))) is None
    for refused in (request(), request(b"POST", b"/v1/channel", (b"upgrade", b"websocket"))):
        refusal = channel_refusal(refused)
        assert refusal is not None and refusal.status == 426 and refusal.close
        assert dict(refusal.headers or []) == {b"upgrade": b"websocket"}


def test_client_name_is_the_x_client_id_header() -> None:
    assert client_name(request()) is None
    assert client_name(request(b"GET", b"/v1/channel", (b"x-client-id", b"worker-1"))) == "worker-1"
    assert client_name(request(b"GET", b"/v1/channel", (b"x-client-id", b"w\xff"))) == "w\ufffd"
