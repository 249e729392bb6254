"""AgentChat message classes by their ``type`` name, among the classes defined in this process.

Every AgentChat message carries its class name in its ``type`` field, and ``MessageFactory``
builds a message from the class registered under that name. Across processes, the registering
happened in another process; what both sides share is the code. So a name is resolved among the
message classes defined here: a custom message type is found as soon as its module is imported,
and ``StructuredMessage[Plan]`` is made from ``StructuredMessage`` and the ``Plan`` model where
no one made it yet. Two classes with one name are refused with a clear error, never guessed.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from typing import Any

from autogen_agentchat.messages import BaseAgentEvent, BaseChatMessage, BaseMessage
from pydantic import BaseModel

MESSAGE_BASES: tuple[type[BaseMessage], ...] = (BaseChatMessage, BaseAgentEvent)
_GENERIC = re.compile(r"(\w+)\[([\w.<>, ]+)\]\Z")  # StructuredMessage[Plan]: Pydantic names it by the qualname


def message_class(name: object, bases: tuple[type[Any], ...] = MESSAGE_BASES) -> type[Any]:
    """The AgentChat message class named ``name`` here, a subclass of one of ``bases``.

    Raises ValueError, saying what to do, when there is none, several, or one of another kind.
    """
    return _CLASSES.resolve(name, bases)


class _MessageClasses:
    def __init__(self) -> None:
        self._by_name: dict[str, type[BaseMessage]] = {}
        self._ambiguous: dict[str, list[type[BaseMessage]]] = {}

    def resolve(self, name: object, bases: tuple[type[Any], ...]) -> type[BaseMessage]:
        if not isinstance(name, str):
            raise ValueError(f"an AgentChat message needs its class name in a 'type' field, got {name!r}")
        cls = self._by_name.get(name)
        if cls is None and name not in self._ambiguous:
            self._rescan()  # a class defined (or a StructuredMessage[...] made) since the last look
            cls = self._by_name.get(name) or self._parametrized(name)
        if name in self._ambiguous:
            listed = _listed(self._ambiguous[name])
            raise ValueError(f"more than one AgentChat message class is named {name!r} ({listed})")
        if cls is None:
            raise ValueError(
                f"unknown AgentChat message type {name!r}: import the module that defines it in this process "
                "too (and list it in the team's custom_message_types)"
            )
        if not issubclass(cls, bases):
            expected = " or ".join(base.__name__ for base in bases)
            raise ValueError(f"an AgentChat message of type {name!r} where a {expected} belongs")
        return cls

    def _rescan(self) -> None:
        by_name: dict[str, type[BaseMessage]] = {}
        ambiguous: dict[str, list[type[BaseMessage]]] = {}
        for cls in _subclasses(MESSAGE_BASES):
            if inspect.isabstract(cls):
                continue  # StructuredMessage itself stays: agents list it among their produced types
            other = by_name.setdefault(cls.__name__, cls)
            if other is not cls:
                ambiguous.setdefault(cls.__name__, [other]).append(cls)
        self._by_name, self._ambiguous = by_name, ambiguous

    def _parametrized(self, name: str) -> type[BaseMessage] | None:
        """``StructuredMessage[Plan]`` made from its parts, where no one made it yet in this process."""
        generic = _GENERIC.match(name)
        base = None if generic is None else self._by_name.get(generic[1])
        if generic is None or base is None:
            return None
        arg_names = [arg.strip() for arg in generic[2].split(",")]
        if len(base.__pydantic_generic_metadata__["parameters"]) != len(arg_names):
            return None
        args = [_model_named(arg) for arg in arg_names]
        if None in args:
            return None
        cls: type[BaseMessage] = base[tuple(args) if len(args) > 1 else args[0]]  # type: ignore[index]
        if cls.__name__ != name:
            return None
        self._by_name[name] = cls
        return cls


_CLASSES = _MessageClasses()


def _model_named(qualname: str) -> type[BaseModel] | None:
    """The one Pydantic model class with this ``__qualname__`` here (None if there is none)."""
    found = [cls for cls in _subclasses((BaseModel,)) if cls.__qualname__ == qualname]
    if len(found) > 1:
        raise ValueError(f"more than one Pydantic model is named {qualname!r} ({_listed(found)})")
    return found[0] if found else None


def _subclasses(roots: tuple[type[Any], ...]) -> Iterator[type[Any]]:
    seen: set[type[Any]] = set()
    stack = list(roots)
    while stack:
        for sub in stack.pop().__subclasses__():
            if sub not in seen:
                seen.add(sub)
                stack.append(sub)
                yield sub


def _listed(classes: list[type[Any]]) -> str:
    return ", ".join(f"{cls.__module__}.{cls.__qualname__}" for cls in classes) + ": rename one"
