"""Dispatcher: one JSON-RPC request, from its decoded envelope to its response.

Resolve the method (checking the caller may use it), validate the params against its
signature, run it through the `Executor`, and shape the answer. Single requests, batch
items, notifications and in-process calls all take this path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from msgspec import UNSET

from kaiju.rpc import errors as E
from kaiju.rpc.context import RequestContext
from kaiju.rpc.executor import Executor
from kaiju.rpc.protocol import ErrorResponse, Response, read_request
from kaiju.rpc.table import MethodTable

__all__ = ["Dispatcher"]


class Dispatcher:
    """Runs requests against a `MethodTable` through an `Executor` (whose `debug` flag decides
    whether errors carry the method's exception and traceback). `read` reads one request
    (`protocol.read_request`, or `read_kaiju_tools_request` to accept kaiju-tools' too)."""

    __slots__ = ("table", "executor", "read")

    def __init__(self, table: MethodTable, executor: Executor, read: Callable[[Any], Any] = read_request):
        self.table = table
        self.executor = executor
        self.read = read

    async def call(self, ctx: RequestContext, name: Any, params: Any, retries: int = 0) -> Any:
        """Run method `name` with `params` (raw JSON, decoded, or UNSET) under `ctx`; return its
        result. Raises MethodNotFound, InvalidParams, RequestTimeout, the method's own
        RPCError, or InternalError."""
        m = self.table.resolve(name, ctx.scope, ctx.session)
        return await self.executor.run(ctx, m, self._validate(ctx, m, params), retries)

    async def request(self, ctx: RequestContext, req: Any, retries: int = 0) -> Response | ErrorResponse:
        """The response to one request (a `read_request` result with an id)."""
        req_id = None if req.id is UNSET else req.id
        try:
            m = self.table.resolve(req.method, ctx.scope, ctx.session)  # `call`, inline: one coroutine less
            result = await self.executor.run(ctx, m, self._validate(ctx, m, req.params), retries)
        except E.RPCError as exc:
            if req.id is UNSET and type(exc) is E.Overloaded:
                self.executor.dropped += 1  # a notification of a batch: nobody hears of it but the count
            return ErrorResponse(id=req_id, error=exc.to_dict(self.executor.debug))
        return Response(req_id, result)

    def _validate(self, ctx: RequestContext, m: Any, params: Any) -> Any:
        """`m.validate(params)`; params refused are an outcome of the method for the executor's
        observer (metrics, request logs), though the method never ran."""
        try:
            return m.validate(params)
        except E.RPCError as exc:
            if self.executor.observe is not None:
                self.executor.observe(ctx, m, params, None, exc, None)
            raise

    def notify(self, ctx: RequestContext, req: Any, retries: int = 0) -> None:
        """Run a notification in the background; its failure is logged, never answered. When
        the line for slots is full it is dropped at once (counted in `Executor.dropped`)."""
        self.executor.spawn(self._notification(ctx, req, retries))

    async def _notification(self, ctx: RequestContext, req: Any, retries: int) -> None:
        try:
            await self.call(ctx, req.method, req.params, retries)
        except E.RPCError as exc:
            self.executor.logger.info("RPC notification failed", method=req.method, error=exc.type)
        except Exception as exc:  # a fault of the dispatcher itself: logged, never left in the task
            self.executor.logger.error("RPC notification failed", method=req.method, exc_info=exc)

    async def one(self, ctx: RequestContext, item: Any, retries: int = 0) -> Response | ErrorResponse | None:
        """Answer one request given as JSON or decoded: its response, an error response for
        something that is not a request, or None for a notification (run in the background)."""
        try:
            req = self.read(item)
        except E.RPCError as exc:
            req_id = getattr(exc, "request_id", None)
            if req_id is UNSET:  # a notification with params that do not decode
                self.executor.logger.info("RPC notification refused", error=exc.type, reason=exc.data.get("reason"))
                return None
            return ErrorResponse(id=req_id, error=exc.to_dict())
        if req.id is UNSET:
            self.notify(ctx, req, retries)
            return None
        return await self.request(ctx, req, retries)
