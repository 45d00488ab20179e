"""RPCServer: the JSON-RPC service every transport and in-process caller enters.

A request's path, in the order it is taken:

1. `RPCServer.handle` (transports: bytes or decoded JSON plus headers) or `RPCServer.call`
   (in-process): wait until the app has started, read the kaiju headers
   (`protocol.parse_headers`), make the request's context (`Executor.context`), load the
   caller's session (Session-Id, Authorization);
2. a batch goes to `batches.run_batch`, which answers each item by step 3;
3. `Dispatcher` (dispatch.py): read the request (`protocol.read_request`), resolve the method
   and check access (`MethodTable.resolve`);
4. the middleware chain (middleware.py), when the server has middleware: each one wraps the
   call; the last step validates the params (`Method.validate`);
5. `Executor.run` (executor.py): take a slot, be listed in flight, run under the deadline
   and the retries, with the context as `current()`;
6. back in `handle`: the response and its headers become an `Answer` (answer.py; a changed
   session's id among the headers); the session's data is saved. The transport encodes the
   answer (`Answer.body`) if it sends one.

The common request — one plain request with an id, no kaiju header, for a method the
caller may use — is decoded with its params in one pass (`MethodTable.plain_decoder`) and
goes straight to step 4 (or 5): the same chain and `Executor.run` as every other request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import msgspec
from msgspec import UNSET

from kaiju.ratelimit.rate import RateLimit
from kaiju.redis import RedisConnection
from kaiju.rpc import errors as E
from kaiju.rpc.access import Scope, Session
from kaiju.rpc.answer import Answer, AnswerEncoder, encode_value
from kaiju.rpc.batches import run_batch
from kaiju.rpc.context import RequestContext, current_var
from kaiju.rpc.dispatch import Dispatcher, Run
from kaiju.rpc.executor import Executor
from kaiju.rpc.introspection import Introspection
from kaiju.rpc.methods import Method
from kaiju.rpc.middleware import Chain, Middleware, load_middleware
from kaiju.rpc.protocol import (
    CORRELATION_ID,
    KAIJU_HEADERS,
    NO_HEADERS,
    SESSION_ID,
    UNREADABLE,
    ErrorResponse,
    PlainHeaders,
    Request,
    RequestHeaders,
    Response,
    parse_headers,
    parse_request,
    plain_headers,
    read_kaiju_tools_request,
    read_request,
    unreadable,
)
from kaiju.rpc.sessions import Authenticator, SessionStore
from kaiju.rpc.table import MethodTable
from kaiju.rpc.topics import Subscriptions, TopicRules
from kaiju.runtime.service import Service, SettingError
from kaiju.runtime.types import NonNegative, NonNegativeInt, Positive, PositiveInt, ScopeName
from kaiju.telemetry.service import Telemetry

if TYPE_CHECKING:  # pragma: no cover
    from kaiju.rpc.limits import RateLimits

__all__ = ["RPCServer"]

_NO_KAIJU_HEADERS = (True, None, None, None)
_lower = str.lower
_decode_any = msgspec.json.Decoder().decode
_decode_batch = msgspec.json.Decoder(list[msgspec.Raw]).decode
_BYTES = (bytes, bytearray, memoryview)


class RPCServer(Service):
    """The JSON-RPC 2.0 dispatcher (service name "rpc").

    At start it collects the `@rpc.method` methods of every service of the app;
    `add_service` adds one later. `sessions` and `auth` are found by type when the app has
    one (name one when it has several); without them the Session-Id and Authorization
    headers are ignored.
    """

    service_name = "rpc"

    max_parallel_tasks: PositiveInt = 128
    """Methods running at once; more requests wait inside their deadline."""
    max_queue: NonNegativeInt = 1024
    """Requests and notifications that may wait for a slot; past it a request is answered
    Overloaded at once and a notification is dropped (counted in `rpc.status`)."""
    default_request_time: Positive = 90.0
    """Seconds a request may run without a Timeout or Deadline header."""
    max_request_time: Positive = 600.0
    """The longest time (s) a Timeout or Deadline header may ask for (longer ones are cut)."""
    max_batch_size: PositiveInt = 200
    """Requests in one batch."""
    max_retries: NonNegativeInt = 10
    """Cap of the RPC-Retries header."""
    enable_permissions: bool = True
    """Check scopes and session permissions (off: everything is callable by everyone)."""
    debug: bool | None = None
    """Send tracebacks in error data (None: the app's debug flag); only in env dev: elsewhere they stay in the log."""
    stop_timeout: NonNegative = 30.0
    """Seconds `stop()` waits for running requests before cancelling them."""
    watchdog_threshold: Positive = 5.0
    """Time left (s) from which a deadline is watched by the shared tick (nearer: a timer of its own)."""
    kaiju_tools_requests: bool = False
    """Also accept kaiju-tools' requests (no "jsonrpc" member; one without an "id" is
    answered with id null), and serve methods under their kaiju-tools names (AuthService's
    auth.jwt.get and auth.jwt.refresh), for clients not moved over yet."""
    sessions: SessionStore | None = None
    """The `SessionStore` that loads the session a `Session-Id` header names."""
    auth: Authenticator | None = None
    """The `Authenticator` that turns an `Authorization` header into a session."""
    telemetry: Telemetry | None = None
    """The `Telemetry` whose tracer makes a span of each call (none: the process's own
    tracer provider, when it set one; else no spans, at no cost)."""
    request_logs: bool = False
    """A log line per request (method, duration, outcome), with the params at DEBUG."""
    response_logs: bool = False
    """A log line per request, with the result or error at DEBUG (secrets masked)."""
    middleware: list[str | Callable[..., Any]] = []  # noqa: RUF012 -- a setting's default, never mutated
    """RPC middleware around every call, outermost first: "package.module:callable" names
    (or, from Python, the async callables themselves) of `async def mw(call, call_next)`."""
    rate_limits: list[RateLimit] = []  # noqa: RUF012 -- a setting's default, never mutated
    """Rate limits on calls: `{methods: PATTERN, per: user|session|ip|global, rate: "100/minute",
    burst: N}` each (GCRA, a key per limit and subject); a call over one is refused with
    TooManyRequests and `data.retry_after`. An app serving `auth.login` gets a per-address
    limit on it (30/minute, burst 10) unless a rule here covers it."""
    rate_limit_store: RedisConnection | None = None
    """The Redis connection the rate limits count on, shared by every process of the app
    (none: each process counts its own calls)."""
    topics: dict[str, ScopeName] = {}  # noqa: RUF012 -- a setting's default, never mutated
    """Event topics clients may subscribe to over a WebSocket (`rpc.subscribe`): `{PATTERN: SCOPE}`,
    shell-style patterns and the least privileged scope that may have them (none: nothing may be subscribed)."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.table = self._new_table()  # listed before start too (kaiju-run methods)
        self.running: Running | None = None  # the run-time parts, from start() on
        self._ready = False  # true once App.started is set: requests need not wait any more
        self._hot = _HotPath()
        self._chain: list[Middleware] = []  # the configured middleware (and request logs), loaded at start
        self._outer: list[Middleware] = []  # added from Python around them (add_middleware), outermost first
        self._inner: list[Middleware] = []  # added from Python inside them
        self._spans: list[Middleware] = []  # the calls' spans, when tracing: outside everything else
        self._rates: RateLimits | None = None  # the rate limits (`rate_limits`, auth.login's default)
        self._only_rates = False  # they are all the middleware there is: they wrap the methods they name only
        self.topic_rules = self._topic_rules()  # who may subscribe to what (the `topics` setting)

    # -- lifetime -----------------------------------------------------------

    def check(self) -> None:
        """A request's default time may not exceed its maximum time; every `middleware` entry
        must name an async callable. Raises SettingError."""
        if self.default_request_time > self.max_request_time:
            raise SettingError(
                "default_request_time",
                f"expected at most max_request_time ({self.max_request_time}), got {self.default_request_time}",
            )
        self._configured_middleware()
        self._topic_rules()

    def _topic_rules(self) -> TopicRules:
        try:
            return TopicRules(self.topics, self.enable_permissions)
        except ValueError as exc:
            raise SettingError("topics", str(exc)) from None

    def _configured_middleware(self) -> list[Middleware]:
        found = []
        for n, entry in enumerate(self.middleware):
            try:
                found.append(load_middleware(entry))
            except ValueError as exc:
                raise SettingError("middleware", f"entry {n}: {exc}") from None
        return found

    async def start(self) -> None:
        """Collect the methods of the app's services and compile the middleware; raises
        ValueError for a method defined twice, SettingError for a middleware that does not load."""
        debug = self.app.debug if self.debug is None else self.debug
        if debug and self.app.env != "dev":
            # a traceback tells an attacker where to push: only a developer's own machine sends them
            self.logger.warning("debug is on, but tracebacks are sent to callers in env dev only", env=self.app.env)
            debug = False
        executor = Executor(
            max_parallel=self.max_parallel_tasks,
            default_time=self.default_request_time,
            max_time=self.max_request_time,
            threshold=self.watchdog_threshold,
            logger=self.logger,
            debug=debug,
            max_queue=self.max_queue,
        )
        self.table = self._new_table()
        self.topic_rules = self._topic_rules()
        read = read_kaiju_tools_request if self.kaiju_tools_requests else read_request
        self.running = Running(executor, Dispatcher(self.table, executor, read), AnswerEncoder(self.logger, debug))
        chain: list[Middleware] = []
        if self.request_logs or self.response_logs:
            from kaiju.rpc.logs import RequestLog

            chain.append(RequestLog(self.logger, self.request_logs, self.response_logs))
        self._spans = self._span_middleware()
        self._ready = not self.app.managed or self.app.started.is_set()  # nobody will set it otherwise
        for name, service in self.app.services.items():
            self.table.add(service, name)
        self._rates = self._rate_limits()
        rates = [self._rates.__call__] if self._rates is not None else []  # the bound method: no lookup per call
        self._chain = [*chain, *rates, *self._configured_middleware()]
        self._compile()

    def _rate_limits(self) -> RateLimits | None:
        """The middleware counting `rate_limits` (and the default one of `auth.login`), else None."""
        from kaiju.rpc.limits import rate_limits

        return rate_limits(self.rate_limits, self.table.methods, self.rate_limit_store, self)

    def _span_middleware(self) -> list[Middleware]:
        """The middleware making each call's span when the app traces (`kaiju.telemetry`), else none."""
        from kaiju.telemetry.provider import tracing_of

        tracing = tracing_of(self.telemetry)
        if tracing is None:
            return []
        from kaiju.rpc.spans import RPCSpans

        return [RPCSpans(tracing)]

    async def stop(self, exception: Exception | None = None) -> None:
        """Wait up to `stop_timeout` for running requests and notifications, then cancel what is left."""
        if self.running is not None:
            await self.running.executor.stop(self.stop_timeout)

    def encode(self, value: Any) -> bytes:
        """`value` as JSON, encoded as this server encodes results (Structs, dataclasses, UUIDs,
        datetimes, Decimals, sets); raises TypeError for what it cannot encode."""
        return encode_value(value)

    def log_fields(self) -> Any:
        """A provider of the current request's correlation id, for log records."""
        from kaiju.rpc.context import log_fields

        return log_fields

    def metrics(self) -> Any:
        """Requests in flight and waiting for a slot, by transport."""
        from kaiju.rpc.stats import in_flight_families

        return in_flight_families(self.running.executor if self.running is not None else None)

    def forget_service(self, name: str) -> None:
        """A service was left out of the app: forget its methods."""
        if self.table.methods:
            self.remove_service(name)

    @property
    def _running(self) -> Running:
        """The run-time parts; RuntimeError before start()."""
        if self.running is None:
            raise RuntimeError("RPCServer is not started: start() it (or run it in an entrypoint) before calling")
        return self.running

    @property
    def executor(self) -> Executor:
        """The executor (slots, requests in flight, deadlines); RuntimeError before start()."""
        return self._running.executor

    @property
    def dispatcher(self) -> Dispatcher:
        """The dispatcher (one request over the method table and the executor); RuntimeError before start()."""
        return self._running.dispatcher

    # -- middleware -----------------------------------------------------------

    def add_middleware(self, middleware: Middleware, *, outermost: bool = False) -> None:
        """Wrap every call in `middleware` too: inside the configured ones, or around all of
        them with `outermost` (what counts or logs every call, refused ones included). Adding
        one already added does nothing. Takes effect at once when the server has started."""
        if middleware in self._outer or middleware in self._inner:
            return
        if outermost:
            self._outer.insert(0, middleware)
        else:
            self._inner.append(middleware)
        self._compile()

    def remove_middleware(self, middleware: Middleware) -> None:
        """Stop wrapping calls in a middleware `add_middleware` added."""
        for added in (self._outer, self._inner):
            if middleware in added:
                added.remove(middleware)
                self._compile()

    def _compile(self) -> None:
        """Compile the middleware into the dispatcher's chain (none: calls go straight to the
        executor) and refill the hot path."""
        if self.running is None:
            return
        wrapping = [*self._spans, *self._outer, *self._chain, *self._inner]
        self._only_rates = self._rates is not None and wrapping == [self._rates.__call__]
        self.running.dispatcher.use(Chain(wrapping, self.running.executor.run, self.logger) if wrapping else None)
        self._build_hot_path()

    # -- the method table ---------------------------------------------------

    def _new_table(self) -> MethodTable:
        table = MethodTable(self.enable_permissions, self.kaiju_tools_requests)
        table.add(Introspection(self), self.name)
        table.add(Subscriptions(lambda: self.topic_rules), self.name)
        return table

    def add_service(self, service: Any) -> list[str]:
        """Register the `@rpc.method` methods of `service`; returns their RPC names. Raises
        ValueError on a duplicate."""
        added = self.table.add(service, service.name)
        self._build_hot_path()
        return added

    def remove_service(self, service_name: str) -> None:
        """Forget the methods of one service."""
        self.table.remove(service_name)
        self._build_hot_path()

    def may_call(self, m: Method, scope: Scope, session: Session | None = None) -> bool:
        """Whether a caller with `scope` (and `session`) may use method `m`."""
        return self.table.may_call(m, scope, session)

    def list_methods(self, scope: Scope = Scope.SYSTEM, session: Session | None = None) -> list[Method]:
        """The methods a caller may use, sorted by name (all of them for SYSTEM)."""
        return self.table.listing(scope, session)

    def describe(self, scope: Scope = Scope.SYSTEM, session: Session | None = None) -> list[dict[str, Any]]:
        """One line of facts per callable method: name, permission, params (with types and defaults), doc."""
        return [m.describe() for m in self.table.listing(scope, session)]

    def _build_hot_path(self) -> None:
        """Fill what `handle` reads for a plain request (kept in slots: reading attributes of a
        Service passes through aiomisc's `__getattr__` hook, which CPython does not speed up)."""
        hot, running = self._hot, self.running
        plain = self.table.plain_decoder() if self._ready and running is not None else None
        decode, methods = plain if plain is not None else (_no_hot_path, {})
        hot.decode, hot.methods = decode, {}
        if running is not None:
            hot.executor, hot.encoder, hot.debug = running.executor, running.encoder, running.executor.debug
            chained, direct = running.dispatcher.run, running.executor.run
            rates = self._rates if self._only_rates else None
            # each method's own way: the chain, or, when the only middleware are the rate limits,
            # the executor straight for a method no limit names (an app that serves auth.login gets
            # its default limit: its other calls pay nothing for it)
            hot.methods = {
                t: (m, chained if rates is None or rates.limiters_of(m.name) else direct) for t, m in methods.items()
            }
        hot.known_session = self.sessions.known if self.sessions is not None else None
        hot.known_token = self.auth.known if self.auth is not None else None

    # -- entry points -------------------------------------------------------

    async def call(
        self,
        method: str,
        params: dict | list | None = None,
        *,
        scope: Scope = Scope.SYSTEM,
        headers: Mapping[str, str] | None = None,
        session: Session | None = None,
        transport: str = "internal",
    ) -> Any:
        """Call one method in-process and return its result; before the app has started, wait
        for it (inside the request's deadline).

        Raises an `RPCError`: MethodNotFound, InvalidParams, RequestTimeout, InvalidRequest for a
        malformed header, NotAuthorized, or InternalError carrying the method's own exception
        in `base_exc`.
        """
        ctx, h = self._context(headers, scope, session, transport)
        loaded = await self._admit(ctx, h, {}, session) if self._must_admit(h, session) else None
        try:
            return await self._running.dispatcher.call(ctx, method, params, h.retries)
        finally:
            if loaded is not None:
                await self._finish_session(ctx, loaded)

    def handle(
        self,
        body: bytes | str | dict | list,
        headers: Mapping[str, str] | None = None,
        *,
        scope: Scope = Scope.GUEST,
        session: Session | None = None,
        transport: str = "internal",
        client: str | None = None,
        wait_notifications: bool = False,
    ) -> Coroutine[Any, Any, Answer]:
        """Serve a whole JSON-RPC request or batch: await it for its `Answer` (the response or
        responses as data, the response headers; `Answer.body` encodes it).

        `body` is JSON (bytes-like or str) or already decoded; `transport` names what brought
        it in ("http", "stream", ...: what middleware and the metrics see); `client` the
        caller's address, when the transport knows one (limits per client read it). With
        `wait_notifications` a notification runs in the caller's task and is answered too
        (with id None): a stream listener learns so how each request of a message ended.
        Never raises for bad input: every problem is answered as a JSON-RPC error. Until the
        app has started (`App.started`), requests wait, so no method runs on a service that
        has not started yet.
        """
        hot = self._hot
        # the common case, looked for in C, or known already (a WebSocket's headers, checked once)
        if not headers or type(headers) is PlainHeaders or KAIJU_HEADERS.isdisjoint(map(_lower, headers)):
            plain, cid, session_id, authorization = _NO_KAIJU_HEADERS
        else:  # a Correlation-Id (a stream message's) or credentials still take the plain path
            plain, cid, session_id, authorization = plain_headers(headers)
        if plain and session is None and current_var.get() is None:
            try:
                req = hot.decode(body)
            except (*UNREADABLE, TypeError):  # msgspec's errors, invalid UTF-8, deep nesting
                pass  # not one plain request, or not yet: the general path says what it is
            else:
                m, run = hot.methods[type(req)]
                rid = req.id
                if rid is UNSET and wait_notifications:
                    rid = None
                if rid is not UNSET:  # a plain request, params validated: step 4
                    if session_id is None and authorization is None:
                        if m.permission >= scope:
                            ctx = hot.executor.plain_context(scope, headers, rid, transport, cid, client)
                            return hot.answer(ctx, m, req.params, run)
                    else:
                        found = hot.known(session_id, authorization)  # no I/O: remembered, or None
                        if found is not None or self._plain_credentials(session_id, authorization):
                            ctx = hot.executor.plain_context(scope, headers, rid, transport, cid, client)
                            return self._answer_as(ctx, m, req.params, run, session_id, authorization, found)
        return self._handle(body, headers, scope, session, transport, wait_notifications, client)

    def _plain_credentials(self, session_id: str | None, authorization: str | None) -> bool:
        """Whether a plain request's credentials can be looked up on the plain path: a
        Session-Id with a session store, or (without one) a bearer token with an authenticator.
        Basic credentials take the general path (a password check, with its throttle)."""
        if session_id is not None:
            return self.sessions is not None and authorization is None
        return self.auth is not None and authorization is not None and authorization[:7].lower() == "bearer "

    async def _answer_as(
        self,
        ctx: RequestContext,
        m: Method,
        params: Any,
        run: Run,
        session_id: str | None,
        authorization: str | None,
        found: Session | None = None,
    ) -> Answer:
        """A plain request from a caller who names a session or brings a token: the session
        looked up (step 1) unless `found` (what the store or the authenticator knew without
        I/O), the method run as that caller (step 4) when they may call it, the session's
        changes kept (step 5). What the general path does, with the request already read and
        validated in one pass."""
        hot = self._hot
        out = {CORRELATION_ID: ctx.correlation_id}
        loaded: Session | None
        if found is None:
            h = RequestHeaders()
            h.session_id, h.authorization = session_id, authorization
            try:
                loaded = await self._find_session(ctx, h, out)
            except E.RPCError as exc:
                return hot.encoder.answer(ErrorResponse(id=ctx.request_id, error=exc.to_dict(hot.debug)), out)
            found = ctx.session
        else:
            ctx.session, ctx.scope = found, found.scope
            loaded = found if session_id is not None else None
            if loaded is not None:
                out[SESSION_ID] = found.id
        response: Any
        if not self.table.may_call(m, ctx.scope, found):  # the dispatcher answers (and counts) it as unknown
            response = await self._running.dispatcher.request(ctx, Request(method=m.name, id=ctx.request_id))
        else:
            try:
                response = Response(ctx.request_id, await run(ctx, m, params, 0))
            except E.RPCError as exc:
                response = ErrorResponse(id=ctx.request_id, error=exc.to_dict(hot.debug))
        if loaded is not None:
            await self._finish_session(ctx, loaded)
        return self._answer(ctx, found, response, out)

    async def _handle(
        self,
        body: Any,
        headers: Any,
        scope: Scope,
        session: Session | None,
        transport: str,
        wait: bool,
        client: str | None = None,
    ) -> Answer:
        """`handle` for everything but a plain request."""
        try:
            ctx, h = self._context(headers, scope, session, transport, client)
        except E.InvalidRequest as exc:  # a malformed header: no request of the body runs
            ctx = self._running.executor.context(NO_HEADERS, scope, session, headers, transport, client)
            refused = await self._running.dispatcher.unreadable(ctx, exc)
            return self._refuse(body, refused.error, {CORRELATION_ID: ctx.correlation_id}, wait)
        out = {CORRELATION_ID: ctx.correlation_id}
        try:
            loaded = await self._admit(ctx, h, out, session) if self._must_admit(h, session) else None
        except E.RPCError as exc:
            return self._refuse(body, exc.to_dict(self._running.executor.debug), out, wait)
        before = ctx.session
        if type(body) is str:
            body = body.encode()
        if type(body) in _BYTES and bytes(body[:64]).lstrip()[:1] == b"[":
            try:
                body = _decode_batch(body)
            except UNREADABLE as exc:
                refused = await self._running.dispatcher.unreadable(ctx, unreadable(body, exc))
                return self._running.encoder.answer(ErrorResponse(id=None, error=refused.error), out)
        dispatcher = self._running.dispatcher
        response: Any
        if type(body) in (list, tuple):
            response = await run_batch(dispatcher, ctx, list(body), h, self.max_batch_size, wait)
        else:
            response = await dispatcher.one(ctx, body, h.retries, wait)
        if loaded is not None:
            await self._finish_session(ctx, loaded)
        return self._answer(ctx, before, response, out)

    def _answer(self, ctx: RequestContext, before: Session | None, response: Any, out: dict[str, str]) -> Answer:
        """The `Answer` (step 6): a session the call logged in or out (`ctx.session` is not
        `before`) answered in Session-Id, the call's own response headers added."""
        if ctx.session is not before:  # a login or a logout
            out[SESSION_ID] = ctx.session.id if ctx.session is not None else ""
        if ctx.response_headers:
            out.update(ctx.response_headers)
        return self._running.encoder.answer(response, out)

    # -- step 1: the request's context and the caller's session -----------------

    def _context(
        self,
        headers: Mapping[str, str] | None,
        scope: Scope,
        session: Session | None,
        transport: str = "internal",
        client: str | None = None,
    ) -> tuple[RequestContext, RequestHeaders]:
        """The request's context and its parsed kaiju headers; raises InvalidRequest for a
        malformed header."""
        executor = self._running.executor
        h = parse_headers(headers, self.max_retries) if headers else NO_HEADERS
        if session is not None:
            scope = session.scope
        return executor.context(h, scope, session, headers, transport, client), h

    def _must_admit(self, h: RequestHeaders, session: Session | None) -> bool:
        """Whether `_admit` has anything to do (it usually has not: no coroutine then)."""
        return not self._ready or (session is None and _names_session(h, self.sessions, self.auth))

    async def _admit(
        self, ctx: RequestContext, h: RequestHeaders, out: dict[str, str], session: Session | None
    ) -> Session | None:
        """Wait for the app to have started, then find the caller's session; returns the
        session when it came from the store. Raises an RPCError to refuse the request:
        RequestTimeout when the app does not start within the deadline, or what the session
        lookup raised."""
        if not self._ready:
            await self._wait_ready(ctx)
        if session is None and _names_session(h, self.sessions, self.auth):
            return await self._find_session(ctx, h, out)
        return None

    async def _wait_ready(self, ctx: RequestContext) -> None:
        """Wait for the app to have started (until `ctx`'s deadline: then RequestTimeout)."""
        try:
            async with asyncio.timeout_at(ctx.loop_deadline):
                await self.app.started.wait()
        except TimeoutError:
            raise E.RequestTimeout(
                "Request timeout: the app did not start in time", data={"deadline": ctx.deadline}
            ) from None
        if not self._ready:
            self._ready = True
            self._build_hot_path()

    async def _find_session(self, ctx: RequestContext, h: RequestHeaders, out: dict[str, str]) -> Session | None:
        """Put the session the Session-Id or Authorization header gives (and its scope) on `ctx`;
        a request whose headers give no session runs as a GUEST at most. Returns the session
        when it came from the store. `out` gets the Session-Id to answer with (the session's
        id; "" when the one named is gone, so the client forgets it).

        Raises what the authenticator raised (NotAuthorized), RequestTimeout when the lookup
        outlives the deadline, InternalError when the store or the authenticator fails.
        """
        found = loaded = None
        try:
            sessions, auth = self.sessions, self.auth
            if h.session_id and sessions is not None:
                found = loaded = sessions.known(h.session_id) or await self._running.executor.bounded(
                    ctx, sessions.load_session(h.session_id)
                )
                out[SESSION_ID] = "" if found is None else found.id
            if found is None and h.authorization and auth is not None:
                found = auth.known(h.authorization) or await self._running.executor.bounded(
                    ctx, auth.authenticate(h.authorization)
                )
        except E.RPCError:
            raise
        except Exception as exc:
            self.logger.error("session lookup failed", exc_info=exc)
            raise E.InternalError("Internal error: the session cannot be loaded", base_exc=exc) from exc
        if found is not None:
            ctx.session = found
            ctx.scope = found.scope
        elif ctx.scope < Scope.GUEST:
            ctx.scope = Scope.GUEST  # it named a session or credentials it does not have
        return loaded

    async def _finish_session(self, ctx: RequestContext, loaded: Session) -> None:
        """Step 5 for a session loaded from the store: let the store save what the request changed."""
        if ctx.session is not loaded or self.sessions is None:
            return  # logged out or replaced: the method dealt with the store itself
        try:
            await self.sessions.finish_session(loaded)
        except Exception as exc:
            self.logger.error("session not saved", session_id=loaded.id, exc_info=exc)

    # -- answers -------------------------------------------------------------

    def _refuse(self, body: Any, error: dict[str, Any], headers: dict[str, str], wait: bool = False) -> Answer:
        """Answer every request of `body` with `error`, running none: a request gets it with
        its own id, a batch gets one per request, a notification gets nothing (unless `wait`)."""
        if type(body) is str:
            body = body.encode()
        if type(body) in _BYTES:
            try:
                body = _decode_any(body)
            except UNREADABLE as exc:
                req_id = getattr(unreadable(body, exc), "request_id", None)
                if req_id is UNSET:
                    return self._running.encoder.answer(ErrorResponse(id=None, error=error) if wait else None, headers)
                return self._running.encoder.answer(ErrorResponse(id=req_id, error=error), headers)
        if type(body) in (list, tuple) and body:
            answers = [ErrorResponse(id=_request_id(r), error=error) for r in body if wait or not _is_notification(r)]
            return self._running.encoder.answer(answers or None, headers)
        if _is_notification(body) and not wait:
            return self._running.encoder.answer(None, headers)
        return self._running.encoder.answer(ErrorResponse(id=_request_id(body), error=error), headers)


class Running(NamedTuple):
    """What a started RPCServer holds: made in `start()`."""

    executor: Executor
    dispatcher: Dispatcher
    encoder: AnswerEncoder


class _HotPath:
    """What `RPCServer.handle` reads per request, kept in slots (see `_build_hot_path`), and
    the answer to a plain request."""

    __slots__ = ("decode", "methods", "executor", "encoder", "debug", "known_session", "known_token")

    def __init__(self) -> None:
        self.decode: Any = _no_hot_path
        self.methods: dict[type, tuple[Method, Run]] = {}  # a plain request's Struct: its method, and how it runs
        self.executor: Any = None
        self.encoder: Any = None
        self.debug = False
        self.known_session: Callable[[str], Session | None] | None = None  # SessionStore.known
        self.known_token: Callable[[str], Session | None] | None = None  # Authenticator.known

    def known(self, session_id: str | None, authorization: str | None) -> Session | None:
        """The caller's session when the store (for a Session-Id alone) or the authenticator
        (for an Authorization alone) knows it without I/O; else None."""
        if session_id is not None:
            known = self.known_session if authorization is None else None
            return None if known is None else known(session_id)
        known = self.known_token
        return None if known is None or authorization is None else known(authorization)

    async def answer(self, ctx: RequestContext, m: Method, params: Any, run: Run) -> Answer:
        """Run a plain request (params validated) through the chain or the executor: its Answer."""
        try:
            result = await run(ctx, m, params, 0)
        except E.RPCError as exc:
            response: Any = ErrorResponse(id=ctx.request_id, error=exc.to_dict(self.debug))
            out = {CORRELATION_ID: ctx.correlation_id}
        else:
            response = Response(ctx.request_id, result)
            out = {CORRELATION_ID: ctx.correlation_id}
            if ctx.session is not None:  # the method logged the caller in
                out[SESSION_ID] = ctx.session.id
        if ctx.response_headers:
            out.update(ctx.response_headers)
        try:  # the encoder's own fast path, inline: encode_value, then the encoder when that fails
            return Answer(response, out, encode_value(response))
        except (TypeError, ValueError, RecursionError):
            return self.encoder.answer(response, out)


def _names_session(h: RequestHeaders, sessions: Any, auth: Any) -> bool:
    """Whether the headers give something to look a session up by: a Session-Id with a
    `sessions` service, or an Authorization with an `auth` service."""
    return bool((h.session_id and sessions is not None) or (h.authorization and auth is not None))


def _is_notification(obj: Any) -> bool:
    """Whether a decoded request is a notification: no id, and a request otherwise (an
    invalid request without an id is still answered, with id null)."""
    if type(obj) is not dict or "id" in obj:
        return False
    try:
        parse_request(obj)
    except E.InvalidRequest:
        return False
    return True


def _request_id(obj: Any) -> Any:
    """The id of a request (decoded) when it has a valid one, else None."""
    rid = obj.get("id") if type(obj) is dict else None
    return rid if type(rid) in (int, float, str) else None


def _no_hot_path(body: bytes) -> Any:
    raise msgspec.ValidationError("no hot path")
