"""Plain counters kept on the request path and read at scrape time.

prometheus-client is never called per request: the objects on the path (the RPC
executor, tasks, stream listeners, caches, locks) bump ints and small lists here, and the
app's collector (`kaiju.metrics.collector`) turns them into metric families when
`/metrics` is scraped.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any

__all__ = ["LATENCY_BUCKETS", "LATENESS_BUCKETS", "Histogram", "MethodCounts", "RPCStats"]

# seconds; the same spread as prometheus-client's defaults, a little finer at the fast end
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LATENESS_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0)


class Histogram:
    """Observations counted into fixed buckets (upper bounds), plus their sum.

    `counts[i]` counts the values in `(bounds[i-1], bounds[i]]`; the last one those above
    every bound. `cumulative()` gives Prometheus' `le` buckets.
    """

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS):
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        """Count one observation."""
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        """Observations so far."""
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, int]]:
        """`[(le, count of values <= le), ..., ("+Inf", all)]`."""
        out, total = [], 0
        for bound, n in zip((*map(repr, map(float, self.bounds)), "+Inf"), self.counts):
            total += n
            out.append((bound, total))
        return out


class MethodCounts:
    """One RPC method's outcomes by transport (`{transport: {outcome: n}}`) and its latency."""

    __slots__ = ("outcomes", "latency")

    def __init__(self) -> None:
        self.outcomes: dict[str, dict[str, int]] = {}
        self.latency = Histogram(LATENCY_BUCKETS)


class RPCStats:
    """What the RPC executor reports of each finished request (its `observe` hook)."""

    __slots__ = ("methods",)

    def __init__(self) -> None:
        self.methods: dict[str, MethodCounts] = {}

    def observe(self, ctx: Any, method: Any, params: Any, result: Any, error: Any, seconds: float | None) -> None:
        """Count one request of `method` through `ctx.transport`: "ok", or the error's type."""
        row = self.methods.get(method.name)
        if row is None:
            row = self.methods[method.name] = MethodCounts()
        by_outcome = row.outcomes.get(ctx.transport)
        if by_outcome is None:
            by_outcome = row.outcomes[ctx.transport] = {}
        outcome = "ok" if error is None else error.type
        by_outcome[outcome] = by_outcome.get(outcome, 0) + 1
        if seconds is not None:  # None: refused before the method ran (invalid params)
            row.latency.observe(seconds)
