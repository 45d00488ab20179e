"""`WSRPCClient`: JSON-RPC over a WebSocket, with subscriptions.

    client = WSRPCClient(url="ws://127.0.0.1:8080/public/ws")
    await client.start()
    await client.call("shop.add", {"a": 1, "b": 2})
    async with await client.subscribe("orders.*") as events:
        async for event in events:            # Event(topic, data)
            ...

Calls share one socket and are matched to their answers by id, so they may be answered in
any order. When the socket breaks, the calls waiting on it raise ConnectionError; the client
connects again with a growing delay (`reconnect_min` doubling up to `reconnect_max`) and
subscribes again to every pattern it had, so an iterator of events goes on after a gap (the
events published during the gap are lost: delivery is at most once). Errors are those of
`HTTPRPCClient`: the RPCError subclass the server answered with.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator
from typing import Any, NamedTuple

import aiohttp
import msgspec

from kaiju.http.client import BatchCalls, _unwrap
from kaiju.rpc.context import current
from kaiju.rpc.errors import RPCError
from kaiju.rpc.protocol import CORRELATION_ID, DEADLINE
from kaiju.rpc.topics import compile_pattern
from kaiju.runtime.service import Service
from kaiju.runtime.types import Positive, PositiveInt

__all__ = ["Event", "Subscription", "WSRPCClient"]

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


class Event(NamedTuple):
    """An event pushed by the server: its topic and data."""

    topic: str
    data: Any


class Subscription:
    """The events of one pattern, as an async iterator (and an async context manager that
    unsubscribes on exit). Holds at most `maxsize` events not yet read: past it, new ones are
    dropped and counted in `dropped`."""

    def __init__(self, client: WSRPCClient, pattern: str, maxsize: int):
        self.client = client
        self.pattern = pattern
        self.match = compile_pattern(pattern)
        self.queue: asyncio.Queue[Event] = asyncio.Queue(maxsize)
        self.dropped = 0

    def put(self, event: Event) -> None:
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        return await self.queue.get()

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop receiving these events (the server is told when no other subscription needs the pattern)."""
        await self.client.unsubscribe(self)


class WSRPCClient(BatchCalls, Service):
    """Calls JSON-RPC methods of a server over one WebSocket (service name "ws_rpc_client").

    The settings are documented where each is declared, below. `start()` connects (raising
    `aiohttp.ClientError` or TimeoutError when it cannot); `stop()` closes.
    """

    service_name = "ws_rpc_client"
    __required__ = ("url",)

    url: str
    """The server's WebSocket endpoint: `ws://host:port/public/ws` (`wss://` for TLS)."""
    headers: dict = {}  # noqa: RUF012 -- a setting's default, never mutated
    """Sent with the upgrade request (an Authorization, a Session-Id)."""
    timeout: Positive = 30.0
    """Seconds a call may take, when the call gives none."""
    connect_timeout: Positive = 10.0
    """Seconds a connection attempt may take."""
    heartbeat: Positive = 30.0
    """Seconds between pings; a server that does not answer in half that is taken for gone."""
    max_message: PositiveInt = 4 * 1024 * 1024
    """Largest message accepted from the server (bytes)."""
    reconnect_min: Positive = 0.1
    """Seconds before the first attempt to connect again ..."""
    reconnect_max: Positive = 10.0
    """... doubling after each failed one up to this."""
    queue_size: PositiveInt = 1000
    """Events a subscription holds unread (then new ones are dropped)."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._ids = itertools.count(1)
        self._pending: dict[Any, asyncio.Future] = {}
        self._subscriptions: list[Subscription] = []
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._connected = asyncio.Event()
        self._reader: asyncio.Task | None = None
        self._resubscribing: asyncio.Task | None = None
        self.reconnects = 0  # connections made again after a break

    # -- lifetime -------------------------------------------------------------

    async def start(self) -> None:
        self._http = aiohttp.ClientSession()
        try:
            await self._connect()
        except BaseException:
            await self._http.close()
            self._http = None
            raise
        self._reader = asyncio.get_running_loop().create_task(self._read(), name=f"{self.name}.reader")

    async def stop(self, exception: Exception | None = None) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None
        if self._ws is not None:
            await self._ws.close()
            self._ws = None
        self._fail_pending(ConnectionError("the client stopped"))
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def _connect(self) -> None:
        if self._http is None:
            raise RuntimeError(f"{self.name} is not started")
        async with asyncio.timeout(self.connect_timeout):
            self._ws = await self._open(self._http)
        self._connected.set()

    async def _open(self, http: aiohttp.ClientSession) -> aiohttp.ClientWebSocketResponse:
        # aiohttp 3.11 took the close timeout into ClientWSTimeout; before, it was a float
        close: Any = (
            aiohttp.ClientWSTimeout(ws_close=self.connect_timeout)
            if hasattr(aiohttp, "ClientWSTimeout")
            else self.connect_timeout
        )
        return await http.ws_connect(
            self.url, headers=dict(self.headers), heartbeat=self.heartbeat, max_msg_size=self.max_message, timeout=close
        )

    async def _read(self) -> None:
        """Read answers and events; when the socket breaks, connect again and resubscribe."""
        delay = self.reconnect_min
        while True:
            ws = self._ws
            if ws is not None:
                async for msg in ws:
                    if msg.type is aiohttp.WSMsgType.TEXT:
                        self._received(msg.data)
                    elif msg.type is aiohttp.WSMsgType.ERROR:
                        break
            self._connected.clear()
            self._fail_pending(ConnectionError(f"the WebSocket closed ({ws.close_code if ws else None})"))
            while True:
                await asyncio.sleep(delay)
                try:
                    await self._connect()
                except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                    self.logger.info("reconnecting", url=self.url, error=str(exc) or type(exc).__name__)
                    delay = min(delay * 2, self.reconnect_max)
                    continue
                self.reconnects += 1
                delay = self.reconnect_min
                # in a task of its own: its answers come through this reader
                self._resubscribing = asyncio.get_running_loop().create_task(self._resubscribe())
                break

    def _received(self, text: str) -> None:
        try:
            data = _decode(text)
        except msgspec.DecodeError:
            self.logger.warning("a message from the server is not JSON")
            return
        if type(data) is list:  # a batch's answers: its call waits under the id of one of its requests
            for item in data:
                future = self._pending.pop(item.get("id"), None) if isinstance(item, dict) else None
                if future is not None:
                    if not future.done():
                        future.set_result(data)
                    return
            return
        if not isinstance(data, dict):
            return
        if "id" not in data and isinstance(data.get("method"), str):
            event = Event(data["method"], data.get("params"))
            for sub in self._subscriptions:
                if sub.match(event.topic):
                    sub.put(event)
            return
        key: Any = data.get("id")
        future = self._pending.pop(key, None)
        if future is not None and not future.done():
            future.set_result(data)

    def _fail_pending(self, exc: Exception) -> None:
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(exc)

    # -- calls ---------------------------------------------------------------

    def _headers(self, timeout: float | None) -> tuple[dict[str, str], float]:
        headers: dict[str, str] = {}
        timeout = timeout if timeout is not None else self.timeout
        deadline = time.time() + timeout
        ctx = current()
        if ctx is not None:  # inside a request: its correlation id and deadline go on
            headers[CORRELATION_ID] = ctx.correlation_id
            deadline = min(deadline, ctx.deadline)
            headers[DEADLINE] = f"{deadline:.3f}"
        return headers, max(0.001, deadline - time.time()) + 0.5  # slack: let the server answer its own timeout

    async def _send(self, message: Any, key: Any, timeout: float) -> Any:
        async with asyncio.timeout(timeout):
            await self._connected.wait()
            ws = self._ws
            if ws is None or ws.closed:
                raise ConnectionError("the WebSocket is closed")
            future = asyncio.get_running_loop().create_future() if key is not None else None
            if future is not None:
                self._pending[key] = future
            try:
                await ws.send_str(_encode(message).decode())
                return await future if future is not None else None
            finally:
                if key is not None:
                    self._pending.pop(key, None)

    def _request(self, method: str, params: Any, headers: dict[str, str], notify: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            body["params"] = params
        if headers:
            body["headers"] = headers
        if not notify:
            body["id"] = next(self._ids)
        return body

    async def call(
        self, method: str, params: dict | list | None = None, nowait: bool = False, timeout: float | None = None
    ) -> Any:
        """Call one method and return its result; with `nowait`, send it as a notification and return None.

        Raises the RPCError subclass the server answered with (by `data.type`), InternalError for
        a reply that is not JSON-RPC, ConnectionError when the socket breaks first, TimeoutError.
        """
        headers, timeout = self._headers(timeout)
        request = self._request(method, params, headers, nowait)
        response = await self._send(request, request.get("id"), timeout)
        return None if nowait else _unwrap(response)

    async def _send_batch(
        self, calls: list[tuple[str, Any]], headers: dict[str, str], timeout: float
    ) -> tuple[list[dict[str, Any]], Any]:
        # the batch's headers ride on its first request (a WebSocket message has no headers)
        batch = [self._request(method, params, headers if n == 0 else {}) for n, (method, params) in enumerate(calls)]
        return batch, await self._send(batch, batch[0]["id"], timeout)

    # -- subscriptions -------------------------------------------------------

    async def subscribe(self, topic: str) -> Subscription:
        """Subscribe to the events of `topic` (a pattern the server's `topics` allows); raises
        PermissionDenied when it does not."""
        sub = Subscription(self, topic, self.queue_size)
        if not any(s.pattern == topic for s in self._subscriptions):
            await self.call("rpc.subscribe", {"topic": topic})
        self._subscriptions.append(sub)
        return sub

    async def unsubscribe(self, sub: Subscription) -> None:
        """End one subscription (`Subscription.close`)."""
        if sub in self._subscriptions:
            self._subscriptions.remove(sub)
            if not any(s.pattern == sub.pattern for s in self._subscriptions) and self._connected.is_set():
                await self.call("rpc.unsubscribe", {"topic": sub.pattern})

    async def _resubscribe(self) -> None:
        for pattern in dict.fromkeys(s.pattern for s in self._subscriptions):
            try:
                await self.call("rpc.subscribe", {"topic": pattern})
            except (RPCError, ConnectionError, TimeoutError) as exc:  # refused now (a session gone): say so once
                self.logger.warning("subscription not renewed", topic=pattern, error=str(exc))
