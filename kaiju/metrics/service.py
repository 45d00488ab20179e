"""Metrics: the app's Prometheus registry and its `GET /metrics` route.

Each app gets its own `CollectorRegistry` (no global registry: two apps in one process
never mix their numbers), holding the app's collector (`AppCollector`) and
prometheus-client's `ProcessCollector` (RSS, CPU, open fds). Leave the service out of the
config, or set `enabled: false` on it, to run an app without metrics at no cost.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.exposition import choose_encoder

from kaiju.http.routes import route
from kaiju.metrics.collector import AppCollector
from kaiju.rpc.server import RPCServer
from kaiju.rpc.stats import RPCStats
from kaiju.runtime.service import Service
from kaiju.telemetry.provider import tracing_of
from kaiju.telemetry.service import Telemetry

__all__ = ["Metrics"]


class Metrics(Service):
    """Prometheus metrics of the app (service name "metrics"), served at `GET /metrics` (on
    the HTTPServer's ops listener when it has an `ops_port`: the metrics name every method,
    system ones included, so keep them off a public listener).

    Dependency: `rpc` (an RPCServer, optional): its requests are counted from start on,
    by a middleware (`kaiju.rpc.stats.RPCStats`) this service adds to it. When the app
    traces, the latency histogram's buckets carry exemplars (the trace id of a call),
    which a scrape asking for OpenMetrics (`Accept: application/openmetrics-text`) gets.
    """

    service_name = "metrics"

    rpc: RPCServer | None = None
    """The RPCServer whose calls are counted."""
    telemetry: Telemetry | None = None
    """The `Telemetry` whose traces the latency exemplars name (none: the process's own
    tracer provider, when it set one; else no exemplars)."""

    process_metrics: bool = True
    """Add the process' RSS, CPU time and open fds."""

    registry = None  # the app's CollectorRegistry, made in start()

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.stats = RPCStats()  # kept across restarts: a restarted service keeps counting

    async def start(self) -> None:
        """Make the registry and start counting the RPC server's requests."""
        if tracing_of(self.telemetry) is not None:
            from kaiju.telemetry.tracing import trace_id

            self.stats.trace_id = trace_id
        if self.rpc is not None:
            # the same stats across restarts, added once (outermost: refused calls count too)
            self.rpc.add_middleware(self.stats, outermost=True)
        registry = CollectorRegistry()
        registry.register(AppCollector(self.app.services.values))
        if self.process_metrics:
            ProcessCollector(registry=registry)
        self.registry = registry

    async def stop(self, exception: Exception | None = None) -> None:
        self.registry = None

    def metrics(self) -> Iterator[Any]:
        """The RPC requests counted (by method, transport and outcome) and their latency."""
        if self.rpc is not None:
            yield from self.stats.families()

    async def exposition(self, accept: str | None = None) -> tuple[bytes, str]:
        """The metrics now and their content type: Prometheus' text format, or OpenMetrics
        (with exemplars) when `accept` (a request's Accept header) asks for it. Raises
        RuntimeError when the service is not started."""
        if self.registry is None:
            raise RuntimeError(f"{self.name}: not started")
        encode, content_type = choose_encoder(accept or "")
        return encode(self.registry), content_type

    @route("GET", "/metrics", ops=True)
    async def metrics_route(self, request: Any) -> web.Response:
        """`GET /metrics`: the text exposition, OpenMetrics when the Accept header asks for it
        (503 with a JSON error before start)."""
        if self.registry is None:
            return web.json_response({"error": "metrics not started"}, status=503)
        body, content_type = await self.exposition(request.headers.get("Accept") if request is not None else None)
        return web.Response(body=body, headers={"Content-Type": content_type})
