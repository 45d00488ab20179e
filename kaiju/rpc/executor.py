"""Executor: where every RPC method runs, under a request context, within slots and deadlines.

It owns what the requests of one `RPCServer` share:

- the slots of `max_parallel_tasks` (`Slots`) and the line of `max_queue` in front of them,
  shared by requests and notifications; past it, new work is refused (`Overloaded`; a
  notification is dropped and counted); a nested call runs under its caller's slot;
- the requests in flight (`stop()` waits for them, `rpc.tasks` lists them);
- one deadline tick for all requests whose deadline is at least `threshold` away: it
  cancels those whose deadline has passed, so a request needs no timer of its own; a
  nearer deadline gets its own `asyncio.timeout_at`;
- retries of retryable failures (the RPC-Retries header);
- notifications, which run in the background.

`run` is the only place a method is awaited, whoever asked: a request from a transport,
a batch item, a nested call, a task. It runs in the caller's own task: no task per call.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Coroutine
from typing import Any

from msgspec.structs import astuple

from kaiju.rpc import errors as E
from kaiju.rpc.access import Scope, Session
from kaiju.rpc.context import RequestContext, correlation_ids, current_var, new_correlation_id
from kaiju.rpc.methods import Method
from kaiju.rpc.protocol import CORRELATION_ID, NO_HEADERS, SESSION_ID, ErrorResponse, RequestHeaders, Response
from kaiju.rpc.slots import Slots

__all__ = ["WAITING", "Executor"]

# The value of a request in `Executor.inflight` while it waits for a slot (else None).
WAITING = True

try:  # Python 3.11's asyncio.current_task() is Python code around this dict: read it directly
    from asyncio.tasks import _current_tasks

    _current_task = _current_tasks.get
except ImportError:  # pragma: no cover
    _current_task = asyncio.current_task

_current = current_var


def _overloaded() -> E.Overloaded:
    return E.Overloaded("Overloaded: every slot is taken and the line for one is full; try again later")


class Executor:
    """Runs methods for one RPCServer; made in the server's `start()`, inside the running loop.

    `default_time` / `max_time`: seconds a request may run without / with a Timeout or
    Deadline header; `threshold`: time left from which the shared tick watches a deadline;
    `logger`: a `KaijuLogger` (the server's), for methods that fail; `debug`: answers carry
    the method's exception and traceback; `max_queue`: requests and notifications that may
    wait for a slot (more are refused).
    """

    __slots__ = (
        "loop", "clock", "slots", "inflight", "background", "default_time", "max_time", "threshold", "tick",
        "logger", "debug", "dropped", "_watchdog", "observe",
    )

    def __init__(
        self, *, max_parallel: int, default_time: float, max_time: float, threshold: float, logger: Any,
        debug: bool = False, max_queue: int = 1 << 62,
    ):
        self.loop = loop = asyncio.get_running_loop()
        # the default loop's clock is time.monotonic: calling it directly skips a Python-level method
        self.clock = time.monotonic if type(loop).time is asyncio.BaseEventLoop.time else loop.time
        self.slots = Slots(max_parallel, max_queue)
        self.dropped = 0  # notifications refused because the line was full
        self.inflight: dict[RequestContext, bool | None] = {}  # value: WAITING for a slot, else None
        self.background: set[asyncio.Task] = set()
        self.default_time = default_time
        self.max_time = max_time
        self.threshold = threshold
        self.tick = max(0.05, min(1.0, threshold / 10))
        self.logger = logger
        self.debug = debug
        self._watchdog: asyncio.TimerHandle | None = None
        # called as observe(ctx, method, params, result, error, seconds) when a method has run
        # (metrics, request logs; see `add_observer`); None costs one test per request
        self.observe: Any = None

    # -- contexts -----------------------------------------------------------

    def context(
        self, h: RequestHeaders, scope: Scope, session: Session | None, headers: Any, transport: str = "internal",
        client: str | None = None,
    ) -> RequestContext:
        """A new request's context: its deadline from the Timeout / Deadline headers (the earlier
        wins; at most `max_time`), never later than a caller's when nested; the caller's
        correlation id when nested and none is given."""
        parent = _current.get()
        now = self.clock()
        if h is NO_HEADERS:
            loop_deadline = now + self.default_time
            cid = None
        else:
            timeout = min(h.timeout, self.max_time) if h.timeout else self.default_time
            loop_deadline = now + timeout
            if h.deadline is not None:
                by_deadline = now + min(h.deadline - time.time(), self.max_time)
                loop_deadline = min(loop_deadline, by_deadline) if h.timeout else by_deadline
            cid = h.correlation_id
        takes_slot = True
        if parent is not None:
            if parent.loop_deadline < loop_deadline:
                loop_deadline = parent.loop_deadline  # a nested call never outlives its caller
            cid = cid or parent.correlation_id
            client = client or parent.client
            # a nested call runs under its caller's slot (no deadlock); a context set outside the
            # dispatcher (request_context(): a task's function) holds none
            takes_slot = parent.method is None
        ctx = RequestContext(
            cid or new_correlation_id(), loop_deadline, scope, session, headers, None, now, transport=transport, client=client
        )
        ctx.takes_slot = takes_slot
        return ctx

    def plain_context(
        self, scope: Scope, headers: Any, request_id: Any, transport: str = "internal", correlation_id: str | None = None,
        client: str | None = None,
    ) -> RequestContext:
        """`context` for a request with no kaiju header but its Correlation-Id, and no caller:
        the default deadline."""
        now = self.clock()
        return RequestContext(
            correlation_id or next(correlation_ids), now + self.default_time, scope, None, headers, None, now, None, False,
            request_id, True, transport, client,
        )

    # -- running ------------------------------------------------------------

    async def run(self, ctx: RequestContext, m: Method, params: Any, retries: int = 0, encode: Any = None) -> Any:
        """Run method `m` with `params` (from `m.validate`) under `ctx`; return its result.

        Takes a slot unless nested, is listed in flight, sees `ctx` as `current()`. Raises
        RequestTimeout when the deadline passes first, the method's own RPCError, or
        InternalError for any other exception (after the retries `retries` allows).

        With `encode` (the server's JSON encoder), returns the JSON-RPC response to
        `ctx.request_id` and its headers instead, and answers an RPCError rather than raising
        it: the plain path of `RPCServer.handle`, with no more coroutines between the
        transport and the method than the method's own.
        """
        coro = m.func(*astuple(params)) if m.plain else m.invoke(params)
        take_slot = ctx.takes_slot
        ctx.method = m.name
        ctx.task = task = _current_task(self.loop)
        now = ctx.started
        if not now:  # a batch item: its clock starts now
            ctx.started = now = self.clock()
        token = _current.set(ctx)
        inflight = self.inflight
        inflight[ctx] = None
        try:
            if ctx.loop_deadline - now < self.threshold:
                result = await self._run_timed(ctx, m, coro, params, retries, take_slot, now)
            else:
                if self._watchdog is None:
                    self._watchdog = self.loop.call_at(now + self.tick, self._watch)
                slots = self.slots
                try:
                    if take_slot:
                        if slots.free > 0:
                            slots.free -= 1
                        elif slots.full:
                            coro.close()
                            raise _overloaded()
                        else:
                            inflight[ctx] = WAITING  # for the metrics: callers waiting for a slot
                            await slots.acquire(coro)
                            inflight[ctx] = None
                    try:
                        try:
                            result = await coro
                        except (E.RPCError, asyncio.CancelledError):
                            raise
                        except Exception as exc:
                            result = await self._recover(ctx, m, exc, params, retries)
                    finally:
                        if take_slot:
                            if slots.waiters:
                                slots.release()
                            else:
                                slots.free += 1
                except asyncio.CancelledError:
                    if ctx.expired:
                        task.uncancel()
                        raise E.RequestTimeout(data={"deadline": ctx.deadline}) from None
                    if not task.cancelling():
                        raise self._stray_cancel(m.name) from None
                    raise
                if ctx.expired:  # the method swallowed the cancellation
                    task.uncancel()
                    raise E.RequestTimeout(data={"deadline": ctx.deadline})
            if self.observe is not None:
                self.observe(ctx, m, params, result, None, self.clock() - now)
            if encode is None:
                return result
            out = {CORRELATION_ID: ctx.correlation_id}
            if ctx.session is not None:  # the method logged the caller in
                out[SESSION_ID] = ctx.session.id
            try:
                return encode(Response(ctx.request_id, result)), out
            except (TypeError, ValueError, RecursionError) as exc:
                return encode(ErrorResponse(id=ctx.request_id, error=self.unencodable(exc, m.name))), out
        except E.RPCError as exc:
            if self.observe is not None:
                self.observe(ctx, m, params, None, exc, self.clock() - now)
            if encode is None:
                raise
            return encode(ErrorResponse(id=ctx.request_id, error=exc.to_dict(self.debug))), {CORRELATION_ID: ctx.correlation_id}
        finally:
            del inflight[ctx]
            _current.reset(token)

    async def _run_timed(
        self, ctx: RequestContext, m: Method, coro: Coroutine, params: Any, retries: int, take_slot: bool, now: float
    ) -> Any:
        """`run` for a deadline too near for the shared tick: one `asyncio.timeout_at`."""
        ctx.expired = None
        slots = self.slots
        if ctx.loop_deadline <= now:
            coro.close()
            raise E.RequestTimeout("Request timeout: the deadline has passed", data={"deadline": ctx.deadline})
        try:
            async with asyncio.timeout_at(ctx.loop_deadline):
                if take_slot:
                    if slots.full:
                        coro.close()
                        raise _overloaded()
                    if slots.free <= 0:
                        self.inflight[ctx] = WAITING
                    await slots.acquire(coro)
                    self.inflight[ctx] = None
                try:
                    try:
                        return await coro
                    except (E.RPCError, asyncio.CancelledError):
                        raise
                    except Exception as exc:
                        return await self._recover(ctx, m, exc, params, retries)
                finally:
                    if take_slot:
                        slots.release()
        except TimeoutError:
            raise E.RequestTimeout(data={"deadline": ctx.deadline}) from None
        except asyncio.CancelledError:
            task = _current_task(self.loop)
            if ctx.expired:  # expired by `expire`
                task.uncancel()
                raise E.RequestTimeout("Request timeout: the server is stopping", data={"deadline": ctx.deadline}) from None
            if not task.cancelling():
                raise self._stray_cancel(m.name) from None
            raise

    async def _recover(self, ctx: RequestContext, m: Method, exc: Exception, params: Any, retries: int) -> Any:
        """After the method raised `exc`: retry it (retryable errors only) or raise InternalError."""
        attempt = 0
        while isinstance(exc, E.RETRYABLE) and attempt < retries and ctx.loop_deadline - self.loop.time() > 0:
            attempt += 1
            await asyncio.sleep(min(0.01 * 2**attempt, 1.0, max(0.0, ctx.loop_deadline - self.loop.time())))
            try:
                return await m.invoke(params)
            except (E.RPCError, asyncio.CancelledError):
                raise
            except Exception as again:
                exc = again
        self.logger.error("RPC method failed", method=m.name, exc_info=exc)
        raise E.InternalError(data={"method": m.name}, base_exc=exc) from exc

    def _stray_cancel(self, method: str | None) -> E.InternalError:
        """The error for a CancelledError that reached a request nobody cancelled: the method
        (or a session lookup) awaited work that was cancelled elsewhere. Logged once: it is a
        bug to find, and the client gets an answer instead of a closed connection."""
        self.logger.error("RPC request ended by a cancellation it did not ask for", method=method)
        return E.InternalError("Internal error: the request was cancelled", data={"method": method} if method else None)

    def unencodable(self, exc: Exception, method: str | None = None) -> dict[str, Any]:
        """The error object for a result that cannot be encoded as JSON (logged: a method's bug)."""
        self.logger.error("RPC result cannot be encoded", method=method, exc_info=exc)
        data = {"method": method} if method else None
        return E.InternalError("Internal error: the result cannot be encoded", data=data, base_exc=exc).to_dict(self.debug)

    async def bounded(self, ctx: RequestContext, work: Coroutine[Any, Any, Any]) -> Any:
        """Await `work` done for `ctx` before its method runs (a session lookup): in flight, so
        `stop()` waits for it, and bounded by the deadline (RequestTimeout) -- by the shared
        tick, like a method, so a lookup costs no timer of its own."""
        ctx.task = task = _current_task(self.loop)
        now = self.clock()
        self.inflight[ctx] = None
        try:
            if ctx.loop_deadline - now < self.threshold:
                ctx.expired = None  # too near for the tick: a timer of its own
                async with asyncio.timeout_at(ctx.loop_deadline):
                    return await work
            if self._watchdog is None:
                self._watchdog = self.loop.call_at(now + self.tick, self._watch)
            try:
                return await work
            except asyncio.CancelledError:
                if not ctx.expired:
                    if not task.cancelling():
                        raise self._stray_cancel(None) from None
                    raise
                task.uncancel()
                raise TimeoutError from None
        except TimeoutError:
            raise E.RequestTimeout("Request timeout: the session lookup took too long", data={"deadline": ctx.deadline}) from None
        finally:
            del self.inflight[ctx]
            ctx.task = None
            ctx.expired = False
            ctx.started = self.clock()  # the method's time starts now

    def add_observer(self, observer: Any) -> None:
        """Call `observer(ctx, method, params, result, error, seconds)` after each method has run
        (`error` the RPCError answered, else None) or was refused its params (`seconds` None),
        after the observers added before."""
        before = self.observe
        if before is None:
            self.observe = observer
        else:
            def both(*args: Any) -> None:
                before(*args)
                observer(*args)

            self.observe = both

    def _watch(self) -> None:
        """The shared deadline tick: cancel the requests whose deadline has passed."""
        now = self.loop.time()
        for ctx in list(self.inflight):
            if ctx.expired is False and ctx.loop_deadline <= now and ctx.task is not None:
                ctx.expired = True
                ctx.task.cancel()
        self._watchdog = self.loop.call_at(now + self.tick, self._watch) if self.inflight else None

    def spawn(self, coro: Coroutine[Any, Any, None]) -> bool:
        """Run `coro` (a notification) in the background, kept until done so `stop()` waits for it.

        When the line in front of the slots is full, drop it instead (closed, counted in
        `dropped`) and return False. Until its task starts it holds a place in line, so a
        burst of notifications cannot pile up tasks past the limit before any of them runs.
        """
        slots = self.slots
        if slots.full:
            coro.close()
            self.dropped += 1
            return False
        slots.reserve()
        task = self.loop.create_task(self._in_background(coro))
        self.background.add(task)
        task.add_done_callback(self.background.discard)
        return True

    async def _in_background(self, coro: Coroutine[Any, Any, None]) -> None:
        # (a task cancelled before it starts, by stop(), keeps its place: the executor is done then)
        self.slots.unreserve()  # started: from here `run` takes a slot or waits in line like any request
        await coro

    # -- lifetime and status ---------------------------------------------------

    async def stop(self, timeout: float) -> None:
        """Wait up to `timeout` seconds for the requests in flight and in the background, then
        cancel what is left."""
        deadline = time.monotonic() + timeout
        try:
            while (self.inflight or self.background) and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
        finally:  # also when the shutdown budget runs out first and this stop is cancelled
            for task in list(self.background):
                task.cancel()
            for ctx in list(self.inflight):
                if ctx.task is not None and not ctx.task.done():
                    ctx.task.cancel()
            if self._watchdog is not None:
                self._watchdog.cancel()
                self._watchdog = None

    def expire(self, tasks: Any) -> set[asyncio.Task]:
        """Time out now the requests running in `tasks` (a transport's grace period on stop is
        over): each is cancelled and answers RequestTimeout, as at its deadline. Returns the
        tasks that ran one (a task of `tasks` that is not running a method is left alone)."""
        hit: set[asyncio.Task] = set()
        for ctx in list(self.inflight):
            task = ctx.task
            if task is not None and task in tasks and not task.done():
                ctx.expired = True
                hit.add(task)
        for task in hit:
            task.cancel()  # once per task: a nested call shares its caller's
        return hit

    def in_flight(self) -> list[dict[str, Any]]:
        """The requests in flight, longest running first: method, correlation id, seconds elapsed and left."""
        now = self.loop.time()
        found = (
            {
                "method": c.method,
                "correlation_id": c.correlation_id,
                "elapsed": round(now - c.started, 3),
                "left": round(c.loop_deadline - now, 3) if c.loop_deadline != math.inf else None,
            }
            for c in self.inflight
        )
        return sorted(found, key=lambda d: -d["elapsed"])
