"""HTTPServer: JSON-RPC over HTTP, on aiohttp's low-level server, plus the routes of services
and the health probes.

`POST <rpc_path>` hands the body and headers to the `RPCServer` and sends back what it
answers; every other path goes to the route table (`kaiju.http.routes.RouteTable`): the
`@route` handlers of the app's services, the routes of the config and the live / ready
probes, all answering JSON. The service owns its aiohttp `ServerRunner` and `SockSite`: the socket is bound
in `start()`, not in the constructor, so building a server does no I/O, a busy port is a
start failure with a clear message (SO_REUSEPORT only when `reuse_port` is set), and a
stopped server can start again. The RPC path needs no router and no middleware: requests
go straight from aiohttp's `Server` to `_handle`, which compares the raw path first.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import os
import re
import socket
import stat
from collections.abc import Iterator
from socket import socket as Socket
from typing import Any, Literal, cast

import msgspec
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from kaiju.events.base import Events
from kaiju.health import AppHealth
from kaiju.http.limits import ConnectionLimits, GuardedHandler, GuardedServer, QuietAcceptErrors, connection_cap
from kaiju.http.routes import Route, RouteEntry, RouteRequest, RouteTable, config_routes, routes_of
from kaiju.rpc.access import Scope, parse_scope
from kaiju.rpc.answer import encode_value
from kaiju.rpc.errors import InternalError, InvalidRequest, MethodNotFound, NotAuthorized, RequestTimeout, RPCError
from kaiju.rpc.protocol import AUTHORIZATION, SESSION_ID, ErrorResponse
from kaiju.rpc.server import RPCServer
from kaiju.runtime.service import Service, SettingError, check_listen_address, same_host
from kaiju.runtime.types import NonNegative, Port, Positive, PositiveInt, ScopeName
from kaiju.telemetry.service import Telemetry
from kaiju.ws.endpoint import WSEndpoint, WSLimits

__all__ = ["HTTPServer"]

_JSON = "application/json"
_WRITE_TIME = 1.0  # seconds for the answers of requests cut at the end of the grace period to go out


class HTTPServer(Service):
    """Serves the RPC dispatcher over HTTP (service name "http").

    The settings are documented where each is declared, below.

    Dependencies: `rpc` (an RPCServer); `app_health` (an AppHealth, optional: without one
    the server makes its own and registers `app.health` on `rpc`).
    """

    service_name = "http"
    transport = True

    rpc: RPCServer
    """The RPCServer requests go to."""
    app_health: AppHealth | None = None
    """The AppHealth the probes report (none: the server makes its own)."""
    telemetry: Telemetry | None = None
    """The `Telemetry` whose tracer makes a span of each request (none: the process's own
    tracer provider, when it set one; else no spans, at no cost)."""
    events: Events | None = None
    """The Events service whose events reach the WebSocket subscribers, and whose revocation notices end a
    socket's rights at once (none: no subscriptions, and a socket's session is loaded for each message)."""

    host: str = "127.0.0.1"
    """Address to listen on (IPv6 literals work)."""
    port: Port = 8080
    """TCP port (0: any free port; see `url`)."""
    unix_socket: str | None = None
    """Listen on this Unix socket path instead of host and port."""
    rpc_path: str = "/public/rpc"
    """Where JSON-RPC requests are POSTed."""
    max_body_size: PositiveInt = 1024 * 1024
    """Largest request body (bytes); larger ones are answered 413 with a JSON-RPC error."""
    reuse_port: bool = False
    """Set SO_REUSEPORT, for several processes on one port."""
    shutdown_timeout: NonNegative = 5.0
    """Seconds in-flight requests may take to finish on stop; those still running then are answered RequestTimeout."""
    backlog: PositiveInt = 128
    """The listen queue's length."""
    scope: ScopeName = ScopeName("guest")
    """Scope of callers without a session."""
    access_log: bool = False
    """Log each request (aiohttp's access log format)."""
    route_services: Literal["all", "none"] | list[str] = "all"
    """Whose `@route` handlers are served: "all", "none" or a list of service names."""
    routes: list[RouteEntry] = []  # noqa: RUF012 -- a setting's default, never mutated
    """Routes from config: `{method, path, handler: "module:function"}`."""
    live_path: str | None = "/health/live"
    """The liveness probe (null: not served)."""
    ready_path: str | None = "/health/ready"
    """The readiness probe (null: not served)."""
    start_wait: NonNegative = 30.0
    """Seconds a route request received before the app has started waits for it (then 503)."""
    session_cookie: bool = False
    """Also carry the session id in a cookie (HttpOnly, SameSite=Lax, on path "/"): a login sets it, a logout
    clears it. With it, a browser request from a page of another origin is refused (403)."""
    cookie_name: str | None = None
    """The session cookie's name (null: "__Host-session_id" when secure, else "session_id")."""
    cookie_secure: bool | None = None
    """Send the session cookie over HTTPS only (null: unless `main.env` is dev)."""
    origins: list[str] = []  # noqa: RUF012 -- a setting's default, never mutated
    """Other origins (`https://app.example.com`) whose pages may call the RPC endpoint with the session cookie."""
    real_ip_header: str | None = None
    """Behind a proxy you run: the header with the client's address (its last entry), e.g. X-Forwarded-For."""
    ops_host: str = "127.0.0.1"
    """Address of the ops listener."""
    ops_port: Port | None = None
    """A second listener serving the probes and the ops routes (/metrics) only, and then only there."""
    idle_timeout: Positive = 30.0
    """Seconds a kept-alive connection may stay idle."""
    header_timeout: Positive = 10.0
    """Seconds a new connection has to send its first request's headers."""
    body_timeout: Positive = 30.0
    """Seconds a request body has to arrive after its headers."""
    max_connections: PositiveInt = 900
    """Open connections at most (lowered to fit the open-file limit); past it the oldest idle or slow one is closed."""
    warning_interval: Positive = 60.0
    """At most one WARNING per this many seconds about the connection cap or failed accepts."""
    ws_path: str | None = "/public/ws"
    """Where JSON-RPC over WebSocket is served (null: not served); see docs/websocket.rst."""
    ws_max_message: PositiveInt = 1024 * 1024
    """Largest WebSocket message (bytes); a larger one closes the socket with 1009."""
    ws_max_calls: PositiveInt = 32
    """Calls of one socket in flight at once; further messages wait unread (the client is slowed down)."""
    ws_send_queue: PositiveInt = 1024 * 1024
    """Bytes of answers and events that may wait to be sent to one socket; past it the socket is closed
    with 1013 (a client that does not read)."""
    ws_max_subscriptions: PositiveInt = 64
    """Patterns one socket may be subscribed to at once."""
    ws_heartbeat: Positive = 30.0
    """Seconds between pings; a socket that does not answer one in half that is closed."""
    ws_recheck: NonNegative = 60.0
    """Seconds a socket's session is trusted between loads, with `events` (revocations end it at once);
    without `events`, it is loaded for each message."""
    docs_path: str | None = "/public/docs"
    """The API explorer page (null: not served); off in env prod unless set."""

    # routes waiting for the app to start right now (a gauge for operators and tests; not a setting)
    held_requests = 0

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.serving: Serving | None = None  # the run-time state, from start() to stop()

    @property
    def socket(self) -> Socket | None:
        """The listening socket while serving, else None."""
        return self.serving.socket if self.serving is not None else None

    @property
    def runner(self) -> web.ServerRunner | None:
        """aiohttp's runner while serving, else None."""
        return self.serving.runner if self.serving is not None else None

    @property
    def ops_url(self) -> str | None:
        """`http://host:port` of the ops listener (probes and metrics), or None without one."""
        if self.ops_port is None:
            return None
        sock = self.serving.ops_socket if self.serving is not None else None
        port = sock.getsockname()[1] if sock is not None and sock.fileno() != -1 else self.ops_port
        host = f"[{self.ops_host}]" if ":" in self.ops_host else self.ops_host
        return f"http://{host}:{port}"

    @property
    def _serving(self) -> Serving:
        """The run-time state, for what runs only while serving (request handlers)."""
        if self.serving is None:
            raise RuntimeError(f"{self.name}: not serving")
        return self.serving

    # -- lifetime -----------------------------------------------------------

    def check(self) -> None:
        """Reject an address another server of the app listens on, a config route whose handler
        does not import, a route declared twice or at rpc_path, a service in `route_services`
        the app does not have (SettingError naming the setting)."""
        check_listen_address(self)  # no other server of the app on the same host and port, or socket
        self._check_ops_port()
        _check_host("host", self.host)
        if self.ops_port is not None:
            _check_host("ops_host", self.ops_host)
        if self.unix_socket and not os.path.isdir(os.path.dirname(os.path.abspath(self.unix_socket))):
            raise SettingError("unix_socket", f"expected a path in an existing directory, got {self.unix_socket}")
        for key in ("rpc_path", "live_path", "ready_path", "ws_path", "docs_path"):
            path = getattr(self, key)
            if path is not None and not path.startswith("/"):
                raise SettingError(key, f'expected a path starting with "/", got {path!r}')
        if self.live_path is not None and self.live_path == self.ready_path:
            raise SettingError("ready_path", f"expected a path other than live_path, got {self.ready_path!r}")
        if self.cookie_name is not None and not _TOKEN.fullmatch(self.cookie_name):
            raise SettingError(
                "cookie_name",
                f"expected a cookie name of letters, digits and !#$%&'*+-.^_`|~, got {self.cookie_name!r}",
            )
        if self.real_ip_header is not None and not _TOKEN.fullmatch(self.real_ip_header):
            raise SettingError(
                "real_ip_header", f"expected a header name such as X-Forwarded-For, got {self.real_ip_header!r}"
            )
        for origin in self.origins:
            own = _origin(origin)
            if own is None or own != origin.strip().lower().rstrip("/"):
                raise SettingError(
                    "origins", f'expected origins such as "https://app.example.com" (no path), got {origin!r}'
                )
        if self.shutdown_timeout > self.app.shutdown_timeout:
            raise SettingError(
                "shutdown_timeout",
                f"expected at most main.shutdown_timeout ({self.app.shutdown_timeout:g}), "
                f"got {self.shutdown_timeout:g}",
            )
        if self.ws_path is not None and self.ws_path == self.rpc_path:
            raise SettingError("ws_path", f"expected a path other than rpc_path, got {self.ws_path!r}")
        self._route_table(
            [
                *self._probe_routes(),
                *self._own_routes(),
                *self._service_routes(strict=True),
                *config_routes(self.routes),
            ]
        )

    def _check_ops_port(self) -> None:
        """The ops listener's address clashes with no listener of the app (this one's or another server's)."""
        if self.ops_port is None or self.ops_port == 0:
            return
        if self.ops_port == self.port and not self.unix_socket:
            raise SettingError("ops_port", f"expected a port other than port ({self.port}), got {self.ops_port}")
        for name, other in self.app.services.items():
            if other is self:
                continue
            listens = [
                (getattr(other, "host", None) or getattr(other, "address", None) or "", getattr(other, "port", None))
            ]
            if isinstance(other, HTTPServer) and other.ops_port is not None:
                listens.append((other.ops_host, other.ops_port))
            for host, port in listens:
                if port == self.ops_port and same_host(str(host), self.ops_host):
                    raise SettingError(
                        "ops_port",
                        f"expected an address no other service listens on, got {self.ops_host}:{self.ops_port} "
                        f'(also used by "{name}")',
                    )

    async def start(self) -> None:
        """Bind the socket and start serving; raises OSError naming the address when it is taken,
        ValueError for a route declared twice or at rpc_path."""
        if self.serving is not None:
            raise RuntimeError(f"{self.name}: already started")
        probes = self._probe_routes()
        routes = [*probes, *self._own_routes(), *self._service_routes(), *config_routes(self.routes)]
        # with an ops listener, the probes and ops routes (/metrics) are served there only
        table = self._route_table([r for r in routes if not r.ops or self.ops_port is None])
        health = self.app_health or AppHealth(name=AppHealth.service_name, app=self.app)
        sock = self._bind()
        serving = Serving(parse_scope(self.scope), asyncio.get_running_loop(), probes, table, health, sock)
        secure = self.cookie_secure if self.cookie_secure is not None else self.app.env != "dev"
        serving.cookie = (self.cookie_name or ("__Host-session_id" if secure else "session_id"), secure)
        serving.origins = frozenset(filter(None, map(_origin, self.origins)))
        if self.ws_path is not None:
            serving.ws = self._ws_endpoint()
        server = _JSONErrorServer(
            self._handler(serving),
            limits=self._connection_limits(),
            logger=self.logger,
            request_factory=self._make_request,
            handler_cancellation=True,
            keepalive_timeout=self.idle_timeout,
            # a body left unread (refused as too large, or undecodable) closes the connection after
            # the answer instead of being drained for seconds -- and drained, an undecodable one
            # would log a traceback per request
            lingering_time=0,
            access_log=self.logger.logger if self.access_log else None,
        )
        # stop() spends shutdown_timeout itself (_drain); aiohttp's own wait, which it would apply
        # twice (before and after cancelling), is left only the time to write the last answers
        runner = web.ServerRunner(server, shutdown_timeout=min(_WRITE_TIME, self.shutdown_timeout))
        self.serving = serving
        try:
            await runner.setup()
            await web.SockSite(runner, sock, backlog=self.backlog).start()
        except BaseException:
            self.serving = None
            await runner.cleanup()
            sock.close()
            raise
        serving.runner = runner
        if self.ops_port is not None:
            try:
                await self._start_ops(serving, RouteTable([r for r in routes if r.ops]))
            except BaseException:
                await self.stop()
                raise
        if self.app_health is None and health.name not in self.app.services and not self._rpc_has_health():
            serving.own_health = health
            self.rpc.add_service(health)
        if serving.ws is not None and self.events is not None:
            serving.unlisten = self.events.add_listener(serving.ws)
        serving.accept_errors = QuietAcceptErrors(sock, self.logger, self.warning_interval)
        serving.accept_errors.install(serving.loop)
        self.logger.info("listening", url=self.url)

    async def stop(self, exception: Exception | None = None) -> None:
        """Stop accepting, let in-flight requests finish within shutdown_timeout, close."""
        serving = self.serving
        if serving is None or serving.runner is None:
            return
        runner, serving.runner = serving.runner, None
        if serving.accept_errors is not None:
            serving.accept_errors.uninstall()
        if serving.ops_runner is not None:
            await serving.ops_runner.cleanup()
        if serving.ops_socket is not None:
            serving.ops_socket.close()
        try:
            for site in list(runner.sites):
                await site.stop()  # no new connections
            if runner.server is not None:
                runner.server.pre_shutdown()  # no new requests on open ones
            if serving.unlisten is not None:
                serving.unlisten()
            drains = [self._drain(serving, self.shutdown_timeout)]
            if serving.ws is not None:
                drains.append(serving.ws.close(self.shutdown_timeout))
            await asyncio.gather(*drains)
            await runner.cleanup()
        finally:
            if serving.own_health is not None:
                self.rpc.remove_service(serving.own_health.name)
            serving.socket.close()
            self.serving = None
            if self.unix_socket:
                with contextlib.suppress(OSError):
                    os.unlink(self.unix_socket)

    def _handler(self, serving: Serving) -> Any:
        """What serves each request: `_handle`, counting responses, inside a span when tracing."""
        from kaiju.telemetry.provider import tracing_of

        handler = _counting(self._handle, serving.responses)
        tracing = tracing_of(self.telemetry)
        if tracing is None:
            return handler
        from kaiju.http.spans import traced_handler

        return traced_handler(handler, tracing, self.rpc_path)

    def metrics(self) -> Iterator[Any]:
        """HTTP responses sent since start, by status code."""
        from prometheus_client.core import CounterMetricFamily

        responses = CounterMetricFamily(
            "kaiju_http_responses", "HTTP responses sent, by status", labels=["server", "status"]
        )
        for status, n in sorted(self.serving.responses.items() if self.serving is not None else ()):
            responses.add_metric([self.name, str(status)], n)
        yield responses

    def _route_table(self, routes: list[Route]) -> RouteTable:
        """The table of `routes`; raises SettingError for a route declared twice or at the RPC path
        (the RPC endpoint is matched first: such a route would never be served)."""
        for r in routes:
            for key, path in (("rpc_path", self.rpc_path), ("ws_path", self.ws_path)):
                if r.path == path:
                    raise SettingError(
                        "routes" if r.service is None else key,
                        f"{r.method} {r.path} (by {r.owner}) is at {key}, where only JSON-RPC is served",
                    )
        return RouteTable(routes)

    def _rpc_has_health(self) -> bool:
        """Whether `app.health` is served already (by another HTTPServer on the same RPCServer)."""
        return f"{AppHealth.service_name}.health" in self.rpc.table.methods

    def _probe_routes(self) -> list[Route]:
        # the ops listener's ready probe says why a service fails; the public one does not
        ready = self._ready_details if self.ops_port is not None else self._ready
        probes = [(self.live_path, self._live), (self.ready_path, ready)]
        # HEAD too: some load balancers probe with it (aiohttp sends the status without the body)
        return [
            Route(verb, path, handler, self.name, True) for path, handler in probes if path for verb in ("GET", "HEAD")
        ]

    @property
    def docs_url_path(self) -> str | None:
        """The explorer page's path: `docs_path`, unless the app runs in env prod and it was not set."""
        if "docs_path" not in vars(self) and self.app.env == "prod":
            return None
        return self.docs_path

    def _own_routes(self) -> list[Route]:
        path = self.docs_url_path
        return [Route("GET", path, self._docs, self.name)] if path else []

    async def _docs(self, request: web.BaseRequest) -> web.Response:
        """The API explorer page (kaiju/http/explorer.html), with a fresh nonce for its script."""
        from kaiju.http.explorer import explorer_page  # imported when the page is first asked for

        body, headers = explorer_page(self.rpc_path, self.ws_path, self.app.name)
        return web.Response(body=body, headers=headers)

    async def _start_ops(self, serving: Serving, table: RouteTable) -> None:
        """Serve `table` (the probes, /metrics) on the ops listener."""
        serving.ops_table = table
        serving.ops_socket = self._bind_tcp(self.ops_host, self.ops_port or 0, "ops_port")
        runner = web.ServerRunner(
            web.Server(self._route_ops, request_factory=self._make_ops_request, access_log=None),
            shutdown_timeout=_WRITE_TIME,
        )
        await runner.setup()
        serving.ops_runner = runner
        await web.SockSite(runner, serving.ops_socket, backlog=self.backlog).start()
        self.logger.info("ops listening", url=self.ops_url)

    def _service_routes(self, strict: bool = False) -> list[Route]:
        """The `@route` handlers of the services `route_services` names; a name the app lacks
        is a SettingError when `strict` (the check), else a warning (left out after a failed start)."""
        if self.route_services == "none":
            return []
        names = list(self.app.services) if self.route_services == "all" else self.route_services
        found = []
        for name in names:
            service = self.app.services.get(name)
            if service is None and strict:
                raise SettingError("route_services", f'expected names of services of the app, got "{name}"')
            if service is None:
                self.logger.warning("no running service to serve routes of", service=name)
                continue
            found.extend(routes_of(service, name))
        return found

    def _ws_endpoint(self) -> WSEndpoint:
        limits = WSLimits(
            max_message=self.ws_max_message,
            max_calls=self.ws_max_calls,
            send_queue=self.ws_send_queue,
            max_subscriptions=self.ws_max_subscriptions,
            heartbeat=self.ws_heartbeat,
            # nothing announces a revocation without Events: load the session per message
            recheck=self.ws_recheck if self.events is not None else 0.0,
            close_timeout=min(_WRITE_TIME * 5, max(self.shutdown_timeout, _WRITE_TIME)),
        )
        return WSEndpoint(self.rpc, parse_scope(self.scope), limits, self.logger, self.warning_interval)

    def _connection_limits(self) -> ConnectionLimits:
        cap = connection_cap(self.max_connections)
        if cap < self.max_connections:
            self.logger.warning(
                "max_connections lowered to fit the open-file limit (raise LimitNOFILE)",
                max_connections=self.max_connections,
                cap=cap,
            )
        return ConnectionLimits(self.header_timeout, self.body_timeout, cap, self.warning_interval)

    async def _drain(self, serving: Serving, grace: float) -> None:
        """Let the requests in flight finish within `grace` seconds; then answer those still
        running with a JSON-RPC RequestTimeout (the dispatcher times out their methods; a
        handler not running one is cancelled and answers it itself) and give them a moment
        to write it before the connections close."""
        if serving.requests:
            await asyncio.wait(serving.requests, timeout=grace)
        if not serving.requests:
            return
        running = set(serving.requests)
        hit = self.rpc.running.executor.expire(running) if self.rpc.running is not None else set()
        serving.cut = running - hit
        for task in serving.cut:
            task.cancel()
        self.logger.warning("grace period over: requests answered RequestTimeout", requests=len(running))
        await asyncio.wait(running, timeout=_WRITE_TIME)

    def _make_request(self, message: Any, payload: Any, protocol: Any, writer: Any, task: Any) -> web.BaseRequest:
        protocol.request_arrived(payload)  # headers are in: stops the header deadline
        # client_max_size: aiohttp refuses larger bodies while reading them (chunked ones too)
        loop = self._serving.loop
        return RouteRequest(message, payload, protocol, writer, task, loop, client_max_size=self.max_body_size)

    @property
    def url(self) -> str:
        """Where the RPC endpoint listens: `http://host:port/path` or `unix:<path>:<rpc_path>`."""
        if self.unix_socket:
            return f"unix:{self.unix_socket}:{self.rpc_path}"
        sock = self.socket
        port = sock.getsockname()[1] if sock is not None and sock.fileno() != -1 else self.port
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{port}{self.rpc_path}"

    def _bind(self) -> Socket:
        if self.unix_socket:
            return self._bind_unix(self.unix_socket)
        return self._bind_tcp(self.host, self.port, "port")

    def _bind_tcp(self, host: str, port: int, setting: str) -> Socket:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # rebind over TIME_WAIT, never over a listener
            if self.reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            sock.listen(self.backlog)
        except OSError as exc:
            sock.close()
            hint = (
                " (another process listens there; set reuse_port: true to share it on purpose)"
                if exc.errno == errno.EADDRINUSE
                else ""
            )
            raise OSError(
                exc.errno, f"{self.name}: cannot listen on {host}:{port} ({setting}): {exc.strerror}{hint}"
            ) from None
        sock.setblocking(False)
        return sock

    def _bind_unix(self, path: str) -> Socket:
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(os.stat(path).st_mode):
                probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    probe.connect(path)
                except OSError:
                    os.unlink(path)  # a stale socket file left by a process that died
                else:
                    raise OSError(
                        errno.EADDRINUSE, f"{self.name}: cannot listen on {path}: another process listens there"
                    )
                finally:
                    probe.close()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(path)
            sock.listen(self.backlog)
        except OSError as exc:
            sock.close()
            raise OSError(exc.errno, f"{self.name}: cannot listen on {path}: {exc.strerror}") from None
        sock.setblocking(False)
        return sock

    # -- requests -----------------------------------------------------------

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.raw_path != self.rpc_path and request.path != self.rpc_path:  # raw first: no URL parsing
            return await self._route(cast(RouteRequest, request))  # made by _make_request
        if request.method != "POST":
            return _error(405, InvalidRequest(f"Invalid request: use POST, not {request.method}"), {"Allow": "POST"})
        serving = self._serving
        in_headers: Any = request.headers
        if not _is_json(in_headers.get("Content-Type")):
            # a cross-site form or beacon cannot send a JSON content type without asking first (CORS)
            given = in_headers.get("Content-Type")
            return _error(
                415,
                InvalidRequest(
                    "Invalid request: Content-Type must be application/json, got "
                    + (repr(given) if given is not None else "no Content-Type header")
                ),
                {"Accept-Post": _JSON},
            )
        if self.session_cookie:
            if self._cross_site(serving, in_headers):
                return _error(
                    403,
                    NotAuthorized(
                        "Not authorized: a page of another origin may not call this endpoint with the session cookie"
                    ),
                )
            if SESSION_ID not in in_headers:
                cookie = request.cookies.get(serving.cookie[0])
                if cookie:
                    in_headers = {**in_headers, SESSION_ID: cookie}
        try:
            payload = request.content
            if payload.is_eof():  # the whole body has arrived (the usual small request): take it without awaiting
                body = payload.read_nowait()
                if len(body) > self.max_body_size:
                    return self._too_large()
            else:
                body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._too_large()
        except (web.RequestPayloadError, HttpProcessingError) as exc:  # bad Content-Encoding, chunking: still JSON
            return _error(400, InvalidRequest(f"Invalid request: unreadable body: {exc}"))
        task = asyncio.current_task()
        if task is None:  # aiohttp runs each handler in a task of its own (handler_cancellation)
            raise RuntimeError("an HTTP request handled outside a task")
        serving.requests.add(task)
        try:
            answer = await self.rpc.handle(
                body, in_headers, scope=serving.scope, transport="http", client=self._client(request)
            )
        except Exception as exc:  # a dispatcher bug: still answer JSON, never an HTML page
            self.logger.error("RPC dispatcher failed", exc_info=exc)
            return _error(500, InternalError())
        except asyncio.CancelledError:
            return self._cancelled(serving, request, task)
        finally:
            serving.requests.discard(task)
        headers, response = answer.headers, answer.body
        if response is None:
            sent = web.Response(status=204, headers=headers)
        else:
            headers["Content-Type"] = _JSON
            sent = web.Response(body=response, headers=headers)
        if self.session_cookie:
            self._update_cookie(serving, sent, in_headers.get(SESSION_ID), answer.session_id)
        return sent

    async def _ws(self, serving: Serving, ws: WSEndpoint, request: web.BaseRequest) -> web.StreamResponse:
        """Check a WebSocket upgrade as an RPC request is checked (Origin, cookie), then hand it to the endpoint."""
        if request.method != "GET":
            return _error(405, InvalidRequest(f"Invalid request: use GET, not {request.method}"), {"Allow": "GET"})
        if ws.stopping or serving.runner is None:
            return _unavailable("the server is stopping")
        headers = request.headers
        if self._cross_site(serving, headers):
            return _error(403, NotAuthorized("Not authorized: a page of another origin may not open this WebSocket"))
        session_id = headers.get(SESSION_ID)
        if session_id is None and self.session_cookie:
            session_id = request.cookies.get(serving.cookie[0])
        try:
            return await ws.accept(request, session_id, headers.get(AUTHORIZATION), self._client(request))
        except RPCError as exc:  # a refused Authorization: the upgrade is refused
            return _error(401, exc)
        except web.HTTPException as exc:
            return _http_error(exc)
        except Exception as exc:  # the session store failed before the upgrade
            self.logger.error("websocket upgrade failed", exc_info=exc)
            return _error(503, InternalError("Internal error: the session cannot be loaded"))

    def _cancelled(self, serving: Serving, request: web.BaseRequest, task: asyncio.Task) -> web.Response:
        """The answer to a request whose handler was cancelled; re-raises when nobody is left to
        answer (the client went away, or the server is closing its connections)."""
        if task in serving.cut:
            task.uncancel()  # cut by stop(): answer, then the connection closes
            return _error(200, RequestTimeout("Request timeout: the server is stopping"))
        if request.transport is None or request.transport.is_closing() or serving.runner is None:
            raise asyncio.CancelledError  # nobody to answer: the client is gone, or the server stops
        # cancelled by something else (or a cancelled awaitable inside): never close silently
        while task.cancelling():
            task.uncancel()
        self.logger.error("RPC request cancelled before it was answered", path=request.path)
        return _error(200, InternalError("Internal error: the request was cancelled"))

    def _client(self, request: web.BaseRequest) -> str | None:
        """The caller's address: the real-IP header's last entry behind a trusted proxy, else the peer."""
        if self.real_ip_header:
            forwarded = request.headers.get(self.real_ip_header)
            if forwarded:
                return forwarded.rsplit(",", 1)[-1].strip() or request.remote
        return request.remote or None

    def _cross_site(self, serving: Serving, headers: Any) -> bool:
        """Whether a browser sent the request from a page of another origin that `origins`
        does not list (Sec-Fetch-Site, else Origin; a request with neither is no browser's)."""
        site = headers.get("Sec-Fetch-Site")
        origin = headers.get("Origin")
        if site in ("same-origin", "none"):
            return False
        if origin is None:
            return site is not None  # "same-site" / "cross-site" with no Origin to allow
        own = _origin(origin)
        if own is None:  # "null": a sandboxed frame, a file, a redirect across origins
            return True
        if own in serving.origins:
            return False
        return site is not None or own.partition("://")[2] != headers.get("Host", "")

    def _update_cookie(self, serving: Serving, sent: web.Response, named: str | None, answered: str | None) -> None:
        """Set the session cookie when the answer names another session than the request did."""
        if answered is None or answered == named:
            return
        name, secure = serving.cookie
        if answered:
            sent.set_cookie(name, answered, path="/", httponly=True, samesite="Lax", secure=secure)
        else:
            # an expired cookie of the same attributes (a __Host- one is only replaced by a Secure one);
            # set_cookie rather than del_cookie, whose secure/httponly/samesite need aiohttp 3.10
            sent.set_cookie(name, "", max_age=0, path="/", httponly=True, samesite="Lax", secure=secure)

    def _too_large(self) -> web.Response:
        return _error(413, InvalidRequest(f"Invalid request: body larger than {self.max_body_size} bytes"))

    async def _route(self, request: RouteRequest) -> web.StreamResponse:
        """Serve every path but the RPC one: the WebSocket endpoint, a probe, a route, or a JSON 404 / 405."""
        serving = self._serving
        if serving.ws is not None and request.path == self.ws_path:
            return await self._ws(serving, serving.ws, request)
        match = await serving.table.resolve(request)
        route = match.route
        if route is None:
            if match.status == 405:
                return _error(
                    405,
                    InvalidRequest(f"Invalid request: {request.method} is not allowed at {request.path}"),
                    {"Allow": match.allow},
                )
            return _error(404, MethodNotFound(f"Nothing at {request.path}; JSON-RPC requests go to {self.rpc_path}"))
        if route not in serving.probes:
            refused = await self._refusal(route)
            if refused is not None:
                return refused
        request.match_info = match.params
        return await self._serve(route, request)

    async def _serve(self, route: Route, request: web.BaseRequest) -> web.StreamResponse:
        try:
            result = await route.handler(request)
            if isinstance(result, web.StreamResponse):
                return result
            return web.Response(body=encode_value(result), headers={"Content-Type": _JSON})
        except web.HTTPException as exc:
            return _http_error(exc)
        except Exception as exc:  # the handler's bug: log it once, answer JSON
            self.logger.error("route failed", route=f"{route.method} {route.path}", exc_info=exc)
            return _error(500, InternalError())

    async def _refusal(self, route: Route) -> web.Response | None:
        """503 when the route's service is not running (left out, or the app is stopping);
        before the app has started, wait for it first. None: serve the route."""
        app = self.app
        if app.managed and not app.started.is_set():
            self.held_requests += 1
            try:
                async with asyncio.timeout(self.start_wait):
                    await app.started.wait()
            except TimeoutError:
                return _unavailable(f"the app did not start within {self.start_wait:g} s")
            finally:
                self.held_requests -= 1
        if route.service is None:
            return None
        if app.stopping:
            return _unavailable(f'service "{route.service}" is stopping')
        if route.service not in app.services:
            return _unavailable(f'service "{route.service}" is not running')
        return None

    async def _live(self, request: web.BaseRequest) -> dict[str, bool]:
        return {"live": True}  # answering at all is the proof: the loop runs

    async def _ready(self, request: web.BaseRequest) -> web.Response:
        """The public ready probe: whether the app is ready, and which services fail (not why)."""
        report = await self._serving.health.checks.report()
        return web.Response(
            status=200 if report.ready else 503, body=encode_value(report.public()), headers={"Content-Type": _JSON}
        )

    async def _ready_details(self, request: web.BaseRequest) -> web.Response:
        """The ops listener's ready probe: also why each failing service fails."""
        report = await self._serving.health.checks.report()
        return web.Response(
            status=200 if report.ready else 503, body=encode_value(report), headers={"Content-Type": _JSON}
        )

    async def _route_ops(self, request: web.BaseRequest) -> web.StreamResponse:
        """Serve the ops listener: the probes and the ops routes, nothing else."""
        serving = self._serving
        if serving.ops_table is None:
            raise RuntimeError(f"{self.name}: no ops listener")
        match = await serving.ops_table.resolve(request)
        if match.route is None:
            return _error(
                match.status if match.status in (404, 405) else 404,
                MethodNotFound(f"Nothing at {request.path} on the ops listener"),
            )
        cast(RouteRequest, request).match_info = match.params
        return await self._serve(match.route, request)

    def _make_ops_request(self, message: Any, payload: Any, protocol: Any, writer: Any, task: Any) -> web.BaseRequest:
        return RouteRequest(
            message, payload, protocol, writer, task, self._serving.loop, client_max_size=self.max_body_size
        )


class Serving:
    """What a started HTTPServer holds: made in `start()`, dropped in `stop()`."""

    __slots__ = (
        "scope",
        "loop",
        "probes",
        "table",
        "health",
        "socket",
        "runner",
        "own_health",
        "accept_errors",
        "responses",
        "requests",
        "cut",
        "cookie",
        "origins",
        "ops_table",
        "ops_socket",
        "ops_runner",
        "ws",
        "unlisten",
    )

    def __init__(
        self,
        scope: Scope,
        loop: asyncio.AbstractEventLoop,
        probes: list[Route],
        table: RouteTable,
        health: AppHealth,
        sock: Socket,
    ):
        self.scope = scope  # of callers without a session
        self.loop = loop
        self.probes = probes  # the live / ready routes (served before the app has started too)
        self.table = table
        self.health = health  # the app's AppHealth, or one made here
        self.socket = sock
        self.runner: web.ServerRunner | None = None
        self.own_health: AppHealth | None = None  # the one made here, registered on rpc while serving
        self.accept_errors: QuietAcceptErrors | None = None
        self.responses: dict[int, int] = {}  # responses by status, read by the metrics
        self.requests: set[asyncio.Task] = set()  # handlers running (stop() waits for them)
        self.cut: set[asyncio.Task] = set()  # handlers stop() cancelled at the end of the grace period
        self.cookie: tuple[str, bool] = ("session_id", False)  # the session cookie's name, and whether it is Secure
        self.origins: frozenset[str] = frozenset()  # other origins whose pages may use the cookie
        self.ops_table: RouteTable | None = None  # the ops listener's routes, socket and runner
        self.ops_socket: Socket | None = None
        self.ops_runner: web.ServerRunner | None = None
        self.ws: WSEndpoint | None = None  # the WebSocket endpoint (ws_path)
        self.unlisten: Any = None  # stops the endpoint hearing the app's events


def _counting(handle: Any, responses: dict[int, int]) -> Any:
    """`handle`, counting its responses by status into `responses`."""

    async def counted(request: web.BaseRequest) -> web.StreamResponse:
        response = await handle(request)
        responses[response.status] = responses.get(response.status, 0) + 1
        return response

    return counted


class _JSONErrorHandler(GuardedHandler):
    """aiohttp answers requests it cannot parse (bad framing, bad encoding) itself, as text:
    answer them as JSON-RPC errors like everything else."""

    def handle_error(
        self, request: Any, status: int = 500, exc: BaseException | None = None, message: str | None = None
    ):
        if status >= 500:
            super().handle_error(request, status, exc, message)  # logs; raises if a response is already out
        else:  # the client's mistake (framing, encoding): one line at INFO, no traceback
            self.logger.info("unreadable request from %s: %s", request.remote, message or exc or status)
            if request.writer.output_size > 0:
                raise ConnectionError("Response is sent already, cannot send another response with the error message")
        error = InternalError() if status >= 500 else InvalidRequest(f"Invalid request: {message or exc or status}")
        response = _error(status, error)
        response.force_close()
        return response


class _JSONErrorServer(GuardedServer):
    """The guarded low-level server, whose connections are handled by `_JSONErrorHandler`."""

    handler_class = _JSONErrorHandler


_JSON_TYPES = frozenset({_JSON, "application/json-rpc", "application/jsonrequest"})
_TOKEN = re.compile(r"[A-Za-z0-9!#$%&'*+\-.^_`|~]+")  # an RFC 7230 token: what a header or cookie name may be


def _is_json(content_type: str | None) -> bool:
    """Whether a Content-Type names JSON (`application/json`, `...+json`; parameters allowed)."""
    if not content_type:
        return False
    media = content_type.partition(";")[0].strip().lower()
    return media in _JSON_TYPES or (media.startswith("application/") and media.endswith("+json"))


def _origin(value: str) -> str | None:
    """`scheme://host[:port]` of an origin or URL, lower-cased; None for "null" or no http(s) origin."""
    scheme, sep, rest = value.strip().lower().partition("://")
    host = rest.split("/", 1)[0]
    if not sep or scheme not in ("http", "https") or not host:
        return None
    return f"{scheme}://{host}"


def _check_host(key: str, host: str) -> None:
    """Raise SettingError for a host that cannot be listened on: an impossible address literal,
    or a name that does not resolve."""
    if host in ("", "0.0.0.0", "::"):
        return
    try:
        ipaddress.ip_address(host)
        return
    except ValueError:
        if host.replace(".", "").isdigit():
            raise SettingError(
                key, f"expected an IP address or a host name, got {host!r} (no such IPv4 address)"
            ) from None
    try:
        socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise SettingError(
            key, f"expected an address this host can listen on, got {host!r} ({exc.strerror or exc})"
        ) from None


def _error(status: int, exc: RPCError, headers: dict[str, str] | None = None) -> web.Response:
    body = msgspec.json.encode(ErrorResponse(id=None, error=exc.to_dict()))
    return web.Response(status=status, body=body, headers={"Content-Type": _JSON, **(headers or {})})


def _unavailable(why: str) -> web.Response:
    return _http_error(web.HTTPServiceUnavailable(text=f"Service unavailable: {why}"))


def _http_error(exc: web.HTTPException) -> web.Response:
    """`exc` (raised by a route, or made here) as a JSON-RPC-style error body with its status
    and its headers (Location, Allow, ...)."""
    headers = {k: v for k, v in exc.headers.items() if k not in ("Content-Type", "Content-Length")}
    if exc.status in (204, 304) or exc.status < 200:  # these carry no body
        return web.Response(status=exc.status, headers=headers)
    code = InvalidRequest.code if exc.status < 500 else InternalError.code
    data = {"type": type(exc).__name__, "status": exc.status}
    error = {"code": code, "message": exc.text or exc.reason, "data": data}
    body = msgspec.json.encode(ErrorResponse(id=None, error=error))
    return web.Response(status=exc.status, body=body, headers={**headers, "Content-Type": _JSON})
