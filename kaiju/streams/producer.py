"""`StreamProducer`: send RPC requests to another app (or this one) through its topic.

    await producer.call("orders.recount", {"shop": 1}, app="orders")
    await producer.call_multiple([("a.x", {}), ("a.y", [1, 2])])
    await producer.write(b'{"jsonrpc":"2.0","method":"a.x"}', {"Correlation-Id": "c1"})

Requests are one-way: they are written as JSON-RPC notifications and no result comes back
(what comes back is the message id). The listener runs them at least once.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

import msgspec

from kaiju.rpc.context import current, new_correlation_id
from kaiju.rpc.protocol import CORRELATION_ID, DEADLINE
from kaiju.runtime.service import Namespace, Service
from kaiju.runtime.types import Positive
from kaiju.streams.base import StreamBackend, topic_key
from kaiju.telemetry.provider import tracing_of
from kaiju.telemetry.service import Telemetry

if TYPE_CHECKING:  # pragma: no cover
    from kaiju.telemetry.tracing import Tracing

__all__ = ["SendOptions", "StreamProducer"]

_encode = msgspec.json.Encoder().encode


def notification(method: Any, params: Any = None) -> dict[str, Any]:
    """A JSON-RPC notification object; raises TypeError for a bad method or params."""
    if not isinstance(method, str) or not method:
        raise TypeError(f"method must be a non-empty string, got {method!r}")
    if params is None:
        return {"jsonrpc": "2.0", "method": method}
    if not isinstance(params, (dict, list, tuple)):
        raise TypeError(f"params of {method!r} must be a dict or a list, got {type(params).__name__}")
    return {"jsonrpc": "2.0", "method": method, "params": params}


class SendOptions(TypedDict, total=False):
    """Where and how `StreamProducer.call` / `call_multiple` send (each defaults to the setting)."""

    app: str | None
    """The app whose topic receives the request."""
    topic: str | None
    """The topic written to."""
    shared: bool | None
    """Write to the shared namespace instead of the app's."""
    headers: Mapping[str, str] | None
    """Headers of the message (a Correlation-Id and a Deadline are added when missing)."""
    timeout: float | None
    """Seconds the request stays valid (a Deadline header)."""
    key: str | None
    """A key stored with the message (carried, not used for routing)."""


class StreamProducer(Service):
    """Writes RPC requests (or any body) to a topic's stream. Depends on a stream backend
    (`backend`) only: writing needs no topic lock.

    Each call may name another `app`, `topic` or `shared`; the settings are the defaults.
    """

    service_name = "stream_producer"

    backend: StreamBackend
    telemetry: Telemetry | None = None
    """The `Telemetry` whose tracer makes a span of each message sent, its context written
    into the message's headers (none: the process's own tracer provider, when it set one)."""

    app_name: str | None = None
    """The app whose topic receives the requests (default: this app)."""
    topic: str = "rpc"
    """The topic written to."""
    shared: bool = False
    """Write to the shared namespace (`{<env>._shared._stream.<topic>}`) instead of the app's."""
    timeout: Positive | None = None
    """Seconds a request stays valid (sent as a `Deadline` header); past it the listener
    dead-letters the message unrun. None: no deadline."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        # stream keys remembered per option set: a producer writes to few streams, many times each
        self._stream_keys: dict[tuple[str | None, str | None, bool | None], str] = {}
        self._looked_at: set[tuple[str, str]] = set()  # (stream, method) pairs checked against this app's methods
        self._tracing: Tracing | None = None  # from start() on, when the app traces

    async def start(self) -> None:
        self._stream_keys.clear()  # made before the app was bound, maybe
        self._tracing = tracing_of(self.telemetry)

    def stream_key(self, topic: str | None = None, app: str | None = None, shared: bool | None = None) -> str:
        """The stream a write with these options goes to."""
        keys = self._stream_keys
        key = keys.get((topic, app, shared))
        if key is None:
            if len(keys) >= 256:  # option sets made up per call: forget, rather than grow
                keys.clear()
            key = keys[(topic, app, shared)] = self._stream_key(topic, app, shared)
        return key

    def _stream_key(self, topic: str | None, app: str | None, shared: bool | None) -> str:
        shared = self.shared if shared is None else shared
        if shared:
            namespace = self.app.shared_namespace
        else:
            namespace = Namespace(self.app.env, app or self.app_name or self.app.name)
        return topic_key(namespace, topic or self.topic)

    def _headers(self, headers: Mapping[str, str] | None, timeout: float | None) -> dict[str, str]:
        out = dict(headers) if headers else {}
        if CORRELATION_ID not in out:
            ctx = current()
            out[CORRELATION_ID] = ctx.correlation_id if ctx is not None else new_correlation_id()
        timeout = self.timeout if timeout is None else timeout
        if timeout is not None and DEADLINE not in out:
            out[DEADLINE] = f"{time.time() + timeout:.3f}"
        return out

    async def call(
        self, method: str, params: Mapping[str, Any] | list | tuple | None = None, **options: Unpack[SendOptions]
    ) -> str:
        """Send one request (as a notification); returns the message id. `options`: see `SendOptions`.

        The Correlation-Id of the current request is passed on (else a new one). Raises
        TypeError for a bad method or params, `StreamUnavailable` when the server is down.
        """
        if type(method) is str:
            self._warn_unserved(method, options)
        return await self._send(_encode(notification(method, params)), options)

    def _warn_unserved(self, method: str, options: SendOptions) -> None:
        """Warn (once per method and stream) about a call to a topic a listener of this very app
        reads, of a method no service of this app serves: the listener would dead-letter it.
        (A topic of another app is that app's business: nothing here can know its methods.)"""
        stream = self.stream_key(options.get("topic"), options.get("app"), options.get("shared"))
        if (stream, method) in self._looked_at:
            return
        self._looked_at.add((stream, method))
        from kaiju.rpc.methods import class_methods
        from kaiju.streams.listener import StreamListener

        services = list(self.app.services.values())
        if not any(isinstance(s, StreamListener) and s.stream_key == stream for s in services):
            return
        served = {f"{s.name}.{spec.name or attr}" for s in services for attr, spec in class_methods(type(s))}
        if method not in served and not method.startswith("rpc."):
            self.logger.warning(
                "a listener of this app reads this topic, and no service of the app serves the method: "
                "it will be dead-lettered (MethodNotFound)",
                method=method,
                stream=stream,
            )

    async def call_multiple(
        self, requests: Iterable[tuple[str, Any] | Mapping[str, Any]], **options: Unpack[SendOptions]
    ) -> str:
        """Send a batch in one message: `(method, params)` pairs or `{"method": ..., "params": ...}`
        dicts. The batch is run (and redelivered, on failure) as a whole. Returns the message id.

        Raises ValueError for an empty batch, TypeError for a bad item.
        """
        batch = []
        for item in requests:
            if isinstance(item, Mapping):
                batch.append(notification(item.get("method"), item.get("params")))
            else:
                method, params = item
                batch.append(notification(method, params))
        if not batch:
            raise ValueError("call_multiple needs at least one request")
        return await self._send(_encode(batch), options)

    async def _send(self, body: bytes, options: SendOptions) -> str:
        topic = options.get("topic")
        stream = self.stream_key(topic, options.get("app"), options.get("shared"))
        headers = self._headers(options.get("headers"), options.get("timeout"))
        return await self._add(topic, stream, body, headers, options.get("key"))

    async def _add(
        self, topic: str | None, stream: str, body: bytes, headers: Mapping[str, str] | None, key: str | None
    ) -> str:
        if self._tracing is None:
            return await self.backend.add(stream, body, headers, key)
        from kaiju.telemetry.streams import traced_send

        return await traced_send(self._tracing, self.backend, topic or self.topic, stream, body, headers, key)

    async def write(
        self,
        body: bytes,
        headers: Mapping[str, str] | None = None,
        key: str | None = None,
        *,
        app: str | None = None,
        topic: str | None = None,
        shared: bool | None = None,
    ) -> str:
        """Write `body` as it is (any bytes; a listener expects a JSON-RPC request or batch)
        with `headers`; returns the message id. `key` is stored with the message, not used
        for routing. Raises TypeError when `body` is not bytes."""
        return await self._add(topic, self.stream_key(topic, app, shared), body, headers, key)
