"""Executor: where every RPC method runs, under a request context, within slots and deadlines.

It owns what the requests of one `RPCServer` share:

- the slots of `max_parallel_tasks` (`Slots`) and the line of `max_queue` in front of them,
  shared by requests and notifications; past it, new work is refused (`Overloaded`; a
  notification is dropped and counted); a nested call runs under its caller's slot;
- the requests in flight (`stop()` waits for them, `rpc.tasks` lists them);
- the deadlines: a request whose deadline is at least `threshold` away is watched by one
  shared tick (no timer of its own), a nearer one by a timer of its own; either way, when
  it passes the request's task is cancelled and the request answers RequestTimeout;
- retries of retryable failures (the RPC-Retries header);
- notifications, which run in the background.

`run` is the only place a method is awaited, whoever asked: a request from a transport,
a batch item, a nested call, a task. It runs in the caller's own task: no task per call.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import time
from collections.abc import Coroutine, Iterator
from typing import Any

from msgspec.structs import astuple

from kaiju.rpc import errors as E
from kaiju.rpc.access import Scope, Session
from kaiju.rpc.context import RequestContext, correlation_ids, current_var, new_correlation_id, note_failure
from kaiju.rpc.methods import Method
from kaiju.rpc.protocol import NO_HEADERS, RequestHeaders
from kaiju.rpc.slots import Slots

__all__ = ["WAITING", "Executor"]

# The value of a request in `Executor.inflight` while it waits for a slot (else None).
WAITING = True

_current = current_var


def _uncancel(loop: asyncio.AbstractEventLoop) -> None:
    """Take back the cancellation the deadline asked of the running task (it answers RequestTimeout)."""
    task = asyncio.current_task(loop)
    if task is not None:
        task.uncancel()


def _stray(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether a CancelledError reached the running task although nobody cancelled the task:
    it awaited something that was cancelled elsewhere (shared work)."""
    task = asyncio.current_task(loop)
    return task is not None and not task.cancelling()


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
        "loop",
        "clock",
        "slots",
        "inflight",
        "background",
        "default_time",
        "max_time",
        "threshold",
        "tick",
        "logger",
        "debug",
        "dropped",
        "_watchdog",
    )

    def __init__(
        self,
        *,
        max_parallel: int,
        default_time: float,
        max_time: float,
        threshold: float,
        logger: Any,
        debug: bool = False,
        max_queue: int = 1 << 62,
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

    # -- contexts -----------------------------------------------------------

    def context(
        self,
        h: RequestHeaders,
        scope: Scope,
        session: Session | None,
        headers: Any,
        transport: str = "internal",
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
            correlation_id=cid or new_correlation_id(), loop_deadline=loop_deadline, scope=scope, started=now
        )
        ctx.session, ctx.headers, ctx.takes_slot, ctx.transport, ctx.client = (
            session,
            headers,
            takes_slot,
            transport,
            client,
        )
        return ctx

    def plain_context(
        self,
        scope: Scope,
        headers: Any,
        request_id: Any,
        transport: str = "internal",
        correlation_id: str | None = None,
        client: str | None = None,
    ) -> RequestContext:
        """`context` for a request with no kaiju header but its Correlation-Id, and no caller:
        the default deadline."""
        now = self.clock()
        return RequestContext(
            correlation_id=correlation_id or next(correlation_ids),
            loop_deadline=now + self.default_time,
            scope=scope,
            headers=headers,
            started=now,
            request_id=request_id,
            transport=transport,
            client=client,
        )

    # -- running ------------------------------------------------------------

    async def run(self, ctx: RequestContext, m: Method, params: Any, retries: int = 0) -> Any:
        """Run method `m` with `params` (from `m.validate`) under `ctx`; return its result.

        Takes a slot unless nested (or is refused Overloaded when the line for one is full),
        is listed in flight, sees `ctx` as `current()`. Raises RequestTimeout when the
        deadline passes first, the method's own RPCError, or InternalError for any other
        exception (after the retries `retries` allows).
        """
        coro = m.func(*astuple(params)) if m.plain else m.invoke(params)
        ctx.method = m.name
        now = ctx.started
        if not now:  # a batch item: its clock starts now
            ctx.started = now = self.clock()
        if ctx.loop_deadline - now >= self.threshold:  # the usual deadline: the shared tick watches it
            timer = None
            if self._watchdog is None:
                self._watchdog = self.loop.call_at(now + self.tick, self._watch)
        else:
            timer = self._watch_deadline(ctx, now, coro)
        token = _current.set(ctx)
        inflight = self.inflight
        inflight[ctx] = None
        try:
            take_slot, slots = ctx.takes_slot, self.slots
            if take_slot:  # Slots.take and Slots.release, inline on the way of every call
                if slots.free > 0:
                    slots.free -= 1
                else:
                    await self._wait_for_slot(ctx, coro)
            try:
                result = await coro
            except asyncio.CancelledError:
                raise
            except E.RPCError as exc:
                note_failure(exc)
                raise
            except Exception as exc:
                result = await self._recover(ctx, m, exc, params, retries)
            finally:
                if take_slot:
                    if slots.waiters:
                        slots.release()
                    else:
                        slots.free += 1
            if ctx.expired:  # the method swallowed the cancellation
                raise self._timed_out(ctx)
            return result
        except asyncio.CancelledError:
            if ctx.expired:
                raise self._timed_out(ctx) from None
            if _stray(self.loop):
                raise self._stray_cancel(m.name) from None
            raise
        finally:
            if timer is not None:
                timer.cancel()
            del inflight[ctx]
            _current.reset(token)

    async def _wait_for_slot(self, ctx: RequestContext, coro: Coroutine) -> None:
        """Wait in line for a slot; refused Overloaded at once when the line is full."""
        if self.slots.full:
            coro.close()
            raise _overloaded()
        self.inflight[ctx] = WAITING  # for the metrics: callers waiting for a slot
        await self.slots.acquire(coro)
        self.inflight[ctx] = None

    def _timed_out(self, ctx: RequestContext) -> E.RequestTimeout:
        """The deadline of `ctx` cancelled its task: take the cancellation back, answer RequestTimeout."""
        _uncancel(self.loop)
        return E.RequestTimeout(data={"deadline": ctx.deadline})

    def _watch_deadline(
        self, ctx: RequestContext, now: float, coro: Coroutine | None = None
    ) -> asyncio.TimerHandle | None:
        """Watch `ctx`'s deadline from `now`: by the shared tick when it is at least `threshold`
        away, else by a timer of its own (returned, for the caller to cancel). A deadline
        already passed raises RequestTimeout at once (closing `coro`, not started)."""
        left = ctx.loop_deadline - now
        if left >= self.threshold:
            if self._watchdog is None:
                self._watchdog = self.loop.call_at(now + self.tick, self._watch)
            return None
        if left <= 0:
            if coro is not None:
                coro.close()
            raise E.RequestTimeout("Request timeout: the deadline has passed", data={"deadline": ctx.deadline})
        return self.loop.call_at(ctx.loop_deadline, self._expire, ctx)

    def _expire(self, ctx: RequestContext) -> None:
        """The deadline of `ctx` has passed: cancel its task (once), which answers RequestTimeout."""
        if ctx.expired is False:
            self._expire_all([ctx])

    def _expire_all(self, contexts: list[RequestContext], tasks: Any = None) -> set[asyncio.Task]:
        """Mark `contexts` expired and cancel the tasks running them (once per task: a nested
        call shares its caller's), among `tasks` (default: all of the loop's); a context whose
        task is not found (done already) is left as it is. Returns the tasks cancelled."""
        found = self.running(contexts, tasks)
        for running in found.values():
            for ctx in running:
                ctx.expired = True
        for task in found:
            task.cancel()
        return set(found)

    def running(self, contexts: Any, tasks: Any = None) -> dict[asyncio.Task, list[RequestContext]]:
        """The tasks among `tasks` (default: all of the loop's) running the method (or session
        lookup) of one of `contexts`, with those contexts.

        A call does not record its task (asking asyncio for it costs a Python call per
        request): the task is found when it is wanted, at a deadline or a stop, by walking each
        task's chain of awaits through the coroutines' public attributes (`cr_await`, and the
        locals of `run` and `bounded` frames, which hold their `ctx`).
        """
        wanted = set(contexts)
        found: dict[asyncio.Task, list[RequestContext]] = {}
        for task in asyncio.all_tasks(self.loop) if tasks is None else tasks:
            if task.done():
                continue
            hits = [ctx for ctx in _contexts_awaited(task.get_coro()) if ctx in wanted]
            if hits:
                found[task] = hits
        return found

    async def _recover(self, ctx: RequestContext, m: Method, exc: Exception, params: Any, retries: int) -> Any:
        """After the method raised `exc`: retry it (retryable errors only) or raise InternalError."""
        attempt = 0
        while isinstance(exc, E.RETRYABLE) and attempt < retries and ctx.loop_deadline - self.loop.time() > 0:
            attempt += 1
            await asyncio.sleep(min(0.01 * 2**attempt, 1.0, max(0.0, ctx.loop_deadline - self.loop.time())))
            try:
                return await m.invoke(params)
            except asyncio.CancelledError:
                raise
            except E.RPCError as failed:
                note_failure(failed)
                raise
            except Exception as again:
                exc = again
        self.logger.error("RPC method failed", method=m.name, exc_info=exc)
        note_failure(exc)
        raise E.InternalError(data={"method": m.name}, base_exc=exc) from exc

    def _stray_cancel(self, method: str | None) -> E.InternalError:
        """The error for a CancelledError that reached a request nobody cancelled: the method
        (or a session lookup) awaited work that was cancelled elsewhere. Logged once: it is a
        bug to find, and the client gets an answer instead of a closed connection."""
        self.logger.error("RPC request ended by a cancellation it did not ask for", method=method)
        return E.InternalError("Internal error: the request was cancelled", data={"method": method} if method else None)

    async def bounded(self, ctx: RequestContext, work: Coroutine[Any, Any, Any]) -> Any:
        """Await `work` done for `ctx` before its method runs (a session lookup): in flight, so
        `stop()` waits for it, and bounded by the deadline (RequestTimeout), watched as a
        method's is."""
        try:
            timer = self._watch_deadline(ctx, self.clock(), work)
        except E.RequestTimeout:
            raise E.RequestTimeout(
                "Request timeout: the session lookup took too long", data={"deadline": ctx.deadline}
            ) from None
        self.inflight[ctx] = None
        try:
            return await work
        except asyncio.CancelledError:
            if not ctx.expired:
                if _stray(self.loop):
                    raise self._stray_cancel(None) from None
                raise
            _uncancel(self.loop)
            raise E.RequestTimeout(
                "Request timeout: the session lookup took too long", data={"deadline": ctx.deadline}
            ) from None
        finally:
            if timer is not None:
                timer.cancel()
            del self.inflight[ctx]
            ctx.expired = False
            ctx.started = self.clock()  # the method's time starts now

    def _watch(self) -> None:
        """The shared deadline tick: cancel the requests whose deadline has passed."""
        now = self.loop.time()
        late = [ctx for ctx in self.inflight if ctx.expired is False and ctx.loop_deadline <= now]
        if late:
            self._expire_all(late)
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
            for task in self.running(list(self.inflight)):
                task.cancel()
            if self._watchdog is not None:
                self._watchdog.cancel()
                self._watchdog = None

    def expire(self, tasks: Any) -> set[asyncio.Task]:
        """Time out now the requests running in `tasks` (a transport's grace period on stop is
        over): each is cancelled and answers RequestTimeout, as at its deadline. Returns the
        tasks that ran one (a task of `tasks` that is not running a method is left alone)."""
        found = self.running(list(self.inflight), tasks)
        return self._expire_all([ctx for contexts in found.values() for ctx in contexts], list(found))

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


_AWAITING_CTX = (Executor.run.__code__, Executor.bounded.__code__)  # frames whose local `ctx` is their request's


def _contexts_awaited(coro: Any) -> Iterator[RequestContext]:
    """The request contexts of the `run` / `bounded` frames along a chain of awaits."""
    while coro is not None:
        if getattr(coro, "cr_code", None) in _AWAITING_CTX:
            ctx = inspect.getcoroutinelocals(coro).get("ctx")
            if ctx is not None:
                yield ctx
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
