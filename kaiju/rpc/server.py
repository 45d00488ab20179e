"""RPCServer: the one JSON-RPC dispatcher every transport enters.

Transports hand it a request body (bytes, or already decoded) and headers, and get the
response body and headers back (`handle`); in-process callers use `call`. A single
request runs in the caller's own task: no task, and usually no timer, per call. Deadlines
longer than `watchdog_threshold` are enforced by one watchdog tick shared by all requests;
shorter ones by `asyncio.timeout_at`.

This module holds the service (settings, start/stop, the method registry) and the entry
points, with the hot path of a plain request written out in `handle`; how a method runs
under a context is in `kaiju.rpc.execution`, batches and other general-path requests in
`kaiju.rpc.batches`, the introspection methods in `kaiju.rpc.introspection`.
"""

from __future__ import annotations

import asyncio
import inspect
import time
import typing
from collections.abc import Mapping
from typing import Any

import msgspec
from msgspec import UNSET
from msgspec.structs import astuple as _astuple

from kaiju.rpc import errors as E
from kaiju.rpc.access import Scope, Session
from kaiju.rpc.batches import Batches
from kaiju.rpc.context import RequestContext, _current, new_correlation_id
from kaiju.rpc.context import _counter as _cid_counter
from kaiju.rpc.context import _prefix as _cid_prefix
from kaiju.rpc.execution import Execution, _current_task
from kaiju.rpc.introspection import Introspection
from kaiju.rpc.methods import Method, method_spec
from kaiju.rpc.protocol import (
    CORRELATION_ID, KAIJU_HEADERS, NO_HEADERS, SESSION_ID, ErrorResponse, RawRequest, RequestHeaders, Response,
    parse_headers,
)
from kaiju.rpc.sessions import Authenticator, SessionStore
from kaiju.rpc.slots import Slots
from kaiju.runtime.service import Service

__all__ = ["RPCServer"]

_NO_HEADERS = NO_HEADERS
_KAIJU_HEADERS = KAIJU_HEADERS
_lower = str.lower
_decode_request = msgspec.json.Decoder(RawRequest).decode
_decode_any = msgspec.json.Decoder().decode
_decode_batch = msgspec.json.Decoder(list[msgspec.Raw]).decode
_BYTES = (bytes, bytearray, memoryview)


class RPCServer(Service, Execution, Batches, Introspection):
    """The JSON-RPC 2.0 dispatcher (service name "rpc").

    At start it collects the `@rpc.method` methods of every service of the app;
    `add_service` adds one later. Settings:

    - max_parallel_tasks: methods running at once; more requests wait inside their deadline;
    - default_request_time / max_request_time: seconds a request may run without / with
      a Timeout or Deadline header (longer ones are cut to the maximum);
    - max_batch_size: requests in one batch; max_retries: cap of the RPC-Retries header;
    - enable_permissions: check scopes and session permissions (off: everything is callable);
    - debug: send tracebacks in error data (None: the app's debug flag);
    - stop_timeout: seconds `stop()` waits for running requests before cancelling them;
    - watchdog_threshold: time left (s) from which a deadline is watched by the shared tick;
    - sessions: the `SessionStore` that loads the session a `Session-Id` header names;
    - auth: the `Authenticator` that turns an `Authorization` header into a session.

    Both are found by type when the app has one (name one when it has several); without
    them those two headers are ignored.
    """

    service_name = "rpc"

    max_parallel_tasks: int = 128
    default_request_time: float = 90.0
    max_request_time: float = 600.0
    max_batch_size: int = 200
    max_retries: int = 10
    enable_permissions: bool = True
    debug: bool | None = None
    stop_timeout: float = 30.0
    watchdog_threshold: float = 5.0
    sessions: SessionStore | None = None
    auth: Authenticator | None = None

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._methods: dict[str, Method] = {}
        self._inflight: dict[RequestContext, None] = {}
        self._background: set[asyncio.Task] = set()
        self._slots = Slots()
        self._clock = _not_started
        self._debug = False
        self._enc = msgspec.json.Encoder(enc_hook=_enc_hook).encode
        self._app_ready = False  # flips once App.started is set
        self._hot = _HotPath()

    # -- lifetime -----------------------------------------------------------

    async def start(self) -> None:
        """Check the settings and collect the methods; raises ValueError for a bad setting or a duplicate method."""
        if int(self.max_parallel_tasks) < 1:
            raise ValueError(f"{self.name}: max_parallel_tasks must be at least 1, got {self.max_parallel_tasks}")
        if not 0 < float(self.default_request_time) <= float(self.max_request_time):
            raise ValueError(f"{self.name}: need 0 < default_request_time <= max_request_time")
        self._loop = loop = asyncio.get_running_loop()
        # the default loop's clock is time.monotonic: calling it directly skips a Python-level method
        self._clock = time.monotonic if type(loop).time is asyncio.BaseEventLoop.time else loop.time
        self._slots = Slots(int(self.max_parallel_tasks))
        self._tick = max(0.05, min(1.0, float(self.watchdog_threshold) / 10))
        self._threshold = float(self.watchdog_threshold)
        self._default_time = float(self.default_request_time)
        self._max_time = float(self.max_request_time)
        self._debug = self.app.debug if self.debug is None else bool(self.debug)
        self._app_ready = not self.app.managed or self.app.started.is_set()  # nobody will set it otherwise
        self._methods = {}
        services = list(self.app.services.values())
        if self not in services:
            services.append(self)
        for service in services:
            self._collect(service)
        self._build_hot_decoder()

    async def stop(self, exception: Exception | None = None) -> None:
        """Wait up to `stop_timeout` for running requests and notifications, then cancel what is left."""
        deadline = time.monotonic() + float(self.stop_timeout)
        while (self._inflight or self._background) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for task in list(self._background):
            task.cancel()
        for ctx in list(self._inflight):
            if ctx.task is not None and not ctx.task.done():
                ctx.task.cancel()
        if self._slots.watchdog is not None:
            self._slots.watchdog.cancel()
            self._slots.watchdog = None

    # -- methods ----------------------------------------------------------

    async def _wait_app_ready(self) -> None:
        if self._clock is _not_started:
            _not_started()
        try:
            await asyncio.wait_for(self.app.started.wait(), self._default_time)
        except TimeoutError:
            pass  # the start-up is stuck; let the request meet whatever is there
        if self.app.started.is_set() and not self._app_ready:
            self._app_ready = True
            self._build_hot_decoder()

    def add_service(self, service: Service) -> list[str]:
        """Register the `@rpc.method` methods of `service`; returns their RPC names. Raises ValueError on a duplicate."""
        added = self._collect(service)
        self._build_hot_decoder()
        return added

    def _collect(self, service: Service) -> list[str]:
        added = []
        for attr in dir(type(service)):
            raw = inspect.getattr_static(type(service), attr, None)
            func = raw.__func__ if isinstance(raw, (classmethod, staticmethod)) else raw
            spec = method_spec(func)
            if spec is None:
                continue
            name = f"{service.name}.{spec.name or attr}"
            existing = self._methods.get(name)
            if existing is not None and getattr(existing.func, "__self__", None) is not service:
                raise ValueError(f"RPC method {name} is defined twice")
            self._methods[name] = Method(name, service.name, getattr(service, attr), spec.permission)
            added.append(name)
        return added

    def _build_hot_decoder(self) -> None:
        """Fill `_hot` for `handle`: one decoder for a plain request to any method (a union of the
        methods' request Structs tagged by "method", so the envelope and the params decode and
        validate in one pass) and the state the hot path reads."""
        by_type = {m.request_type: m for m in self._methods.values() if m.request_type is not None}
        hot = self._hot
        hot.methods = by_type
        # Every request takes the long way until the app has started, when there is no method,
        # and when the default deadline is too near for the shared tick the hot path relies on.
        if not (by_type and self._app_ready and self._default_time >= self._threshold):
            hot.decode = _no_hot_path
            return
        hot.decode = msgspec.json.Decoder(typing.Union[tuple(by_type)]).decode
        hot.loop, hot.clock, hot.default_time = self._loop, self._clock, self._default_time
        hot.inflight, hot.slots, hot.enc = self._inflight, self._slots, self._enc

    def remove_service(self, service_name: str) -> None:
        """Forget the methods of one service."""
        for name in [n for n, m in self._methods.items() if m.service == service_name]:
            del self._methods[name]
        self._build_hot_decoder()

    def may_call(self, m: Method, scope: Scope, session: Session | None = None) -> bool:
        """Whether a caller with `scope` (and `session`) may use method `m`."""
        return (
            not self.enable_permissions
            or m.permission >= scope
            or (session is not None and session.grants(m.name, m.service))
        )

    def list_methods(self, scope: Scope = Scope.SYSTEM, session: Session | None = None) -> list[Method]:
        """The methods a caller may use, sorted by name (all of them for SYSTEM)."""
        return [m for name, m in sorted(self._methods.items()) if self.may_call(m, scope, session)]

    def describe(self, scope: Scope = Scope.SYSTEM, session: Session | None = None) -> list[dict[str, Any]]:
        """One line of facts per callable method: name, permission, params (with types and defaults), doc."""
        return [m.describe() for m in self.list_methods(scope, session)]

    def _resolve(self, name: Any, scope: Scope, session: Session | None) -> Method:
        m = self._methods.get(name)
        if m is None or not (
            m.permission >= scope or not self.enable_permissions or (session is not None and session.grants(m.name, m.service))
        ):
            raise E.MethodNotFound(f"Method not found: {name}", data={"method": name})
        return m

    def _names_session(self, h: RequestHeaders) -> bool:
        """Whether the headers give something to look a session up by: a Session-Id with a
        `sessions` service, or an Authorization with an `auth` service."""
        return bool((h.session_id and self.sessions is not None) or (h.authorization and self.auth is not None))

    async def _find_session(self, ctx: RequestContext, h: RequestHeaders) -> tuple[str | None, E.RPCError | None]:
        """Find the session the Session-Id or Authorization header gives and put it (and its
        scope) on `ctx`. A request whose headers give no session runs as a GUEST at most.

        Returns the Session-Id to answer with (the session's id; "" when the one named is gone,
        so the client forgets it; None when none was named) and the error to refuse the request
        with, if any: what the authenticator raised (NotAuthorized), RequestTimeout when the
        lookup outlives the request's deadline, InternalError when the store or the
        authenticator fails. The lookup is in flight (stop() waits for it, then cancels it).
        """
        answer = session = None
        ctx.task = _current_task(self._loop)
        ctx.expired = None  # bounded here by timeout_at, not by the shared tick
        self._inflight[ctx] = None
        try:
            async with asyncio.timeout_at(ctx.loop_deadline):
                if h.session_id and self.sessions is not None:
                    session = await self.sessions.load_session(h.session_id)
                    answer = "" if session is None else session.id
                if session is None and h.authorization and self.auth is not None:
                    session = await self.auth.authenticate(h.authorization)
        except TimeoutError:
            timeout = E.RequestTimeout("Request timeout: the session lookup took too long", data={"deadline": ctx.deadline})
            return answer, timeout
        except E.RPCError as exc:
            return answer, exc
        except Exception as exc:
            self.logger.error("session lookup failed", exc_info=exc)
            return answer, E.InternalError("Internal error: the session cannot be loaded", base_exc=exc)
        finally:
            del self._inflight[ctx]
            ctx.task = None
            ctx.expired = False
            ctx.started = self._clock()  # the method's time starts now
        if session is not None:
            ctx.session = session
            ctx.scope = session.scope
        elif ctx.scope < Scope.GUEST:
            ctx.scope = Scope.GUEST  # it named a session or credentials it does not have
        return answer, None

    def _refuse(self, body: Any, error: dict[str, Any]) -> bytes | None:
        """Answer every request of `body` with `error`, running none: a request gets it with
        its own id, a batch gets one per request, a notification gets nothing."""
        if type(body) in _BYTES:
            try:
                body = _decode_any(body)
            except (msgspec.ValidationError, msgspec.DecodeError):
                return self._enc(ErrorResponse(id=None, error=error))
        if type(body) in (list, tuple) and body:
            answers = [
                ErrorResponse(id=_request_id(r), error=error) for r in body if not (type(r) is dict and "id" not in r)
            ]
            return self._enc(answers) if answers else None
        if type(body) is dict and "id" not in body:
            return None
        return self._enc(ErrorResponse(id=_request_id(body), error=error))

    # -- entry points -----------------------------------------------------

    async def call(
        self,
        method: str,
        params: dict | list | None = None,
        *,
        scope: Scope = Scope.SYSTEM,
        headers: Mapping[str, str] | None = None,
        session: Session | None = None,
    ) -> Any:
        """Call one method in-process and return its result.

        Raises an `RPCError`: MethodNotFound, InvalidParams, RequestTimeout, InvalidRequest for a
        malformed header, or InternalError carrying the method's own exception in `base_exc`.
        """
        h = parse_headers(headers, self.max_retries) if headers else _NO_HEADERS
        if session is not None:
            scope = session.scope
        ctx = self._context(h, scope, session, headers)
        if session is None and self._names_session(h):
            _, error = await self._find_session(ctx, h)
            if error is not None:
                raise error
        m = self._resolve(method, ctx.scope, ctx.session)
        return await self._run(ctx, m, params, False, h.retries)

    async def handle(
        self,
        body: bytes | str | dict | list,
        headers: Mapping[str, str] | None = None,
        *,
        scope: Scope = Scope.GUEST,
        session: Session | None = None,
    ) -> tuple[bytes | None, dict[str, str]]:
        """Serve a whole JSON-RPC request or batch; returns (response body or None, response headers).

        `body` is JSON (bytes-like or str) or already decoded. Never raises for bad input:
        every problem is answered as a JSON-RPC error. Until the app has started
        (`App.started`), requests wait, so no method runs on a service that has not started yet.
        """
        hot = self._hot
        plain_headers = not headers or _KAIJU_HEADERS.isdisjoint(map(_lower, headers))
        if session is None and plain_headers and _current.get() is None:
            try:
                req = hot.decode(body)
            except (msgspec.ValidationError, msgspec.DecodeError, TypeError):
                # anything else (batch, notification, unknown method, by-position or bad params,
                # bad JSON, a decoded body, the app not started yet) takes the long way
                return await self._handle(body, headers, scope, session)
        else:
            return await self._handle(body, headers, scope, session)
        m = hot.methods[type(req)]
        if m.permission < scope:
            return await self._handle(body, headers, scope, session)

        # The hot path: one well-formed request with an id, for a permitted method, no kaiju
        # headers, not nested. The same steps as `_context` + `_run` (keep them in step),
        # written out because this is what every plain request costs. It reads its state from
        # `hot`: attribute reads on a Service pass through aiomisc's `__getattr__` hook.
        loop = hot.loop
        now = hot.clock()
        cid = _cid_prefix + str(next(_cid_counter))  # new_correlation_id(), inline
        ctx = RequestContext(cid, now + hot.default_time, scope, None, headers, m.name, now, _current_task(loop))
        coro = m.func(*_astuple(req.params)) if m.kw_names is None else m._call(req.params)
        token = _current.set(ctx)
        inflight = hot.inflight
        inflight[ctx] = None
        slots = hot.slots
        if slots.watchdog is None:
            slots.watchdog = loop.call_at(now + self._tick, self._watch)
        try:
            if slots.free > 0:
                slots.free -= 1
            else:
                await slots.acquire(coro)
            try:
                try:
                    result = await coro
                except (E.RPCError, asyncio.CancelledError):
                    raise
                except Exception as exc:
                    result = await self._recover(ctx, m, exc, msgspec.structs.asdict(req.params), False, 0)
            finally:
                if slots.waiters:
                    slots.release()
                else:
                    slots.free += 1
            if ctx.expired:  # the method swallowed the cancellation
                ctx.task.uncancel()
                raise E.RequestTimeout(data={"deadline": ctx.deadline})
        except asyncio.CancelledError:
            if not ctx.expired:
                raise
            ctx.task.uncancel()
            error = E.RequestTimeout(data={"deadline": ctx.deadline}).to_dict()
            return hot.enc(ErrorResponse(id=req.id, error=error)), {CORRELATION_ID: cid}
        except E.RPCError as exc:
            return hot.enc(ErrorResponse(id=req.id, error=exc.to_dict(self._debug))), {CORRELATION_ID: cid}
        finally:
            del inflight[ctx]
            _current.reset(token)
        # a method that logged the caller in put a session on the context: answer its id
        out = {CORRELATION_ID: cid} if ctx.session is None else {CORRELATION_ID: cid, SESSION_ID: ctx.session.id}
        try:
            return hot.enc(Response(req.id, result)), out
        except (TypeError, ValueError) as exc:
            return hot.enc(ErrorResponse(id=req.id, error=self._unencodable(exc))), out

    async def _handle(self, body: Any, headers: Any, scope: Scope, session: Session | None) -> tuple[bytes | None, dict]:
        """`handle` for everything off the hot path: batches, notifications, headers, errors, nested calls."""
        if not self._app_ready:
            await self._wait_app_ready()
        if type(body) is str:
            body = body.encode()
        if headers:
            try:
                h = parse_headers(headers, self.max_retries)
            except E.InvalidRequest as exc:
                return self._refuse(body, exc.to_dict()), {CORRELATION_ID: new_correlation_id()}
        else:
            h = _NO_HEADERS
        if session is not None:
            scope = session.scope
        ctx = self._context(h, scope, session, headers)
        out_headers = {CORRELATION_ID: ctx.correlation_id}
        stored = None  # the session the store loaded, to finish after the request
        if session is None and self._names_session(h):
            answer_sid, error = await self._find_session(ctx, h)
            if answer_sid is not None:
                out_headers[SESSION_ID] = answer_sid
            if error is not None:
                return self._refuse(body, error.to_dict(self._debug)), out_headers
            scope, session = ctx.scope, ctx.session
            if answer_sid:
                stored = session
        answer = await self._serve(ctx, body, h, scope, session)
        if ctx.session is not session:  # the method logged the caller in or out
            out_headers[SESSION_ID] = "" if ctx.session is None else ctx.session.id
        elif stored is not None:
            try:
                await self.sessions.finish_session(stored)
            except Exception as exc:  # the answer stands; the session keeps its previous data
                self.logger.error("session save failed", exc_info=exc)
        return answer, out_headers

    async def _serve(
        self, ctx: RequestContext, body: Any, h: RequestHeaders, scope: Scope, session: Session | None
    ) -> bytes | None:
        """The rest of `_handle` once the caller is known: decode, run, encode."""
        raw = type(body) in _BYTES
        if raw:
            try:
                req = _decode_request(body)
            except (msgspec.ValidationError, msgspec.DecodeError):
                try:
                    body = _decode_any(body) if bytes(body).lstrip()[:1] != b"[" else _decode_batch(body)
                except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                    return self._enc(ErrorResponse(id=None, error=E.JSONParseError(f"Parse error: {exc}").to_dict()))
                if type(body) is list:
                    return await self._batch(ctx, body, True, h)
                return await self._single_slow(ctx, body, h)
            if req.id is UNSET:
                self._notify(ctx, req, True, h)
                return None
            try:
                m = self._methods.get(req.method)
                if m is None or m.permission < scope:
                    m = self._resolve(req.method, scope, session)
                result = await self._run(ctx, m, req.params, True, h.retries)
            except E.RPCError as exc:
                return self._enc(ErrorResponse(id=req.id, error=exc.to_dict(self._debug)))
            try:
                return self._enc(Response(id=req.id, result=result))
            except (TypeError, ValueError) as exc:
                return self._enc(ErrorResponse(id=req.id, error=self._unencodable(exc)))
        if type(body) in (list, tuple):
            return await self._batch(ctx, list(body), False, h)
        return await self._single_slow(ctx, body, h)


class _HotPath:
    """What `RPCServer.handle` reads per request, kept in slots (see `_build_hot_decoder`)."""

    __slots__ = ("decode", "methods", "loop", "clock", "default_time", "inflight", "slots", "enc")

    def __init__(self) -> None:
        self.decode: Any = _no_hot_path
        self.methods: dict[type, Method] = {}


def _request_id(obj: Any) -> Any:
    """The id of a request (decoded) when it has a valid one, else None."""
    rid = obj.get("id") if type(obj) is dict else None
    return rid if type(rid) in (int, float, str) else None


def _no_hot_path(body: bytes) -> Any:
    raise msgspec.ValidationError("no hot path")


def _not_started() -> float:
    raise RuntimeError("RPCServer is not started: start() it (or run it in an entrypoint) before calling")


def _enc_hook(obj: Any) -> Any:
    if isinstance(obj, (set, frozenset)):
        return list(obj)
    raise TypeError(f"cannot encode {type(obj).__name__}")
