"""The host's subscription index: which agent types a topic type reaches, in time independent of
how many unrelated subscriptions exist.

Exact subscriptions sit in a dict keyed by topic type. Prefix subscriptions sit in a dict keyed by
the prefix, and the index remembers which prefix lengths are in use, so matching a topic costs one
dict lookup per distinct prefix length (plus one for the exact match) rather than one test per
subscription. Each change touches only its own entry; nothing is rebuilt.

Two subscriptions with the same kind, topic and agent type are normally refused; the one exception
is a *twin*: the same subscription added by another member of a shared agent type's pool, under its
own id, so that it outlives any one member (:meth:`SubscriptionIndex.add` with ``twin=True``).
"""

from __future__ import annotations

from collections.abc import Iterator

from ._wire import SubscriptionSpec, TypePrefixSubscriptionSpec, TypeSubscriptionSpec


class SubscriptionIndex:
    """Subscriptions by id, with an exact-type index and a prefix index for matching topics."""

    __slots__ = ("_by_content", "_by_id", "_exact", "_prefix", "_prefix_lengths", "_twins")

    def __init__(self) -> None:
        self._by_id: dict[str, SubscriptionSpec] = {}
        self._by_content: dict[tuple[str, str, str], str] = {}  # (kind, topic, agent type) -> id
        self._exact: dict[str, dict[str, str]] = {}  # topic type -> {subscription id: agent type}
        self._prefix: dict[str, dict[str, str]] = {}  # prefix -> {subscription id: agent type}
        self._prefix_lengths: dict[int, int] = {}  # prefix length -> number of distinct prefixes
        self._twins: dict[tuple[str, str, str], list[str]] = {}  # content -> ids of its twins

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[SubscriptionSpec]:
        return iter(self._by_id.values())

    def __contains__(self, subscription_id: str) -> bool:
        return subscription_id in self._by_id

    def get(self, subscription_id: str) -> SubscriptionSpec | None:
        return self._by_id.get(subscription_id)

    def find_equal(self, spec: SubscriptionSpec) -> str | None:
        """The id of a subscription with the same id, or with the same kind, topic and agent type.

        That is autogen's notion of "the same subscription", which a runtime must refuse to add twice.
        """
        if spec.id in self._by_id:
            return spec.id
        return self._by_content.get(_content_key(spec))

    def equal_ids(self, spec: SubscriptionSpec) -> list[str]:
        """The ids of every subscription with the same kind, topic and agent type as ``spec``."""
        key = _content_key(spec)
        first = self._by_content.get(key)
        return [] if first is None else [first, *self._twins.get(key, ())]

    def add(self, spec: SubscriptionSpec, *, twin: bool = False) -> None:
        """Add a subscription. Raises KeyError if :meth:`find_equal` finds one; with ``twin``, only
        if its id is taken or there is no equal subscription to be the twin of."""
        key = _content_key(spec)
        if twin:
            if spec.id in self._by_id or key not in self._by_content:
                raise KeyError(spec.id)
            self._twins.setdefault(key, []).append(spec.id)
        elif self.find_equal(spec) is not None:
            raise KeyError(spec.id)
        else:
            self._by_content[key] = spec.id
        self._by_id[spec.id] = spec
        if isinstance(spec, TypeSubscriptionSpec):
            self._exact.setdefault(spec.topic_type, {})[spec.id] = spec.agent_type
        else:
            bucket = self._prefix.get(spec.topic_type_prefix)
            if bucket is None:
                bucket = self._prefix[spec.topic_type_prefix] = {}
                n = len(spec.topic_type_prefix)
                self._prefix_lengths[n] = self._prefix_lengths.get(n, 0) + 1
            bucket[spec.id] = spec.agent_type

    def remove(self, subscription_id: str) -> SubscriptionSpec:
        """Remove a subscription and return it. Raises KeyError if there is none with that id."""
        spec = self._by_id.pop(subscription_id)
        key = _content_key(spec)
        twins = self._twins.get(key)
        if twins is None:
            del self._by_content[key]
        else:
            if self._by_content[key] == subscription_id:
                self._by_content[key] = twins.pop(0)
            else:
                twins.remove(subscription_id)
            if not twins:
                del self._twins[key]
        if isinstance(spec, TypeSubscriptionSpec):
            _discard(self._exact, spec.topic_type, spec.id)
        elif _discard(self._prefix, spec.topic_type_prefix, spec.id):
            n = len(spec.topic_type_prefix)
            left = self._prefix_lengths[n] - 1
            if left:
                self._prefix_lengths[n] = left
            else:
                del self._prefix_lengths[n]
        return spec

    def match(self, topic_type: str) -> set[str]:
        """The agent types subscribed to ``topic_type``."""
        found: set[str] = set()
        exact = self._exact.get(topic_type)
        if exact:
            found.update(exact.values())
        if self._prefix_lengths:
            size = len(topic_type)
            for n in self._prefix_lengths:
                if n <= size:
                    bucket = self._prefix.get(topic_type[:n])
                    if bucket:
                        found.update(bucket.values())
        return found


def _content_key(spec: SubscriptionSpec) -> tuple[str, str, str]:
    if isinstance(spec, TypeSubscriptionSpec):
        return ("type", spec.topic_type, spec.agent_type)
    return ("type_prefix", spec.topic_type_prefix, spec.agent_type)


def _discard(index: dict[str, dict[str, str]], key: str, subscription_id: str) -> bool:
    """Remove one id from a bucket; drop the bucket when empty and say whether it was dropped."""
    bucket = index[key]
    del bucket[subscription_id]
    if not bucket:
        del index[key]
        return True
    return False


def matches(spec: SubscriptionSpec, topic_type: str) -> bool:
    """Whether one subscription matches a topic type: the plain definition the index must agree with."""
    if isinstance(spec, TypePrefixSubscriptionSpec):
        return topic_type.startswith(spec.topic_type_prefix)
    return topic_type == spec.topic_type
