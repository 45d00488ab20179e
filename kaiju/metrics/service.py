"""Metrics: the app's Prometheus registry and its `GET /metrics` route.

Each app gets its own `CollectorRegistry` (no global registry: two apps in one process
never mix their numbers), holding the app's collector (`AppCollector`) and
prometheus-client's `ProcessCollector` (RSS, CPU, open fds). Leave the service out of the
config, or set `enabled: false` on it, to run an app without metrics at no cost.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, ProcessCollector, generate_latest

from kaiju.http.routes import route
from kaiju.metrics.collector import AppCollector
from kaiju.metrics.counters import RPCStats
from kaiju.rpc.server import RPCServer
from kaiju.runtime.service import Service
from kaiju.runtime.types import Positive

__all__ = ["Metrics"]


class Metrics(Service):
    """Prometheus metrics of the app (service name "metrics"), served at `GET /metrics` (on
    the HTTPServer's ops listener when it has an `ops_port`: the metrics name every method,
    system ones included, so keep them off a public listener).

    Settings:

    - process_metrics (bool, True): add the process' RSS, CPU time and open fds;
    - backlog_timeout (float s, 1.0): how long a scrape waits for the streams backend to
      tell each listener's pending count and lag (skipped when it does not answer in time).

    Dependency: `rpc` (an RPCServer, optional): its requests are counted from start on.
    """

    service_name = "metrics"

    rpc: RPCServer | None = None

    process_metrics: bool = True
    backlog_timeout: Positive = 1.0

    registry = None  # the app's CollectorRegistry, made in start()

    async def start(self) -> None:
        """Make the registry and start counting the RPC server's requests."""
        executor = self.rpc.executor if self.rpc is not None else None
        stats = None
        if executor is not None:
            if self.__dict__.get("_counted") is not executor:  # once per executor: a restart keeps counting
                self._stats, self._counted = RPCStats(), executor
                executor.add_observer(self._stats.observe)
            stats = self._stats
        registry = CollectorRegistry()
        self.collector = AppCollector(self.app.services.values, stats)
        registry.register(self.collector)
        if self.process_metrics:
            ProcessCollector(registry=registry)
        self.registry = registry

    async def stop(self, exception: Exception | None = None) -> None:
        self.registry = None

    async def exposition(self) -> bytes:
        """The metrics now, in Prometheus' text format (streams backlogs refreshed first).
        Raises RuntimeError when the service is not started."""
        if self.registry is None:
            raise RuntimeError(f"{self.name}: not started")
        await self._refresh_backlogs()
        return generate_latest(self.registry)

    @route("GET", "/metrics", ops=True)
    async def metrics_route(self, request: Any) -> web.Response:
        """`GET /metrics`: the text exposition (503 with a JSON error before start)."""
        if self.registry is None:
            return web.json_response({"error": "metrics not started"}, status=503)
        return web.Response(body=await self.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _refresh_backlogs(self) -> None:
        from kaiju.streams.listener import StreamListener

        listeners = [s for s in self.app.services.values() if isinstance(s, StreamListener) and hasattr(s, "backend")]
        if not listeners:
            return
        found = await asyncio.gather(*(self._backlog(listener) for listener in listeners))
        self.collector.backlogs = {listener.name: info for listener, info in zip(listeners, found) if info is not None}

    async def _backlog(self, listener: Any) -> Any:
        try:
            async with asyncio.timeout(float(self.backlog_timeout)):
                return await listener.backend.group_info(listener.stream_key, listener.group_name)
        except Exception as exc:  # a scrape still answers when the backend does not
            self.logger.debug("stream backlog unknown", topic=listener.topic, error=repr(exc))
            return None
