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
from typing import Any

import msgspec

from kaiju.rpc.context import current, new_correlation_id
from kaiju.rpc.protocol import CORRELATION_ID, DEADLINE
from kaiju.runtime.service import Namespace, Service
from kaiju.streams.base import StreamBackend, topic_key

__all__ = ["StreamProducer"]

_encode = msgspec.json.Encoder().encode


def notification(method: str, params: Any = None) -> dict[str, Any]:
    """A JSON-RPC notification object; raises TypeError for a bad method or params."""
    if not isinstance(method, str) or not method:
        raise TypeError(f"method must be a non-empty string, got {method!r}")
    if params is None:
        return {"jsonrpc": "2.0", "method": method}
    if not isinstance(params, (dict, list, tuple)):
        raise TypeError(f"params of {method!r} must be a dict or a list, got {type(params).__name__}")
    return {"jsonrpc": "2.0", "method": method, "params": params}


class StreamProducer(Service):
    """Writes RPC requests (or any body) to a topic's stream. Depends on a stream backend
    (`backend`) only: writing needs no topic lock.

    Each call may name another `app`, `topic` or `shared`; the settings are the defaults.
    """

    service_name = "stream_producer"

    backend: StreamBackend

    app_name: str | None = None
    """The app whose topic receives the requests (default: this app)."""
    topic: str = "rpc"
    """The topic written to."""
    shared: bool = False
    """Write to the shared namespace (`{<env>._shared._stream.<topic>}`) instead of the app's."""
    timeout: float | None = None
    """Seconds a request stays valid (sent as a `Deadline` header); past it the listener
    dead-letters the message unrun. None: no deadline."""

    async def start(self) -> None:
        if self.timeout is not None and (not isinstance(self.timeout, (int, float)) or self.timeout <= 0):
            raise ValueError(f"{self.name}: timeout must be a positive number of seconds or null, got {self.timeout!r}")
        self._stream_keys: dict[tuple[str | None, str | None, bool | None], str] = {}

    async def stop(self, exception: Exception | None = None) -> None:
        pass

    def stream_key(self, topic: str | None = None, app: str | None = None, shared: bool | None = None) -> str:
        """The stream a write with these options goes to."""
        # remembered per option set while started: a producer writes to few streams, many times each
        keys = self.__dict__.get("_stream_keys")
        if keys is None:
            return self._stream_key(topic, app, shared)
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
        self,
        method: str,
        params: Mapping[str, Any] | list | tuple | None = None,
        *,
        app: str | None = None,
        topic: str | None = None,
        shared: bool | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        key: str | None = None,
    ) -> str:
        """Send one request (as a notification); returns the message id.

        The Correlation-Id of the current request is passed on (else a new one). Raises
        TypeError for a bad method or params, `StreamUnavailable` when the server is down.
        """
        body = _encode(notification(method, params))
        return await self.backend.add(self.stream_key(topic, app, shared), body, self._headers(headers, timeout), key)

    async def call_multiple(
        self,
        requests: Iterable[tuple[str, Any] | Mapping[str, Any]],
        *,
        app: str | None = None,
        topic: str | None = None,
        shared: bool | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        key: str | None = None,
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
        return await self.backend.add(
            self.stream_key(topic, app, shared), _encode(batch), self._headers(headers, timeout), key
        )

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
        return await self.backend.add(self.stream_key(topic, app, shared), body, headers, key)
