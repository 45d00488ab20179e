"""HTTP spans: the server's, one per request, and the client's, one per request sent.

The server span continues the context of the request's headers (W3C `traceparent`,
`tracestate`, `baggage`), is current while the request is served (so the RPC calls it
makes are its children) and carries the HTTP conventions' attributes:
`http.request.method`, `url.path`, `url.scheme`, `client.address`, `http.route` (the RPC
endpoint), `http.response.status_code` and the answer's correlation id
(`kaiju.correlation_id`); a 5xx answer is an ERROR. The client span
(`client_span`) writes its context into the request's headers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode

from kaiju.rpc.protocol import CORRELATION_ID
from kaiju.telemetry.tracing import CLIENT, SERVER, Tracing, failed

__all__ = ["answered", "client_span", "traced_handler"]

Handler = Callable[[Any], Awaitable[Any]]


def traced_handler(handle: Handler, tracing: Tracing, rpc_path: str) -> Handler:
    """`handle` (an aiohttp low-level handler) with a server span around each request."""
    start = tracing.start

    async def traced(request: Any) -> Any:
        method, path = request.method, request.path
        parent = tracing.extract(request.headers)
        span = start(f"{method} {rpc_path}" if path == rpc_path else method, SERVER, parent)
        if span.is_recording():
            span.set_attributes(
                {
                    "http.request.method": method,
                    "url.path": path,
                    "url.scheme": request.scheme,
                    "client.address": request.remote or "",
                }
            )
            if path == rpc_path:
                span.set_attribute("http.route", rpc_path)
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        try:
            response = await handle(request)
        except BaseException as exc:  # the client went away (cancelled), or a bug aiohttp answers
            failed(span, type(exc).__name__, str(exc) or type(exc).__name__)
            raise
        else:
            if span.is_recording():
                _answered(span, response.status, server=True)
                correlation_id = response.headers.get(CORRELATION_ID)
                if correlation_id:  # the request is found by either id
                    span.set_attribute("kaiju.correlation_id", correlation_id)
            return response
        finally:
            otel_context.detach(token)
            span.end()

    return traced


@contextmanager
def client_span(
    tracing: Tracing, name: str, method: str, url: str, headers: MutableMapping[str, str], **attributes: Any
) -> Iterator[Span]:
    """A client span for one request (`name`; `method` to `url`), current for the block,
    its context written into `headers`; `attributes` add to the HTTP ones. Set the
    response's status with `answered(span, status)`."""
    span = tracing.start(name, CLIENT)
    if span.is_recording():
        span.set_attributes({"http.request.method": method, "url.full": url, **attributes})
    with tracing.current(span):
        tracing.inject(headers)
        yield span


def answered(span: Span, status: int) -> None:
    """Put a client request's response status on its span (4xx and 5xx are ERRORs)."""
    _answered(span, status, server=False)


def _answered(span: Span, status: int, *, server: bool) -> None:
    if not span.is_recording():
        return
    span.set_attribute("http.response.status_code", status)
    if status >= (500 if server else 400):  # a server's 4xx is its client's mistake, not its own
        span.set_attribute("error.type", str(status))
        span.set_status(Status(StatusCode.ERROR))
