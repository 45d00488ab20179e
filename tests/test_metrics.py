"""Prometheus metrics after real traffic, scraped over HTTP (`GET /metrics` on a real server) and
read back through prometheus-client's own parser."""

from __future__ import annotations

import asyncio
import os

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from kaiju import rpc
from kaiju.cache.memory import MemoryCache
from kaiju.http.server import HTTPServer
from kaiju.locks.base import LockExistsError
from kaiju.locks.memory import MemoryLocks
from kaiju.metrics import Metrics
from kaiju.rpc import RPCServer, Scope
from kaiju.runtime.service import App, Service
from kaiju.tasks import PeriodicTask
from kaiju.testing import eventually, free_port
from kaiju.testing.services import started
from tests.streams.conftest import backend_kind, make_stack  # noqa: F401 -- fixtures of the stream test


class Shop(Service):
    service_name = "shop"

    async def start(self) -> None:
        self.gate = asyncio.Event()
        self.entered = 0

    @rpc.method(permission=Scope.GUEST)
    async def add(self, a: int, b: int) -> int:
        return a + b

    @rpc.method(permission=Scope.GUEST)
    async def fail(self) -> None:
        raise ValueError("broken")

    @rpc.method(permission=Scope.GUEST)
    async def hold(self) -> str:
        self.entered += 1
        await self.gate.wait()
        return "done"


async def scrape(http: HTTPServer) -> dict[tuple[str, tuple], float]:
    """The samples of one real `GET /metrics` on the app's HTTP server: {(name, sorted labels): value}."""
    url = http.url.removesuffix(http.rpc_path) + "/metrics"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200 and response.content_type == "text/plain"
        text = await response.text()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def sample(samples: dict, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    assert key in samples, f"no sample {name}{labels}; have {sorted(k for k in samples if k[0] == name)}"
    return samples[key]


async def post(session: aiohttp.ClientSession, url: str, body: dict) -> int:
    async with session.post(url, json=body) as response:
        await response.read()
        return response.status


def request(method: str, params: object = None, rid: int = 1) -> dict:
    return {"jsonrpc": "2.0", "id": rid, "method": method, "params": params or {}}


async def test_rpc_and_http_metrics_match_the_traffic() -> None:
    http = HTTPServer(port=free_port())
    shop, metrics = Shop(), Metrics()
    async with started(shop, RPCServer(max_parallel_tasks=1), metrics, http):
        async with aiohttp.ClientSession() as session:
            for n in range(3):
                assert await post(session, http.url, request("shop.add", {"a": n, "b": 1})) == 200
            assert await post(session, http.url, request("shop.add", {"a": "x", "b": 1})) == 200
            assert await post(session, http.url, request("shop.fail")) == 200
            async with session.get(http.url) as response:  # a GET on the RPC path: 405
                assert response.status == 405
            # one request holds the only slot, a second one waits for it
            holders = [asyncio.create_task(post(session, http.url, request("shop.hold", rid=n))) for n in (1, 2)]
            await eventually(lambda: shop.entered == 1 and len(metrics.rpc.executor.inflight) == 2, what="a holder and a waiter")
            samples = await scrape(http)
            assert sample(samples, "kaiju_rpc_in_flight", transport="http") == 2
            assert sample(samples, "kaiju_rpc_waiting", transport="http") == 1
            assert sample(samples, "kaiju_rpc_in_flight", transport="stream") == 0
            shop.gate.set()
            assert await asyncio.gather(*holders) == [200, 200]
            samples = await scrape(http)
    assert sample(samples, "kaiju_rpc_requests_total", method="shop.add", transport="http", outcome="ok") == 3
    assert sample(samples, "kaiju_rpc_requests_total", method="shop.add", transport="http", outcome="InvalidParams") == 1
    assert sample(samples, "kaiju_rpc_requests_total", method="shop.fail", transport="http", outcome="InternalError") == 1
    assert sample(samples, "kaiju_rpc_requests_total", method="shop.hold", transport="http", outcome="ok") == 2
    assert sample(samples, "kaiju_rpc_request_duration_seconds_count", method="shop.add", transport="http") == 3  # invalid params never ran
    assert sample(samples, "kaiju_rpc_request_duration_seconds_bucket", method="shop.add", transport="http", le="+Inf") == 3
    assert sample(samples, "kaiju_rpc_in_flight", transport="http") == 0
    # 7 RPC answers and the first scrape (a response is counted once sent: a scrape misses its own)
    assert sample(samples, "kaiju_http_responses_total", server="http", status="200") == 8
    assert sample(samples, "kaiju_http_responses_total", server="http", status="405") == 1
    if os.path.exists("/proc/self/stat"):
        assert sample(samples, "process_resident_memory_bytes") > 0
        assert sample(samples, "process_open_fds") > 0


async def test_unknown_methods_and_unreadable_requests_are_counted_under_one_label_each() -> None:
    http = HTTPServer(port=free_port())
    metrics = Metrics()
    async with started(Shop(), RPCServer(), metrics, http):
        async with aiohttp.ClientSession() as session:
            for name in ("shop.typo", "shop.other_typo", "rpc.tasks"):  # rpc.tasks exists, but not for a guest
                assert await post(session, http.url, request(name)) == 200
            async with session.post(http.url, data=b"{no json", headers={"Content-Type": "application/json"}) as r:
                assert r.status == 200
            assert await post(session, http.url, {"jsonrpc": "2.0", "id": 1}) == 200  # no method
        samples = await scrape(http)
    requests = {k: v for k, v in samples.items() if k[0] == "kaiju_rpc_requests_total"}
    assert requests == {
        ("kaiju_rpc_requests_total", (("method", "<unknown>"), ("outcome", "MethodNotFound"), ("transport", "http"))): 3,
        ("kaiju_rpc_requests_total", (("method", "<invalid>"), ("outcome", "JSONParseError"), ("transport", "http"))): 1,
        ("kaiju_rpc_requests_total", (("method", "<invalid>"), ("outcome", "InvalidRequest"), ("transport", "http"))): 1,
    }
    assert not [k for k in samples if k[0] == "kaiju_rpc_request_duration_seconds_count"]  # nothing ran


async def test_two_apps_in_one_process_keep_their_own_numbers() -> None:
    first, second = Metrics(), Metrics()
    http_one, http_two = HTTPServer(port=free_port()), HTTPServer(port=free_port())
    async with started(Shop(), RPCServer(), first, http_one, app=App(name="one", env="test")) as app_one:
        async with started(Shop(), RPCServer(), second, http_two, app=App(name="two", env="test")):
            await app_one.services["rpc"].call("shop.add", {"a": 1, "b": 2})
            one, two = await scrape(http_one), await scrape(http_two)
    assert sample(one, "kaiju_rpc_requests_total", method="shop.add", transport="internal", outcome="ok") == 1
    assert not [k for k in two if k[0] == "kaiju_rpc_requests_total"]
    assert first.registry is None and second.registry is None  # stopped


async def test_without_the_metrics_service_nothing_is_counted() -> None:
    rpc_server = RPCServer()
    async with started(Shop(), rpc_server):
        assert await rpc_server.call("shop.add", {"a": 1, "b": 2}) == 3
        assert rpc_server.dispatcher.run == rpc_server.executor.run  # no middleware: straight to the executor


async def test_task_metrics() -> None:
    ok = PeriodicTask(name="adder", interval=0.05, method="shop.add", params={"a": 1, "b": 1})
    bad = PeriodicTask(name="failer", interval=0.05, method="shop.fail", policy="wait")
    metrics, http = Metrics(process_metrics=False), HTTPServer(port=free_port())
    async with started(Shop(), RPCServer(), metrics, ok, bad, http):
        await eventually(lambda: ok.runs >= 2 and bad.failures >= 2, what="two runs of each")
        ok.pause()  # no run may end between the scrape and the counts read beside it
        bad.pause()
        await eventually(lambda: not ok.running and not bad.running, what="the last runs to end")
        samples = await scrape(http)
        runs_ok, runs_bad = ok.runs, bad.runs
    assert sample(samples, "kaiju_task_runs_total", task="adder") == runs_ok
    assert sample(samples, "kaiju_task_failures_total", task="failer") == runs_bad
    assert sample(samples, "kaiju_task_failures_total", task="adder") == 0
    assert sample(samples, "kaiju_task_skips_total", task="adder", policy="skip") == ok.misses
    assert sample(samples, "kaiju_task_timeouts_total", task="adder") == 0
    assert sample(samples, "kaiju_task_lateness_seconds_count", task="adder") >= runs_ok
    assert sample(samples, "kaiju_task_last_success_timestamp_seconds", task="adder") == ok.last_success
    assert ("kaiju_task_last_success_timestamp_seconds", (("task", "failer"),)) not in samples
    assert sample(samples, "kaiju_rpc_requests_total", method="shop.add", transport="task", outcome="ok") >= runs_ok
    assert not any(k for k in samples if k[0] == "process_open_fds")


async def test_task_timeouts_are_counted() -> None:
    slow = PeriodicTask(name="slow", interval=0.05, method="shop.hold", timeout=0.05)
    metrics, http = Metrics(process_metrics=False), HTTPServer(port=free_port())
    async with started(Shop(), RPCServer(), metrics, slow, http):
        await eventually(lambda: slow.timeouts >= 1, what="a run cut by its timeout")
        samples = await scrape(http)
        timeouts = slow.timeouts
    assert sample(samples, "kaiju_task_timeouts_total", task="slow") == timeouts


async def test_stream_metrics(make_stack) -> None:
    services, backend, (listener,), producer, rec = make_stack(max_deliveries=1)
    metrics, http = Metrics(process_metrics=False), HTTPServer(port=free_port())
    async with started(*services, metrics, http, app=App(name="test", env="test")):
        await producer.call("rec.echo", {"value": 1})
        await producer.call("rec.fail", {"value": 2})
        await eventually(lambda: listener.counters["processed"] == 1 and listener.counters["dead_lettered"] == 1, what="both messages")
        await eventually(lambda: not listener.in_hand, what="acks")
        # pending and lag are read by the listener's upkeep, at its next lock check
        read = lambda: listener.backlog is not None and listener.backlog.pending == 0 and listener.backlog.lag == 0  # noqa: E731
        await eventually(read, what="the backlog read")
        samples = await scrape(http)
    topic, name = listener.topic, listener.name
    assert sample(samples, "kaiju_stream_messages_processed_total", topic=topic, listener=name) == 1
    assert sample(samples, "kaiju_stream_messages_failed_total", topic=topic, listener=name) == 1
    assert sample(samples, "kaiju_stream_messages_dead_lettered_total", topic=topic, listener=name) == 1
    assert sample(samples, "kaiju_stream_messages_claimed_total", topic=topic, listener=name) == 0
    assert sample(samples, "kaiju_stream_pending", topic=topic) == 0
    assert sample(samples, "kaiju_stream_lag", topic=topic) == 0
    assert sample(samples, "kaiju_rpc_requests_total", method="rec.echo", transport="stream", outcome="ok") == 1


async def test_cache_and_lock_metrics() -> None:
    cache, locks, metrics = MemoryCache(), MemoryLocks(), Metrics(process_metrics=False)
    http = HTTPServer(port=free_port())
    async with started(cache, locks, metrics, RPCServer(), http):
        assert await cache.get("k") is None
        await cache.set("k", 1)
        assert await cache.get("k") == 1
        assert await cache.m_get(["k", "nope"]) == {"k": 1}
        assert await cache.get_or_set("other", lambda: 2) == 2
        assert await cache.get_or_set("other", lambda: 3) == 2
        info = await locks.acquire("a", ttl=5)
        with pytest.raises(LockExistsError):
            await locks.acquire("a", ttl=5, wait=False)
        await locks.release("a", info.id)
        samples = await scrape(http)
    assert sample(samples, "kaiju_cache_hits_total", cache=cache.name) == 3
    assert sample(samples, "kaiju_cache_misses_total", cache=cache.name) == 3
    assert sample(samples, "kaiju_cache_loader_calls_total", cache=cache.name) == 1
    assert sample(samples, "kaiju_locks_acquired_total", locks=locks.name) == 1
    assert sample(samples, "kaiju_locks_refused_total", locks=locks.name, reason="taken") == 1
    assert sample(samples, "kaiju_locks_refused_total", locks=locks.name, reason="timeout") == 0
    assert sample(samples, "kaiju_locks_lost_total", locks=locks.name) == 0
    assert sample(samples, "kaiju_locks_wait_seconds_count", locks=locks.name) == 1


async def test_the_route_answers_503_while_the_service_is_stopped() -> None:
    metrics, http = Metrics(process_metrics=False), HTTPServer(port=free_port())
    async with started(RPCServer(), metrics, http), aiohttp.ClientSession() as session:
        await metrics.stop()
        async with session.get(http.url.removesuffix(http.rpc_path) + "/metrics") as response:
            assert response.status == 503 and response.content_type == "application/json"
            assert await response.json() == {"error": "metrics not started"}


async def test_a_restarted_metrics_service_keeps_counting_once_per_request() -> None:
    metrics, rpc_server, http = Metrics(process_metrics=False), RPCServer(), HTTPServer(port=free_port())
    async with started(Shop(), rpc_server, metrics, http):
        await rpc_server.call("shop.add", {"a": 1, "b": 2})
        await metrics.stop()
        await metrics.start()
        await rpc_server.call("shop.add", {"a": 1, "b": 2})
        samples = await scrape(http)
        assert rpc_server.dispatcher.run.__self__.first is not None and rpc_server._outer == [metrics.stats]  # added once
    assert sample(samples, "kaiju_rpc_requests_total", method="shop.add", transport="internal", outcome="ok") == 2


class Orders(Service):
    """A user's service reporting a metric of its own through the service contract."""

    service_name = "orders"

    def __init__(self, **kwargs: object):
        super().__init__(**kwargs)
        self.open = ["o1", "o2"]

    def metrics(self):
        from prometheus_client.core import GaugeMetricFamily

        family = GaugeMetricFamily("shop_open_orders", "Orders not shipped yet", labels=["service"])
        family.add_metric([self.name], len(self.open))
        yield family


async def test_a_users_service_reports_its_own_metric_on_the_metrics_route() -> None:
    http, orders = HTTPServer(port=free_port()), Orders()
    async with started(orders, RPCServer(), Metrics(process_metrics=False), http):
        assert sample(await scrape(http), "shop_open_orders", service="orders") == 2
        orders.open.append("o3")  # read at scrape time
        assert sample(await scrape(http), "shop_open_orders", service="orders") == 3


async def test_the_ops_listener_serves_metrics_and_the_public_one_does_not() -> None:
    http = HTTPServer(port=free_port(), ops_port=free_port())
    async with started(Shop(), RPCServer(), Metrics(), http), aiohttp.ClientSession() as session:
        async with session.get(http.url.removesuffix(http.rpc_path) + "/metrics") as response:
            assert response.status == 404  # system methods' names stay off the public listener
        async with session.get(http.ops_url + "/metrics") as response:
            assert response.status == 200 and "kaiju_rpc" in await response.text()
