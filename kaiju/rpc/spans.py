"""`RPCSpans`: one span per JSON-RPC call, as RPC middleware (`kaiju.rpc.middleware`).

The span is named after the method and carries the RPC conventions' attributes:
`rpc.system` ("jsonrpc"), `rpc.method`, `rpc.jsonrpc.version`, `rpc.jsonrpc.request_id`,
and on an error `rpc.jsonrpc.error_code`, `error.type` (the error's type, as in
`data.type`) and an ERROR status; kaiju adds `kaiju.correlation_id` (so a request is
found by its trace id or its correlation id alike) and `kaiju.transport`. It is a child of
the span current when the call is made: the HTTP server's, a stream message's, a task
run's, or the calling method's for a nested call (and the batch's request for a batch
item); a call made with none but whose headers carry a `traceparent` continues that one.

The `RPCServer` puts it outermost when tracing is on, so every other middleware (the
metrics' exemplars, request logs) runs inside the call's span.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace

from kaiju.rpc.errors import RPCError
from kaiju.telemetry.tracing import INTERNAL, SERVER, Tracing, failed

__all__ = ["RPCSpans"]

_IN_PROCESS = frozenset({"internal", "task"})  # the others came in through a transport: server spans


class RPCSpans:
    """A middleware `async def (call, call_next)` making each call's span with `tracing`'s tracer."""

    __slots__ = ("tracing",)

    def __init__(self, tracing: Tracing):
        self.tracing = tracing

    async def __call__(self, call: Any, call_next: Any) -> Any:
        tracing = self.tracing
        parent = None
        current = trace.get_current_span()
        if not current.get_span_context().is_valid:
            headers = call.headers
            if headers:
                parent = tracing.extract(headers)  # a transport that traces nothing itself
        elif tracing.sampled_out(current):
            return await call_next(call)  # no span below a span sampled out, nor its context to set
        ctx = call.context
        span = tracing.start(call.method, INTERNAL if ctx.transport in _IN_PROCESS else SERVER, parent)
        if span.is_recording():
            span.set_attributes(
                {
                    "rpc.system": "jsonrpc",
                    "rpc.method": call.method,
                    "rpc.jsonrpc.version": "2.0",
                    "kaiju.correlation_id": ctx.correlation_id,
                    "kaiju.transport": ctx.transport,
                }
            )
            if ctx.request_id is not None:
                span.set_attribute("rpc.jsonrpc.request_id", str(ctx.request_id))
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        try:
            return await call_next(call)
        except RPCError as exc:
            if span.is_recording():
                span.set_attribute("rpc.jsonrpc.error_code", exc.code)
                failed(span, exc.type, exc.message, exc.base_exc)
            raise
        except BaseException as exc:  # a cancellation, a middleware's own failure
            failed(span, type(exc).__name__, str(exc) or type(exc).__name__)
            raise
        finally:
            otel_context.detach(token)
            span.end()
