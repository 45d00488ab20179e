"""Histogram: observations counted into fixed buckets, kept on the request path and read at
scrape time.

prometheus-client is never called per request: what is measured (RPC calls, task fires,
lock waits) bumps ints and small lists here, and a service's `metrics()` turns them into
metric families when `/metrics` is scraped (`histogram_family`). A leaf module: it imports
nothing of kaiju, so any package may keep a histogram.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from typing import Any

__all__ = ["LATENCY_BUCKETS", "LATENESS_BUCKETS", "Histogram", "histogram_family"]

# seconds; the same spread as prometheus-client's defaults, a little finer at the fast end
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LATENESS_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0)


class Histogram:
    """Observations counted into fixed buckets (upper bounds), plus their sum.

    `counts[i]` counts the values in `(bounds[i-1], bounds[i]]`; the last one those above
    every bound. `cumulative()` gives Prometheus' `le` buckets. `exemplars[i]` is the
    latest observation of bucket i made inside a trace, `(trace id, value, unix time)`
    (None until one is: an app that traces nothing keeps no list).
    """

    __slots__ = ("bounds", "counts", "sum", "exemplars")

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS):
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0
        self.exemplars: list[tuple[str, float, float] | None] | None = None

    def observe(self, value: float) -> None:
        """Count one observation."""
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def observe_in_trace(self, value: float, trace_id: str | None) -> None:
        """Count one observation made inside the trace `trace_id` (None: outside any), kept
        as its bucket's exemplar."""
        bucket = bisect_left(self.bounds, value)
        self.counts[bucket] += 1
        self.sum += value
        if trace_id is not None:
            if self.exemplars is None:
                self.exemplars = [None] * len(self.counts)
            self.exemplars[bucket] = (trace_id, value, time.time())

    @property
    def count(self) -> int:
        """Observations so far."""
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, int]]:
        """`[(le, count of values <= le), ..., ("+Inf", all)]`."""
        out, total = [], 0
        for bound, n in zip((*map(repr, map(float, self.bounds)), "+Inf"), self.counts, strict=True):
            total += n
            out.append((bound, total))
        return out


def histogram_family(name: str, doc: str, labels: list[str], rows: list[tuple[list[str], Histogram]]) -> Any:
    """A prometheus-client histogram family with one series per `(label values, Histogram)`
    row, with the buckets' exemplars (shown when a scrape asks for OpenMetrics)."""
    from prometheus_client.core import HistogramMetricFamily

    family = HistogramMetricFamily(name, doc, labels=labels)
    for values, h in rows:
        family.add_metric(values, _buckets(h), h.sum)
    return family


def _buckets(h: Histogram) -> list[Any]:
    buckets: list[Any] = h.cumulative()
    if h.exemplars is None:
        return buckets
    from prometheus_client.samples import Exemplar

    return [
        (le, n, Exemplar({"trace_id": ex[0]}, ex[1], ex[2])) if ex is not None else (le, n)
        for (le, n), ex in zip(buckets, h.exemplars, strict=True)
    ]
