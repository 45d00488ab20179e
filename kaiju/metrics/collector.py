"""AppCollector: the metrics of one app's services as Prometheus metric families.

A prometheus-client custom collector, registered on the app's own `CollectorRegistry`:
`collect()` runs at scrape time and asks every kaiju service of the app for its
`metrics()` (the service contract: `kaiju.Service.metrics`), merging the families that
several services report under one name (every task reports `kaiju_task_runs`, say).
Nothing here runs per request, and nothing here knows any service class.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client.core import Metric

from kaiju.runtime.service import Service

__all__ = ["AppCollector"]


class AppCollector:
    """Collects the metrics of the services `services()` returns (called at each scrape)."""

    def __init__(self, services: Callable[[], Iterable[Any]]):
        self.services = services

    def collect(self) -> Iterator[Metric]:
        """Every metric family of the app, as the services report them now."""
        merged: dict[str, Metric] = {}
        for service in list(self.services()):
            if not isinstance(service, Service):
                continue  # a plain aiomisc service has no metrics() to ask
            for family in service.metrics():
                known = merged.get(family.name)
                if known is None:
                    merged[family.name] = family
                else:
                    known.samples.extend(family.samples)
        yield from merged.values()
