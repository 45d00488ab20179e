"""The stream backend interface and the message shape shared by every backend.

A *stream* is an append-only log of messages, each a body (bytes: a JSON-RPC request or
batch) with headers. Consumers read it through a *group*: every message is delivered to
one consumer of each group, stays *pending* in the group until that consumer acknowledges
it, and is redelivered (claimed) when its consumer dies. This is the Redis Streams model;
`MemoryStream` gives the same semantics inside one process, `RedisStream` across hosts.

The listener, the producer and the `Streams` service use only the methods of
`StreamBackend`, so both backends pass one test suite. A backend is storage only: pausing
topics and the `streams.*` RPC methods belong to `kaiju.streams.service.Streams`.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import msgspec

from kaiju import keys
from kaiju.keys import DEAD_LETTER_SUFFIX
from kaiju.runtime.service import Namespace, Service

__all__ = [
    "DeadLetter",
    "dead_letter_fields",
    "decode_fields",
    "encode_fields",
    "GroupInfo",
    "GroupMissing",
    "StreamBackend",
    "StreamError",
    "StreamMessage",
    "StreamUnavailable",
    "parse_id",
    "read_dead_letter",
    "time_id",
    "topic_key",
]


class StreamError(Exception):
    """Base of the errors raised by stream backends."""


class StreamUnavailable(StreamError):
    """The stream server cannot be reached right now (the listener retries with backoff)."""


class GroupMissing(StreamError):
    """The group (or the whole stream) does not exist, e.g. after a server lost its data;
    the listener creates it again."""


class StreamMessage(msgspec.Struct, frozen=True, gc=False):
    """One message read from a stream.

    `id` is the stream's id (`"<ms>-<seq>"`, ordered); `deliveries` counts how many times
    the group handed it to a consumer, this time included; `key` is the optional key given
    by the producer (carried, not used for routing).
    """

    id: str
    body: bytes
    headers: dict[str, str]
    deliveries: int = 1
    key: str | None = None
    defect: str | None = None
    """Why the stored entry is not a readable message (no body, headers not a JSON object of
    strings), else None; the listener dead-letters such a message at once."""


class GroupInfo(msgspec.Struct, frozen=True):
    """A group's view of one stream: entries in the stream, pending (delivered, not yet
    acknowledged) and lag (not yet delivered to any consumer of the group; None when the
    server cannot tell, e.g. Redis after entries were deleted out of order)."""

    length: int
    pending: int
    lag: int | None
    last_delivered_id: str


def topic_key(namespace: Namespace, topic: str) -> str:
    """The stream key of `topic` in `namespace`: `{<env>.<app>._stream.<topic>}`.

    The whole key is its hash tag, so the stream and its dead letters share a Redis
    Cluster slot while the streams of different apps and topics spread over the nodes.
    """
    if not topic or not isinstance(topic, str):
        raise ValueError(f"a topic must be a non-empty string, got {topic!r}")
    return keys.tag(namespace.get_key(keys.STREAM, topic))


def parse_id(stream_id: str) -> tuple[int, int]:
    """`"1700000000000-3"` -> `(1700000000000, 3)`; raises ValueError for anything else."""
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


def format_id(ms: int, seq: int) -> str:
    return f"{ms}-{seq}"


def _next_id(stream_id: str) -> str:
    ms, seq = parse_id(stream_id)
    return format_id(ms, seq + 1)


_json_encode = msgspec.json.Encoder().encode
_decode_headers = msgspec.json.Decoder(dict[str, str]).decode


def encode_fields(body: bytes, headers: Mapping[str, str] | None, key: str | None) -> dict[bytes, bytes]:
    """A message as stored: `b` the body, `h` the headers as JSON, `k` the key (when given).
    Field names are bytes, as Redis replies them, so decoding needs no conversion."""
    if not isinstance(body, (bytes, bytearray, memoryview)):
        raise TypeError(f"a stream message body must be bytes, got {type(body).__name__}")
    fields = {b"b": bytes(body)}
    if headers:
        fields[b"h"] = _json_encode(headers)
    if key is not None:
        fields[b"k"] = str(key).encode()
    return fields


def decode_fields(msg_id: str, fields: Mapping[bytes, bytes], deliveries: int = 1) -> StreamMessage:
    """The inverse of `encode_fields`."""
    get = fields.get
    body = get(b"b")
    raw_headers = get(b"h")
    raw_key = get(b"k")
    try:
        headers = _decode_headers(raw_headers) if raw_headers else {}
        key = raw_key.decode() if raw_key is not None else None
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:
        return StreamMessage(msg_id, body or b"", {}, deliveries, None, f"unreadable headers or key: {exc}")
    if body is None:
        return StreamMessage(msg_id, b"", headers, deliveries, key, "no body field (b) in the entry")
    return StreamMessage(msg_id, body, headers, deliveries, key)


def dead_letter_fields(
    message: StreamMessage,
    group: str,
    consumer: str,
    error: Mapping[str, Any],
    details: Mapping[str, Any] | None = None,
) -> dict[bytes, bytes]:
    """A dead-letter entry: the message's own fields plus `x`, a JSON record of who gave up on
    which message, after how many deliveries, and why (`details`: the listener, the error's
    type and message, the correlation and trace ids; see `dead_letter_details`)."""
    fields = encode_fields(message.body, message.headers, message.key)
    fields[b"x"] = _json_encode(
        {
            "id": message.id,
            "group": group,
            "consumer": consumer,
            "deliveries": message.deliveries,
            "error": dict(error),
            "time": time.time(),
            **(details or {}),
        }
    )
    return fields


class DeadLetter(msgspec.Struct, frozen=True):
    """One dead letter as `StreamBackend.dead_letters` lists it: its own `id` in the dead-letter
    stream, the original message (`message_id`, `body`, `headers`, `key`) and the record of
    why it died (`record`: group, consumer, listener, deliveries, time, error, error_type,
    error_message, correlation_id, trace_id; what the listener that wrote it knew)."""

    id: str
    message_id: str | None
    body: bytes
    headers: dict[str, str]
    key: str | None
    record: dict[str, Any]


_decode_record = msgspec.json.Decoder(dict[str, Any]).decode


def read_dead_letter(entry_id: str, fields: Mapping[str, bytes]) -> DeadLetter:
    """A `DeadLetter` from a raw dead-letter entry (`read_range`'s form: str field names)."""
    message = decode_fields(entry_id, {k.encode(): v for k, v in fields.items()})
    try:
        record = _decode_record(fields["x"]) if "x" in fields else {}
    except (msgspec.DecodeError, msgspec.ValidationError):
        record = {}
    message_id = record.get("id")
    return DeadLetter(
        entry_id,
        message_id if isinstance(message_id, str) else None,
        message.body,
        message.headers,
        message.key,
        record,
    )


def time_id(unix_seconds: float) -> str:
    """The smallest stream id of a time: entries with lower ids were added before it."""
    return format_id(max(int(unix_seconds * 1000), 0), 0)


class StreamBackend(Service, abc.ABC):
    """Where stream messages are kept: the interface `StreamListener`, `StreamProducer` and
    `Streams` use.

    Every method takes the full stream key (see `topic_key`). Methods raise
    `StreamUnavailable` when the server cannot be reached; a backend never acknowledges,
    drops or trims a message on its own.
    """

    service_name: ClassVar[str | None] = "stream_backend"
    # True when a read cancelled while it waits hands out no message its caller would not
    # see (the taking happens after the wait, at once): a stopping listener then cancels its
    # read instead of waiting up to block_ms for it to come back
    cancel_safe_reads: ClassVar[bool] = False
    # what stores the messages, as a span's `messaging.system` names it
    messaging_system: ClassVar[str] = "kaiju"

    # -- writing ------------------------------------------------------------

    @abc.abstractmethod
    async def add(
        self, stream: str, body: bytes, headers: Mapping[str, str] | None = None, key: str | None = None
    ) -> str:
        """Append one message; returns its id. The stream is created when missing."""

    # -- groups and reading ---------------------------------------------------

    @abc.abstractmethod
    async def create_group(self, stream: str, group: str) -> None:
        """Create `group` on `stream` (and the stream) reading from the first entry; no-op if it exists."""

    @abc.abstractmethod
    async def read_new(self, stream: str, group: str, consumer: str, count: int, block_ms: int) -> list[StreamMessage]:
        """Up to `count` messages never delivered to `group`, now pending for `consumer`;
        waits up to `block_ms` when there are none (returns `[]` then)."""

    async def ack_and_read_new(
        self, stream: str, group: str, consumer: str, ack_ids: Sequence[str], count: int, block_ms: int
    ) -> list[StreamMessage]:
        """Acknowledge `ack_ids`, then `read_new`: in one round trip where the server allows
        (this default makes two). Raises as `read_new`; after an error the acknowledgements may
        or may not have landed (acknowledging again is harmless)."""
        if ack_ids:
            await self.ack(stream, group, ack_ids)
        return await self.read_new(stream, group, consumer, count, block_ms)

    @abc.abstractmethod
    async def read_pending(
        self, stream: str, group: str, consumer: str, count: int, after_id: str = "0-0"
    ) -> list[StreamMessage]:
        """Up to `count` of `consumer`'s own pending messages with ids above `after_id`, in id
        order, each counted as one more delivery. Messages deleted from the stream meanwhile
        are acknowledged and skipped."""

    @abc.abstractmethod
    async def claim_idle(
        self, stream: str, group: str, consumer: str, min_idle_ms: int, count: int, start_id: str = "0-0"
    ) -> tuple[str, list[StreamMessage]]:
        """Take over up to `count` messages pending in `group` for longer than `min_idle_ms`
        (whatever consumer held them); returns the id to continue the scan from (`"0-0"` when
        the scan is complete) and the claimed messages, each counted as one more delivery."""

    @abc.abstractmethod
    async def touch(self, stream: str, group: str, consumer: str, ids: Sequence[str]) -> None:
        """Reset the idle time of `consumer`'s pending `ids` (still being processed), so that
        no other consumer claims them; delivery counts are left as they are."""

    @abc.abstractmethod
    async def ack(self, stream: str, group: str, ids: Sequence[str]) -> int:
        """Acknowledge `ids` in `group`; returns how many were pending."""

    @abc.abstractmethod
    async def dead_letter(
        self,
        stream: str,
        group: str,
        consumer: str,
        message: StreamMessage,
        error: Mapping[str, Any],
        details: Mapping[str, Any] | None = None,
    ) -> str:
        """Copy `message` with `error` (and `details`, see `dead_letter_fields`) to the
        dead-letter stream `<stream>.dead` (`kaiju.keys.DEAD_LETTER_SUFFIX`) and acknowledge
        it in `group`, both or neither; returns the dead-letter entry id."""

    async def release(self, stream: str, group: str, consumer: str, ids: Sequence[str]) -> None:
        """Hand `consumer`'s pending `ids` back: any consumer's next claim takes them at once,
        without waiting for `claim_idle_ms` (a listener stopping with messages in hand).
        The default does nothing: they are claimed once idle long enough."""

    # -- dead letters -----------------------------------------------------------

    async def dead_letters(self, stream: str, count: int = 100, after_id: str | None = None) -> list[DeadLetter]:
        """Up to `count` dead letters of `stream`, oldest first, with ids above `after_id`."""
        start = "0-0" if after_id is None else _next_id(after_id)
        return [read_dead_letter(i, f) for i, f in await self.read_range(stream + DEAD_LETTER_SUFFIX, count, start)]

    @abc.abstractmethod
    async def replay(self, stream: str, ids: Sequence[str] | None = None, count: int = 1000) -> list[str]:
        """Put dead letters back on `stream` as new messages (their body, headers and key),
        each removed from the dead letters in the same step, so a letter is replayed once
        however many replay it at once: those with `ids` (None: the oldest `count`). Returns
        the new message ids; an id that is no (longer a) dead letter is passed over."""

    @abc.abstractmethod
    async def purge(self, stream: str, before_id: str | None = None) -> int:
        """Drop the dead letters of `stream` with ids below `before_id` (None: all of them);
        returns how many were dropped."""

    # -- upkeep and introspection -------------------------------------------

    @abc.abstractmethod
    async def trim(self, stream: str, maxlen: int) -> int:
        """Drop the oldest entries beyond about `maxlen`, but only those every group of the
        stream has read and acknowledged; returns how many were removed."""

    async def prune_consumers(self, stream: str, group: str, min_idle_ms: int) -> int:
        """Forget consumers of `group` that hold no pending message and have not read for
        `min_idle_ms` (dead processes under per-process names); returns how many. Nothing is
        lost: a live consumer removed so reappears on its next read."""
        return 0

    @abc.abstractmethod
    async def group_info(self, stream: str, group: str) -> GroupInfo:
        """Length, pending count and lag of `group` on `stream`."""

    @abc.abstractmethod
    async def read_range(
        self, stream: str, count: int = 100, start_id: str = "0-0"
    ) -> list[tuple[str, dict[str, bytes]]]:
        """Raw entries `(id, {field: value})` with ids from `start_id` on, for inspection
        (e.g. of the dead-letter stream: see `dead_letter_fields`)."""

    @abc.abstractmethod
    async def length(self, stream: str) -> int:
        """Number of entries in `stream` (0 when missing)."""
