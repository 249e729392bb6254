"""``extra_grpc_config``: the gRPC runtime's channel and server options, read as this runtime's settings.

Code written for ``GrpcWorkerAgentRuntime(host_address, tracer_provider, extra_grpc_config, ...)``
and ``GrpcWorkerAgentRuntimeHost(address, extra_grpc_config)`` passes gRPC options as
``(name, value)`` pairs. The ones that have a meaning here are translated:

* ``grpc.max_send_message_length`` / ``grpc.max_receive_message_length`` (bytes, -1 for no
  limit): ``max_message_size``;
* ``grpc.keepalive_time_ms`` / ``grpc.keepalive_timeout_ms``: ``keepalive_interval`` /
  ``keepalive_timeout``.

Every other option has no meaning over HTTP/WebSocket; each is named once per process in a
:class:`GrpcOptionIgnoredWarning`, with the setting to use instead where there is one.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

ChannelArgumentType = Sequence[tuple[str, Any]]
"""gRPC's channel and server options: ``[("grpc.max_send_message_length", 8 << 20), ...]``."""

NO_LIMIT = 2**31 - 1
"""What gRPC's -1 ("no limit") becomes: the largest message size a WebSocket host or worker takes here."""

MAX_SEND = "grpc.max_send_message_length"
MAX_RECEIVE = "grpc.max_receive_message_length"
KEEPALIVE_TIME = "grpc.keepalive_time_ms"
KEEPALIVE_TIMEOUT = "grpc.keepalive_timeout_ms"

_RECONNECTS = "the worker reconnects by itself (reconnect=, reconnect_initial_delay=, reconnect_max_delay=)"
_INSTEAD = {
    "grpc.service_config": _RECONNECTS,
    "grpc.enable_retries": _RECONNECTS,
    "grpc.initial_reconnect_backoff_ms": "reconnect_initial_delay=",
    "grpc.max_reconnect_backoff_ms": "reconnect_max_delay=",
    "grpc.keepalive_permit_without_calls": "keepalive runs whenever keepalive_interval= is set",
    "grpc.ssl_target_name_override": "TLS: an https:// address and ssl_context=",
    "grpc.default_authority": "the host address itself",
    "grpc.so_reuseport": "the host binds one address:port",
}

_warned: set[str] = set()


class GrpcOptionIgnoredWarning(UserWarning):
    """An ``extra_grpc_config`` option that means nothing to this runtime was ignored."""


@dataclass(frozen=True, slots=True)
class GrpcOptions:
    """The translated options; None where ``extra_grpc_config`` did not set one."""

    max_send: int | None = None
    max_receive: int | None = None
    keepalive_interval: float | None = None
    keepalive_timeout: float | None = None


def translate(extra_grpc_config: ChannelArgumentType | None, *, used: frozenset[str], role: str) -> GrpcOptions:
    """Read ``extra_grpc_config``; options outside ``used`` (those ``role`` has a use for) are
    warned about once per process and ignored."""
    if extra_grpc_config is None:
        return GrpcOptions()
    if isinstance(extra_grpc_config, (str, bytes)):
        raise TypeError(
            f"extra_grpc_config must be a sequence of (name, value) pairs, as for gRPC, not {extra_grpc_config!r}; "
            "pass payload_serialization_format= by name"
        )
    values: dict[str, Any] = {}
    for option in extra_grpc_config:
        try:
            name, value = option
        except (TypeError, ValueError):
            raise TypeError(f"extra_grpc_config entries are (name, value) pairs, not {option!r}") from None
        values[str(name)] = value
    for name in values.keys() - used:
        _warn_once(name, role)
    return GrpcOptions(
        max_send=_size(values, MAX_SEND) if MAX_SEND in used else None,
        max_receive=_size(values, MAX_RECEIVE) if MAX_RECEIVE in used else None,
        keepalive_interval=_seconds(values, KEEPALIVE_TIME),
        keepalive_timeout=_seconds(values, KEEPALIVE_TIMEOUT),
    )


WORKER_OPTIONS = frozenset({MAX_SEND, MAX_RECEIVE, KEEPALIVE_TIME, KEEPALIVE_TIMEOUT})
HOST_OPTIONS = frozenset({MAX_RECEIVE, KEEPALIVE_TIME, KEEPALIVE_TIMEOUT})


def _size(values: dict[str, Any], name: str) -> int | None:
    value = values.get(name)
    if value is None:
        return None
    size = int(value)
    return NO_LIMIT if size < 0 else max(size, 1)


def _seconds(values: dict[str, Any], name: str) -> float | None:
    value = values.get(name)
    return None if value is None else max(float(value), 1.0) / 1000.0


def _warn_once(name: str, role: str) -> None:
    if name in _warned:
        return
    _warned.add(name)
    instead = _INSTEAD.get(name)
    if name == MAX_SEND:
        instead = "the host forwards only messages it accepted (max_message_size=)"
    hint = f"; instead: {instead}" if instead else ""
    warnings.warn(
        f"extra_grpc_config option {name!r} has no meaning for {role} and is ignored{hint}",
        GrpcOptionIgnoredWarning,
        stacklevel=4,
    )


__all__ = ["ChannelArgumentType", "GrpcOptionIgnoredWarning", "GrpcOptions", "translate"]
