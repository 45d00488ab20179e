"""`WSEndpoint`: the WebSocket endpoint of one `HTTPServer` (its `ws_path`).

The server checks what it checks for every request (the Origin, the session cookie) and
hands the upgrade request here: `accept` authenticates it (`Credentials`), upgrades it and
serves the socket (`Connection`) until it closes. The endpoint is the `EventListener` of the
app's `Events`: an event goes to every connection subscribed to a pattern matching its topic
whose scope may receive it (`TopicRules.may_receive`), once per connection, encoded once;
a revocation notice ends the rights of the connections it names at once. `close` (the
server stops) lets the calls in flight finish within the grace period and closes every
socket with 1001.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from kaiju.events.base import EventListener
from kaiju.logging import RateLimitedWarning
from kaiju.rpc.access import Scope
from kaiju.rpc.topics import compile_pattern
from kaiju.ws.connection import GOING_AWAY, Connection
from kaiju.ws.credentials import Credentials, SessionBinder

__all__ = ["TopicIndex", "WSEndpoint", "WSLimits"]

_WRITE_TIME = 1.0  # seconds for the answers of calls cut at the end of the grace period to go out
# upgrade request headers a call does not see: hop-by-hop and WebSocket ones, and credentials
# (the connection holds those; a message may still name its own)
_NOT_PASSED = frozenset(
    {
        "authorization",
        "session-id",
        "cookie",
        "connection",
        "upgrade",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
    }
)


@dataclass(frozen=True)
class WSLimits:
    """What one connection may use: frame size (bytes), calls in flight, bytes waiting to be
    sent, subscriptions; seconds between pings, between session checks, for a close."""

    max_message: int = 1024 * 1024
    max_calls: int = 32
    send_queue: int = 1024 * 1024
    max_subscriptions: int = 64
    heartbeat: float = 30.0
    recheck: float = 60.0
    close_timeout: float = 5.0


class TopicIndex:
    """The subscribed patterns of an endpoint's connections, and the patterns matching a topic."""

    def __init__(self) -> None:
        self.patterns: dict[str, tuple[Any, set[Connection]]] = {}
        self._matching: dict[str, list[set[Connection]]] = {}  # topic -> the matching patterns' connections

    def add(self, pattern: str, conn: Connection) -> None:
        entry = self.patterns.get(pattern)
        if entry is None:
            entry = self.patterns[pattern] = (compile_pattern(pattern), set())
            self._matching.clear()
        entry[1].add(conn)

    def remove(self, pattern: str, conn: Connection) -> None:
        entry = self.patterns.get(pattern)
        if entry is None:
            return
        entry[1].discard(conn)
        if not entry[1]:
            del self.patterns[pattern]
            self._matching.clear()

    def subscribers(self, topic: str) -> list[set[Connection]]:
        """The connection sets of the patterns matching `topic` (remembered until the patterns change)."""
        found = self._matching.get(topic)
        if found is None:
            found = [conns for match, conns in self.patterns.values() if match(topic)]
            if len(self._matching) >= 4096:
                self._matching.clear()
            self._matching[topic] = found
        return found


class WSEndpoint(EventListener):
    """Serves JSON-RPC over WebSocket for an HTTPServer: `rpc` the RPCServer, `scope` the
    scope of callers without a session, `limits` a `WSLimits`, `logger` the server's."""

    def __init__(self, rpc: Any, scope: Scope, limits: WSLimits, logger: Any, warning_interval: float = 60.0):
        self.rpc = rpc
        self.scope = scope
        self.limits = limits
        self.logger = logger
        loop = asyncio.get_running_loop()
        self.binder = SessionBinder(rpc.sessions, rpc.auth, limits.recheck, loop.time)
        self.connections: set[Connection] = set()
        self.index = TopicIndex()
        self.stopping = False
        self.delivered = 0  # notifications queued to sockets (a counter for operators and tests)
        self.slow_readers = 0  # sockets closed for not reading
        self._slow = RateLimitedWarning(logger, "websocket closed: the client does not read (1013)", warning_interval)

    # -- upgrades ------------------------------------------------------------

    async def accept(
        self,
        request: web.BaseRequest,
        session_id: str | None,
        authorization: str | None,
        client: str | None,
    ) -> web.StreamResponse:
        """Authenticate and upgrade `request`, then serve the socket until it closes. Raises
        NotAuthorized for a refused Authorization (before upgrading), what the session store
        raises, and `web.HTTPException`s for a request that is no WebSocket upgrade."""
        ws = web.WebSocketResponse(
            max_msg_size=self.limits.max_message,
            heartbeat=self.limits.heartbeat,
            compress=False,  # deflate costs CPU per frame, and inflating is what a hostile client asks for
        )
        if not ws.can_prepare(request).ok:
            raise web.HTTPBadRequest(text="Invalid request: a WebSocket upgrade (GET with Upgrade: websocket) expected")
        creds = Credentials(session_id or None, authorization or None)
        await self.binder.first(creds)
        await ws.prepare(request)
        conn = Connection(self, ws, request.transport, creds, _passed(request.headers), client)
        self.connections.add(conn)
        try:
            await conn.serve()
        finally:
            self.connections.discard(conn)
            for pattern in list(conn.patterns):
                conn.unsubscribe(pattern)
            if conn.closer is not None:
                await asyncio.wait([conn.closer])  # its outcome is the socket's end, whatever it was
            elif not ws.closed:
                await conn.shut(GOING_AWAY, "bye")
        return ws

    def slow_reader(self, conn: Connection) -> None:
        self.slow_readers += 1
        self._slow.event(client=conn.client, queued=conn.queued)

    # -- events (the EventListener) -------------------------------------------------

    def deliver(self, topic: str, notification: bytes) -> None:
        found = self.index.subscribers(topic)
        if not found:
            return
        rules = self.rpc.topic_rules
        needed = rules.strictest(topic)
        if needed is None:
            return
        conns = found[0] if len(found) == 1 else set().union(*found)  # once per connection
        default, anyone = self.scope, not rules.enabled
        for conn in conns:
            if anyone or conn.creds.push_scope(default) <= needed:
                conn.push(notification)
                self.delivered += 1

    def revoked(self, kind: str, value: str) -> None:
        if kind == "saved":  # a session written elsewhere: its rights stand, the copy held here is stale
            for conn in self.connections:
                if conn.creds.session_id == value:
                    conn.creds.stale = True
            return
        for conn in self.connections:
            if conn.creds.matches(kind, value):
                conn.creds.drop()
                self.logger.info("websocket session ended by a revocation", kind=kind, client=conn.client)

    def resync(self) -> None:
        for conn in self.connections:
            conn.creds.stale = True

    # -- stopping ------------------------------------------------------------

    async def close(self, grace: float) -> None:
        """Refuse new calls, let those in flight finish within `grace` seconds (then answer them
        RequestTimeout), and close every socket with 1001."""
        self.stopping = True
        calls = {task for conn in self.connections for task in conn.calls}
        if calls:
            await asyncio.wait(calls, timeout=grace)
        left = {task for task in calls if not task.done()}
        if left:
            running = self.rpc.running
            hit = running.executor.expire(left) if running is not None else set()
            for task in left - hit:
                task.cancel()
            self.logger.warning("grace period over: websocket calls answered RequestTimeout", calls=len(left))
            await asyncio.wait(left, timeout=_WRITE_TIME)
        shuts = [conn.shut(GOING_AWAY, "the server is stopping") for conn in list(self.connections)]
        if shuts:
            await asyncio.gather(*shuts, return_exceptions=True)


def _passed(headers: Mapping[str, str]) -> dict[str, str]:
    """The upgrade request's headers every call of the socket sees."""
    return {k: v for k, v in headers.items() if k.lower() not in _NOT_PASSED}
