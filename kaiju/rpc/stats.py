"""RPC metrics: a middleware counting every call, and the families `/metrics` shows of them.

`RPCStats` is RPC middleware (`kaiju.rpc.middleware`): it counts each call by method,
transport and outcome ("ok" or the error's type) and its duration (by method and transport), into plain ints and
histograms; the `Metrics` service adds it to the app's `RPCServer` (outermost, so refused
calls count too) and reports it at scrape time. When the app traces, each latency keeps
the call's trace id as its bucket's exemplar. `in_flight_families` is what the
`RPCServer` reports of itself: requests in flight and waiting for a slot.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from kaiju.histogram import LATENCY_BUCKETS, Histogram, histogram_family
from kaiju.rpc.errors import RPCError

__all__ = ["TRANSPORTS", "MethodCounts", "RPCStats", "in_flight_families"]

TRANSPORTS = ("http", "stream", "task", "internal")


class MethodCounts:
    """One RPC method's outcomes by transport (`{transport: {outcome: n}}`) and its latency
    by transport (`{transport: Histogram}`)."""

    __slots__ = ("outcomes", "latency")

    def __init__(self) -> None:
        self.outcomes: dict[str, dict[str, int]] = {}
        self.latency: dict[str, Histogram] = {}


class RPCStats:
    """Counts of the calls of every method: a middleware `async def (call, call_next)`."""

    __slots__ = ("methods", "clock", "trace_id")

    def __init__(self, clock: Any = None) -> None:
        import time

        self.methods: dict[str, MethodCounts] = {}
        self.clock = clock or time.perf_counter  # fine-grained, unlike uvloop's 1 ms loop clock
        # when the app traces: the current trace's id, kept with a latency as its bucket's exemplar
        self.trace_id: Callable[[], str | None] | None = None

    async def __call__(self, call: Any, call_next: Any) -> Any:
        started = self.clock()
        try:
            result = await call_next(call)
        except RPCError as exc:
            self.count(call.method, call.transport, exc.type, self.clock() - started if call.ran else None)
            raise
        except Exception:
            self.count(call.method, call.transport, "InternalError", self.clock() - started)
            raise
        self.count(call.method, call.transport, "ok", self.clock() - started)
        return result

    def count(self, method: str, transport: str, outcome: str, seconds: float | None) -> None:
        """Count one call of `method` through `transport`: "ok", or the error's type; its
        duration unless `seconds` is None (refused params: the method did not run)."""
        row = self.methods.get(method)
        if row is None:
            row = self.methods[method] = MethodCounts()
        by_outcome = row.outcomes.get(transport)
        if by_outcome is None:
            by_outcome = row.outcomes[transport] = {}
        by_outcome[outcome] = by_outcome.get(outcome, 0) + 1
        if seconds is not None:
            latency = row.latency.get(transport)
            if latency is None:
                latency = row.latency[transport] = Histogram(LATENCY_BUCKETS)
            trace_id = self.trace_id
            if trace_id is None:
                latency.observe(seconds)
            else:
                latency.observe_in_trace(seconds, trace_id())

    def families(self) -> Iterator[Any]:
        """Requests by method, transport and outcome; latency by method and transport."""
        from prometheus_client.core import CounterMetricFamily

        requests = CounterMetricFamily(
            "kaiju_rpc_requests",
            "RPC requests finished, by method, transport and outcome (ok or the error type)",
            labels=["method", "transport", "outcome"],
        )
        rows = sorted(self.methods.items())
        for name, row in rows:
            for transport, outcomes in row.outcomes.items():
                for outcome, n in outcomes.items():
                    requests.add_metric([name, transport, outcome], n)
        yield requests
        yield histogram_family(
            "kaiju_rpc_request_duration_seconds",
            "Time RPC methods took, by method and transport",
            ["method", "transport"],
            [([name, transport], h) for name, row in rows for transport, h in row.latency.items()],
        )


def in_flight_families(executor: Any) -> Iterator[Any]:
    """Requests in flight (running or waiting for a slot) and waiting, by transport, of one
    server's `Executor` (None: not started, nothing in flight)."""
    from prometheus_client.core import GaugeMetricFamily

    in_flight = dict.fromkeys(TRANSPORTS, 0)
    waiting = dict.fromkeys(TRANSPORTS, 0)
    for ctx, is_waiting in list(executor.inflight.items()) if executor is not None else ():
        in_flight[ctx.transport] = in_flight.get(ctx.transport, 0) + 1
        if is_waiting:
            waiting[ctx.transport] = waiting.get(ctx.transport, 0) + 1
    flight = GaugeMetricFamily(
        "kaiju_rpc_in_flight", "RPC requests in flight (running or waiting for a slot)", labels=["transport"]
    )
    line = GaugeMetricFamily(
        "kaiju_rpc_waiting", "RPC requests waiting for a free slot (max_parallel_tasks)", labels=["transport"]
    )
    for transport in in_flight:
        flight.add_metric([transport], in_flight[transport])
        line.add_metric([transport], waiting[transport])
    yield flight
    yield line
