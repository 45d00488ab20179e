"""Prometheus metrics: what the services count, exported at scrape time.

`Metrics` (the service serving `GET /metrics`) and `AppCollector` (asking every service
for its `metrics()`) import prometheus-client; the services keep plain counters and
histograms (`kaiju.histogram`) and build families only when asked.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kaiju import _front_door

if TYPE_CHECKING:  # pragma: no cover -- the exports: `_front_door` imports each on first use
    from kaiju.metrics.collector import AppCollector
    from kaiju.metrics.service import Metrics

__getattr__ = _front_door(__name__, __file__, globals())
