"""RPC middleware: code wrapped around every call of a method, whoever makes it.

A middleware is `async def mw(call, call_next)`: `call` is the `Call` (method, params,
transport, scope, session, headers, ids); `await call_next(call)` runs the rest of the
chain and the method, and returns its result or raises its RPC error. A middleware may
change `call.params` before passing the call on, return a result of its own without
calling `call_next`, or raise an `RPCError`, which is answered like any other.

    async def audit(call, call_next):
        result = await call_next(call)
        audit_log.info("called", method=call.method, user=call.session and call.session.user_id)
        return result

`RPCServer` compiles its middleware into one `Chain` at start: the first one listed is
the outermost. Every call takes the chain: a request from any transport, a batch item, a
nested call, a task's call, `RPCServer.call`. A server without middleware has no chain:
its calls go straight to `Executor.run`, at no cost.

The chain runs in the request's context (`kaiju.rpc.current()` is the call's), before the
call takes a `max_parallel_tasks` slot and outside its deadline: a middleware that refuses
a call never holds a slot, and one that waits should bound its wait itself.

A request refused before any method was found takes the chain too, so what counts, logs or
traces every call sees it: a call of a method that does not exist (or that the caller may
not see) as `call.method == "<unknown>"`, a request that cannot be read at all as
`"<invalid>"` (never the caller's own string: a label of bounded size). Its target is a
`Refusal`, whose params never validate: `call_next` raises the refusal's error
(MethodNotFound, InvalidRequest, ParseError) and `call.ran` stays false.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

import msgspec

from kaiju.rpc import errors as E
from kaiju.rpc.access import Scope
from kaiju.rpc.context import RequestContext, current_var
from kaiju.rpc.methods import Method, WithExtra

__all__ = ["INVALID", "UNKNOWN", "Call", "CallNext", "Chain", "Middleware", "Refusal", "load_middleware"]

UNKNOWN = "<unknown>"  # what middleware sees as the method of a call of no method the caller may use
INVALID = "<invalid>"  # ... and of a request that is not one (unreadable JSON, no method member)

CallNext = Callable[["Call"], Awaitable[Any]]
Middleware = Callable[["Call", CallNext], Awaitable[Any]]


def _from_context(name: str, doc: str) -> Any:
    """A read-only property of `Call` reading the request context's attribute `name`."""
    return property(lambda call: getattr(call.context, name), doc=doc)


class Call(msgspec.Struct, gc=False):
    """One call of an RPC method as a middleware sees it (a msgspec Struct: made per call, cheaply).

    `context` is the request's `RequestContext`; `target` the `Method` called;
    `given_params` the params as the request (or the last middleware to set them) gave
    them. `params` are the params as a dict of argument names (validated against the
    method's signature when first read: reading them may raise `InvalidParams`); assigning
    `call.params` gives the method other ones (a dict by name or a list by position),
    validated before it runs.
    """

    context: RequestContext
    target: Method
    given_params: Any
    retries: int
    _params: Any  # the params, validated once `_validated`
    _validated: bool

    @property
    def method(self) -> str:
        """The RPC name of the method called (`service.method`)."""
        return self.target.name

    transport = _from_context("transport", 'What brought the call in: "http", "stream", "task" or "internal".')
    scope = _from_context("scope", "The caller's `Scope` (its session's, when it has one).")
    session = _from_context("session", "The caller's `Session`, or None.")
    headers = _from_context("headers", "The request headers as the transport gave them (a mapping, or None).")
    request_id = _from_context(
        "request_id", "The JSON-RPC id of the request (None for a notification or an in-process call)."
    )
    correlation_id = _from_context("correlation_id", "The request's correlation id.")

    @property
    def response_headers(self) -> dict[str, str]:
        """Headers to add to the response (a transport that has headers sends them)."""
        ctx = self.context
        if ctx.response_headers is None:
            ctx.response_headers = {}
        return ctx.response_headers

    @property
    def params(self) -> dict[str, Any]:
        """The params by argument name; raises InvalidParams when they do not fit the method."""
        p = self.validated()
        if type(p) is WithExtra:
            return {**msgspec.structs.asdict(p.params), **p.extra}
        return msgspec.structs.asdict(p)

    @params.setter
    def params(self, value: Any) -> None:
        self.given_params = self._params = value
        self._validated = False

    @property
    def ran(self) -> bool:
        """Whether the params were accepted, so the method was (or will be) run: false for a
        call refused its params (InvalidParams before the method ran)."""
        return self._validated

    def validated(self) -> Any:
        """The params as `Method.validate` returns them (validated once); raises InvalidParams."""
        if not self._validated:
            self._params, self._validated = self.target.validate(self._params), True
        return self._params

    def __repr__(self) -> str:
        return f"<Call {self.method} transport={self.transport}>"


class Refusal(Method):
    """The target of a request refused before any method was found: named `UNKNOWN` or
    `INVALID`, its params never validate (`validate` raises `error`), so the chain's last
    step answers the refusal and no method runs."""

    __slots__ = ("error",)

    def __init__(self, name: str, error: E.RPCError):  # no function to bind: nothing of Method's init applies
        self.name = name
        self.service = ""
        self.permission = Scope.SYSTEM
        self.error = error

    def validate(self, params: Any) -> Any:
        """Raise the refusal's error: there is nothing to validate against."""
        raise self.error


Run = Callable[[RequestContext, Method, Any, int], Coroutine[Any, Any, Any]]


class Chain:
    """Middleware compiled around `run` (`Executor.run`): `chain.run(ctx, m, params, retries)`
    with validated params, `chain.run_raw(...)` with params still to validate (inside the
    chain, so that middleware sees the InvalidParams of a refused call). A middleware's own
    exception (not an RPCError) is logged and answered InternalError."""

    __slots__ = ("first", "logger")

    def __init__(self, middleware: Sequence[Middleware], run: Run, logger: Any):
        def terminal(call: Call) -> Coroutine[Any, Any, Any]:
            params = call._params if call._validated else call.validated()
            return run(call.context, call.target, params, call.retries)

        handler: CallNext = terminal
        for mw in reversed(middleware):
            handler = _link(mw, handler)
        self.first = handler
        self.logger = logger

    def run(self, ctx: RequestContext, m: Method, params: Any, retries: int = 0) -> Coroutine[Any, Any, Any]:
        """Call `m` with validated `params` through the chain."""
        return self._enter(Call(ctx, m, params, retries, params, True))

    def run_raw(self, ctx: RequestContext, m: Method, params: Any, retries: int = 0) -> Coroutine[Any, Any, Any]:
        """Call `m` with `params` as the request gave them through the chain."""
        return self._enter(Call(ctx, m, params, retries, params, False))

    async def _enter(self, call: Call) -> Any:
        token = current_var.set(call.context)
        try:
            return await self.first(call)
        except E.RPCError:
            raise
        except Exception as exc:
            self.logger.error("RPC middleware failed", method=call.method, exc_info=exc)
            raise E.InternalError(data={"method": call.method}, base_exc=exc) from exc
        finally:
            current_var.reset(token)


def _link(mw: Middleware, call_next: CallNext) -> CallNext:
    def handler(call: Call) -> Awaitable[Any]:
        return mw(call, call_next)

    return handler


def load_middleware(entry: Any) -> Middleware:
    """A middleware from a setting's entry: an async callable, or "package.module:callable"
    naming one. Raises ValueError saying what was expected."""
    from kaiju.runtime.registry import ClassNotFound, import_object, is_async_callable

    found = entry
    if isinstance(entry, str):
        if ":" not in entry:
            raise ValueError(f'expected "package.module:callable", got "{entry}"')
        try:
            found = import_object(entry)
        except ClassNotFound as exc:
            raise ValueError(str(exc)) from None
    if not is_async_callable(found):
        raise ValueError(f"expected an async function (call, call_next), got {entry!r}")
    return found
