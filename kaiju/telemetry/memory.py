"""`SpanRecorder`: spans kept in memory, for tests to assert on (`Telemetry` with `exporter: memory`).

spans = app.spans()                               # every span ended so far, in order
call = recorder.one("orders.create")              # the one span of that name
assert recorder.parent_of(call).name == "POST /public/rpc"
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

__all__ = ["SpanRecorder"]


class SpanRecorder(SpanExporter):
    """An exporter keeping every span it is given, in the order they ended."""

    def __init__(self) -> None:
        self.finished: list[ReadableSpan] = []
        self.closed = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self.closed:
            return SpanExportResult.FAILURE
        self.finished.extend(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.closed = True  # the spans stay readable: a test looks at them after its app stopped

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True

    # -- for tests ----------------------------------------------------------------

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        """The spans ended so far (those called `name`, when given), in the order they ended."""
        return [s for s in self.finished if name is None or s.name == name]

    def one(self, name: str) -> ReadableSpan:
        """The one span called `name`; AssertionError (listing the names seen) when there are
        none or several."""
        found = self.spans(name)
        assert len(found) == 1, (
            f"expected one span {name!r}, found {len(found)} among {[s.name for s in self.finished]}"
        )
        return found[0]

    def parent_of(self, span: ReadableSpan) -> ReadableSpan | None:
        """The recorded span `span` is a child of (None: a root, or a parent from another process)."""
        parent = span.parent
        if parent is None:
            return None
        return next((s for s in self.finished if s.context is not None and s.context.span_id == parent.span_id), None)

    def children(self, span: ReadableSpan) -> list[ReadableSpan]:
        """The recorded spans whose parent is `span`."""
        own = span.context.span_id if span.context is not None else None
        return [s for s in self.finished if s.parent is not None and s.parent.span_id == own]

    def clear(self) -> None:
        """Forget the spans recorded so far."""
        self.finished.clear()
