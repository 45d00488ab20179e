"""Running one method under a request context: slots, deadlines, retries, notifications.

Mixed into `RPCServer`. `_run` is the general form of the hot path written out in
`RPCServer.handle` (keep the two in step): validate the params, take a slot unless nested,
be listed in flight, and let the shared deadline tick (`_watch`) cancel the request when its
deadline passes; a deadline nearer than `watchdog_threshold` gets its own
`asyncio.timeout_at` instead (`_run_timed`).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from kaiju.rpc import errors as E
from kaiju.rpc.access import Scope, Session
from kaiju.rpc.context import RequestContext, _current, new_correlation_id
from kaiju.rpc.methods import Method
from kaiju.rpc.protocol import NO_HEADERS, RequestHeaders
from kaiju.rpc.slots import Slots

__all__ = ["Execution"]

try:  # Python 3.11's asyncio.current_task() is Python code around this dict: read it directly
    from asyncio.tasks import _current_tasks

    _current_task = _current_tasks.get
except ImportError:  # pragma: no cover
    _current_task = asyncio.current_task


class Execution:
    """Mixed into RPCServer: how a request's method runs (the server's settings and state are read, not owned)."""

    _loop: asyncio.AbstractEventLoop
    _clock: Any
    _slots: Slots
    _inflight: dict
    _background: set
    _tick: float
    _threshold: float
    _default_time: float
    _max_time: float
    _debug: bool
    _enc: Any
    logger: Any

    def _context(self, h: RequestHeaders, scope: Scope, session: Session | None, headers: Any) -> RequestContext:
        parent = _current.get()
        now = self._clock()
        if h is NO_HEADERS:
            loop_deadline = now + self._default_time
            cid = None
        else:
            timeout = min(h.timeout, self._max_time) if h.timeout else self._default_time
            loop_deadline = now + timeout
            if h.deadline is not None:  # with a Timeout too, the earlier of the two wins
                by_deadline = now + min(h.deadline - time.time(), self._max_time)
                loop_deadline = min(loop_deadline, by_deadline) if h.timeout else by_deadline
            cid = h.correlation_id
        if parent is not None:
            if parent.loop_deadline < loop_deadline:
                loop_deadline = parent.loop_deadline  # a nested call never outlives its caller
            cid = cid or parent.correlation_id
        return RequestContext(cid or new_correlation_id(), loop_deadline, scope, session, headers, None, now)

    async def _run(self, ctx: RequestContext, m: Method, params: Any, raw: bool, retries: int) -> Any:
        """Run method `m` under `ctx` in the current task: validate, take a slot, call, enforce the deadline.

        The common case (a deadline further than `watchdog_threshold`) is written out inline:
        it is the hot path of every request.
        """
        coro = m.call_raw(params) if raw else m.call_params(params)  # raises InvalidParams before any waiting
        loop = self._loop
        # a nested call runs under its caller's slot (no deadlock); a context set outside the
        # dispatcher (request_context(): a task's function) holds none, and has no method
        parent = _current.get()
        take_slot = parent is None or parent.method is None
        ctx.method = m.name
        ctx.task = task = _current_task(loop)
        now = ctx.started
        if not now:  # a batch item: its clock starts now
            ctx.started = now = self._clock()
        token = _current.set(ctx)
        inflight = self._inflight
        inflight[ctx] = None
        try:
            if ctx.loop_deadline - now < self._threshold:
                return await self._run_timed(ctx, m, coro, params, raw, retries, take_slot, now)
            slots = self._slots
            if slots.watchdog is None:
                slots.watchdog = loop.call_at(now + self._tick, self._watch)
            try:
                if take_slot:
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
                        result = await self._recover(ctx, m, exc, params, raw, retries)
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
                raise
            if ctx.expired:  # the method swallowed the cancellation
                task.uncancel()
                raise E.RequestTimeout(data={"deadline": ctx.deadline})
            return result
        finally:
            del inflight[ctx]
            _current.reset(token)

    async def _run_timed(
        self, ctx: RequestContext, m: Method, coro: Any, params: Any, raw: bool, retries: int, take_slot: bool, now: float
    ) -> Any:
        """`_run` for a deadline too near for the shared tick: one `asyncio.timeout_at`."""
        ctx.expired = None
        slots = self._slots
        if ctx.loop_deadline <= now:
            coro.close()
            raise E.RequestTimeout("Request timeout: the deadline has passed", data={"deadline": ctx.deadline})
        try:
            async with asyncio.timeout_at(ctx.loop_deadline):
                if take_slot:
                    await slots.acquire(coro)
                try:
                    try:
                        return await coro
                    except (E.RPCError, asyncio.CancelledError):
                        raise
                    except Exception as exc:
                        return await self._recover(ctx, m, exc, params, raw, retries)
                finally:
                    if take_slot:
                        slots.release()
        except TimeoutError:
            raise E.RequestTimeout(data={"deadline": ctx.deadline}) from None

    async def _recover(self, ctx: RequestContext, m: Method, exc: Exception, params: Any, raw: bool, retries: int) -> Any:
        """After a method raised `exc`: retry it (RPC-Retries, retryable errors only) or raise InternalError."""
        attempt = 0
        while isinstance(exc, E.RETRYABLE) and attempt < retries and ctx.loop_deadline - self._loop.time() > 0:
            attempt += 1
            await asyncio.sleep(min(0.01 * 2**attempt, 1.0, max(0.0, ctx.loop_deadline - self._loop.time())))
            try:
                return await (m.call_raw(params) if raw else m.call_params(params))
            except (E.RPCError, asyncio.CancelledError):
                raise
            except Exception as again:
                exc = again
        raise self._internal(m, exc) from exc

    def _internal(self, m: Method, exc: Exception) -> E.InternalError:
        self.logger.error("RPC method failed", method=m.name, exc_info=exc)
        return E.InternalError(data={"method": m.name}, base_exc=exc)

    def _unencodable(self, exc: Exception) -> dict:
        return E.InternalError("Internal error: the result cannot be encoded", base_exc=exc).to_dict(self._debug)

    def _watch(self) -> None:
        """The shared deadline tick: cancel the requests whose deadline has passed."""
        now = self._loop.time()
        for ctx in list(self._inflight):
            if ctx.expired is False and ctx.loop_deadline <= now and ctx.task is not None:
                ctx.expired = True
                ctx.task.cancel()
        self._slots.watchdog = self._loop.call_at(now + self._tick, self._watch) if self._inflight else None

    def _notify(self, ctx: RequestContext, req: Any, raw: bool, h: RequestHeaders) -> None:
        """Run a notification in the background (kept until done so stop() can wait for it)."""

        async def run() -> None:
            try:
                m = self._resolve(req.method, ctx.scope, ctx.session)
                await self._run(ctx, m, req.params, raw, h.retries)
            except E.RPCError as exc:
                self.logger.info("RPC notification failed", method=req.method, error=exc.type)

        task = self._loop.create_task(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)
