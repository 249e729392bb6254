"""sansio_runtime: the protocol engine of the HTTP/WebSocket agent runtime, with no I/O at all.

Bytes and events in, bytes and events out; time is passed in by the caller. It imports no event
loop, no socket library and not autogen-core, so any driver can embed it. The wire contract it
implements is ``docs/PROTOCOL.md``.

* :class:`HostEngine` routes calls, events and registrations between connected clients.
* :class:`WorkerEngine` is one worker's end of a connection.
"""

from ._errors import CloseCode, ErrorCode, LocalProtocolError
from ._events import (
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
    http_status_for,
)
from ._host import (
    CLIENT_TRANSITIONS,
    DEFAULT_MAX_AGENT_TYPES_PER_CONNECTION,
    DEFAULT_MAX_BATCH_LENGTH,
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MAX_PENDING_CALLS,
    DEFAULT_MAX_SUBSCRIPTIONS_PER_CONNECTION,
    MAX_NAME_LENGTH,
    ClientKind,
    ClientNameInUse,
    ClientState,
    HostEngine,
    HostStats,
    PendingCall,
)
from ._subscriptions import SubscriptionIndex
from ._wire import (
    AgentRef,
    PayloadEncodingError,
    RpcError,
    SubscriptionSpec,
    TypePrefixSubscriptionSpec,
    TypeSubscriptionSpec,
    UnreadablePayloadData,
    decode_error_data,
    is_json_content_type,
    media_type,
    reader_content_types,
)
from ._worker import PayloadTooLargeError, WorkerEngine, WorkerStats

__all__ = [
    "CLIENT_TRANSITIONS",
    "DEFAULT_MAX_AGENT_TYPES_PER_CONNECTION",
    "DEFAULT_MAX_BATCH_LENGTH",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "DEFAULT_MAX_PENDING_CALLS",
    "DEFAULT_MAX_SUBSCRIPTIONS_PER_CONNECTION",
    "MAX_NAME_LENGTH",
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
    "HostEngine",
    "HostOutput",
    "HostStats",
    "IncomingCall",
    "IncomingCallCancelled",
    "IncomingEvent",
    "LocalProtocolError",
    "Payload",
    "PayloadEncodingError",
    "PayloadTooLargeError",
    "PeerError",
    "PendingCall",
    "RequestFailed",
    "RequestSucceeded",
    "RpcError",
    "Send",
    "SubscriptionIndex",
    "SubscriptionSpec",
    "TypePrefixSubscriptionSpec",
    "TypeSubscriptionSpec",
    "UnreadablePayloadData",
    "WorkerEngine",
    "WorkerEvent",
    "WorkerStats",
    "decode_error_data",
    "http_status_for",
    "is_json_content_type",
    "media_type",
    "reader_content_types",
]
