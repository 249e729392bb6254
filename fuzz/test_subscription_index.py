"""Property test of :class:`SubscriptionIndex` against brute force.

Under any sequence of adds and removes (ids, topics, prefixes and agent types from tiny alphabets,
so that equal prefixes, prefixes of prefixes, equal topics and duplicates all happen), after every
step: ``match(topic)`` equals ``{s.agent_type for s in subs if matches(s, topic)}`` for every topic
(the alphabet's topics, every prefix of them, and a random one), and ``len``, iteration order,
``get``, ``in``, ``find_equal`` and ``equal_ids`` agree with a plain dict of the subscriptions.
Twins (equal subscriptions under other ids, as members of a shared type's pool add them) come and
go in any order too: the index matches them as one, and ``find_equal`` names the oldest left.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from sansio_runtime import SubscriptionIndex, TypePrefixSubscriptionSpec, TypeSubscriptionSpec

Spec = TypeSubscriptionSpec | TypePrefixSubscriptionSpec

IDS = ["s1", "s2", "s3", "s4", "s5"]
TOPIC_PARTS = ["", "a", "ab", "abc", "b", "ba", "a:", "a:b", "é", "é:x", "\x00"]
AGENT_TYPES = ["A", "B", "C"]


def matches(spec: Spec, topic: str) -> bool:
    """The definition (docs/PROTOCOL.md 7.3), written independently of the engine's helper."""
    if isinstance(spec, TypePrefixSubscriptionSpec):
        return topic[: len(spec.topic_type_prefix)] == spec.topic_type_prefix
    return topic == spec.topic_type


def content(spec: Spec) -> tuple[str, str, str]:
    if isinstance(spec, TypePrefixSubscriptionSpec):
        return ("type_prefix", spec.topic_type_prefix, spec.agent_type)
    return ("type", spec.topic_type, spec.agent_type)


specs = st.one_of(
    st.builds(TypeSubscriptionSpec, st.sampled_from(IDS), st.sampled_from(TOPIC_PARTS), st.sampled_from(AGENT_TYPES)),
    st.builds(
        TypePrefixSubscriptionSpec, st.sampled_from(IDS), st.sampled_from(TOPIC_PARTS), st.sampled_from(AGENT_TYPES)
    ),
)


@dataclass(frozen=True)
class Add:
    spec: Spec
    twin: bool = False


@dataclass(frozen=True)
class Remove:
    sub_id: str


ops = st.lists(
    st.one_of(
        st.builds(Add, specs),
        st.builds(Add, specs),
        st.builds(Add, specs, st.just(True)),
        st.builds(Remove, st.sampled_from(IDS)),
    ),
    max_size=60,
)
TOPICS = sorted({t[:i] for t in [*TOPIC_PARTS, "abcd", "a:bc", "bab", "éé"] for i in range(len(t) + 1)})


@settings(max_examples=5 * settings().max_examples)  # cheap: run more of them
@given(ops, st.text(max_size=5))
def test_match_equals_brute_force(operations: list[Add | Remove], extra_topic: str) -> None:
    index = SubscriptionIndex()
    model: dict[str, Spec] = {}  # insertion-ordered, like the index's iteration
    for op in operations:
        if isinstance(op, Add):
            same = next((i for i, s in model.items() if content(s) == content(op.spec)), None)
            duplicate = op.spec.id if op.spec.id in model else same
            assert index.find_equal(op.spec) == duplicate
            if op.twin:
                if same is not None and op.spec.id not in model:
                    index.add(op.spec, twin=True)
                    model[op.spec.id] = op.spec
                else:
                    try:
                        index.add(op.spec, twin=True)
                    except KeyError:
                        pass
                    else:
                        raise AssertionError(f"added a twin of nothing, or under a taken id: {op.spec}")
            elif duplicate is not None:
                try:
                    index.add(op.spec)
                except KeyError:
                    pass
                else:
                    raise AssertionError(f"added a duplicate of {duplicate}: {op.spec}")
            else:
                index.add(op.spec)
                model[op.spec.id] = op.spec
        elif op.sub_id in model:
            assert index.remove(op.sub_id) == model.pop(op.sub_id)
        else:
            try:
                index.remove(op.sub_id)
            except KeyError:
                pass
            else:
                raise AssertionError(f"removed unknown subscription {op.sub_id}")
        check(index, model, extra_topic)


def check(index: SubscriptionIndex, model: dict[str, Spec], extra_topic: str) -> None:
    assert len(index) == len(model)
    assert list(index) == list(model.values())
    for sub_id in IDS:
        assert (sub_id in index) == (sub_id in model)
        assert index.get(sub_id) == model.get(sub_id)
    for spec in model.values():
        assert index.equal_ids(spec) == [i for i, s in model.items() if content(s) == content(spec)]
    for topic in [*TOPICS, extra_topic]:
        expected = {s.agent_type for s in model.values() if matches(s, topic)}
        assert index.match(topic) == expected, (topic, list(model.values()))
