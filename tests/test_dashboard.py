"""The Grafana dashboard (docs/grafana/kaiju.json) asks only for what `/metrics` exposes.

An app with every kind of service kaiju counts (RPC over HTTP, a task, a stream listener,
a cache, locks) serves some traffic; every metric a panel queries must be among the
samples of its `/metrics`, and every label a query filters or groups by among that
metric's labels (`job` and `instance` are Prometheus' own).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from kaiju import rpc
from kaiju.cache.memory import MemoryCache
from kaiju.http.server import HTTPServer
from kaiju.locks.base import LockExistsError
from kaiju.locks.memory import MemoryLocks
from kaiju.metrics import Metrics
from kaiju.rpc import RPCServer, Scope
from kaiju.runtime.service import Service
from kaiju.streams.listener import StreamListener
from kaiju.streams.memory import MemoryStream
from kaiju.streams.producer import StreamProducer
from kaiju.streams.service import Streams
from kaiju.tasks import PeriodicTask
from kaiju.testing import eventually, free_port
from kaiju.testing.services import started

DASHBOARD = Path(__file__).resolve().parents[1] / "docs" / "grafana" / "kaiju.json"
METRIC = re.compile(r"\b((?:kaiju|process)_[a-z_]+)\b")
GROUPING = re.compile(r"\bby \(([^)]*)\)")
MATCHER = re.compile(r"\b([a-z_]+)\s*(?:=~|!~|!=|=)")
PROMETHEUS_LABELS = {"job", "instance"}


class Shop(Service):
    service_name = "shop"

    @rpc.method(permission=Scope.GUEST)
    async def buy(self) -> int:
        return 1


def queries() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in board["panels"] for t in p.get("targets", ())]


async def exposed() -> dict[str, set[str]]:
    """`{sample name: its label names}` of a `/metrics` scrape after some of every kind of traffic."""
    http, cache, locks = HTTPServer(port=free_port()), MemoryCache(), MemoryLocks()
    task = PeriodicTask(name="tick", interval=3600, method="shop.buy")
    listener = StreamListener(block_ms=50, lock_check_ms=20, consumer="c1")
    producer = StreamProducer()
    services = [MemoryStream(), locks, cache, Streams(), RPCServer(), Shop(), listener, producer, task, Metrics(), http]
    async with started(*services):
        async with aiohttp.ClientSession() as session:
            body = {"jsonrpc": "2.0", "id": 1, "method": "shop.buy"}
            async with session.post(http.url, json=body) as response:
                assert (await response.json())["result"] == 1
            await task.fire_now()
            await producer.call("shop.buy")
            await cache.get("missing")
            await cache.get_or_set("filled", lambda: _one())
            await cache.get("filled")
            async with locks.lock("held", wait=True):
                try:
                    await locks.acquire("held", wait=False)
                except LockExistsError:
                    pass
            await eventually(lambda: listener.counters["processed"] == 1 and listener.backlog is not None)
            async with session.get(http.url.removesuffix(http.rpc_path) + "/metrics") as response:
                text = await response.text()
    found: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found.setdefault(s.name, set()).update(s.labels)
    return found


async def _one() -> int:
    return 1


async def test_every_query_of_the_dashboard_resolves_on_metrics() -> None:
    samples = await exposed()
    checked = 0
    for expr in queries():
        names = set(METRIC.findall(expr))
        assert names, f"no kaiju or process metric in {expr!r}"
        missing = names - set(samples)
        assert not missing, f"{expr!r} asks for {sorted(missing)}, not on /metrics"
        labels = set().union(*(samples[n] for n in names)) | PROMETHEUS_LABELS
        used = {label for group in GROUPING.findall(expr) for label in re.split(r"\s*,\s*", group)}
        used |= set(MATCHER.findall(expr))
        assert used <= labels, f"{expr!r} uses labels {sorted(used - labels)} that {sorted(names)} do not have"
        checked += 1
    assert checked >= 20


def test_the_dashboard_covers_every_area_the_operator_watches() -> None:
    board = json.loads(DASHBOARD.read_text())
    rows = [p["title"] for p in board["panels"] if p["type"] == "row"]
    assert rows == ["RPC", "HTTP", "Tasks", "Streams", "Cache and locks", "Process"]
    latency = next(p for p in board["panels"] if p["title"].startswith("Latency"))
    assert all(t["exemplar"] for t in latency["targets"])  # the trace of a slow call, one click away
    assert [v["name"] for v in board["templating"]["list"]] == ["datasource", "job", "instance"]
