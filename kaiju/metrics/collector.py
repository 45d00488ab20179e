"""AppCollector: the counters of one app's services as Prometheus metric families.

A prometheus-client custom collector, registered on the app's own `CollectorRegistry`:
`collect()` runs at scrape time and reads the plain counters the services keep (see
`kaiju.metrics.counters`); nothing here runs per request.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from kaiju.metrics.counters import Histogram, RPCStats

__all__ = ["AppCollector", "TRANSPORTS"]

TRANSPORTS = ("http", "stream", "task", "internal")


class AppCollector:
    """Collects the metrics of the services `services()` returns (called at each scrape).

    `rpc_stats` are the RPC counters (None: RPC metrics off); `backlogs` maps a stream
    listener's name to its last `GroupInfo` (refreshed by the Metrics service before a scrape).
    """

    def __init__(self, services: Any, rpc_stats: RPCStats | None = None):
        self.services = services
        self.rpc_stats = rpc_stats
        self.backlogs: dict[str, Any] = {}

    def collect(self) -> Iterator[Metric]:
        """Every metric family of the app, built from the counters as they are now."""
        from kaiju.cache.base import Cache
        from kaiju.http.server import HTTPServer
        from kaiju.locks.base import Locks
        from kaiju.rpc.server import RPCServer
        from kaiju.streams.listener import StreamListener
        from kaiju.tasks.service import ScheduledTask

        services = list(self.services())
        rpcs = [s for s in services if isinstance(s, RPCServer) and s.executor is not None]
        if self.rpc_stats is not None:
            yield from rpc_families(self.rpc_stats, rpcs)
        yield from task_families([s for s in services if isinstance(s, ScheduledTask)])
        yield from stream_families([s for s in services if isinstance(s, StreamListener)], self.backlogs)
        yield from cache_families([s for s in services if isinstance(s, Cache)])
        yield from lock_families([s for s in services if isinstance(s, Locks)])
        yield from http_families([s for s in services if isinstance(s, HTTPServer)])


def histogram(name: str, doc: str, labels: list[str]) -> HistogramMetricFamily:
    """An empty histogram family (fill with `add_histogram`)."""
    return HistogramMetricFamily(name, doc, labels=labels)


def add_histogram(family: HistogramMetricFamily, values: list[str], h: Histogram) -> None:
    """Add the series of one plain `Histogram` to `family`."""
    family.add_metric(values, h.cumulative(), h.sum)


def rpc_families(stats: RPCStats, servers: Iterable[Any]) -> Iterator[Metric]:
    """Requests by method, transport and outcome; latency by method; in flight and waiting."""
    requests = CounterMetricFamily(
        "kaiju_rpc_requests", "RPC requests finished, by method, transport and outcome (ok or the error type)",
        labels=["method", "transport", "outcome"],
    )
    latency = histogram("kaiju_rpc_request_duration_seconds", "Time RPC methods took, by method", ["method"])
    for name, row in sorted(stats.methods.items()):
        for transport, outcomes in row.outcomes.items():
            for outcome, n in outcomes.items():
                requests.add_metric([name, transport, outcome], n)
        add_histogram(latency, [name], row.latency)
    in_flight = {t: 0 for t in TRANSPORTS}
    waiting = {t: 0 for t in TRANSPORTS}
    for server in servers:
        for ctx, is_waiting in list(server.executor.inflight.items()):
            in_flight[ctx.transport] = in_flight.get(ctx.transport, 0) + 1
            if is_waiting:
                waiting[ctx.transport] = waiting.get(ctx.transport, 0) + 1
    flight = GaugeMetricFamily("kaiju_rpc_in_flight", "RPC requests in flight (running or waiting for a slot)", labels=["transport"])
    line = GaugeMetricFamily("kaiju_rpc_waiting", "RPC requests waiting for a free slot (max_parallel_tasks)", labels=["transport"])
    for transport in in_flight:
        flight.add_metric([transport], in_flight[transport])
        line.add_metric([transport], waiting[transport])
    yield from (requests, latency, flight, line)


def task_families(tasks: list[Any]) -> Iterator[Metric]:
    """Runs, failures, skips by policy, timeouts, lateness and last success of each task."""
    runs = CounterMetricFamily("kaiju_task_runs", "Task runs started", labels=["task"])
    failures = CounterMetricFamily("kaiju_task_failures", "Task runs that failed (timeouts included)", labels=["task"])
    skips = CounterMetricFamily("kaiju_task_skips", "Fires not run (overlap policy, or the loop fell behind)", labels=["task", "policy"])
    timeouts = CounterMetricFamily("kaiju_task_timeouts", "Task runs cut by their timeout", labels=["task"])
    lateness = histogram("kaiju_task_lateness_seconds", "Seconds between a fire's time and its run starting", ["task"])
    success = GaugeMetricFamily("kaiju_task_last_success_timestamp_seconds", "Unix time of the last run without error", labels=["task"])
    for task in tasks:
        runs.add_metric([task.name], task.runs)
        failures.add_metric([task.name], task.failures)
        skips.add_metric([task.name, task.policy], task.misses)
        timeouts.add_metric([task.name], task.timeouts)
        add_histogram(lateness, [task.name], task.lateness)
        if task.last_success is not None:
            success.add_metric([task.name], task.last_success)
    yield from (runs, failures, skips, timeouts, lateness, success)


def stream_families(listeners: list[Any], backlogs: dict[str, Any]) -> Iterator[Metric]:
    """Messages processed, failed, dead-lettered and claimed; pending and lag per topic."""
    names = {"processed": "processed", "failed": "failed", "dead_lettered": "dead-lettered", "claimed": "claimed"}
    families = {
        key: CounterMetricFamily(f"kaiju_stream_messages_{key}", f"Stream messages {text}", labels=["topic", "listener"])
        for key, text in names.items()
    }
    pending = GaugeMetricFamily("kaiju_stream_pending", "Messages delivered to the group and not yet acknowledged", labels=["topic"])
    lag = GaugeMetricFamily("kaiju_stream_lag", "Messages not yet delivered to any consumer of the group", labels=["topic"])
    for listener in listeners:
        counters = getattr(listener, "counters", None)
        if counters is None:  # never started
            continue
        for key, family in families.items():
            family.add_metric([listener.topic, listener.name], counters.get(key, 0))
        info = backlogs.get(listener.name)
        if info is not None:
            pending.add_metric([listener.topic], info.pending)
            if info.lag is not None:
                lag.add_metric([listener.topic], info.lag)
    yield from (*families.values(), pending, lag)


def cache_families(caches: list[Any]) -> Iterator[Metric]:
    """Cache hits, misses and loader calls (`get_or_set` fills) per cache service."""
    families = {
        "hits": CounterMetricFamily("kaiju_cache_hits", "Cache reads that found the key", labels=["cache"]),
        "misses": CounterMetricFamily("kaiju_cache_misses", "Cache reads that did not find the key", labels=["cache"]),
        "loader_calls": CounterMetricFamily("kaiju_cache_loader_calls", "get_or_set loader runs", labels=["cache"]),
    }
    for cache in caches:
        counts = getattr(cache, "counts", None)
        for key, family in families.items():
            if counts is not None:
                family.add_metric([cache.name], counts[key])
    yield from families.values()


def lock_families(services: list[Any]) -> Iterator[Metric]:
    """Locks acquired, refused (taken / timeout), lost, and time spent waiting for them."""
    acquired = CounterMetricFamily("kaiju_locks_acquired", "Locks acquired", labels=["locks"])
    refused = CounterMetricFamily("kaiju_locks_refused", "acquire() calls refused", labels=["locks", "reason"])
    lost = CounterMetricFamily("kaiju_locks_lost", "Locks lost while held (a renewal failed)", labels=["locks"])
    wait = histogram("kaiju_locks_wait_seconds", "Time acquire(wait=True) took to get the lock", ["locks"])
    for locks in services:
        counts = getattr(locks, "counts", None)
        if counts is None:
            continue
        acquired.add_metric([locks.name], counts["acquired"])
        refused.add_metric([locks.name, "taken"], counts["taken"])
        refused.add_metric([locks.name, "timeout"], counts["timeout"])
        lost.add_metric([locks.name], counts["lost"])
        add_histogram(wait, [locks.name], locks.wait_time)
    yield from (acquired, refused, lost, wait)


def http_families(servers: list[Any]) -> Iterator[Metric]:
    """HTTP responses by status code, per HTTP server."""
    responses = CounterMetricFamily("kaiju_http_responses", "HTTP responses sent, by status", labels=["server", "status"])
    for server in servers:
        for status, n in sorted(getattr(server, "responses", {}).items()):
            responses.add_metric([server.name, str(status)], n)
    yield responses
