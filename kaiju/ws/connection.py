"""`Connection`: one WebSocket, JSON-RPC over its text frames.

The reader takes frames while fewer than `max_calls` of the socket's calls are in flight
(more wait in the socket: the client is slowed down by TCP, memory does not grow) and runs
each call through `RPCServer.handle` (transport "ws") at once, in its own task; a call that
waits keeps that task and a new one reads on (inline.py), so answers go out as they are
ready, matched to their requests by id. Answers and pushed events share one bounded send
queue: a client that does not read, once the queue holds `send_queue` bytes, is closed with
1013 (try again later) and logged. The endpoint's heartbeat pings a silent socket and drops
it when it does not answer (`beat`).

A frame is a JSON-RPC request, notification or batch; it may carry a `headers` object
(string values: `Timeout`, `Correlation-Id`, ...), which replaces the upgrade request's
headers for that message (a batch: its first request's).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast

import msgspec
from aiohttp import WSMsgType, web

from kaiju.rpc import errors as E
from kaiju.rpc.access import Session
from kaiju.rpc.protocol import AUTHORIZATION, SESSION_ID, ErrorResponse
from kaiju.rpc.topics import current_channel
from kaiju.ws.credentials import Credentials
from kaiju.ws.inline import CallRest

if TYPE_CHECKING:  # pragma: no cover
    from kaiju.ws.endpoint import WSEndpoint

__all__ = ["Connection"]

# close codes (RFC 6455 7.4.1; 1013 from the IANA registry)
GOING_AWAY, UNSUPPORTED, TRY_AGAIN_LATER = 1001, 1003, 1013
_CREDENTIALS = frozenset({SESSION_ID.lower(), AUTHORIZATION.lower()})
_TEXT = WSMsgType.TEXT  # read once: an enum's members are looked up through its class's __getattr__ hook


class _Headers(msgspec.Struct):
    headers: dict[str, str] | msgspec.UnsetType = msgspec.UNSET


class _Id(msgspec.Struct):
    id: Any = msgspec.UNSET


_decode_one = msgspec.json.Decoder(_Headers).decode
_decode_batch = msgspec.json.Decoder(list[_Headers]).decode
_decode_id = msgspec.json.Decoder(_Id | list[_Id]).decode


def _text_sender(ws: web.WebSocketResponse) -> Callable[[bytes, WSMsgType], Awaitable[None]]:
    """`ws.send_frame` (aiohttp >= 3.11: bytes as they are), or a text frame from str before it."""
    send_frame = getattr(ws, "send_frame", None)
    if send_frame is not None:
        return cast(Callable[[bytes, WSMsgType], Awaitable[None]], send_frame)
    return lambda data, _: ws.send_str(data.decode())  # pragma: no cover -- aiohttp < 3.11


class Connection:
    """One accepted socket of a `WSEndpoint`: `serve()` runs it until it closes."""

    __slots__ = (
        "endpoint",
        "ws",
        "send_text",
        "transport",
        "creds",
        "headers",
        "client",
        "context",
        "reader",
        "ended",
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
        "received",
        "heard",
        "silent",
        "pinger",
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
        self.send_text = _text_sender(ws)  # (data, WSMsgType.TEXT)
        self.transport = transport  # the TCP transport (aborted when a close does not complete)
        self.creds = creds
        self.headers = headers  # the upgrade request's headers, credentials and hop-by-hop ones left out
        self.client = client
        self.context = contextvars.copy_context()  # each call runs in a copy of it
        self.context.run(current_channel.set, self)  # rpc.subscribe reaches this connection
        self.reader: asyncio.Task | None = None  # the task reading frames now
        self.ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()  # the reading ended
        self.calls: set[asyncio.Task] = set()  # tasks finishing a call that waited
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
        self.received = 0  # frames read (the heartbeat's sign of life)
        self.heard = 0  # `received` at the last heartbeat tick
        self.silent = 0  # heartbeat ticks without a frame
        self.pinger: asyncio.Task | None = None

    # -- reading -------------------------------------------------------------

    async def serve(self) -> None:
        """Serve the socket until it closes; then wait for the calls in flight."""
        loop = asyncio.get_running_loop()
        self.writer = loop.create_task(self._write())
        self.reader = loop.create_task(self._read())
        try:
            await self.ended  # raises what ended the reading, if that was no close
        finally:
            self.closing = True
            self.reader.cancel()  # it waits for a frame or for room: its call, if one waited, is in `calls`
            if self.calls:
                await asyncio.wait(self.calls)
            self.writer.cancel()

    async def _read(self) -> None:
        """Read frames while fewer than `max_calls` calls are in flight and serve each in this
        task, until the socket closes (`ended`), or until a call waits: this task then finishes
        that call alone while a new one reads on (`_finish`)."""
        ws, limits = self.ws, self.endpoint.limits
        try:
            while not self.closing:
                if len(self.calls) >= limits.max_calls:
                    self.room.clear()
                    await self.room.wait()
                    continue
                msg = await ws.receive()
                self.received += 1
                if msg.type is _TEXT:
                    if self.endpoint.stopping:
                        self.send_now(_refusal(msg.data, E.RequestTimeout("Request timeout: the server is stopping")))
                        continue
                    context = self.context.copy()
                    coro = self._call(msg.data)
                    try:
                        waits = context.run(coro.send, None)
                    except StopIteration:
                        continue  # done without waiting: the common call
                    except asyncio.CancelledError:
                        continue  # the call's own end, as a task's would be
                    except Exception as exc:
                        self.endpoint.logger.error("websocket call failed", exc_info=exc)
                        continue
                    await self._finish(CallRest(coro, context, waits))
                    return
                elif msg.type is WSMsgType.BINARY:
                    self.close(UNSUPPORTED, "JSON-RPC goes in text frames")
                elif msg.type is WSMsgType.PING:
                    with contextlib.suppress(ConnectionError, RuntimeError):  # closing: the reader hears of it next
                        await ws.pong(msg.data)
                elif msg.type is WSMsgType.PONG:
                    pass  # a sign of life, counted above
                elif msg.type is WSMsgType.ERROR:
                    self.endpoint.logger.info("websocket closed on error", client=self.client, error=str(msg.data))
                    break
                else:  # CLOSE, CLOSING, CLOSED
                    break
        except Exception as exc:  # the socket failed under the reader: serve() raises it
            if not self.ended.done():
                self.ended.set_exception(exc)
        finally:
            if not self.ended.done() and self.reader is asyncio.current_task():
                self.ended.set_result(None)

    async def _finish(self, call: CallRest) -> None:
        """Finish a call that waits in this task, which reads no more: a new task reads on."""
        task = self.reader
        assert task is not None  # this one: only the reading task starts calls
        self.reader = asyncio.get_running_loop().create_task(self._read())
        self.calls.add(task)
        try:
            await call
        except asyncio.CancelledError:
            pass  # the call's own end: its task (this one, for the call alone now) was cancelled
        except Exception as exc:
            self.endpoint.logger.error("websocket call failed", exc_info=exc)
        finally:
            self.calls.discard(task)
            self.room.set()

    async def _call(self, data: str) -> None:
        """Serve one frame: run it through the dispatcher, send the answer (inline: no coroutine
        per message for it), follow a login or logout."""
        headers = self.headers
        if '"headers"' in data:
            try:
                headers = self._own_headers(data)
            except (msgspec.MsgspecError, ValueError) as exc:
                self.send_now(_refusal(data, E.InvalidRequest(f'Invalid request: "headers": {exc}')))
                return
        creds = self.creds
        session = creds.session
        if session is not None and not creds.trusted(self.endpoint.binder.clock()):
            try:
                await self.endpoint.binder.load(creds)
                session = creds.session
            except Exception as exc:  # the store failed: the dispatcher loads it itself and answers for it
                self.endpoint.logger.warning("websocket session check failed", error=str(exc))
                headers = {**headers, **_credential_headers(creds)}
                session = None
        own = headers is self.headers or _CREDENTIALS.isdisjoint(map(str.lower, headers))
        answer = await self.endpoint.handle(
            data,
            headers,
            scope=self.endpoint.scope,
            session=session if own else None,
            transport="ws",
            client=self.client,
        )
        if own and (session is not None or SESSION_ID in answer.headers):  # else: a message's own session binds nothing
            # a login over the socket, or a logout (""), is bound before the answer goes out, so
            # the message a client sends on reading it runs as the new session
            await self._follow(session, answer.headers.get(SESSION_ID))
        body = answer.body
        if body is not None:
            if self.sending or self.queue:
                self.push(body)  # an answer is going out: this one waits its turn
            else:
                self.sending = True
                try:
                    await self.send_text(body, _TEXT)
                    if self.queue:
                        await self._drain()
                except (ConnectionError, RuntimeError):
                    pass  # the socket is gone: its reader ends the connection
                finally:
                    self.sending = False

    async def _follow(self, session: Session | None, named: str | None) -> None:
        """After a call that ran as the connection's caller: bind the session it named (a login,
        or "" for a logout), or let the store keep what it changed in the session."""
        creds, binder = self.creds, self.endpoint.binder
        if named is not None and named != creds.session_id:
            try:
                await binder.bind(creds, named)
            except Exception as exc:  # the store failed: the socket stays a guest, the answer still goes
                self.endpoint.logger.error("session not bound", exc_info=exc)
        elif session is not None and creds.session_id and creds.session is session:
            try:
                await binder.finish(session)
            except Exception as exc:
                self.endpoint.logger.error("session not saved", exc_info=exc)

    def _own_headers(self, data: str) -> dict[str, str]:
        """The message's `headers` member (a batch: its first request's), or the upgrade request's."""
        if data.lstrip()[:1] == "[":
            items = _decode_batch(data)
            found = items[0].headers if items else msgspec.UNSET
        else:
            found = _decode_one(data).headers
        return self.headers if found is msgspec.UNSET else found

    # -- writing -------------------------------------------------------------

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

    async def _drain(self) -> None:
        queue = self.queue
        while queue:
            data = queue.popleft()
            self.queued -= len(data)
            await self.send_text(data, _TEXT)

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

    # -- heartbeat -----------------------------------------------------------

    def beat(self) -> None:
        """A tick of the endpoint's heartbeat (every `heartbeat / 2` seconds): a socket that
        sent nothing for two ticks is pinged, and dropped when nothing comes in the next one."""
        if self.received != self.heard:
            self.heard, self.silent = self.received, 0
            return
        self.silent += 1
        if self.silent == 2:
            self.pinger = asyncio.get_running_loop().create_task(self._ping())
        elif self.silent > 2 and not self.closing:
            self.endpoint.logger.info("websocket closed: no answer to a ping", client=self.client)
            self.closing = True
            with contextlib.suppress(Exception):
                self.transport.abort()  # the reader hears the socket is gone

    async def _ping(self) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.ws.ping()

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
