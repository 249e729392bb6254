"""sansio_runtime: the protocol engine of the HTTP/WebSocket agent runtime, with no I/O at all.

Bytes and events in, bytes and events out; time is passed in by the caller. It imports no event
loop, no socket library and not autogen-core, so any driver can embed it. The wire contract it
implements is ``docs/PROTOCOL.md``.

* :class:`HostEngine` routes calls, events and registrations between connected clients.
* :class:`WorkerEngine` is one worker's end of a connection.

Both queue what goes on the wire, and the driver takes it with ``data_to_send()`` after each
input (h11's and aioquic's way). ``__all__`` is what a driver needs; the building blocks below it
(the client and call-ending tables, the subscription index, the placement table, the payload and
content-type helpers, imported below as ``X as X``) are importable too, for tools and tests.
"""

from ._calls import CALL_ENDINGS as CALL_ENDINGS
from ._calls import CallEnd as CallEnd
from ._calls import CallEnding as CallEnding
from ._calls import PendingCall as PendingCall
from ._clients import CLIENT_TRANSITIONS as CLIENT_TRANSITIONS
from ._clients import ClientKind, ClientNameInUse, ClientState
from ._cluster import AgentTypeReleased as AgentTypeReleased
from ._cluster import ClaimAgentType as ClaimAgentType
from ._cluster import ClaimPlacement as ClaimPlacement
from ._cluster import ClusterOutput as ClusterOutput
from ._cluster import SubscriptionAdded as SubscriptionAdded
from ._cluster import SubscriptionRemoved as SubscriptionRemoved
from ._deadlines import DeadlineHeap as DeadlineHeap
from ._errors import CloseCode, ErrorCode, LocalProtocolError
from ._events import (
    NONE_PAYLOAD,
    CallFailed,
    CallSucceeded,
    ClientId,
    Close,
    HostOutput,
    IncomingCall,
    IncomingCallCancelled,
    IncomingEvent,
    Payload,
    PeerError,
    RequestFailed,
    RequestSucceeded,
    Send,
    WorkerEvent,
)
from ._events import NONE_TYPE_NAME as NONE_TYPE_NAME
from ._frames import decode_error_data as decode_error_data
from ._host import HostEngine, HostStats
from ._limits import (
    DEFAULT_MAX_AGENT_TYPES_PER_CONNECTION,
    DEFAULT_MAX_BATCH_LENGTH,
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MAX_PENDING_CALLS,
    DEFAULT_MAX_SUBSCRIPTIONS_PER_CONNECTION,
    FORWARDING_ALLOWANCE,
)
from ._limits import MAX_NAME_LENGTH as MAX_NAME_LENGTH
from ._placement import Placement as Placement
from ._subscriptions import SubscriptionIndex as SubscriptionIndex
from ._wire import (
    AgentRef,
    HandlerErrorData,
    RpcError,
    SubscriptionSpec,
    TypePrefixSubscriptionSpec,
    TypeSubscriptionSpec,
)
from ._wire import PayloadEncodingError as PayloadEncodingError
from ._wire import UnreadablePayloadData as UnreadablePayloadData
from ._wire import is_json_content_type as is_json_content_type
from ._wire import media_type as media_type
from ._wire import reader_content_types as reader_content_types
from ._worker import PayloadTooLargeError, WorkerEngine, WorkerStats

__all__ = [
    "DEFAULT_MAX_AGENT_TYPES_PER_CONNECTION",
    "DEFAULT_MAX_BATCH_LENGTH",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "DEFAULT_MAX_PENDING_CALLS",
    "DEFAULT_MAX_SUBSCRIPTIONS_PER_CONNECTION",
    "FORWARDING_ALLOWANCE",
    "NONE_PAYLOAD",
    "AgentRef",
    "CallFailed",
    "CallSucceeded",
    "ClientId",
    "ClientKind",
    "ClientNameInUse",
    "ClientState",
    "Close",
    "CloseCode",
    "ErrorCode",
    "HandlerErrorData",
    "HostEngine",
    "HostOutput",
    "HostStats",
    "IncomingCall",
    "IncomingCallCancelled",
    "IncomingEvent",
    "LocalProtocolError",
    "Payload",
    "PayloadTooLargeError",
    "PeerError",
    "RequestFailed",
    "RequestSucceeded",
    "RpcError",
    "Send",
    "SubscriptionSpec",
    "TypePrefixSubscriptionSpec",
    "TypeSubscriptionSpec",
    "WorkerEngine",
    "WorkerEvent",
    "WorkerStats",
]


def __getattr__(name: str) -> object:
    if name == "http_status_for":
        raise AttributeError(
            "sansio_runtime.http_status_for moved to the HTTP layer: use io_backends.sansio.http_status_for"
        )
    raise AttributeError(f"module 'sansio_runtime' has no attribute {name!r}")
