"""`Connection`: one WebSocket, JSON-RPC over its text frames.

The reader takes frames while fewer than `max_calls` of the socket's calls are in flight
(more wait in the socket: the client is slowed down by TCP, memory does not grow) and runs
each call in a task of its own through `RPCServer.handle` (transport "ws"), so answers go
out as they are ready, matched to their requests by id. Answers and pushed events share
one bounded send queue: a client that does not read, once the queue holds `send_queue`
bytes, is closed with 1013 (try again later) and logged.

A frame is a JSON-RPC request, notification or batch; it may carry a `headers` object
(string values: `Timeout`, `Correlation-Id`, ...), which replaces the upgrade request's
headers for that message (a batch: its first request's).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import WSMsgType, web

from kaiju.rpc import errors as E
from kaiju.rpc.protocol import AUTHORIZATION, SESSION_ID, ErrorResponse
from kaiju.rpc.topics import current_channel
from kaiju.ws.credentials import Credentials

if TYPE_CHECKING:  # pragma: no cover
    from kaiju.ws.endpoint import WSEndpoint

__all__ = ["Connection"]

# close codes (RFC 6455 7.4.1; 1013 from the IANA registry)
GOING_AWAY, UNSUPPORTED, TRY_AGAIN_LATER = 1001, 1003, 1013
_CREDENTIALS = frozenset({SESSION_ID.lower(), AUTHORIZATION.lower()})


class _Headers(msgspec.Struct):
    headers: dict[str, str] | msgspec.UnsetType = msgspec.UNSET


class _Id(msgspec.Struct):
    id: Any = msgspec.UNSET


_decode_one = msgspec.json.Decoder(_Headers).decode
_decode_batch = msgspec.json.Decoder(list[_Headers]).decode
_decode_id = msgspec.json.Decoder(_Id | list[_Id]).decode
_send_text: Any = getattr(web.WebSocketResponse, "send_frame", None)  # aiohttp >= 3.11: bytes as they are


class Connection:
    """One accepted socket of a `WSEndpoint`: `serve()` runs it until it closes."""

    __slots__ = (
        "endpoint",
        "ws",
        "transport",
        "creds",
        "headers",
        "client",
        "calls",
        "room",
        "queue",
        "queued",
        "wake",
        "sending",
        "closing",
        "patterns",
        "writer",
        "closer",
        "__weakref__",
    )

    def __init__(
        self,
        endpoint: WSEndpoint,
        ws: web.WebSocketResponse,
        transport: Any,
        creds: Credentials,
        headers: dict[str, str],
        client: str | None,
    ):
        self.endpoint = endpoint
        self.ws = ws
        self.transport = transport  # the TCP transport (aborted when a close does not complete)
        self.creds = creds
        self.headers = headers  # the upgrade request's headers, credentials and hop-by-hop ones left out
        self.client = client
        self.calls: set[asyncio.Task] = set()
        self.room = asyncio.Event()  # set while fewer than max_calls calls are in flight
        self.room.set()
        self.queue: collections.deque[bytes] = collections.deque()
        self.queued = 0  # bytes in the queue
        self.wake = asyncio.Event()  # the writer has work
        self.sending = False  # a task is writing to the socket right now
        self.closing = False
        self.patterns: set[str] = set()  # subscribed
        self.writer: asyncio.Task | None = None
        self.closer: asyncio.Task | None = None  # the close a limit asked for (1003, 1013)

    # -- reading -------------------------------------------------------------

    async def serve(self) -> None:
        """Read and serve frames until the socket closes; then wait for the calls in flight."""
        loop = asyncio.get_running_loop()
        self.writer = loop.create_task(self._write())
        ws, limits = self.ws, self.endpoint.limits
        try:
            while not self.closing:
                if len(self.calls) >= limits.max_calls:
                    self.room.clear()
                    await self.room.wait()
                    continue
                msg = await ws.receive()
                if msg.type is WSMsgType.TEXT:
                    if self.endpoint.stopping:
                        self.send_now(_refusal(msg.data, E.RequestTimeout("Request timeout: the server is stopping")))
                        continue
                    task = loop.create_task(self._call(msg.data))
                    self.calls.add(task)
                    task.add_done_callback(self._done)
                elif msg.type is WSMsgType.BINARY:
                    self.close(UNSUPPORTED, "JSON-RPC goes in text frames")
                elif msg.type is WSMsgType.ERROR:
                    self.endpoint.logger.info("websocket closed on error", client=self.client, error=str(msg.data))
                    break
                else:  # CLOSE, CLOSING, CLOSED
                    break
        finally:
            self.closing = True
            if self.calls:
                await asyncio.wait(self.calls)
            self.writer.cancel()

    def _done(self, task: asyncio.Task) -> None:
        self.calls.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.endpoint.logger.error("websocket call failed", exc_info=task.exception())
        self.room.set()

    async def _call(self, data: str) -> None:
        """Serve one frame: run it through the dispatcher, send the answer, follow a login or logout."""
        current_channel.set(self)  # rpc.subscribe reaches this connection (the task's own context)
        headers = self.headers
        creds = self.creds
        binder = self.endpoint.binder
        if '"headers"' in data:
            try:
                headers = self._own_headers(data)
            except (msgspec.MsgspecError, ValueError) as exc:
                self.send_now(_refusal(data, E.InvalidRequest(f'Invalid request: "headers": {exc}')))
                return
        session = creds.session
        if session is not None and not creds.trusted(binder.clock()):
            try:
                await binder.load(creds)
                session = creds.session
            except Exception as exc:  # the store failed: the dispatcher loads it itself and answers for it
                self.endpoint.logger.warning("websocket session check failed", error=str(exc))
                headers = {**headers, **_credential_headers(creds)}
                session = None
        own = headers is self.headers or _CREDENTIALS.isdisjoint(map(str.lower, headers))
        answer = await self.endpoint.rpc.handle(
            data,
            headers,
            scope=self.endpoint.scope,
            session=session if own else None,
            transport="ws",
            client=self.client,
        )
        if not own:  # the message named a session of its own: it binds nothing
            if answer.body is not None:
                await self.send(answer.body)
            return
        named = answer.session_id
        if named is not None and named != creds.session_id:
            # a login over the socket, or a logout (""): bound before the answer goes out, so
            # the message a client sends on reading it runs as the new session
            try:
                await binder.bind(creds, named)
            except Exception as exc:  # the store failed: the socket stays a guest, the answer still goes
                self.endpoint.logger.error("session not bound", exc_info=exc)
        elif session is not None and creds.session_id and creds.session is session:
            try:
                await binder.finish(session)
            except Exception as exc:
                self.endpoint.logger.error("session not saved", exc_info=exc)
        if answer.body is not None:
            await self.send(answer.body)

    def _own_headers(self, data: str) -> dict[str, str]:
        """The message's `headers` member (a batch: its first request's), or the upgrade request's."""
        if data.lstrip()[:1] == "[":
            items = _decode_batch(data)
            found = items[0].headers if items else msgspec.UNSET
        else:
            found = _decode_one(data).headers
        return self.headers if found is msgspec.UNSET else found

    # -- writing -------------------------------------------------------------

    async def send(self, data: bytes) -> None:
        """Send `data` (an answer) now when nothing else is being sent, else queue it."""
        if self.sending or self.queue:
            self.push(data)
            return
        self.sending = True
        try:
            await self._send(data)
            await self._drain()
        except (ConnectionError, RuntimeError):
            pass  # the socket is gone: its reader ends the connection
        finally:
            self.sending = False

    def send_now(self, data: bytes | None) -> None:
        if data is not None:
            self.push(data)

    def push(self, data: bytes) -> None:
        """Queue `data` (an event, or an answer waiting its turn); a reader too slow to keep the
        queue under `send_queue` bytes is closed with 1013."""
        if self.closing:
            return
        if self.queue and self.queued + len(data) > self.endpoint.limits.send_queue:
            self.endpoint.slow_reader(self)
            self.close(TRY_AGAIN_LATER, "too slow: the send queue is full")
            return
        self.queue.append(data)
        self.queued += len(data)
        self.wake.set()

    async def _send(self, data: bytes) -> None:
        if _send_text is not None:
            await self.ws.send_frame(data, WSMsgType.TEXT)
        else:  # aiohttp before 3.11 sends text frames from str only
            await self.ws.send_str(data.decode())

    async def _drain(self) -> None:
        queue = self.queue
        while queue:
            data = queue.popleft()
            self.queued -= len(data)
            await self._send(data)

    async def _write(self) -> None:
        """Send what was queued while no call was sending (pushed events, mostly)."""
        while True:
            await self.wake.wait()
            self.wake.clear()
            if self.sending:
                continue  # the task sending right now drains the queue after its own answer
            self.sending = True
            try:
                await self._drain()
            except (ConnectionError, RuntimeError):
                return
            finally:
                self.sending = False

    # -- subscriptions (the Channel of rpc.subscribe) -------------------------------

    def subscribe(self, pattern: str) -> None:
        """Send the events of `pattern` here; InvalidRequest past `max_subscriptions`."""
        if pattern in self.patterns:
            return
        most = self.endpoint.limits.max_subscriptions
        if len(self.patterns) >= most:
            raise E.InvalidRequest(f"Invalid request: at most {most} subscriptions per connection")
        self.patterns.add(pattern)
        self.endpoint.index.add(pattern, self)

    def unsubscribe(self, pattern: str) -> bool:
        if pattern not in self.patterns:
            return False
        self.patterns.discard(pattern)
        self.endpoint.index.remove(pattern, self)
        return True

    # -- closing -------------------------------------------------------------

    def close(self, code: int, why: str) -> None:
        """Close the socket with `code` (in a task of its own: callable from anywhere)."""
        if self.closing:
            return
        self.closing = True
        self.queue.clear()
        self.queued = 0
        self.closer = asyncio.get_running_loop().create_task(self.shut(code, why))

    async def shut(self, code: int, why: str) -> None:
        """Send the close frame; abort the connection when the client does not take it in time."""
        self.closing = True
        if self.writer is not None:
            self.writer.cancel()
        try:
            async with asyncio.timeout(self.endpoint.limits.close_timeout):
                await self.ws.close(code=code, message=why.encode())
        except (TimeoutError, ConnectionError, RuntimeError):
            pass
        finally:
            # a client that does not read takes no close frame either: drop what waits for it
            if not self.ws.closed or code == TRY_AGAIN_LATER:
                with contextlib.suppress(Exception):
                    self.transport.abort()


def _credential_headers(creds: Credentials) -> dict[str, str]:
    if creds.session_id:
        return {SESSION_ID: creds.session_id}
    return {AUTHORIZATION: creds.authorization} if creds.authorization else {}


def _refusal(data: str, error: E.RPCError) -> bytes | None:
    """The error answer to a frame that is not run: with its id (each of a batch's requests
    gets one), none for notifications, id null when the frame cannot be read."""
    try:
        found = _decode_id(data)
    except (msgspec.MsgspecError, ValueError):
        return msgspec.json.encode(ErrorResponse(id=None, error=error.to_dict()))
    if isinstance(found, list):
        answers = [ErrorResponse(id=i.id, error=error.to_dict()) for i in found if i.id is not msgspec.UNSET]
        return msgspec.json.encode(answers) if answers else None
    if found.id is msgspec.UNSET:
        return None
    return msgspec.json.encode(ErrorResponse(id=found.id, error=error.to_dict()))
