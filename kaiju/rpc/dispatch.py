"""Dispatcher: one JSON-RPC request, from its decoded envelope to its response.

Resolve the method (checking the caller may use it), then call it through the middleware
chain (`kaiju.rpc.middleware.Chain`; without middleware, straight through the `Executor`),
which validates the params against its signature and runs it, and shape the answer.
Single requests, batch items, notifications and in-process calls all take this path; so
do refused ones (an unknown method, a request that cannot be read), as a `Refusal` the
chain answers with its error, so that middleware sees every request.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from msgspec import UNSET

from kaiju.rpc import errors as E
from kaiju.rpc.context import RequestContext
from kaiju.rpc.executor import Executor
from kaiju.rpc.methods import Method
from kaiju.rpc.middleware import INVALID, UNKNOWN, Chain, Refusal
from kaiju.rpc.protocol import ErrorResponse, Response, read_request
from kaiju.rpc.table import MethodTable

__all__ = ["Dispatcher"]

Run = Callable[[RequestContext, Method, Any, int], Coroutine[Any, Any, Any]]


class Dispatcher:
    """Runs requests against a `MethodTable` through an `Executor` (whose `debug` flag decides
    whether errors carry the method's exception and traceback). `read` reads one request
    (`protocol.read_request`, or `read_kaiju_tools_request` to accept kaiju-tools' too).

    `run(ctx, m, params, retries)` calls a method with validated params, `run_raw` with
    params as a request gave them: through the middleware chain `use` installs, or straight
    to `Executor.run` when there is none."""

    __slots__ = ("table", "executor", "read", "run", "run_raw")

    def __init__(self, table: MethodTable, executor: Executor, read: Callable[[Any], Any] = read_request):
        self.table = table
        self.executor = executor
        self.read = read
        self.run: Run = executor.run
        self.run_raw: Run = self._validate_and_run

    def use(self, chain: Chain | None) -> None:
        """Call methods through `chain` from now on (None: no middleware)."""
        if chain is None:
            self.run, self.run_raw = self.executor.run, self._validate_and_run
        else:
            self.run, self.run_raw = chain.run, chain.run_raw

    def _validate_and_run(
        self, ctx: RequestContext, m: Method, params: Any, retries: int = 0
    ) -> Coroutine[Any, Any, Any]:
        return self.executor.run(ctx, m, m.validate(params), retries)

    def target(self, ctx: RequestContext, name: Any) -> Method:
        """The method `name` if the caller of `ctx` may use it, else the `Refusal` answering MethodNotFound."""
        try:
            return self.table.resolve(name, ctx.scope, ctx.session)
        except E.MethodNotFound as exc:
            return Refusal(UNKNOWN, exc)

    async def call(self, ctx: RequestContext, name: Any, params: Any, retries: int = 0) -> Any:
        """Run method `name` with `params` (raw JSON, decoded, or UNSET) under `ctx`; return its
        result. Raises MethodNotFound, InvalidParams, RequestTimeout, the method's own
        RPCError, or InternalError."""
        return await self.run_raw(ctx, self.target(ctx, name), params, retries)

    async def unreadable(self, ctx: RequestContext, exc: E.RPCError) -> ErrorResponse:
        """The answer to a request that cannot be read (`exc`, as `read` raised it), once the
        middleware chain has seen it (as `INVALID`); its id is the one `exc` carries (UNSET:
        a notification)."""
        req_id = getattr(exc, "request_id", None)
        ctx.request_id = None if req_id is UNSET else req_id
        try:
            await self.run_raw(ctx, Refusal(INVALID, exc), UNSET, 0)
        except E.RPCError as raised:
            exc = raised
        return ErrorResponse(id=req_id, error=exc.to_dict())

    async def request(self, ctx: RequestContext, req: Any, retries: int = 0) -> Response | ErrorResponse:
        """The response to one request (a `read_request` result; a notification's has id None)."""
        ctx.request_id = req_id = None if req.id is UNSET else req.id
        try:  # `call`, inline: one coroutine less
            result = await self.run_raw(ctx, self.target(ctx, req.method), req.params, retries)
        except E.RPCError as exc:
            if req.id is UNSET and type(exc) is E.Overloaded:
                self.executor.dropped += 1  # a notification of a batch: nobody hears of it but the count
            return ErrorResponse(id=req_id, error=exc.to_dict(self.executor.debug))
        return Response(req_id, result)

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

    async def one(
        self, ctx: RequestContext, item: Any, retries: int = 0, wait: bool = False
    ) -> Response | ErrorResponse | None:
        """Answer one request given as JSON or decoded: its response, an error response for
        something that is not a request, or None for a notification (run in the background).
        With `wait`, a notification runs in this task and is answered like a request (id None)."""
        try:
            req = self.read(item)
        except E.RPCError as exc:
            refused = await self.unreadable(ctx, exc)
            if refused.id is UNSET:  # a notification with params that do not decode
                if wait:
                    return ErrorResponse(id=None, error=refused.error)
                self.executor.logger.info("RPC notification refused", error=exc.type, reason=exc.data.get("reason"))
                return None
            return refused
        if req.id is UNSET and not wait:
            self.notify(ctx, req, retries)
            return None
        return await self.request(ctx, req, retries)
