"""Property test: the host's answer to one message never outgrows ``max_message_size``.

Two :class:`HostEngine` instances get the same input: a reference one with no practical size
limit, and the one under test with a small ``max_message_size`` (the registrations and
subscriptions of a few channels, then one message or batch whose answers vary in size, from
``null`` results to long ``runtime.get_subscriptions`` listings). The answer under test must be
the reference answer with exactly those entries replaced by a ``-32008`` error for the same id
that would not fit into ``max_message_size`` after the entries before them (in order), and the
whole answer must stay within the limit plus the short errors themselves. A batch longer than
``max_batch_length`` is refused whole with one ``-32018`` error, and nothing in it is done.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import event, given
from hypothesis import strategies as st

from sansio_runtime import ClientKind, ErrorCode, HostEngine, Send

LIMIT = 2048
MAX_BATCH = 8
BIG = 1 << 30


def jdump(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def subscription(i: int, topic_length: int) -> bytes:
    spec = {"kind": "type", "id": f"s{i}", "topic_type": "t" * topic_length, "agent_type": f"a{i % 3}"}
    return jdump({"jsonrpc": "2.0", "id": i, "method": "runtime.add_subscription", "params": {"subscription": spec}})


entries = st.sampled_from(
    [
        lambda i: {"jsonrpc": "2.0", "id": i, "method": "runtime.get_subscriptions"},
        lambda i: {"jsonrpc": "2.0", "id": f"g{i}", "method": "runtime.get_subscriptions", "params": {}},
        lambda i: {"jsonrpc": "2.0", "id": i, "method": "nope"},
        lambda i: {"jsonrpc": "2.0", "method": "runtime.get_subscriptions"},  # a notification: no answer
        lambda i: {
            "jsonrpc": "2.0",
            "id": i,
            "method": "agent.publish",
            "params": {"specversion": "1.0", "id": "e", "source": "s", "type": "t", "data": i},
        },
        lambda i: 7,  # not a message: an error with id null
    ]
)


def answers(engine: HostEngine, client: Any, frame: bytes) -> tuple[bytes, list[Any]]:
    engine.receive(client, frame, 0.0)
    out = engine.data_to_send()
    sends = [o for o in out if isinstance(o, Send) and o.client == client]
    if not sends:
        return b"", []
    assert len(sends) == 1 or not sends[0].data.startswith(b"["), sends
    raw = sends[0].data if len(sends) == 1 else b"[" + b",".join(s.data for s in sends) + b"]"
    decoded = json.loads(raw)
    return raw, decoded if isinstance(decoded, list) else [decoded]


@given(
    topic_lengths=st.lists(st.integers(1, 700), max_size=6),
    batch=st.one_of(st.none(), st.lists(entries, min_size=1, max_size=MAX_BATCH + 2)),
    single=entries,
    one_shot=st.booleans(),
)
def test_the_answer_to_one_message_stays_within_the_limit(
    topic_lengths: list[int], batch: list[Any] | None, single: Any, one_shot: bool
) -> None:
    bounded = HostEngine(max_message_size=LIMIT, max_batch_length=MAX_BATCH)
    reference = HostEngine(max_message_size=BIG, max_batch_length=BIG)
    for engine in (bounded, reference):
        owner = engine.connect()
        for i, n in enumerate(topic_lengths):
            engine.receive(owner, subscription(i, n), 0.0)
    kind = ClientKind.ONE_SHOT if one_shot else ClientKind.CHANNEL
    frame = jdump([make(i) for i, make in enumerate(batch)]) if batch is not None else jdump(single(1))
    if len(frame) > LIMIT:
        return  # the request itself is over the limit: closed with 1009, tested elsewhere
    raw, got = answers(bounded, bounded.connect(kind), frame)
    _, want = answers(reference, reference.connect(kind), frame)

    if batch is not None and len(batch) > MAX_BATCH:
        assert len(got) == 1 and got[0]["id"] is None
        assert got[0]["error"]["code"] == ErrorCode.BATCH_TOO_LARGE
        assert bounded.stats.events_published == 0  # nothing in the batch was done
        event("batch refused")
        return
    assert [m.get("id") for m in got] == [m.get("id") for m in want]
    used = 2 if batch is not None else 0  # a batch's answer has brackets
    replaced = 0
    for mine, theirs in zip(got, want, strict=True):
        size = len(jdump(theirs))
        if used + size <= LIMIT:
            assert mine == theirs
        else:
            assert mine["error"]["code"] == ErrorCode.PAYLOAD_TOO_LARGE, (mine, used, size)
            assert mine["id"] == theirs.get("id")
            replaced += 1
        used += len(jdump(mine)) + 1
    assert len(raw) <= LIMIT + replaced * 300, (len(raw), replaced)
    event(f"answers replaced: {min(replaced, 3)}{'+' if replaced > 3 else ''}")
