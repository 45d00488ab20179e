"""`Events`: a service publishes `await events.publish(topic, data)` (or `app.publish`), and
every listener hears it: the WebSocket connections subscribed to a matching topic get it as
the JSON-RPC notification `{"jsonrpc": "2.0", "method": topic, "params": data}`.

`Events` delivers within its own process; `RedisEvents` (`kaiju.events.redis`) carries each
event over one Redis pub/sub channel of the app to every process, its own included, so a
listener hears the events of all processes in the order the channel gave them.

An event is encoded once, where it is published, into the bytes every listener sends as they
are: `e<topic>\\n<notification JSON>`. The same channel carries revocation notices
(`r<kind>\\n<value>`: a session ended, a token family revoked, a user disabled, a session
written), which listeners hear through `revoked` and which no client ever receives as an
event: so a WebSocket bound to a session drops its rights at once, in every process, and
the auth services forget what they remembered of a caller (`kaiju.auth.known`), without
asking the session store per request. The listeners of the revoking process hear a notice
before `revoke` returns; the other processes when the channel brings it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Literal

import msgspec

from kaiju.rpc.answer import encode_value
from kaiju.runtime.service import Service
from kaiju.runtime.types import PositiveInt

__all__ = ["REVOKED_KINDS", "EventListener", "Events", "check_topic"]

# what a revocation notice names: a session id (ended), a token family, a user name, a session
# id whose stored state was written ("saved": copies kept elsewhere are stale, its rights stand)
REVOKED_KINDS = ("session", "family", "user", "saved")
RevokedKind = Literal["session", "family", "user", "saved"]

_TOPIC = re.compile(r"[\w.:/@-]{1,256}")  # a published topic: no wildcards, spaces or newlines
_EVENT, _REVOKED = b"e", b"r"


class _Notification(msgspec.Struct, tag_field="jsonrpc", tag="2.0"):
    method: str
    params: Any


def check_topic(topic: str) -> str:
    """`topic` when it can be published (1-256 letters, digits and `_ . : / @ -`); else ValueError."""
    if type(topic) is not str or not _TOPIC.fullmatch(topic):
        raise ValueError(f"a topic is 1-256 letters, digits and _ . : / @ -, got {topic!r}")
    return topic


class EventListener:
    """What hears the events of an `Events` service (the WebSocket endpoint, a test): override
    what you need. Called in the event loop, in the order the events were carried; a listener
    must not block (it queues what it sends)."""

    def deliver(self, topic: str, notification: bytes) -> None:
        """An event: `notification` is the encoded JSON-RPC notification."""

    def revoked(self, kind: str, value: str) -> None:
        """A session (`kind` "session"), a token family ("family") or a user ("user") lost its
        rights, or a session was written ("saved": what was read of it is stale)."""

    def resync(self) -> None:
        """Notices may have been missed (the channel was down): trust no cached right."""


class Events(Service):
    """Events within one process (service name "events"); `RedisEvents` for many.

    The settings are documented where each is declared, below.
    """

    service_name = "events"

    max_event_size: PositiveInt = 1024 * 1024
    """Largest encoded event (bytes); `publish` raises ValueError for a larger one."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.listeners: list[EventListener] = []
        self.published = 0  # events published by this process (a counter for operators and tests)
        self.heard = 0  # events this process's listeners heard

    async def start(self) -> None:
        self.app.events = self

    async def stop(self, exception: Exception | None = None) -> None:
        if self.app.events is self:
            self.app.events = None

    def add_listener(self, listener: EventListener) -> Callable[[], None]:
        """Make `listener` hear every event and notice; returns what stops it hearing them."""
        self.listeners.append(listener)
        return lambda: self.listeners.remove(listener) if listener in self.listeners else None

    async def publish(self, topic: str, data: Any = None) -> None:
        """Send the event `topic` with `data` (what a method may return) to every listener.

        Raises ValueError for a topic that cannot be published (see `check_topic`), TypeError
        for data that cannot be encoded as JSON, ValueError for an event over `max_event_size`.
        """
        notification = encode_value(_Notification(check_topic(topic), data))
        if len(notification) > self.max_event_size:
            raise ValueError(f"event {topic} is {len(notification)} bytes, more than max_event_size")
        self.published += 1
        await self.carry(_EVENT + topic.encode() + b"\n" + notification)

    async def revoke(self, kind: RevokedKind, value: str) -> None:
        """Tell every listener that a session, a token family or a user lost its rights (or a
        session was saved): this process's listeners before this returns, so a request that
        follows in this process finds nothing remembered; the other processes' next."""
        if kind not in REVOKED_KINDS:
            raise ValueError(f"expected a kind of {', '.join(REVOKED_KINDS)}, got {kind!r}")
        message = _REVOKED + kind.encode() + b"\n" + str(value).encode()
        self.hear(message)
        await self.spread(message)

    async def carry(self, message: bytes) -> None:
        """Bring an encoded message to the listeners (of every process, for a shared backend)."""
        self.hear(message)

    async def spread(self, message: bytes) -> None:
        """Bring a message this process has heard already to the other processes: none here
        (`RedisEvents` publishes it; hearing a notice twice changes nothing)."""

    def hear(self, message: bytes) -> None:
        """Hand one carried message to the listeners."""
        kind = message[:1]
        head, _, body = message[1:].partition(b"\n")
        if kind == _EVENT:
            self.heard += 1
            topic = head.decode()
            for listener in self.listeners:
                listener.deliver(topic, body)
        elif kind == _REVOKED:
            for listener in self.listeners:
                listener.revoked(head.decode(), body.decode())

    def resync(self) -> None:
        """Tell the listeners that notices may have been missed."""
        for listener in self.listeners:
            listener.resync()
