"""Prometheus metrics: what the services count, exported at scrape time.

`Metrics` (the service serving `GET /metrics`) and `AppCollector` (asking every service
for its `metrics()`) import prometheus-client; the services keep plain counters and
histograms (`kaiju.histogram`) and build families only when asked.
"""

from __future__ import annotations

from kaiju import _lazy_getattr

_EXPORTS = {
    "Metrics": "kaiju.metrics.service",
    "AppCollector": "kaiju.metrics.collector",
}

__all__ = list(_EXPORTS)

__getattr__ = _lazy_getattr("kaiju.metrics", _EXPORTS, globals())
