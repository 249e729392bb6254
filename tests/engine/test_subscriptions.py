"""SubscriptionIndex: exact and prefix matching, duplicates, removal, and match cost."""

from __future__ import annotations

import random
from typing import Any

import pytest

from sansio_runtime import SubscriptionIndex, TypePrefixSubscriptionSpec, TypeSubscriptionSpec
from sansio_runtime._subscriptions import matches


def E(id: str, topic: str, agent: str) -> TypeSubscriptionSpec:
    return TypeSubscriptionSpec(id, topic, agent)


def P(id: str, prefix: str, agent: str) -> TypePrefixSubscriptionSpec:
    return TypePrefixSubscriptionSpec(id, prefix, agent)


def _state(idx: SubscriptionIndex) -> tuple[Any, ...]:
    return (
        dict(idx._by_id),
        dict(idx._by_content),
        {k: dict(v) for k, v in idx._exact.items()},
        {k: dict(v) for k, v in idx._prefix.items()},
        dict(idx._prefix_lengths),
    )


def test_exact_match_only_equal_topic() -> None:
    idx = SubscriptionIndex()
    idx.add(E("1", "news", "reader"))
    assert idx.match("news") == {"reader"}
    assert idx.match("news2") == set()
    assert idx.match("new") == set()
    assert idx.match("") == set()


def test_prefix_match() -> None:
    idx = SubscriptionIndex()
    idx.add(P("1", "ne", "reader"))
    assert idx.match("ne") == {"reader"}
    assert idx.match("news") == {"reader"}
    assert idx.match("n") == set()
    assert idx.match("xnews") == set()


def test_empty_prefix_matches_everything() -> None:
    idx = SubscriptionIndex()
    idx.add(P("all", "", "logger"))
    for topic in ["", "a", "news", "x" * 100]:
        assert idx.match(topic) == {"logger"}


def test_exact_and_prefix_combine_and_dedupe_agent_types() -> None:
    idx = SubscriptionIndex()
    idx.add(E("1", "news", "a"))
    idx.add(P("2", "ne", "a"))
    idx.add(P("3", "n", "b"))
    idx.add(E("4", "news", "c"))
    idx.add(P("5", "newsy", "d"))
    assert idx.match("news") == {"a", "b", "c"}
    assert idx.match("newsy!") == {"a", "b", "d"}
    assert idx.match("nope") == {"b"}


def test_duplicate_id_rejected() -> None:
    idx = SubscriptionIndex()
    idx.add(E("1", "news", "a"))
    other = P("1", "x", "b")
    assert idx.find_equal(other) == "1"
    before = _state(idx)
    with pytest.raises(KeyError):
        idx.add(other)
    assert _state(idx) == before


def test_duplicate_content_rejected_under_a_new_id() -> None:
    idx = SubscriptionIndex()
    idx.add(E("1", "news", "a"))
    idx.add(P("2", "news", "a"))  # same topic, same agent, but a prefix subscription: different content
    assert idx.find_equal(E("9", "news", "a")) == "1"
    assert idx.find_equal(P("9", "news", "a")) == "2"
    assert idx.find_equal(E("9", "news", "b")) is None
    with pytest.raises(KeyError):
        idx.add(E("9", "news", "a"))
    with pytest.raises(KeyError):
        idx.add(P("9", "news", "a"))
    assert "9" not in idx
    assert len(idx) == 2


def test_container_protocol() -> None:
    idx = SubscriptionIndex()
    specs = [E("1", "t", "a"), P("2", "t", "b")]
    for s in specs:
        idx.add(s)
    assert len(idx) == 2
    assert list(idx) == specs
    assert "1" in idx and "3" not in idx
    assert idx.get("2") == specs[1]
    assert idx.get("3") is None


def test_remove_restores_prior_state() -> None:
    idx = SubscriptionIndex()
    idx.add(E("1", "news", "a"))
    idx.add(P("2", "ne", "b"))
    before = _state(idx)
    extra = [E("3", "news", "c"), P("4", "ne", "d"), P("5", "abc", "e"), E("6", "other", "f"), P("7", "", "g")]
    for s in extra:
        idx.add(s)
    assert idx.match("news") == {"a", "b", "c", "d", "g"}
    for s in reversed(extra):
        assert idx.remove(s.id) == s
    assert _state(idx) == before
    assert idx.match("news") == {"a", "b"}
    # removing in insertion order too
    for s in extra:
        idx.add(s)
    for s in extra:
        idx.remove(s.id)
    assert _state(idx) == before


def test_remove_everything_leaves_empty_index() -> None:
    idx = SubscriptionIndex()
    empty = _state(idx)
    idx.add(P("1", "ab", "x"))
    idx.add(P("2", "ab", "y"))
    idx.add(P("3", "cd", "y"))
    assert idx._prefix_lengths == {2: 2}
    idx.remove("1")
    assert idx._prefix_lengths == {2: 2}  # "ab" bucket still holds "2"
    idx.remove("2")
    assert idx._prefix_lengths == {2: 1}
    idx.remove("3")
    assert _state(idx) == empty
    assert idx.match("abc") == set()


def test_remove_unknown_raises_keyerror() -> None:
    idx = SubscriptionIndex()
    idx.add(E("1", "t", "a"))
    with pytest.raises(KeyError):
        idx.remove("nope")
    assert len(idx) == 1


def test_readd_after_remove() -> None:
    idx = SubscriptionIndex()
    idx.add(E("1", "t", "a"))
    idx.remove("1")
    idx.add(E("1", "t", "a"))
    assert idx.match("t") == {"a"}


def test_agrees_with_plain_definition_randomized() -> None:
    rng = random.Random(1234)
    alphabet = "abc"
    idx = SubscriptionIndex()
    live: dict[str, Any] = {}
    for step in range(600):
        if live and rng.random() < 0.35:
            sid = rng.choice(sorted(live))
            idx.remove(sid)
            del live[sid]
        else:
            topic = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 3)))
            agent = rng.choice("XYZW")
            spec = (E if rng.random() < 0.5 else P)(f"s{step}", topic, agent)
            dup = any(
                type(s) is type(spec) and s.agent_type == agent and matches_key(s) == topic for s in live.values()
            )
            if dup:
                with pytest.raises(KeyError):
                    idx.add(spec)
            else:
                idx.add(spec)
                live[spec.id] = spec
        for topic in ["", "a", "ab", "abc", "ca", "bbbb"]:
            expected = {s.agent_type for s in live.values() if matches(s, topic)}
            assert idx.match(topic) == expected, (step, topic)
    assert len(idx) == len(live)


def matches_key(s: Any) -> str:
    return s.topic_type if isinstance(s, TypeSubscriptionSpec) else s.topic_type_prefix


# ------------------------------------------------------------------------ match cost, structurally


class CountingDict(dict):  # type: ignore[type-arg]
    def __init__(self, *a: Any) -> None:
        super().__init__(*a)
        self.lookups = 0

    def get(self, key: Any, default: Any = None) -> Any:
        self.lookups += 1
        return super().get(key, default)

    def __getitem__(self, key: Any) -> Any:
        self.lookups += 1
        return super().__getitem__(key)

    def __iter__(self) -> Any:
        raise AssertionError("match must not iterate over every bucket")

    def items(self) -> Any:
        raise AssertionError("match must not iterate over every bucket")

    def values(self) -> Any:
        raise AssertionError("match must not iterate over every bucket")


def _instrument(idx: SubscriptionIndex) -> tuple[CountingDict, CountingDict]:
    exact, prefix = CountingDict(idx._exact), CountingDict(idx._prefix)
    idx._exact = exact  # type: ignore[assignment]
    idx._prefix = prefix  # type: ignore[assignment]
    return exact, prefix


def test_match_touches_o1_buckets_with_many_unrelated_subscriptions() -> None:
    idx = SubscriptionIndex()
    for i in range(10_000):
        idx.add(E(f"e{i}", f"topic-{i:05d}", f"agent{i}"))
    for i in range(10_000):
        idx.add(P(f"p{i}", f"p{i:04d}", f"pagent{i}"))  # 10,000 prefixes, all of length 5
    assert len(idx) == 20_000
    assert idx._prefix_lengths == {5: 10_000}

    exact, prefix = _instrument(idx)
    assert idx.match("topic-00042") == {"agent42"}
    assert exact.lookups == 1
    assert prefix.lookups == 1  # one prefix length in use -> one bucket probed

    exact.lookups = prefix.lookups = 0
    assert idx.match("p0042-and-more") == {"pagent42"}
    assert (exact.lookups, prefix.lookups) == (1, 1)

    exact.lookups = prefix.lookups = 0
    assert idx.match("zzz") == set()  # shorter than every prefix: no prefix bucket probed at all
    assert (exact.lookups, prefix.lookups) == (1, 0)


def test_match_cost_is_one_probe_per_distinct_prefix_length() -> None:
    idx = SubscriptionIndex()
    for i in range(3000):
        idx.add(P(f"a{i}", f"{i:03d}"[-3:] + "x" * (i % 3), f"ag{i}"))  # lengths 3, 4, 5
    assert sorted(idx._prefix_lengths) == [3, 4, 5]
    _, prefix = _instrument(idx)
    idx.match("0000000000")
    assert prefix.lookups == 3


def test_prefix_lengths_counts_distinct_prefixes_not_subscriptions() -> None:
    idx = SubscriptionIndex()
    for i in range(1000):
        idx.add(P(f"s{i}", "same", f"agent{i}"))
    assert idx._prefix_lengths == {4: 1}
    assert len(idx._prefix) == 1
    assert len(idx.match("samething")) == 1000
