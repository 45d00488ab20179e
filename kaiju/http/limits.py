"""Connection limits of the HTTP server: how long a client may take, how many may be open.

aiohttp closes a connection idle between requests after its `keepalive_timeout`; the rest is
here, on aiohttp's public hooks and asyncio's:

- `GuardedHandler`, aiohttp's per-connection `RequestHandler`, closes a connection whose first
  request's headers have not arrived within `header_timeout` of the connection opening (a timer
  started in `connection_made`, cancelled when the request factory sees the headers), and one
  whose body has not arrived within `body_timeout` of its headers (a timer only when the body
  did not come with them). A plain request costs two short method calls more (a flag set when
  its headers are in, cleared when its response is out), and no timer.
- `GuardedServer`, aiohttp's low-level `Server`, keeps at most `max_connections` open: past the
  cap it closes the oldest connection that is not serving a request (a slow or idle client),
  or the new one when all are busy, with one WARNING per interval rather than one per connection.
- `QuietAcceptErrors`, an event loop exception handler for the time the server runs, turns the
  loop's "out of file descriptors" accept failures on the server's socket into one WARNING per
  interval without a traceback, instead of an ERROR with a traceback per attempt.
"""

from __future__ import annotations

import asyncio
import errno
import resource
import socket
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from kaiju.logging import KaijuLogger, RateLimitedWarning

__all__ = [
    "ConnectionLimits",
    "GuardedHandler",
    "GuardedServer",
    "QuietAcceptErrors",
    "RateLimitedWarning",
    "connection_cap",
]

# file descriptors left to the rest of the process (Redis pools, logs, files) when the cap is
# fitted under the open-file limit
FD_RESERVE = 64

_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


@dataclass(frozen=True)
class ConnectionLimits:
    """The limits one server enforces (seconds, and a count of connections)."""

    header_timeout: float
    body_timeout: float
    max_connections: int
    warning_interval: float


def connection_cap(max_connections: int, reserve: int = FD_RESERVE) -> int:
    """`max_connections`, lowered to fit under the process's soft open-file limit less `reserve`."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return max_connections
    return max(1, min(max_connections, soft - reserve))


class GuardedHandler(web.RequestHandler):
    """aiohttp's handler of one connection, with a header and a body deadline.

    `busy` is true from a request's headers until its response is out; `GuardedServer` closes
    only connections that are not busy. The header deadline covers the first request; on a
    kept-alive connection aiohttp's `keepalive_timeout` bounds the wait for the next whole
    header, since it closes a connection still waiting for one.
    """

    busy = False
    _header_timer: asyncio.TimerHandle | None = None

    def __init__(self, manager: GuardedServer, **kwargs: Any):
        super().__init__(manager, **kwargs)
        self.guard = manager

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # may close it at once: the server is over its cap
        if self.transport is not None:
            self._header_timer = self.guard.handler_loop.call_later(
                self.guard.limits.header_timeout, self._headers_overdue
            )

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        super().connection_lost(exc)

    def request_arrived(self, payload: Any) -> None:
        """Called by the request factory once a request's headers are parsed."""
        self.busy = True
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        if not payload.is_eof():  # the body is still on its way: give it body_timeout
            self.guard.handler_loop.call_later(self.guard.limits.body_timeout, self._body_overdue, payload)

    def log_access(self, request: Any, response: Any, time: float | None) -> None:
        # aiohttp calls this once a response is out, logging or not: the one hook at that point
        self.busy = False
        super().log_access(request, response, time)

    def _headers_overdue(self) -> None:
        self._header_timer = None
        if self.transport is not None:
            self.guard.logger.debug("closing a connection: request headers not received in time", peer=self._peer())
            self.force_close()

    def _body_overdue(self, payload: Any) -> None:
        if self.transport is not None and not payload.is_eof():
            self.guard.logger.debug("closing a connection: request body not received in time", peer=self._peer())
            self.force_close()

    def _peer(self) -> Any:
        # the transport's, not aiohttp's `peername` (from aiohttp 3.10 only)
        return self.transport.get_extra_info("peername") if self.transport is not None else None


class GuardedServer(web.Server):
    """aiohttp's low-level server, making a `handler_class` (a `GuardedHandler`) per connection
    and keeping at most `limits.max_connections` of them open.

    `web.Server` makes a handler per connection from the keyword arguments it was given; this
    one keeps them itself to make its own class instead.
    """

    handler_class: type[GuardedHandler] = GuardedHandler

    def __init__(self, handler: Any, *, limits: ConnectionLimits, logger: KaijuLogger, **kwargs: Any):
        own = {key: kwargs.pop(key) for key in ("request_factory", "handler_cancellation") if key in kwargs}
        super().__init__(handler, **own, **kwargs)
        self.handler_kwargs = kwargs
        self.handler_loop = asyncio.get_running_loop()
        self.limits = limits
        self.logger = logger
        self.open: dict[GuardedHandler, None] = {}  # oldest first
        self.cap_warning = RateLimitedWarning(
            logger, "connection cap reached: closing idle or slow connections", limits.warning_interval
        )

    def __call__(self) -> GuardedHandler:
        return self.handler_class(self, loop=self.handler_loop, **self.handler_kwargs)

    def connection_made(self, handler: web.RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        self.open[handler] = None  # type: ignore[index]
        if len(self.open) > self.limits.max_connections:
            self._shed(handler)  # type: ignore[arg-type]

    def connection_lost(self, handler: web.RequestHandler, exc: BaseException | None = None) -> None:
        super().connection_lost(handler, exc)
        self.open.pop(handler, None)  # type: ignore[call-overload]

    def _shed(self, newcomer: GuardedHandler) -> None:
        # the newcomer is never busy yet, so this finds the oldest idle one or the newcomer itself
        victim = next(h for h in self.open if not h.busy)
        del self.open[victim]
        victim.force_close()
        self.cap_warning.event(max_connections=self.limits.max_connections, refused=victim is newcomer)


_RETRY_WINDOW = 1.5  # asyncio retries a failed accept after a second (ACCEPT_RETRY_DELAY)


class QuietAcceptErrors:
    """An event loop exception handler for accept failures on one listening socket.

    When the process runs out of file descriptors, asyncio reports each failed accept to the
    loop's exception handler (by default an ERROR with a traceback) and retries a second
    later. This handler logs those of `sock` as one WARNING per `interval` without a
    traceback and passes every other report to the handler it replaced.
    """

    def __init__(self, sock: socket.socket, logger: KaijuLogger, interval: float):
        self.fileno = sock.fileno()
        self.warning = RateLimitedWarning(
            logger, "cannot accept connections: out of file descriptors or memory", interval
        )
        self.loop: asyncio.AbstractEventLoop | None = None
        self.previous: Any = None

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        """Become `loop`'s exception handler, remembering the one in place."""
        self.loop, self.previous = loop, loop.get_exception_handler()
        loop.set_exception_handler(self)

    def uninstall(self) -> None:
        """Put the previous handler back; when another one has replaced this one since (and so
        calls it), this one only passes reports on from now on.

        After failed accepts asyncio retries a second later, on the socket closed meanwhile:
        that retry's report ("Invalid file descriptor") is dropped too, so the handler stays a
        little longer when accepts failed."""
        self.fileno = -1  # the socket is closed: its number may be reused by another
        loop, self.loop = self.loop, None
        if loop is None or loop.get_exception_handler() is not self:
            return
        if self.warning.records and not loop.is_closed():
            loop.call_later(_RETRY_WINDOW, self._restore, loop)
        else:
            self._restore(loop)

    def _restore(self, loop: asyncio.AbstractEventLoop) -> None:
        if loop.get_exception_handler() is self:
            loop.set_exception_handler(self.previous)

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc, sock = context.get("exception"), context.get("socket")
        if (
            isinstance(exc, OSError)
            and exc.errno in _OUT_OF_RESOURCES
            and sock is not None
            and self.fileno != -1
            and sock.fileno() == self.fileno
        ):
            self.warning.event(error=exc.strerror)
        elif self.fileno == -1 and self.warning.records and isinstance(exc, ValueError) and "handle" in context:
            # uninstalled, after failed accepts, within the retry window: a callback failing with
            # ValueError is asyncio's accept retry on the socket closed at stop (its descriptor
            # is -1: "Invalid file descriptor"); nothing is left to accept
            pass
        elif self.previous is not None:
            self.previous(loop, context)
        else:
            loop.default_exception_handler(context)
