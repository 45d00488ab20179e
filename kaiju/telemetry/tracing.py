"""`Tracing`: kaiju's tracer, and what every span kaiju makes needs, through the OpenTelemetry API only.

A service that traces holds one `Tracing` (or None: no spans, and no cost), found at its
start by `kaiju.telemetry.provider.tracing_of`. Whichever tracer provider is behind it
(the `Telemetry` service's SDK, or one the app set itself through the API, another
vendor's), kaiju's spans reach it through `opentelemetry.trace`; context crosses
processes with the API's global propagator (W3C `traceparent`, `tracestate` and
`baggage` unless `OTEL_PROPAGATORS` says otherwise).

Spans are started with the attributes a sampler may need, and given the rest only when
they record (`Span.is_recording`): a request sampled out costs a span object and no
attribute building.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

__all__ = ["SERVER", "CLIENT", "PRODUCER", "CONSUMER", "INTERNAL", "Tracing", "failed", "log_fields", "trace_id"]

SERVER, CLIENT, PRODUCER, CONSUMER, INTERNAL = (
    SpanKind.SERVER,
    SpanKind.CLIENT,
    SpanKind.PRODUCER,
    SpanKind.CONSUMER,
    SpanKind.INTERNAL,
)
_ROOT = otel_context.Context()  # no parent: a span started in it begins a trace of its own


class Tracing:
    """kaiju's tracer (`tracer`, an API `Tracer`) and its helpers; `full` is true when the
    cache, locks and Redis calls get spans of their own (`Telemetry` setting `detail: full`)."""

    __slots__ = ("tracer", "full", "follows_parent", "_textmap", "_fields")

    def __init__(self, tracer: trace.Tracer, full: bool = False, follows_parent: bool = False):
        self.tracer = tracer
        self.full = full
        # the provider's sampler follows the parent's decision (the Telemetry service's): below a
        # span sampled out, every span would be sampled out too, so none is made (`start`)
        self.follows_parent = follows_parent
        self._textmap: Any = None  # the global propagator last seen, and the headers it reads
        self._fields: tuple[str, ...] = ()

    # -- context across processes -------------------------------------------------

    def extract(self, carrier: Mapping[str, Any] | None) -> otel_context.Context | None:
        """The context a request's headers (or a message's) carry (`traceparent`, ...), or
        None when they carry none (the propagator is asked only when one of the headers it
        reads is there: most requests come with none)."""
        if not carrier:
            return None
        textmap = propagate.get_global_textmap()
        if textmap is not self._textmap:
            self._textmap, self._fields = textmap, tuple(textmap.fields)
        for name in self._fields:
            if name in carrier:
                break
        else:
            return None
        found = propagate.extract(carrier)
        return found if trace.get_current_span(found).get_span_context().is_valid else None

    @staticmethod
    def inject(carrier: MutableMapping[str, str]) -> None:
        """Write the current context into `carrier` (headers of a request or a message)."""
        propagate.inject(carrier)

    # -- spans ----------------------------------------------------------------------

    def start(
        self,
        name: str,
        kind: SpanKind = INTERNAL,
        parent: otel_context.Context | None = None,
        attributes: Mapping[str, Any] | None = None,
        links: list[trace.Link] | None = None,
    ) -> Span:
        """Start a span (not made current), child of `parent` (None: of the current span).

        Below a parent sampled out, with a sampler that `follows_parent`, this is the parent
        itself: a span of its own would record nothing and export nothing, and the context
        passed on (the trace id, "not sampled") is the same; the SDK's making of it cost more
        than a whole RPC call."""
        if self.follows_parent:
            above = trace.get_current_span(parent)
            if self.sampled_out(above):
                return above
        return self.tracer.start_span(name, context=parent, kind=kind, attributes=attributes, links=links)

    def sampled_out(self, span: Span) -> bool:
        """Whether no span is made below `span`: it is sampled out and the sampler
        `follows_parent`, so every span below it would be sampled out too."""
        context = span.get_span_context()
        return self.follows_parent and context.is_valid and not context.trace_flags.sampled and not span.is_recording()

    def root(self, name: str, attributes: Mapping[str, Any] | None = None) -> Span:
        """Start a span beginning a trace of its own, whatever is current (a task's run)."""
        return self.tracer.start_span(name, context=_ROOT, kind=INTERNAL, attributes=attributes)

    @staticmethod
    @contextmanager
    def current(span: Span, parent: otel_context.Context | None = None) -> Iterator[Span]:
        """Make `span` the current one for the block (in `parent`'s context: its baggage
        too), end it after, and record an exception that escapes as an ERROR."""
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        try:
            yield span
        except BaseException as exc:
            failed(span, type(exc).__name__, str(exc) or type(exc).__name__)
            raise
        finally:
            otel_context.detach(token)
            span.end()

    @contextmanager
    def child(
        self, name: str, kind: SpanKind = INTERNAL, attributes: Mapping[str, Any] | None = None
    ) -> Iterator[Span]:
        """A span of the current one, current for the block (see `current`)."""
        with self.current(self.start(name, kind, attributes=attributes)) as span:
            yield span


def failed(span: Span, error_type: str, message: str, exc: BaseException | None = None) -> None:
    """Mark `span` failed: `error.type`, an ERROR status with `message`, and `exc` recorded
    as an exception event (when given)."""
    if span.is_recording():
        span.set_attribute("error.type", error_type)
        span.set_status(Status(StatusCode.ERROR, message))
        if exc is not None:
            span.record_exception(exc)


def trace_id() -> str | None:
    """The id of the current trace (32 hex digits) when its span is sampled, else None."""
    context = trace.get_current_span().get_span_context()
    return f"{context.trace_id:032x}" if context.is_valid and context.trace_flags.sampled else None


def log_fields() -> dict[str, Any] | None:
    """Fields for log records inside a span: `trace_id` and `span_id` (a log context
    provider, see `kaiju.logging`); None outside one."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return {"trace_id": f"{context.trace_id:032x}", "span_id": f"{context.span_id:016x}"}
