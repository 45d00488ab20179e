"""`detail: full`: the calls of caches, locks and Redis below a request are spans too."""

from __future__ import annotations

import pytest
from opentelemetry.trace import SpanKind

from kaiju import rpc
from kaiju.cache.base import Cache
from kaiju.cache.redis import RedisCache
from kaiju.locks.base import Locks
from kaiju.locks.memory import MemoryLocks
from kaiju.redis import RedisConnection
from kaiju.rpc import RPCServer
from kaiju.runtime.service import Service
from kaiju.telemetry import Telemetry
from kaiju.testing.services import started


class Stock(Service):
    service_name = "stock"

    cache: Cache
    locks: Locks

    @rpc.method
    async def reserve(self, sku: str) -> int:
        async with self.locks.lock(f"sku.{sku}"):
            left = await self.cache.get(sku) or 10
            await self.cache.set(sku, left - 1)
            return left - 1


async def reserve(detail: str, redis_url: str) -> Telemetry:
    tel = Telemetry(exporter="memory", global_provider=False, detail=detail)
    server = RPCServer()
    async with started(tel, RedisConnection(url=redis_url), RedisCache(), MemoryLocks(), server, Stock()):
        assert await server.call("stock.reserve", {"sku": "zebra-sku"}) == 9
    return tel


@pytest.mark.redis
async def test_full_detail_traces_cache_lock_and_redis_calls(redis_url: str) -> None:
    recorder = (await reserve("full", redis_url)).recorder
    call = recorder.one("stock.reserve")
    children = [s.name for s in recorder.children(call)]
    assert children == ["lock acquire", "cache get", "cache set", "lock release"]
    get, set_ = recorder.one("cache get"), recorder.one("cache set")
    assert get.attributes["kaiju.service"] == "cache"
    (command,) = recorder.children(get)
    assert (command.name, command.kind) == ("GET", SpanKind.CLIENT)
    assert command.attributes["db.system.name"] == "redis" and command.attributes["db.operation.name"] == "GET"
    assert command.attributes["server.address"] == "127.0.0.1"
    assert [s.name for s in recorder.children(set_)] == ["SET"]
    assert not any("zebra" in str(v) for s in recorder.spans() for v in s.attributes.values())  # no key recorded


@pytest.mark.redis
async def test_basic_detail_leaves_them_out(redis_url: str) -> None:
    recorder = (await reserve("basic", redis_url)).recorder
    assert [s.name for s in recorder.spans()] == ["stock.reserve"]
