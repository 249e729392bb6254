"""The WebSocket core's own frame parser must behave exactly like wsproto alone.

:class:`io_backends.sansio.WebSocketCore` parses common frames itself and hands anything else
to wsproto. Differential test: the same frames, in the same random chunks, through a core with
the fast path and through one forced onto wsproto from the start; the messages, the close
code, the state and (on the server side, where frames are not masked) every byte queued for
the peer must be the same.
"""

from __future__ import annotations

import os
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection
from wsproto.events import Request as WSRequest

from io_backends.sansio import WebSocketCore
from io_backends.sansio._masking import mask as _mask
from io_backends.sansio._masking import xor as _xor
from sansio_runtime import CloseCode

_LONG = os.environ.get("HYPOTHESIS_PROFILE") == "long"
_SETTINGS = settings(
    max_examples=3000 if _LONG else 300, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)
MAX_MESSAGE = 30_000


def _big(low: int, high: int) -> st.SearchStrategy[bytes]:
    """Random bytes of a length in [low, high], cheap to generate however long."""
    return st.tuples(st.integers(low, high), st.randoms(use_true_random=False)).map(lambda a: a[1].randbytes(a[0]))


def _big_text(low: int, high: int) -> st.SearchStrategy[bytes]:
    """UTF-8 text of about [low, high] bytes, with multi-byte characters to straddle every cut."""
    return st.integers(low // 6, high // 6).map(lambda n: ("é€x" * n).encode())


def _frame(
    opcode: int, payload: bytes, *, masked: bool, fin: bool = True, rsv: int = 0, width: int | None = None
) -> bytes:
    """A frame built by hand (so it can also be a wrong one)."""
    n = len(payload)
    if width is None:
        width = 1 if n < 126 else 2 if n < 65536 else 8
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    mask_bit = 0x80 if masked else 0
    if width == 1:
        head = bytes((first, mask_bit | n))
    elif width == 2:
        head = bytes((first, mask_bit | 126)) + struct.pack("!H", n)
    else:
        head = bytes((first, mask_bit | 127)) + struct.pack("!Q", n)
    if masked:
        mask = b"\x01\x02\x03\x04"
        return head + mask + _xor(payload, mask)
    return head + payload


def _frames(masked: bool) -> st.SearchStrategy[bytes]:
    text = st.text(max_size=40).map(lambda t: t.encode())
    return st.one_of(
        text.map(lambda p: _frame(0x1, p, masked=masked)),
        st.binary(max_size=40).map(lambda p: _frame(0x2, p, masked=masked)),
        st.binary(max_size=130).map(lambda p: _frame(0x9, p, masked=masked)),
        st.binary(max_size=20).map(lambda p: _frame(0xA, p, masked=masked)),
        st.binary(min_size=1, max_size=10).map(lambda p: _frame(0x1, b"\xff" + p, masked=masked)),  # bad UTF-8
        _big(MAX_MESSAGE + 1, MAX_MESSAGE + 50).map(lambda p: _frame(0x2, p, masked=masked)),
        _big(8000, 20_000).map(lambda p: _frame(0x2, p, masked=masked)),  # unmasked in pieces
        _big_text(8000, 20_000).map(lambda p: _frame(0x1, p, masked=masked)),
        st.tuples(_big_text(100, 20_000), st.integers(0, 20_000)).map(  # bad UTF-8 deep inside
            lambda a: _frame(0x1, a[0][: a[1]] + b"\xff" + a[0][a[1] :], masked=masked)
        ),
        st.binary(min_size=126, max_size=200).map(lambda p: _frame(0x2, p, masked=masked)),  # 2-byte length
        text.map(lambda p: _frame(0x1, p, masked=masked, width=2)),  # non-minimal length
        text.map(lambda p: _frame(0x1, p, masked=masked, width=8)),
        text.map(lambda p: _frame(0x1, p, masked=masked, fin=False)),  # a fragment...
        text.map(lambda p: _frame(0x0, p, masked=masked)),  # ...and a continuation
        text.map(lambda p: _frame(0x1, p, masked=not masked)),  # wrong masking
        st.tuples(st.integers(1, 7), text).map(lambda a: _frame(0x1, a[1], masked=masked, rsv=a[0])),
        st.sampled_from([3, 4, 5, 6, 7, 0xB, 0xF]).map(lambda op: _frame(op, b"x", masked=masked)),
        st.sampled_from([1000, 1001, 1002, 3000, 999, 1005]).map(
            lambda code: _frame(0x8, struct.pack("!H", code) + b"bye", masked=masked)
        ),
        st.binary(max_size=8),  # garbage
    )


def _open_pair(client: bool) -> WSConnection:
    server = WSConnection(ConnectionType.SERVER)
    peer = WSConnection(ConnectionType.CLIENT)
    server.receive_data(peer.send(WSRequest(host="fuzz", target="/v1/channel")))
    next(server.events())
    peer.receive_data(server.send(AcceptConnection()))
    next(peer.events())
    return peer if client else server


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    chunks, last = [], 0
    for p in [*points, len(data)]:
        chunks.append(data[last:p])
        last = p
    return [c for c in chunks if c]


def _run(core: WebSocketCore, chunks: list[bytes], close_at: int | None) -> tuple[object, ...]:
    messages: list[str | bytes] = []
    output: list[bytes] = []
    for i, chunk in enumerate(chunks):
        if close_at == i:
            core.close(CloseCode.GOING_AWAY, "bye")
        messages.extend(core.receive_data(chunk))
        output.extend(core.take_output())
    return messages, core.close_code, core.finished, core.closing, core.is_open, core.ws.state, b"".join(output)


@_SETTINGS
@given(
    st.booleans(),
    st.lists(_frames(masked=True), max_size=8),
    st.lists(st.integers(0, 10_000), max_size=8),
    st.one_of(st.none(), st.integers(0, 8)),
)
def test_fast_path_matches_wsproto(client: bool, frames: list[bytes], cuts: list[int], close_at: int | None) -> None:
    if client:  # the host's frames are not masked
        frames = [_unmask(f) for f in frames]
    data = b"".join(frames)
    chunks = _split(data, cuts)
    fast = WebSocketCore(_open_pair(client), max_message_size=MAX_MESSAGE, max_outbound_bytes=1 << 20)
    reference = WebSocketCore(_open_pair(client), max_message_size=MAX_MESSAGE, max_outbound_bytes=1 << 20)
    reference._fast = False
    got = _run(fast, chunks, close_at)
    expected = _run(reference, chunks, close_at)
    if client:  # our frames are masked with random keys: compare all but the bytes
        assert got[:-1] == expected[:-1]
    else:
        assert got == expected


def _unmask(frame: bytes) -> bytes:
    """The same frame without its mask (frames built by _frame only; garbage passes through)."""
    if len(frame) < 2 or not frame[1] & 0x80:
        return frame
    length = frame[1] & 0x7F
    head = 2 if length < 126 else 4 if length == 126 else 10
    if len(frame) < head + 4:
        return frame
    mask = frame[head : head + 4]
    return bytes((frame[0], frame[1] & 0x7F)) + frame[2:head] + _xor(frame[head + 4 :], mask)


@settings(max_examples=200, deadline=None, database=None)
@given(st.binary(max_size=40_000), st.binary(min_size=4, max_size=4))
def test_mask_matches_bytewise_xor(data: bytes, mask: bytes) -> None:
    expected = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
    assert _xor(data, mask) == expected
    assert _mask(data, mask) == expected  # websockets' C function, where installed


def test_messages_we_send_parse_back() -> None:
    """Frames the fast path builds are what wsproto expects, both ways, at every length encoding."""
    for client in (False, True):
        sender = WebSocketCore(_open_pair(client), max_message_size=1 << 20, max_outbound_bytes=1 << 22)
        receiver = WebSocketCore(_open_pair(not client), max_message_size=1 << 20, max_outbound_bytes=1 << 22)
        receiver._fast = False
        bodies = [b"", b"x" * 125, b"y" * 126, b"z" * 65535, b"w" * 65536, '{"a":"é"}'.encode(), b"v" * 100_003]
        for body in bodies:
            assert sender.send_message(body)
        got = receiver.receive_data(b"".join(sender.take_output()))
        assert got == [b.decode() for b in bodies]
