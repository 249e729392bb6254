"""CloudEvents 1.0 over HTTP, request side, without any I/O: the events a ``POST /v1/events`` carries.

The HTTP protocol binding of CloudEvents 1.0 (``cloudevents/bindings/http-protocol-binding.md``,
with the JSON event format ``formats/json-format.md``) has three content modes, told apart by the
request's ``Content-Type``:

* **structured**, ``application/cloudevents+json``: the body is one event in the JSON format;
* **batch**, ``application/cloudevents-batch+json``: the body is a JSON array of such events;
* **binary**, anything else: the event's attributes are ``ce-<name>`` headers (percent-encoded,
  section 3.1.3.2 of the binding), the body is its data, ``Content-Type`` its ``datacontenttype``.

:func:`read_events` turns a request into the params of ``agent.publish`` for each event
(docs/PROTOCOL.md section 4.7: one CloudEvent in our structured JSON form), or raises
:class:`CloudEventRefused` with the HTTP status the binding and its webhook spec expect and a
reason that says what to fix. A batch is refused whole if any event in it is bad, so a sender
that fixes and resends it publishes nothing twice. :func:`content_mode` checks the head alone,
so a host can refuse a request before it reads the body.

How an event becomes our ``agent.publish`` params:

* ``type`` is the topic type, ``source`` the topic source (the receiving agent's key), ``id``
  the message id, as ``agent.publish`` already uses them. ``type`` must be a valid AutoGen topic
  type (letters, digits, ``_ - . : =``): a Python worker drops any other, so it is refused here.
* ``datacontenttype`` is always set in the params, since our receivers assume
  ``application/json`` when it is absent, which is not what CloudEvents says for every case:

  - structured or batch with ``data`` and no ``datacontenttype``: ``application/json`` (the
    JSON format says to proceed as if it were, and to set it when re-serializing);
  - binary with a body and no ``Content-Type``: ``application/json`` if the body is valid JSON
    (the SDKs' binary mode sends JSON data without a content type, and read it back as JSON),
    else ``application/octet-stream`` (RFC 9110 section 8.3: a recipient may take bytes of no
    declared type as octet-stream);
  - structured or batch with ``data_base64`` and no ``datacontenttype``:
    ``application/octet-stream`` (the JSON format says to make no assumption about them).

* ``dataschema`` is the AutoGen type name the receiving worker looks its serializer up by. When
  the event has none, the event's ``type`` is used. Why: the pushes that reach such an endpoint
  (Knative sources and brokers, Dapr's pub/sub delivery, cloud event routers) carry no
  ``dataschema`` at all, so refusing them would make the endpoint useless to them; and in
  CloudEvents the ``type`` is what names the kind of occurrence and so the shape of its data
  (``dev.knative.sources.ping``, ``com.dapr.event.sent``). A worker that wants such events
  registers a serializer whose ``type_name`` is that type. A ``dataschema`` that is a URI (as
  plain CloudEvents has it) is used as the type name as it is.
* The data: a JSON payload (content type ``application/json`` or ``application/*+json``) is
  embedded as raw JSON, its bytes untouched (it must be valid JSON: 400 otherwise); any other
  payload goes in ``data_base64``. Structured ``data`` that is a string under a non-JSON content
  type (``"<a/>"`` with ``application/xml``) is that string's UTF-8 bytes. An event without data
  is the JSON payload ``null`` (content type ``application/json``) unless it declares a non-JSON
  content type, in which case it is zero bytes of it.
* Every other attribute (``subject``, ``time``, extensions, our ``agagentsender*``) is kept,
  with its JSON type in structured mode (string, integer or boolean) and as a string in binary
  mode, where headers carry no types. ``null`` means unset and is dropped.
* Without a ``traceparent`` attribute, the request's W3C ``traceparent`` (and ``tracestate``)
  header is copied into the event, as the Distributed Tracing extension allows a hop to do when
  the source set none.

Statuses: 400 for anything malformed (not JSON, a required attribute missing or empty, a bad
attribute name or value, invalid base64, JSON data that is not JSON, duplicate headers); 413 for
a body, an event or a batch over the given limits; 415 for a structured format other than JSON
(``application/cloudevents+avro``) or a JSON body declared in another charset than UTF-8. On
success the host publishes every event and answers a 2xx (the webhook spec: 204 when accepted and
processed with no body; Dapr and Knative take any 2xx as delivered).
"""

from __future__ import annotations

import base64
import binascii
import enum
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Union
from urllib.parse import unquote_to_bytes

import msgspec

from sansio_runtime import DEFAULT_MAX_BATCH_LENGTH, DEFAULT_MAX_MESSAGE_SIZE, is_json_content_type, media_type

SPEC_VERSION: Final = "1.0"
STRUCTURED_CONTENT_TYPE: Final = "application/cloudevents+json"
BATCH_CONTENT_TYPE: Final = "application/cloudevents-batch+json"
CLOUDEVENTS_MEDIA_PREFIX: Final = "application/cloudevents"
OCTET_STREAM: Final = "application/octet-stream"
JSON: Final = "application/json"

BAD_REQUEST: Final = 400
CONTENT_TOO_LARGE: Final = 413
UNSUPPORTED_MEDIA_TYPE: Final = 415

_CE_PREFIX: Final = b"ce-"
_REQUIRED: Final = ("specversion", "id", "source", "type")
_STRING_ATTRIBUTES: Final = frozenset(
    {
        *_REQUIRED,
        "datacontenttype",
        "dataschema",
        "subject",
        "time",
        "traceparent",
        "tracestate",
        "agagentsendertype",
        "agagentsenderkey",
        "agmsgkind",
    }
)
"""Attributes whose value must be a string (the core ones, and those our workers read as strings)."""
_NON_EMPTY: Final = frozenset({*_REQUIRED, "datacontenttype", "dataschema", "subject", "agagentsendertype"})

_ATTRIBUTE_NAME = re.compile(r"[a-z0-9]+\Z")
_TOPIC_TYPE = re.compile(r"[\w\-.:=]+\Z")  # autogen_core.TopicId's rule
_AGENT_TYPE = re.compile(r"[\w\-.]+\Z")  # autogen_core.AgentId's rule
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)\Z")
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}(-.*)?\Z")
_CHARSET = re.compile(r';\s*charset\s*=\s*"?([^";\s]*)"?', re.IGNORECASE)

AttributeValue = Union[str, int, bool, None]
_OBJECT_DECODER: Final = msgspec.json.Decoder(dict[str, msgspec.Raw])
_BATCH_DECODER: Final = msgspec.json.Decoder(list[dict[str, msgspec.Raw]])
_ATTRIBUTE_DECODER: Final = msgspec.json.Decoder(AttributeValue)
_STRING_DECODER: Final = msgspec.json.Decoder(str)
_OPTIONAL_STRING_DECODER: Final = msgspec.json.Decoder(Union[str, None])
_JSON_CHECK: Final = msgspec.json.Decoder()
_ENCODER: Final = msgspec.json.Encoder()
_INT32 = range(-(2**31), 2**31)
_DECODE_ERRORS = (msgspec.DecodeError, UnicodeDecodeError, RecursionError)


class ContentMode(enum.Enum):
    """How a request carries its events, as its ``Content-Type`` says (binding section 3)."""

    BINARY = "binary"
    """One event: attributes in ``ce-*`` headers, data in the body."""
    STRUCTURED = "structured"
    """One event in the JSON event format (``application/cloudevents+json``)."""
    BATCH = "batch"
    """A JSON array of events in the JSON format (``application/cloudevents-batch+json``)."""


class CloudEventRefused(Exception):
    """The request carries no event that can be published; answer ``status`` with ``reason``.

    ``index`` is the position of the offending event in a batch (None otherwise); it is already
    part of ``reason``.
    """

    def __init__(self, status: int, reason: str, index: int | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.index = index

    def __repr__(self) -> str:
        return f"CloudEventRefused({self.status}, {self.reason!r})"


@dataclass(frozen=True, slots=True)
class ReceivedEvent:
    """One event of a request, ready to publish."""

    params: bytes
    """The ``agent.publish`` params: the event as one JSON object (docs/PROTOCOL.md section 4.7)."""
    id: str
    type: str
    """The topic type."""
    source: str
    """The topic source."""
    dataschema: str
    """The AutoGen type name of the data (the event's ``dataschema``, else its ``type``)."""
    datacontenttype: str


@dataclass(frozen=True, slots=True)
class ReceivedEvents:
    """What :func:`read_events` found in a request."""

    mode: ContentMode
    events: tuple[ReceivedEvent, ...]
    """In request order; empty only for an empty batch (``[]``)."""


def content_mode(
    headers: Sequence[tuple[bytes, bytes]], *, max_body_size: int = DEFAULT_MAX_MESSAGE_SIZE
) -> ContentMode:
    """The content mode of a request, from its head alone; raises :class:`CloudEventRefused`.

    Checks what can be checked before the body is read: the ``Content-Type`` (415 for an event
    format other than JSON, or a charset other than UTF-8 for a JSON one), a ``Content-Length``
    over ``max_body_size`` (413), and, in binary mode, that ``ce-specversion`` is there (400).
    ``headers`` are (name, value) pairs with lower-case names, as h11 and ASGI give them.
    """
    content_type = _single(headers, b"content-type")
    length = _single(headers, b"content-length")
    if length is not None and length.strip().isdigit() and int(length) > max_body_size:
        raise CloudEventRefused(
            CONTENT_TOO_LARGE, f"the body of {int(length)} bytes is over this host's limit of {max_body_size}"
        )
    mode = _mode_of(None if content_type is None else _text(content_type, "Content-Type"))
    if mode is ContentMode.BINARY and _single(headers, b"ce-specversion") is None:
        raise CloudEventRefused(
            BAD_REQUEST,
            "not a CloudEvent: send its attributes as ce-specversion, ce-id, ce-source and ce-type headers "
            f"(binary mode), or the event as JSON with Content-Type: {STRUCTURED_CONTENT_TYPE} (structured mode)",
        )
    return mode


def read_events(
    headers: Sequence[tuple[bytes, bytes]],
    body: bytes,
    *,
    max_body_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    max_event_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    max_events: int = DEFAULT_MAX_BATCH_LENGTH,
) -> ReceivedEvents:
    """The events of a ``POST`` (head and whole body), as ``agent.publish`` params.

    ``max_body_size`` bounds the body, ``max_event_size`` the params of each event once encoded
    (base64 makes binary data a third larger; pass the host's ``max_message_size`` so that every
    event can travel as one message), ``max_events`` the length of a batch. Raises
    :class:`CloudEventRefused` (status 400, 413 or 415 and a reason) when the request carries no
    event that can be published; nothing of a refused batch may be published.
    """
    mode = content_mode(headers, max_body_size=max_body_size)
    if len(body) > max_body_size:
        raise CloudEventRefused(
            CONTENT_TOO_LARGE, f"the body of {len(body)} bytes is over this host's limit of {max_body_size}"
        )
    trace = _trace_headers(headers)
    if mode is ContentMode.BINARY:
        events: tuple[ReceivedEvent, ...] = (_binary_event(headers, body, trace, max_event_size),)
    elif mode is ContentMode.STRUCTURED:
        try:
            members = _OBJECT_DECODER.decode(body)
        except _DECODE_ERRORS as exc:
            raise CloudEventRefused(BAD_REQUEST, f"the body is not one CloudEvent as a JSON object: {exc}") from exc
        events = (_structured_event(members, trace, max_event_size, None),)
    else:
        try:
            batch = _BATCH_DECODER.decode(body)
        except _DECODE_ERRORS as exc:
            raise CloudEventRefused(BAD_REQUEST, f"the body is not a JSON array of CloudEvent objects: {exc}") from exc
        if len(batch) > max_events:
            raise CloudEventRefused(
                CONTENT_TOO_LARGE,
                f"the batch holds {len(batch)} events, over this host's limit of {max_events}: split it",
            )
        events = tuple(_structured_event(members, trace, max_event_size, i) for i, members in enumerate(batch))
    return ReceivedEvents(mode, events)


# ------------------------------------------------------------------------------------- modes


def _mode_of(content_type: str | None) -> ContentMode:
    if content_type is None:
        return ContentMode.BINARY
    media = media_type(content_type)
    if not media.startswith(CLOUDEVENTS_MEDIA_PREFIX):
        return ContentMode.BINARY
    if media == BATCH_CONTENT_TYPE:
        mode = ContentMode.BATCH
    elif media == STRUCTURED_CONTENT_TYPE:
        mode = ContentMode.STRUCTURED
    else:
        raise CloudEventRefused(
            UNSUPPORTED_MEDIA_TYPE,
            f"event format {media!r} is not supported: send {STRUCTURED_CONTENT_TYPE}, {BATCH_CONTENT_TYPE} "
            "or binary mode (ce-* headers)",
        )
    charset = _CHARSET.search(content_type)
    if charset is not None and charset.group(1).lower() not in ("utf-8", "utf8"):
        raise CloudEventRefused(
            UNSUPPORTED_MEDIA_TYPE, f"charset {charset.group(1)!r} is not supported: JSON events must be UTF-8"
        )
    return mode


# ----------------------------------------------------------------------------------- binary


def _binary_event(
    headers: Sequence[tuple[bytes, bytes]], body: bytes, trace: dict[str, str], max_event_size: int
) -> ReceivedEvent:
    attributes: dict[str, AttributeValue] = {}
    for raw_name, raw_value in headers:
        lowered = raw_name.lower()
        if not lowered.startswith(_CE_PREFIX):
            continue
        header_name = _text(lowered, "a header name")
        name = header_name[len(_CE_PREFIX) :]
        if name in attributes:
            raise CloudEventRefused(BAD_REQUEST, f"header {header_name} appears more than once: send it once")
        if name == "datacontenttype":
            raise CloudEventRefused(
                BAD_REQUEST, "ce-datacontenttype must not be sent in binary mode: the Content-Type header carries it"
            )
        if name in ("data", "data_base64") or not _ATTRIBUTE_NAME.match(name):
            raise CloudEventRefused(
                BAD_REQUEST,
                f"header {header_name}: attribute names are lower-case letters and digits only, and not 'data'",
            )
        attributes[name] = _header_value(header_name, raw_value)
    _check_attributes(attributes, "", headers=True)
    header = _single(headers, b"content-type")
    declared = None if header is None else _text(header, "Content-Type").strip()
    if declared == "":
        raise CloudEventRefused(BAD_REQUEST, "Content-Type is empty: name the data's media type, or leave it out")
    data: msgspec.Raw | None
    data_base64: str | None
    if not body and (declared is None or is_json_content_type(declared)):
        content_type, data, data_base64 = JSON, msgspec.Raw(b"null"), None
    else:
        content_type = declared if declared is not None else JSON if _is_json(body) else OCTET_STREAM
        data, data_base64 = _pack(body, content_type, "the body")
    return _event(attributes, content_type, data, data_base64, trace, max_event_size, "")


def _header_value(name: str, raw: bytes) -> str:
    """A ``ce-*`` header's attribute value: quoted strings unescaped, then one round of
    percent-decoding, which must give UTF-8 (binding section 3.1.3.2)."""
    text = _unquote_quoted(name, _text(raw, name).strip())
    try:
        return unquote_to_bytes(text).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CloudEventRefused(
            BAD_REQUEST, f"header {name}: its percent-encoding is not valid UTF-8 ({exc.reason} at byte {exc.start})"
        ) from exc


def _unquote_quoted(name: str, value: str) -> str:
    """``value`` with RFC 9110 quoted strings replaced by their content (older senders quote)."""
    if '"' not in value:
        return value
    out: list[str] = []
    quoted = escaped = False
    for ch in value:
        if escaped:
            out.append(ch)
            escaped = False
        elif quoted and ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        else:
            out.append(ch)
    if quoted or escaped:
        raise CloudEventRefused(BAD_REQUEST, f"header {name}: a quoted string is not closed")
    return "".join(out)


# ------------------------------------------------------------------------------- structured


def _structured_event(
    members: dict[str, msgspec.Raw], trace: dict[str, str], max_event_size: int, index: int | None
) -> ReceivedEvent:
    where = "" if index is None else f"event {index} of the batch: "
    attributes: dict[str, AttributeValue] = {}
    data_raw = members.pop("data", None)
    base64_raw = members.pop("data_base64", None)
    for name, raw in members.items():
        if not _ATTRIBUTE_NAME.match(name):
            raise CloudEventRefused(
                BAD_REQUEST, f"{where}attribute {name!r}: names are lower-case letters and digits only", index
            )
        try:
            value = _ATTRIBUTE_DECODER.decode(raw)
        except msgspec.ValidationError as exc:
            raise CloudEventRefused(
                BAD_REQUEST, f"{where}attribute {name!r} must be a string, integer or boolean ({exc})", index
            ) from exc
        if value is not None:
            attributes[name] = value
    _check_attributes(attributes, where, index)
    declared = attributes.pop("datacontenttype", None)
    assert declared is None or isinstance(declared, str)  # checked above
    try:
        data_b64 = None if base64_raw is None else _OPTIONAL_STRING_DECODER.decode(base64_raw)
    except msgspec.ValidationError as exc:
        raise CloudEventRefused(BAD_REQUEST, f"{where}data_base64 must be a base64 string ({exc})", index) from exc
    if data_raw is not None and data_b64 is not None:
        raise CloudEventRefused(BAD_REQUEST, f"{where}both data and data_base64 are set: send one", index)
    if data_raw is not None:
        content_type = JSON if declared is None else declared
        if _is_cloudevents_json(content_type):
            payload = bytes(data_raw)  # the JSON text of the value, as sent
        else:
            try:
                payload = _STRING_DECODER.decode(data_raw).encode("utf-8")
            except msgspec.ValidationError as exc:
                raise CloudEventRefused(
                    BAD_REQUEST,
                    f"{where}data must be a string for content type {content_type!r}; send other bytes as data_base64",
                    index,
                ) from exc
        data, data_base64 = _pack(payload, content_type, f"{where}data", index)
    elif data_b64 is not None:
        content_type = OCTET_STREAM if declared is None else declared
        try:
            payload = base64.b64decode(data_b64, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise CloudEventRefused(BAD_REQUEST, f"{where}data_base64 is not valid base64: {exc}", index) from exc
        data, data_base64 = _pack(payload, content_type, f"{where}data_base64", index)
    elif declared is None or is_json_content_type(declared):
        content_type, data, data_base64 = JSON, msgspec.Raw(b"null"), None
    else:
        content_type, data, data_base64 = declared, None, ""
    return _event(attributes, content_type, data, data_base64, trace, max_event_size, where, index)


def _is_json(payload: bytes) -> bool:
    try:
        _JSON_CHECK.decode(payload)
    except _DECODE_ERRORS:
        return False
    return True


def _is_cloudevents_json(content_type: str) -> bool:
    """JSON-formatted data in the JSON event format's sense: ``*/json`` or ``*/*+json``."""
    subtype = media_type(content_type).partition("/")[2]
    return subtype == "json" or subtype.endswith("+json")


# ---------------------------------------------------------------------------------- common


def _check_attributes(
    attributes: dict[str, AttributeValue], where: str, index: int | None = None, *, headers: bool = False
) -> None:
    """Raise :class:`CloudEventRefused` unless ``attributes`` are those of a CloudEvents 1.0 event
    that AutoGen workers can take. ``headers``: they came as ``ce-*`` headers (binary mode)."""
    missing = [name for name in _REQUIRED if name not in attributes]
    if missing:
        names = ", ".join(f"ce-{name}" for name in missing) if headers else ", ".join(missing)
        raise CloudEventRefused(BAD_REQUEST, f"{where}missing required attribute(s): {names}", index)
    for name, value in attributes.items():
        if isinstance(value, str):
            if _CONTROL.search(value):
                raise CloudEventRefused(
                    BAD_REQUEST,
                    f"{where}attribute {name!r} holds a control character, which CloudEvents forbids",
                    index,
                )
            if not value and name in _NON_EMPTY:
                raise CloudEventRefused(BAD_REQUEST, f"{where}attribute {name!r} must not be empty", index)
        elif name in _STRING_ATTRIBUTES:
            raise CloudEventRefused(BAD_REQUEST, f"{where}attribute {name!r} must be a string, not {value!r}", index)
        elif not isinstance(value, bool) and isinstance(value, int) and value not in _INT32:
            raise CloudEventRefused(
                BAD_REQUEST, f"{where}attribute {name!r}: CloudEvents integers are 32-bit, {value} is not", index
            )
    if attributes["specversion"] != SPEC_VERSION:
        raise CloudEventRefused(
            BAD_REQUEST, f'{where}specversion must be "1.0", not {attributes["specversion"]!r}', index
        )
    topic_type = attributes["type"]
    assert isinstance(topic_type, str)
    if not _TOPIC_TYPE.match(topic_type):
        raise CloudEventRefused(
            BAD_REQUEST,
            f"{where}type {topic_type!r} is not a valid AutoGen topic type: use letters, digits and _ - . : = only",
            index,
        )
    time = attributes.get("time")
    if isinstance(time, str) and not _TIMESTAMP.match(time):
        raise CloudEventRefused(BAD_REQUEST, f"{where}time {time!r} is not an RFC 3339 timestamp", index)
    sender_type, sender_key = attributes.get("agagentsendertype"), attributes.get("agagentsenderkey")
    if (sender_type is None) != (sender_key is None):
        raise CloudEventRefused(BAD_REQUEST, f"{where}send agagentsendertype and agagentsenderkey together", index)
    if isinstance(sender_type, str) and not _AGENT_TYPE.match(sender_type):
        raise CloudEventRefused(
            BAD_REQUEST, f"{where}agagentsendertype {sender_type!r} is not a valid AutoGen agent type", index
        )


def _pack(
    payload: bytes, content_type: str, what: str, index: int | None = None
) -> tuple[msgspec.Raw | None, str | None]:
    """The wire form of payload bytes: raw JSON for our JSON content types, else base64."""
    if is_json_content_type(content_type):
        try:
            _JSON_CHECK.decode(payload)
        except _DECODE_ERRORS as exc:
            raise CloudEventRefused(
                BAD_REQUEST, f"{what} is not valid JSON, but its content type is {content_type!r}: {exc}", index
            ) from exc
        return msgspec.Raw(payload), None
    return None, base64.b64encode(payload).decode("ascii")


def _event(
    attributes: dict[str, AttributeValue],
    content_type: str,
    data: msgspec.Raw | None,
    data_base64: str | None,
    trace: dict[str, str],
    max_event_size: int,
    where: str,
    index: int | None = None,
) -> ReceivedEvent:
    topic_type, topic_source, event_id = (str(attributes[name]) for name in ("type", "source", "id"))
    dataschema = attributes.get("dataschema")
    type_name = topic_type if dataschema is None else str(dataschema)
    members: dict[str, object] = {
        "specversion": SPEC_VERSION,
        "id": event_id,
        "source": topic_source,
        "type": topic_type,
        "datacontenttype": content_type,
        "dataschema": type_name,
    }
    members.update((name, value) for name, value in attributes.items() if name not in members)
    if trace and "traceparent" not in members and "tracestate" not in members:
        members.update(trace)
    if data is not None:
        members["data"] = data
    else:
        members["data_base64"] = data_base64
    params = _ENCODER.encode(members)
    if len(params) > max_event_size:
        raise CloudEventRefused(
            CONTENT_TOO_LARGE,
            f"{where}the event is {len(params)} bytes once encoded (base64 adds a third to binary data), "
            f"over this host's limit of {max_event_size}",
            index,
        )
    return ReceivedEvent(params, event_id, topic_type, topic_source, type_name, content_type)


def _trace_headers(headers: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """The request's W3C trace context, if it has a valid ``traceparent`` (else nothing)."""
    found: dict[str, str] = {}
    for name, value in headers:
        key = name.lower()
        if key in (b"traceparent", b"tracestate") and key.decode() not in found:
            try:
                found[key.decode()] = value.decode("ascii").strip()
            except UnicodeDecodeError:
                return {}
    parent = found.get("traceparent")
    if parent is None or not _TRACEPARENT.match(parent):
        return {}
    return found


def _single(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    """The value of header ``name``; 400 if it appears more than once."""
    found: bytes | None = None
    for key, value in headers:
        if key.lower() == name:
            if found is not None:
                raise CloudEventRefused(BAD_REQUEST, f"header {name.decode()} appears more than once: send it once")
            found = bytes(value)
    return found


def _text(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CloudEventRefused(BAD_REQUEST, f"{what} is not UTF-8: percent-encode such characters") from exc


__all__ = [
    "BATCH_CONTENT_TYPE",
    "STRUCTURED_CONTENT_TYPE",
    "CloudEventRefused",
    "ContentMode",
    "ReceivedEvent",
    "ReceivedEvents",
    "content_mode",
    "read_events",
]
