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
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, ProcessCollector, generate_latest

from kaiju.http.routes import route
from kaiju.metrics.collector import AppCollector
from kaiju.rpc.server import RPCServer
from kaiju.rpc.stats import RPCStats
from kaiju.runtime.service import Service

__all__ = ["Metrics"]


class Metrics(Service):
    """Prometheus metrics of the app (service name "metrics"), served at `GET /metrics` (on
    the HTTPServer's ops listener when it has an `ops_port`: the metrics name every method,
    system ones included, so keep them off a public listener).

    Dependency: `rpc` (an RPCServer, optional): its requests are counted from start on,
    by a middleware (`kaiju.rpc.stats.RPCStats`) this service adds to it.
    """

    service_name = "metrics"

    rpc: RPCServer | None = None

    process_metrics: bool = True
    """Add the process' RSS, CPU time and open fds."""

    registry = None  # the app's CollectorRegistry, made in start()

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.stats = RPCStats()  # kept across restarts: a restarted service keeps counting

    async def start(self) -> None:
        """Make the registry and start counting the RPC server's requests."""
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

    async def exposition(self) -> bytes:
        """The metrics now, in Prometheus' text format (streams backlogs refreshed first).
        Raises RuntimeError when the service is not started."""
        if self.registry is None:
            raise RuntimeError(f"{self.name}: not started")
        return generate_latest(self.registry)

    @route("GET", "/metrics", ops=True)
    async def metrics_route(self, request: Any) -> web.Response:
        """`GET /metrics`: the text exposition (503 with a JSON error before start)."""
        if self.registry is None:
            return web.json_response({"error": "metrics not started"}, status=503)
        return web.Response(body=await self.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})
