"""WebSocketCore fed raw client frames, as wsproto's own tests do: frames built by hand with a known
mask (and by wsproto's client, for comparison), and what the core sends read back by wsproto."""

from __future__ import annotations

import struct

import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    Pong,
    Request,
    TextMessage,
)

from io_backends.sansio import WebSocketCore
from sansio_runtime import CloseCode

TEXT, BINARY, CONTINUATION, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA
MASK = b"\x37\xfa\x21\x3d"  # RFC 6455 section 5.7's example mask


def frame(opcode: int, payload: bytes, *, fin: bool = True, mask: bytes | None = MASK, rsv: int = 0) -> bytes:
    """One frame, built by hand (RFC 6455 section 5.2); masked unless ``mask`` is None."""
    head = bytes([(0x80 if fin else 0) | rsv << 4 | opcode])
    mask_bit = 0x80 if mask is not None else 0
    n = len(payload)
    if n < 126:
        head += bytes([mask_bit | n])
    elif n < 65536:
        head += bytes([mask_bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", n)
    if mask is None:
        return head + payload
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def close_frame(code: int, reason: str = "", **kwargs: bytes | None) -> bytes:
    return frame(CLOSE, struct.pack("!H", code) + reason.encode(), **kwargs)  # type: ignore[arg-type]


def open_pair() -> tuple[WSConnection, WSConnection]:
    """A server-side WSConnection that has accepted a handshake, and the client that made it."""
    client = WSConnection(ConnectionType.CLIENT)
    server = WSConnection(ConnectionType.SERVER)
    server.receive_data(client.send(Request(host="x", target="/v1/channel")))
    [request] = server.events()
    assert isinstance(request, Request)
    client.receive_data(server.send(AcceptConnection()))
    [accepted] = client.events()
    assert isinstance(accepted, AcceptConnection)
    return server, client


def core(max_message_size: int = 1 << 20, max_outbound_bytes: int = 1 << 20) -> tuple[WebSocketCore, WSConnection]:
    server, client = open_pair()
    return WebSocketCore(server, max_message_size=max_message_size, max_outbound_bytes=max_outbound_bytes), client


def read_back(client: WSConnection, c: WebSocketCore) -> list[Event]:
    """What the core queued, parsed by wsproto's client."""
    client.receive_data(b"".join(c.take_output()))
    return list(client.events())


def close_code_sent(client: WSConnection, c: WebSocketCore) -> int:
    events = read_back(client, c)
    assert isinstance(events[-1], CloseConnection), events
    return events[-1].code


# ---------------------------------------------------------------------------------- messages in


def test_a_masked_text_frame_is_one_message_on_the_fast_path() -> None:
    c, _ = core()
    assert frame(TEXT, b"Hello")[:6] == b"\x81\x85\x37\xfa\x21\x3d"  # RFC 6455 5.7: a masked "Hello"
    assert c.receive_data(frame(TEXT, b"Hello")) == ["Hello"]
    assert c.receive_data(frame(TEXT, "héllo ☃".encode())) == ["héllo ☃"]
    assert c._fast  # parsed here: wsproto has not taken the input over
    assert c.is_open and c.take_output() == []


def test_several_frames_in_one_read_are_several_messages_in_order() -> None:
    c, _ = core()
    data = frame(TEXT, b"one") + frame(BINARY, b"\x00\x01") + frame(TEXT, b"") + frame(TEXT, b"x" * 300)
    assert c.receive_data(data) == ["one", b"\x00\x01", "", "x" * 300]


def test_a_binary_frame_is_bytes() -> None:
    c, _ = core()
    [message] = c.receive_data(frame(BINARY, bytes(range(256))))
    assert message == bytes(range(256)) and type(message) is bytes


@pytest.mark.parametrize("length", [125, 126, 65535, 65536, 70000])
def test_every_payload_length_form(length: int) -> None:
    c, _ = core()
    payload = bytes(i % 251 for i in range(length))
    assert c.receive_data(frame(BINARY, payload)) == [payload]


def test_a_fragmented_text_message_is_reassembled() -> None:
    c, _ = core()
    assert c.receive_data(frame(TEXT, b"hel", fin=False)) == []
    assert c.receive_data(frame(CONTINUATION, b"lo", fin=False)) == []
    assert c.receive_data(frame(CONTINUATION, " ☃".encode())) == ["hello ☃"]
    assert c.receive_data(frame(TEXT, b"after")) == ["after"]  # and messages go on


def test_a_fragmented_binary_message_with_a_ping_between_its_fragments() -> None:
    c, client = core()
    data = frame(BINARY, b"ab", fin=False) + frame(PING, b"p") + frame(CONTINUATION, b"cd")
    assert c.receive_data(data) == [b"abcd"]
    assert read_back(client, c) == [Pong(b"p")]


def test_a_character_split_across_fragments_is_reassembled() -> None:
    snowman = "☃".encode()
    c, _ = core()
    data = frame(TEXT, snowman[:1], fin=False) + frame(CONTINUATION, snowman[1:2], fin=False)
    assert c.receive_data(data + frame(CONTINUATION, snowman[2:])) == ["☃"]


def test_frames_built_by_wsproto_s_client_read_the_same() -> None:
    server, client = open_pair()
    c = WebSocketCore(server, max_message_size=1 << 20, max_outbound_bytes=1 << 20)
    data = b"".join(
        [
            client.send(TextMessage("Hello")),
            client.send(BytesMessage(b"\x00\xff")),
            client.send(TextMessage("frag", message_finished=False)),
            client.send(TextMessage("mented")),
            client.send(TextMessage("x" * 70000)),
        ]
    )
    assert c.receive_data(data) == ["Hello", b"\x00\xff", "fragmented", "x" * 70000]


def test_a_ping_is_answered_with_a_pong_carrying_its_payload() -> None:
    c, client = core()
    assert c.receive_data(frame(PING, b"are you there")) == []
    out = c.take_output()
    assert out == [b"\x8a\x0dare you there"]  # a server's frames are not masked
    client.receive_data(b"".join(out))
    assert list(client.events()) == [Pong(b"are you there")]
    assert c.receive_data(frame(PING, b"") + frame(PONG, b"ignored")) == []
    assert read_back(client, c) == [Pong(b"")]


# ---------------------------------------------------------------------------------- closing


@pytest.mark.parametrize("code", [1000, 1001, 4000])
def test_the_peer_s_close_is_answered_with_its_code(code: int) -> None:
    c, client = core()
    assert c.receive_data(frame(TEXT, b"last") + close_frame(code, "bye")) == ["last"]
    assert c.finished and c.close_code == code
    [answer] = read_back(client, c)
    assert isinstance(answer, CloseConnection) and answer.code == code
    assert c.receive_data(frame(TEXT, b"too late")) == []  # nothing after the close matters


def test_our_close_then_the_peer_s_answer_finishes_the_handshake() -> None:
    c, client = core()
    c.close(CloseCode.GOING_AWAY, "host shutting down")
    assert c.closing and not c.finished and not c.is_open
    assert close_code_sent(client, c) == CloseCode.GOING_AWAY
    assert c.send_message(b"{}") is False  # nothing more is sent once closing
    assert c.receive_data(frame(TEXT, b"in flight") + close_frame(1001)) == []
    assert c.finished and c.close_code == CloseCode.GOING_AWAY and c.take_output() == []


def test_an_unmasked_client_frame_is_closed_with_1002() -> None:
    c, client = core()
    assert c.receive_data(frame(TEXT, b"ok") + frame(TEXT, b"no mask", mask=None)) == ["ok"]
    assert c.close_code == CloseCode.PROTOCOL_ERROR
    assert close_code_sent(client, c) == 1002


@pytest.mark.parametrize(
    "bad",
    [
        frame(TEXT, b"x", rsv=1),  # a reserved bit (no extension was negotiated)
        frame(0x3, b"x"),  # a reserved opcode
        frame(PING, b"x" * 126),  # a control frame over 125 bytes
        frame(PING, b"x", fin=False),  # a fragmented control frame
        frame(CONTINUATION, b"x"),  # a continuation of nothing
        frame(TEXT, b"a", fin=False) + frame(TEXT, b"b"),  # a new message inside a fragmented one
        b"\x82\x7e\x00\x05" + MASK + b"12345",  # a 16-bit length for a short payload
    ],
)
def test_bad_framing_is_closed_with_1002(bad: bytes) -> None:
    c, client = core()
    assert c.receive_data(bad) == []
    assert c.close_code == 1002 and close_code_sent(client, c) == 1002


@pytest.mark.parametrize(
    "frames",
    [
        [frame(TEXT, b"ok \xff")],
        [frame(TEXT, b"\xe2\x98", fin=False), frame(CONTINUATION, b"x")],
        [frame(TEXT, "☃".encode() + b"\xc3\x28")],
    ],
)
def test_invalid_utf8_is_closed_with_1007(frames: list[bytes]) -> None:
    c, client = core()
    messages: list[str | bytes] = []
    for f in frames:
        messages += c.receive_data(f)
    assert messages == []
    assert c.close_code == CloseCode.INVALID_PAYLOAD
    assert close_code_sent(client, c) == 1007


def test_invalid_utf8_in_a_frame_still_arriving_is_closed_with_1007_before_its_end() -> None:
    c, client = core()
    whole = frame(TEXT, b"\xff" + b"x" * 1000)
    assert c.receive_data(whole[:20]) == []  # the bad byte has come; the rest of the frame has not
    assert c.close_code == 1007 and close_code_sent(client, c) == 1007


def test_a_message_over_max_message_size_is_closed_with_1009() -> None:
    c, client = core(max_message_size=100)
    assert c.receive_data(frame(TEXT, b"x" * 100)) == ["x" * 100]  # the limit itself is fine
    start = frame(TEXT, b"x" * 1000)[: 8 + 101]  # the frame has not all come; what has is over the limit
    assert c.receive_data(start) == []
    assert c.close_code == CloseCode.MESSAGE_TOO_BIG
    assert close_code_sent(client, c) == 1009


def test_a_fragmented_message_over_max_message_size_is_closed_before_its_last_fragment() -> None:
    c, client = core(max_message_size=100)
    assert c.receive_data(frame(TEXT, b"x" * 60, fin=False)) == []
    assert c.close_code is None
    assert c.receive_data(frame(CONTINUATION, b"x" * 60, fin=False)) == []  # 120 so far; more would come
    assert c.close_code == 1009 and close_code_sent(client, c) == 1009
    assert c.receive_data(frame(CONTINUATION, b"x")) == []


def test_a_fragmented_message_of_exactly_max_message_size_is_delivered() -> None:
    c, _ = core(max_message_size=100)
    data = frame(BINARY, b"x" * 50, fin=False) + frame(CONTINUATION, b"y" * 50)
    assert c.receive_data(data) == [b"x" * 50 + b"y" * 50]


# ---------------------------------------------------------------------------------- how the bytes arrive


STREAM = b"".join(
    [
        frame(TEXT, b"first"),
        frame(PING, b"p1"),
        frame(BINARY, bytes(range(200))),  # a 16-bit length
        frame(TEXT, "żółw ☃".encode()),
        frame(TEXT, b"frag", fin=False),
        frame(PING, b"p2"),
        frame(CONTINUATION, "mented ☃".encode()),
        frame(TEXT, b""),
        frame(TEXT, b"last"),
    ]
)
STREAM_MESSAGES: list[str | bytes] = ["first", bytes(range(200)), "żółw ☃", "fragmented ☃", "", "last"]


def test_bytes_split_at_every_offset_give_the_same_messages_and_pongs() -> None:
    for split in range(len(STREAM) + 1):
        c, client = core()
        messages = c.receive_data(STREAM[:split]) + c.receive_data(STREAM[split:])
        assert messages == STREAM_MESSAGES, f"split at {split}"
        assert read_back(client, c) == [Pong(b"p1"), Pong(b"p2")], f"split at {split}"


def test_bytes_one_at_a_time_give_the_same_messages() -> None:
    c, client = core()
    messages: list[str | bytes] = []
    for i in range(len(STREAM)):
        messages += c.receive_data(STREAM[i : i + 1])
    assert messages == STREAM_MESSAGES
    assert read_back(client, c) == [Pong(b"p1"), Pong(b"p2")]


def test_a_bad_frame_split_at_every_offset_closes_the_same_way() -> None:
    data = frame(TEXT, b"ok") + frame(TEXT, b"x" * 50 + b"\xff" + b"y" * 50)
    for split in range(len(data) + 1):
        c, client = core()
        assert c.receive_data(data[:split]) + c.receive_data(data[split:]) == ["ok"], f"split at {split}"
        assert c.close_code == 1007 and close_code_sent(client, c) == 1007, f"split at {split}"


# ---------------------------------------------------------------------------------- messages out


@pytest.mark.parametrize("length", [0, 125, 126, 65535, 65536])
def test_send_message_frames_one_text_message_wsproto_reads(length: int) -> None:
    c, client = core()
    payload = ("é" * length).encode()[:length].decode("utf-8", "ignore").encode()
    assert c.send_message(payload)
    assert c.queued_bytes == sum(map(len, c._out))
    events = read_back(client, c)
    assert len(events) == 1 and isinstance(events[0], TextMessage)
    assert events[0].data == payload.decode() and events[0].message_finished


def test_a_client_core_masks_its_frames_and_a_server_reads_them() -> None:
    client_ws = WSConnection(ConnectionType.CLIENT)
    server_ws = WSConnection(ConnectionType.SERVER)
    server_ws.receive_data(client_ws.send(Request(host="x", target="/v1/channel")))
    list(server_ws.events())
    client_ws.receive_data(server_ws.send(AcceptConnection()))
    list(client_ws.events())
    c = WebSocketCore(client_ws, max_message_size=1 << 20, max_outbound_bytes=1 << 20)
    assert c.send_message(b'{"jsonrpc":"2.0"}') and c.send_message(b"x" * 70000)
    out = b"".join(c.take_output())
    assert out[1] & 0x80  # the mask bit
    server_ws.receive_data(out)
    assert [e.data for e in server_ws.events() if isinstance(e, TextMessage)] == ['{"jsonrpc":"2.0"}', "x" * 70000]
    # and the server's unmasked frames are read by the client core on its fast path
    data = server_ws.send(TextMessage("from the host")) + server_ws.send(Ping(b"k"))
    assert c.receive_data(data) == ["from the host"]
    server_ws.receive_data(b"".join(c.take_output()))
    assert list(server_ws.events()) == [Pong(b"k")]


def test_send_message_refuses_past_max_outbound_bytes_and_closes_with_4008() -> None:
    c, client = core(max_outbound_bytes=100)
    assert c.send_message(b"a" * 40)  # 42 bytes queued
    assert c.send_message(b"b" * 40)  # 84
    assert c.send_message(b"c" * 40) is False  # 126 > 100: the peer is not reading
    assert c.close_code == CloseCode.SLOW_CONSUMER and c.closing
    events = read_back(client, c)  # what was queued is dropped: only the close frame goes out
    assert len(events) == 1 and isinstance(events[0], CloseConnection) and events[0].code == 4008
    assert c.send_message(b"d") is False


def test_the_driver_s_backlog_counts_against_max_outbound_bytes() -> None:
    c, client = core(max_outbound_bytes=100)
    assert c.send_message(b"a" * 40, backlog=58)  # 42 + 58 = 100: at the limit
    c.take_output()
    assert c.send_message(b"a" * 40, backlog=59) is False  # 42 + 59 > 100
    assert close_code_sent(client, c) == 4008


def test_pongs_count_against_max_outbound_bytes() -> None:
    server, client = open_pair()
    c = WebSocketCore(server, max_message_size=1 << 20, max_outbound_bytes=100, unsent=lambda: 90)
    assert c.receive_data(frame(PING, b"12345678")) == []  # 10 + 90 = 100: answered
    assert c.close_code is None
    c.take_output()
    assert c.receive_data(frame(PING, b"123456789")) == []  # 11 + 90 > 100: a peer that pings and never reads
    assert c.close_code == 4008 and close_code_sent(client, c) == 4008


def test_mark_broken_drops_what_is_queued_and_finishes() -> None:
    c, _ = core()
    c.send_message(b"x")
    c.mark_broken()
    assert c.finished and c.close_code == 1006 and c.take_output() == []
    assert c.receive_data(frame(TEXT, b"late")) == []
