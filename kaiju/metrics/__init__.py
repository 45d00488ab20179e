"""Prometheus metrics: plain counters on the request path, exported at scrape time.

`Metrics` (the service serving `GET /metrics`) and `AppCollector` import prometheus-client;
`kaiju.metrics.counters` does not, so the services keeping counters import only that.
"""

from __future__ import annotations

from kaiju import _lazy_getattr

_EXPORTS = {
    "Metrics": "kaiju.metrics.service",
    "AppCollector": "kaiju.metrics.collector",
    "Histogram": "kaiju.metrics.counters",
    "RPCStats": "kaiju.metrics.counters",
}

__all__ = list(_EXPORTS)

__getattr__ = _lazy_getattr("kaiju.metrics", _EXPORTS, globals())
