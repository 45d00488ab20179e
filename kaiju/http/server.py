"""HTTPServer: JSON-RPC over HTTP, on aiohttp's low-level server.

`POST <rpc_path>` hands the body and headers to the `RPCServer` and sends back what it
answers. The service owns its aiohttp `ServerRunner` and `SockSite`: the socket is bound
in `start()`, not in the constructor, so building a server does no I/O, a busy port is a
start failure with a clear message (SO_REUSEPORT only when `reuse_port` is set), and a
stopped server can start again. One route needs no router and no middleware: requests
go straight from aiohttp's `Server` to `_handle`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
import stat
from typing import Any

import msgspec
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from kaiju.rpc.access import Scope, parse_scope
from kaiju.rpc.errors import InternalError, InvalidRequest, MethodNotFound, RequestTimeout, RPCError
from kaiju.rpc.protocol import ErrorResponse
from kaiju.rpc.server import RPCServer
from kaiju.runtime.service import Service
from kaiju.runtime.types import NonNegative, Port, PositiveInt

__all__ = ["HTTPServer"]

_JSON = "application/json"
_WRITE_TIME = 1.0  # seconds for the answers of requests cut at the end of the grace period to go out


class HTTPServer(Service):
    """Serves the RPC dispatcher over HTTP (service name "http").

    Settings:

    - host (str, "127.0.0.1") and port (int, 8080; 0 picks a free port), or
      unix_socket (str path, None) to listen on a Unix socket instead;
    - rpc_path (str, "/public/rpc"): where JSON-RPC requests are POSTed;
    - max_body_size (int bytes, 1048576): larger bodies get 413 with a JSON-RPC error;
    - reuse_port (bool, False): SO_REUSEPORT, for several processes on one port;
    - shutdown_timeout (float s, 5.0): on stop, how long in-flight requests may finish; those
      still running then are answered RequestTimeout before their connections close;
    - backlog (int, 128): the listen queue;
    - scope (str, "guest"): the scope of callers without a session;
    - access_log (bool, False): log each request through aiohttp's access logger.

    Dependency: `rpc` (an RPCServer).
    """

    service_name = "http"
    transport = True

    rpc: RPCServer

    host: str = "127.0.0.1"
    port: Port = 8080
    unix_socket: str | None = None
    rpc_path: str = "/public/rpc"
    max_body_size: PositiveInt = 1024 * 1024
    reuse_port: bool = False
    shutdown_timeout: NonNegative = 5.0
    backlog: PositiveInt = 128
    scope: str = "guest"
    access_log: bool = False

    # not settings (no annotations): the listening socket bound in start(), and aiohttp's
    # runner while serving
    socket = None
    runner = None

    # -- lifetime -----------------------------------------------------------

    async def start(self) -> None:
        """Bind the socket and start serving; raises OSError naming the address when it is taken."""
        if self.runner is not None:
            raise RuntimeError(f"{self.name}: already started")
        self._scope: Scope = parse_scope(self.scope)
        self._max_body = int(self.max_body_size)
        self._request_loop = asyncio.get_running_loop()
        sock = self._bind()
        server = _JSONErrorServer(
            self._handle,
            request_factory=self._make_request,
            handler_cancellation=True,
            access_log=self.logger.logger if self.access_log else None,
        )
        # stop() spends shutdown_timeout itself (_drain); aiohttp's own wait, which it would apply
        # twice (before and after cancelling), is left only the time to write the last answers
        runner = web.ServerRunner(server, shutdown_timeout=min(_WRITE_TIME, float(self.shutdown_timeout)))
        try:
            await runner.setup()
            await web.SockSite(runner, sock, backlog=int(self.backlog)).start()
        except BaseException:
            await runner.cleanup()
            sock.close()
            raise
        self.socket, self.runner = sock, runner
        self._requests: set[asyncio.Task] = set()  # handlers running (stop() waits for them)
        self._cut: set[asyncio.Task] = set()  # handlers stop() cancelled at the end of the grace period
        self.logger.info("listening", url=self.url)

    async def stop(self, exception: Exception | None = None) -> None:
        """Stop accepting, let in-flight requests finish within shutdown_timeout, close."""
        runner, self.runner = self.runner, None
        if runner is None:
            return
        try:
            for site in list(runner.sites):
                await site.stop()  # no new connections
            runner.server.pre_shutdown()  # no new requests on open ones
            await self._drain(float(self.shutdown_timeout))
            await runner.cleanup()
        finally:
            if self.socket is not None:
                self.socket.close()
            if self.unix_socket:
                with contextlib.suppress(OSError):
                    os.unlink(self.unix_socket)

    async def _drain(self, grace: float) -> None:
        """Let the requests in flight finish within `grace` seconds; then answer those still
        running with a JSON-RPC RequestTimeout (the dispatcher times out their methods; a
        handler not running one is cancelled and answers it itself) and give them a moment
        to write it before the connections close."""
        if self._requests:
            await asyncio.wait(self._requests, timeout=grace)
        if not self._requests:
            return
        running = set(self._requests)
        hit = self.rpc.executor.expire(running) if self.rpc.executor is not None else set()
        self._cut = running - hit
        for task in self._cut:
            task.cancel()
        self.logger.warning("grace period over: requests answered RequestTimeout", requests=len(running))
        await asyncio.wait(running, timeout=_WRITE_TIME)

    def _make_request(self, message: Any, payload: Any, protocol: Any, writer: Any, task: Any) -> web.BaseRequest:
        # client_max_size: aiohttp refuses larger bodies while reading them (chunked ones too)
        return web.BaseRequest(message, payload, protocol, writer, task, self._request_loop, client_max_size=self._max_body)

    @property
    def url(self) -> str:
        """Where the RPC endpoint listens: `http://host:port/path` or `unix:<path>:<rpc_path>`."""
        if self.unix_socket:
            return f"unix:{self.unix_socket}:{self.rpc_path}"
        sock = getattr(self, "socket", None)
        port = sock.getsockname()[1] if sock is not None and sock.fileno() != -1 else self.port
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{port}{self.rpc_path}"

    def _bind(self) -> socket.socket:
        if self.unix_socket:
            return self._bind_unix(self.unix_socket)
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # rebind over TIME_WAIT, never over a listener
            if self.reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((self.host, int(self.port)))
            sock.listen(int(self.backlog))
        except OSError as exc:
            sock.close()
            hint = " (another process listens there; set reuse_port: true to share it on purpose)" if exc.errno == errno.EADDRINUSE else ""
            raise OSError(exc.errno, f"{self.name}: cannot listen on {self.host}:{self.port}: {exc.strerror}{hint}") from None
        sock.setblocking(False)
        return sock

    def _bind_unix(self, path: str) -> socket.socket:
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(os.stat(path).st_mode):
                probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    probe.connect(path)
                except OSError:
                    os.unlink(path)  # a stale socket file left by a process that died
                else:
                    raise OSError(errno.EADDRINUSE, f"{self.name}: cannot listen on {path}: another process listens there")
                finally:
                    probe.close()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(path)
            sock.listen(int(self.backlog))
        except OSError as exc:
            sock.close()
            raise OSError(exc.errno, f"{self.name}: cannot listen on {path}: {exc.strerror}") from None
        sock.setblocking(False)
        return sock

    # -- requests -----------------------------------------------------------

    async def _handle(self, request: web.BaseRequest) -> web.Response:
        if request.raw_path != self.rpc_path and request.path != self.rpc_path:  # raw first: no URL parsing
            return _error(404, MethodNotFound(f"No JSON-RPC endpoint at {request.path}; it is at {self.rpc_path}"))
        if request.method != "POST":
            return _error(405, InvalidRequest(f"Invalid request: use POST, not {request.method}"), {"Allow": "POST"})
        try:
            payload = request.content
            if payload.is_eof():  # the whole body has arrived (the usual small request): take it without awaiting
                body = payload.read_nowait()
                if len(body) > self._max_body:
                    return self._too_large()
            else:
                body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._too_large()
        except (web.RequestPayloadError, HttpProcessingError) as exc:  # bad Content-Encoding, chunking: still JSON
            return _error(400, InvalidRequest(f"Invalid request: unreadable body: {exc}"))
        task = asyncio.current_task()
        self._requests.add(task)
        try:
            response, headers = await self.rpc.handle(body, request.headers, scope=self._scope)
        except Exception as exc:  # a dispatcher bug: still answer JSON, never an HTML page
            self.logger.error("RPC dispatcher failed", exc_info=exc)
            return _error(500, InternalError())
        except asyncio.CancelledError:
            if task not in self._cut:
                raise
            task.uncancel()  # cut by stop(): answer, then the connection closes
            return _error(200, RequestTimeout("Request timeout: the server is stopping"))
        finally:
            self._requests.discard(task)
        if response is None:
            return web.Response(status=204, headers=headers)
        headers["Content-Type"] = _JSON
        return web.Response(body=response, headers=headers)

    def _too_large(self) -> web.Response:
        return _error(413, InvalidRequest(f"Invalid request: body larger than {self.max_body_size} bytes"))


class _JSONErrorHandler(web.RequestHandler):
    """aiohttp answers requests it cannot parse (bad framing, bad encoding) itself, as text:
    answer them as JSON-RPC errors like everything else."""

    def handle_error(self, request: Any, status: int = 500, exc: BaseException | None = None, message: str | None = None):
        super().handle_error(request, status, exc, message)  # logs; raises if a response is already out
        error = InternalError() if status >= 500 else InvalidRequest(f"Invalid request: {message or exc or status}")
        response = _error(status, error)
        response.force_close()
        return response


class _JSONErrorServer(web.Server):
    """aiohttp's low-level server, whose connections are handled by `_JSONErrorHandler`.

    `web.Server` makes a `RequestHandler` per connection from the keyword arguments it
    was given; this one keeps them itself to make the subclass instead.
    """

    def __init__(self, handler: Any, **kwargs: Any):
        own = {key: kwargs.pop(key) for key in ("request_factory", "handler_cancellation") if key in kwargs}
        super().__init__(handler, **own, **kwargs)
        self.handler_kwargs = kwargs
        self.handler_loop = asyncio.get_running_loop()

    def __call__(self) -> web.RequestHandler:
        return _JSONErrorHandler(self, loop=self.handler_loop, **self.handler_kwargs)


def _error(status: int, exc: RPCError, headers: dict[str, str] | None = None) -> web.Response:
    body = msgspec.json.encode(ErrorResponse(id=None, error=exc.to_dict()))
    return web.Response(status=status, body=body, headers={"Content-Type": _JSON, **(headers or {})})
